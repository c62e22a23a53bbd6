# The PNG chart of one run (build/bench.png), drawn from the results dict of run_all.py.
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KIB = 1024.0
OK, OVER, NEUTRAL = "#4c9a2a", "#c0392b", "#5b7fa6"


def _flash(ax, flash):
    names = ["whole library", "Tencent only", "Alibaba only"]
    values = [flash["total"], flash["builds"]["tencent_only"], flash["builds"]["aliyun_only"]]
    targets = [flash["targets"]["total"], flash["targets"]["one_cloud"], flash["targets"]["one_cloud"]]
    colors = [OK if v <= t else OVER for v, t in zip(values, targets)]
    bars = ax.bar(names, [v / KIB for v in values], color=colors)
    for bar, value, target in zip(bars, values, targets):
        x = bar.get_x()
        ax.hlines(target / KIB, x - 0.05, x + bar.get_width() + 0.05, colors="black", linestyles="--")
        ax.annotate("%.1f" % (value / KIB), (x + bar.get_width() / 2, value / KIB), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("KiB of bytecode (.mpy)")
    ax.set_title("Flash (dashed: target)")


def _ram(ax, ram):
    flows = ram["flows"]
    keys = [k for k in flows if "smallest_heap" in flows[k]]
    labels = [flows[k]["label"] for k in keys] + ["unix port, empty program"]
    values = [flows[k]["smallest_heap"] / KIB for k in keys] + [ram["baseline"]["smallest_heap_empty"] / KIB]
    colors = []
    for k in keys:
        target = flows[k].get("target")
        colors.append(NEUTRAL if not target else (OK if flows[k]["smallest_heap"] <= target else OVER))
    colors.append("#999999")
    ax.barh(labels, values, color=colors)
    for y, value in enumerate(values):
        ax.annotate("%.1f" % value, (value, y), va="center", ha="left", fontsize=8)
    target = ram["targets"]["tencent_https"] / KIB
    ax.axvline(target, color="black", linestyle="--", label="target, Tencent HTTPS (%.0f KiB)" % target)
    if ram.get("loaded_tencent_flow"):
        ax.axvline(ram["loaded_tencent_flow"] / KIB, color="#888888", linestyle=":",
                   label="heap the Tencent flow's .mpy take once imported")
    ax.legend(fontsize=7, loc="lower right")
    ax.invert_yaxis()
    ax.set_xlabel("smallest -X heapsize, KiB")
    ax.set_title("RAM on the unix port, library as .mpy")
    ax.tick_params(axis="y", labelsize=7)


def _ratios(ax, timing):
    labels, values, colors = [], [], []
    hmac = timing.get("hmac")
    if hmac:
        labels.append("HMAC-SHA256 / 2 raw SHA-256 passes")
        values.append(hmac["ratio"])
        colors.append(OK if hmac["ratio"] <= hmac["target"] else OVER)
    for name, row in (timing.get("decrypt") or {}).items():
        labels.append("decrypt_payload / raw AES (%s, %d B)" % (name, row["bytes"]))
        values.append(row["ratio"])
        colors.append(NEUTRAL)
    for row in (timing.get("boot") or {}).values():
        for measure, text in (("stored", "stored"), ("connected", "MQTT connected")):
            ratio = row[measure].get("ratio")
            if ratio:
                labels.append("%s: boot to %s / %s" % (row["label"], text, row["sdk"].split()[0]))
                values.append(ratio)
                colors.append(OK if ratio <= 1 else NEUTRAL)
    ax.barh(labels, values, color=colors)
    for y, value in enumerate(values):
        ax.annotate("%.2f" % value, (value, y), va="center", ha="left", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=max(values) * 3)
    ax.axvline(1.0, color="black", linewidth=0.8)
    if hmac:
        ax.axvline(hmac["target"], color="black", linestyle="--")
    ax.invert_yaxis()
    ax.set_xlabel("ratio (log scale; dashed: HMAC target 2.0; < 1: dynreg faster)")
    ax.set_title("Time ratios, same run")
    ax.tick_params(axis="y", labelsize=7)


def _fleet(ax, fleet):
    sizes = fleet["sizes"]
    n = [row["devices"] for row in sizes]
    ax.plot(n, [row["registration_p50_s"] for row in sizes], "o-", color=NEUTRAL, label="registration p50")
    ax.plot(n, [row["registration_p99_s"] for row in sizes], "s-", color=OVER, label="registration p99")
    ax.plot(n, [row["connected_p99_s"] for row in sizes], "^:", color="#8e44ad", label="MQTT connected p99")
    ax.plot(n, [row["cpu_floor_s"] for row in sizes], "x--", color="#777777", label="CPU floor (all work / cores)")
    only = fleet.get("register_only")
    if only:
        ax.plot([only["devices"]], [only["registration_p99_s"]], "D", color="#e67e22", label="p99, registration only")
    target = fleet["targets"]
    ax.plot([target["at"]], [target["p99_s"]], "*", color="black", markersize=12, label="target p99 at N=200")
    ax.set_xscale("log")
    ax.set_xticks(n)
    ax.set_xticklabels([str(x) for x in n])
    ax.set_xlabel("devices registering at once")
    ax.set_ylabel("seconds from the common start")
    ax.set_title("Fleet against one emulator")
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    twin = ax.twinx()
    twin.plot(n, [row["throughput_registrations_per_s"] for row in sizes], "o--", color=OK, alpha=0.6)
    twin.set_ylabel("registrations/s (green, dashed)", color=OK)
    twin.set_ylim(bottom=0, top=max(row["throughput_registrations_per_s"] or 0 for row in sizes) * 1.6)


def draw(results, path, subtitle):
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    for ax, key, fn in ((axes[0][0], "flash", _flash), (axes[0][1], "ram", _ram), (axes[1][0], "time", _ratios),
                        (axes[1][1], "fleet", _fleet)):
        section = results.get(key)
        if section and "error" not in section:
            fn(ax, section)
        else:
            ax.text(0.5, 0.5, "%s: not measured\n%s" % (key, (section or {}).get("error", "")[:80]),
                    ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
    fig.suptitle("dynreg benchmarks  -  " + subtitle, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

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


def _line(ax, line):
    runs = line["runs"]
    labels = ["N=%d\nR=%g" % (row["devices"], row["rate"]) for row in runs]
    ratios = [row["makespan_ratio"] or 0 for row in runs]
    target = line["targets"]["makespan_ratio"]
    ax.bar(range(len(runs)), ratios, color=[OK if r <= target else OVER for r in ratios])
    ax.axhline(target, color="black", linestyle="--", linewidth=1, label="target %.2fx" % target)
    ax.axhline(1.0, color="#777777", linestyle=":", linewidth=1, label="floor max(N/R, spread)")
    for i, row in enumerate(runs):
        ax.text(i, ratios[i] + 0.02, "%.1f" % (row["refused_per_board_mean"] or 0), ha="center", fontsize=7)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("makespan / floor (numbers: refused per board, mean)")
    ax.set_title("A production line against a rate-limited cloud")
    ax.legend(fontsize=7, loc="upper left")


def draw_line(line, path, subtitle):
    """Registrations a second over time against the limit, one panel per run (rows N, columns R)."""
    runs = line["runs"]
    sizes = sorted({row["devices"] for row in runs})
    rates = sorted({row["rate"] for row in runs})
    fig, axes = plt.subplots(len(sizes), len(rates), figsize=(4.2 * len(rates), 2.8 * len(sizes)), squeeze=False)
    for row in runs:
        ax = axes[sizes.index(row["devices"])][rates.index(row["rate"])]
        ok, refused = row["ok_per_s"], row["refused_per_s"]
        ax.bar(range(len(refused)), refused, color="#f5b7b1", width=1.0, label="refused (throttled)")
        ax.step(range(len(ok)), ok, where="post", color=OK, label="registered")
        ax.axhline(row["rate"], color="black", linestyle="--", linewidth=1, label="limit R")
        ax.axvline(row["floor_s"], color="#777777", linestyle=":", linewidth=1, label="floor")
        ax.set_title("N=%d, R=%g/s: %.2fx floor, %.1f refused/board, peak %.1fx R"
                     % (row["devices"], row["rate"], row["makespan_ratio"] or 0, row["refused_per_board_mean"] or 0,
                        row["peak_over_rate"]), fontsize=8)
        ax.set_xlabel("seconds from the first power-on", fontsize=7)
        ax.set_ylabel("requests a second", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6, loc="upper right")
    fig.suptitle("dynreg: a production line powers on within %g s  -  %s" % (line["spread_s"], subtitle), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw(results, path, subtitle):
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    for ax, key, fn in ((axes[0][0], "flash", _flash), (axes[0][1], "ram", _ram), (axes[1][0], "time", _ratios),
                        (axes[1][1], "line", _line)):
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

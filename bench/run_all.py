# `make bench`: every benchmark of bench/README.md in one run. Prints each section as it goes,
# then the table; writes build/bench.json (every figure), build/bench.md (the table and the
# chart reference for docs/PERFORMANCE.md) and build/bench.png and build/bench-line.png (the charts).
# Figures are printed, never asserted: the exit status is 0 unless a section could not run.
#   .venv/bin/python bench/run_all.py [--only flash,ram,time,pico,line,storm,soak] [--line-sizes 50,200 --line-rates 5,20]
#       [--line-comparisons no]
import argparse
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import ROOT, say  # noqa: E402

SECTIONS = ("flash", "ram", "time", "pico", "line", "storm", "soak")
OUT_JSON = os.path.join(ROOT, "build", "bench.json")
OUT_MD = os.path.join(ROOT, "build", "bench.md")
OUT_PNG = os.path.join(ROOT, "build", "bench.png")
OUT_LINE_PNG = os.path.join(ROOT, "build", "bench-line.png")
KIB = 1024


def _kib(value):
    return "%d B (%.1f KiB)" % (value, value / KIB)


def _num(value, fmt="%.2f", none="-"):
    return none if value is None else fmt % value


def _target(met, text):
    return "%s %s" % (text, "met" if met else "**not met**")


def flash_rows(flash):
    lines = ["| module (`lib/dynreg`) | bytecode | target |", "|---|---:|---|"]
    for name, size in sorted(flash["modules"].items()):
        lines.append("| `%s.py` | %d B | |" % (name, size))
    total, builds, targets = flash["total"], flash["builds"], flash["targets"]
    lines.append("| **whole library** | **%s** | %s |" % (_kib(total), _target(total <= targets["total"],
                                                                              "<= %d KiB:" % (targets["total"] // KIB))))
    for key, name in (("tencent_only", "Tencent only"), ("aliyun_only", "Alibaba only"), ("azure_only", "Azure only"),
                      ("aws_only", "AWS only")):
        if key not in builds:
            continue
        lines.append("| **%s** (without %s) | **%s** | %s |" % (
            name, ", ".join("`%s`" % m for m in flash["excluded"][key]), _kib(builds[key]),
            _target(builds[key] <= targets["one_cloud"], "<= %d KiB:" % (targets["one_cloud"] // KIB))))
    image = flash.get("image")
    if image:
        frozen = targets.get("frozen")
        if "own" in image:
            # The limit is on its code, the roots apart (the row after the next).
            lines.append("| **frozen into the Pico W image: dynreg** (its modules and their qstrs at opt=3, "
                         "`firmware.bin` %d B against stock + umqtt.simple %d B) | **%s** | |" % (
                             image["ours"], image["reference"], _kib(image["own"])))
        lines.append("| frozen into the Pico W image: dynreg + umqtt.simple (`firmware.bin` %d B against stock "
                     "RPI_PICO_W %d B) | %s | |" % (image["ours"], image["stock"], _kib(image["cost"])))
        roots = sum(flash.get("roots", {}).values())
        if roots and "own" in image:
            lines.append("| of dynreg: its code, the built-in roots (`roots_*.py`, %s) counted apart | %s | %s |" % (
                _kib(roots), _kib(image["own"] - roots),
                _target(image["own"] - roots <= frozen, "<= %d KiB:" % (frozen // KIB)) if frozen else ""))
        if "tencent_only" in image:
            lines.append("| a Tencent-only image (`clouds=\"tencent\"`): dynreg, roots included | %s | |"
                         % _kib(image["tencent_only"]))
    return lines


def ram_rows(ram):
    lines = ["| flow (v1.28.0 unix port, library frozen) | smallest heap from which every probe succeeded | target | probes |",
             "|---|---:|---|---:|"]
    for figures in ram["flows"].values():
        if "smallest_heap" not in figures:
            lines.append("| %s | %s | | |" % (figures.get("label", "?"), figures["error"]))
            continue
        target = figures.get("target")
        note = ""
        if figures.get("successes_below"):
            note = " (also succeeded at %s)" % ", ".join(str(s) for s in figures["successes_below"][:4])
        lines.append("| %s | %s%s | %s | %d |" % (
            figures["label"], _kib(figures["smallest_heap"]), note,
            _target(figures["smallest_heap"] <= target, "<= %d KiB:" % (target // KIB)) if target else "",
            figures["probes"]))
    base = ram["baseline"]
    lines.append("| baseline: the unix port running an empty program | %s | | |" % _kib(base["smallest_heap_empty"]))
    if base.get("alloc_at_script_start") is not None:
        lines.append("| baseline: heap in use when the device script starts, before `import dynreg` | %s | | |"
                     % _kib(base["alloc_at_script_start"]))
    if ram.get("loaded_tencent_flow"):
        lines.append("| part of each figure above: the heap the Tencent flow and umqtt hold once imported "
                     "(frozen: module objects and globals only, the bytecode stays in flash) | %s | | |"
                     % _kib(ram["loaded_tencent_flow"]))
    if ram.get("tls_handshake_gc_bytes") is not None:
        lines.append("| GC heap taken by one TLS handshake (mbedTLS allocates outside the GC heap on this build) "
                     "| %d B | | |" % ram["tls_handshake_gc_bytes"])
    mip = ram.get("mip")
    if mip:
        lines += [""] + (["The mip path: could not run: %s" % mip["error"]] if "error" in mip else mip_rows(mip))
    return lines


def mip_rows(mip):
    # bench/mip_ram.py: each way onto a board, on the 32-bit unix port; heap sizes are -X heapsize.
    budgets = mip["budgets"]
    heads = [("esp32_boot", "ESP32 heap at boot"), ("k64", ""), ("esp32_grown", "ESP32 heap grown once")]
    lines = ["The mip path (32-bit unix port, v1.28.0; a first boot: one registration, then the MQTT login, "
             "both over TLS; built-in roots imported as for the real cloud):", "",
             "| library | cloud | heap held once imported | smallest heap: import | smallest heap: first boot | "
             + " | ".join("first boot in %d KiB%s" % (budgets[k] // KIB, " (%s)" % t if t else "") for k, t in heads)
             + " |", "|---|---|---:|---:|---:|" + "---|" * len(heads)]
    for key, row in mip["rows"].items():
        path, cloud = key.split("/")
        need = [row[k].get("smallest_heap") for k in ("import", "first_boot")]
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            mip["paths"][path], mip["clouds"][cloud], _kib(row["held"]) if row["held"] is not None else "-",
            *[_kib(n) if n else "-" for n in need],
            " | ".join("fits" if row["at"][k] == "ok" else "**%s**" % row["at"][k].split()[0] for k, _ in heads)))
    index = mip["index"]
    lines += ["", "`make mip-index`: %d .mpy files of dynreg %s and umqtt.simple, %s (mpy v%s)."
              % (index["files"], index["version"], _kib(index["bytes"]), index["mpy"])]
    chip = mip.get("chip") or {}
    if "error" in chip:
        lines.append("On the emulated RP2040: could not run: %s." % chip["error"])
    elif chip:
        lines.append("The same Tencent import on the emulated RP2040 (py and mpy on the stock RPI_PICO_W image, "
                     "frozen on RPI_PICO_W_DYNREG) holds: %s." % ", ".join(
                         "%s %s" % (mip["paths"][k], _kib(v) if isinstance(v, int) else v) for k, v in chip.items()))
    if "pico_w" in budgets:
        lines.append("Pico W: %s of GC heap (`__GcHeapEnd - __GcHeapStart` of the stock RPI_PICO_W image); "
                     "mbedTLS allocates from it on the RP2040." % _kib(budgets["pico_w"]))
    return lines


def time_rows(timing):
    notes = []
    lines = ["| what | dynreg (MicroPython unix port) | reference | ratio | target |", "|---|---:|---|---:|---|"]
    hmac = timing.get("hmac")
    if hmac:
        rows = hmac["rows"]
        raw = rows["raw two passes"]["us"]
        lines.append("| HMAC-SHA256 of a 150-byte signing string, same key | %.2f us | two raw SHA-256 passes, %.2f us "
                     "| %.2f | %s |" % (rows["hmac, same key"]["us"], raw, hmac["ratio"],
                                        _target(hmac["ratio"] <= hmac["target"], "<= %.1f:" % hmac["target"])))
        fresh = rows.get("hmac, new key each call")
        if fresh:
            lines.append("| HMAC-SHA256, a new key each call | %.2f us | the same, %.2f us | %.2f | |"
                         % (fresh["us"], raw, fresh["ratio"]))
    for name, row in (timing.get("decrypt") or {}).items():
        lines.append("| `tencent.decrypt_payload` of a %s payload (%d B) | %.2f us | `cryptolib.aes` CBC decrypt of "
                     "the same bytes, %.2f us | %.1f | |" % (name, row["bytes"], row["decrypt_us"], row["aes_us"],
                                                             row["ratio"]))
    for row in (timing.get("boot") or {}).values():
        for measure, text in (("stored", "boot to credential stored"), ("connected", "boot to MQTT connected"),
                              ("second_boot", "later boot (credential stored) to MQTT connected")):
            figures = row[measure]
            if figures.get("sdk_ms") is not None:
                reference = "%s: %.0f ms" % (row["sdk"], figures["sdk_ms"])
                ratio = "%.2f (%.2f without interpreter start)" % (figures["ratio"], figures["ratio_from_script"])
            else:
                note = figures.get("sdk_note")
                if note and note not in notes:
                    notes.append(note)
                reference = "%s: %s" % (row["sdk"], "n/a (note %d)" % (notes.index(note) + 1) if note
                                        else "no successful run")
                ratio = "-"
            lines.append("| %s: %s, over TLS (median of %d) | %s ms | %s | %s | |"
                         % (row["label"], text, row["runs"], _num(figures["dynreg_ms"], "%.0f"), reference, ratio))
    start = timing.get("interpreter_start_ms")
    if start:
        lines.append("| interpreter start, empty program (median of %d) | %.0f ms | CPython: %.0f ms | %.2f | |"
                     % (start.get("runs", 15), start["micropython"], start["cpython"],
                        start["micropython"] / start["cpython"]))
    if notes:
        lines.append("")
        lines.extend("Note %d: %s." % (index + 1, note) for index, note in enumerate(notes))
    return lines


def pico_rows(pico):
    m, ours, ver, ref, second = pico["micro"], pico["dynreg"], pico["verifying"], pico["reference"], pico["second"]
    vr, nr = pico["ratios"]["verifying"], pico["ratios"]["naive"]
    lines = ["Emulated time (rp2040js counts cycles at 125 MHz; it models no flash wait states and no radio, so "
             "these are not a real Pico's timings). Heap: `gc.mem_free()` sampled every emulated millisecond, "
             "`gc.threshold(4096)`. Two references send the same request bytes with micropython-lib: *verifying* "
             "checks both servers' certificates as dynreg does (a socket wrapped by a `tls.SSLContext` holding the CA, "
             "then umqtt.simple with the same context); *naive* is `requests` and umqtt.simple without certificate "
             "checks. Every flow's timer starts before its first import; dynreg is connected at its CONNACK. Chain: `%s`." % pico["chain"], "",
             "| what | dynreg | verifying reference | ratio (goal <= %.2f) | naive reference | ratio |" % pico["goal"],
             "|---|---:|---:|---:|---:|---:|",
             "| first boot: credential stored (HTTPS registration) | %d ms | %d ms | %.2f | %d ms | %.2f |"
             % (ours["stored_ms"], ver["stored_ms"], vr["stored"], ref["stored_ms"], nr["stored"]),
             "| first boot: MQTT connected (TLS) | %d ms | %d ms | %.2f | %d ms | %.2f |"
             % (ours["connected_ms"], ver["connected_ms"], vr["connected"], ref["connected_ms"], nr["connected"]),
             "| first boot: `dynreg.connect` returned (ProductSecret erased, free flash scrubbed) | %d ms | | | | |"
             % ours["returned_ms"],
             "| first boot: heap in use at its peak (boot free - lowest free) | %d B | %d B | %.2f | %d B | %.2f |"
             % (ours["heap_peak"], ver["heap_peak"], vr["heap_peak"], ref["heap_peak"], nr["heap_peak"]),
             "| second boot: MQTT connected | %d ms | | | | |" % second["connected_ms"],
             "| second boot: heap in use at its peak | %d B | | | | |" % second["heap_peak"],
             "| GC heap free at boot | %d B | | | | |" % m["heap_free_boot"],
             "| after importing the Tencent flow and umqtt.simple (frozen) | %d B (-%d) | | | | |"
             % (m["heap_free_after_import"], m["heap_free_boot"] - m["heap_free_after_import"]),
             "| HMAC-SHA256 sign, cold key | %d us | | | | |" % m["hmac_cold_us"],
             "| `tencent.decrypt_payload` (psk) | %d us | | | | |" % m["decrypt_us"]]
    if "before" in pico:
        lines += ["", "Before and after (the same run): first boot MQTT connected %d ms with the other image, %d ms "
                  "with this one." % (pico["before"]["connected_ms"], ours["connected_ms"])]
    lines += ["", "By chain shape (the emulator's `--chain`; which real chains each stands for: bench/README.md):", "",
              "| chain | TLS handshake HTTPS: verified / unverified | MQTTS: verified / unverified | verification in a "
              "first boot | dynreg first boot | verifying reference | ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, shape in pico["shapes"].items():
        sm = shape["micro"]
        lines.append("| `%s` | %d / %d ms | %d / %d ms | %d ms (%.0f %%) | %d ms | %d ms | %.2f |" % (
            name, sm["handshake_https_us"] // 1000, sm["handshake_https_unverified_us"] // 1000,
            sm["handshake_mqtts_us"] // 1000, sm["handshake_mqtts_unverified_us"] // 1000, shape["verification_ms"],
            100 * shape["verification_share"], shape["dynreg"]["connected_ms"], shape["verifying"]["connected_ms"],
            shape["against_verifying"]))
    if "aws" in pico:
        aws = pico["aws"]
        mutual, plain, first = aws["mutual"], aws["server_only"], aws["first_boot"]
        lines += ["", "AWS fleet provisioning (chain `%s`, the server's certificate verified): each handshake from an empty "
                  "context (the CA, and the client certificate and key, parsed) to its end; heap in use at the peak: the free "
                  "heap before each, after `gc.collect()`, less the lowest `gc.mem_free()` sampled as above." % aws["chain"], "",
                  "| what | time | heap in use at its peak |", "|---|---:|---:|",
                  "| TLS handshake to the AWS listener with the claim's %s client certificate and key | %d ms | %d B |"
                  % (aws["client_key"], mutual["handshake_us"] // 1000, mutual["heap_peak"]),
                  "| the same to the MQTTS listener without a client certificate | %d ms | %d B |"
                  % (plain["handshake_us"] // 1000, plain["heap_peak"]),
                  "| AWS first boot: credential stored / `dynreg.connect` returned (claim erased, free flash scrubbed) "
                  "| %d / %d ms | %d B |" % (first["stored_ms"], first["returned_ms"], first["heap_peak"])]
    return lines


def line_rows(line, rows):
    """The line's table of `rows` (runs of bench/line.py)."""
    target = line["targets"]
    lines = ["| N | R /s | bucket holds | over the limit, the cloud answers | wait after a throttled answer | transport | registered "
             "| makespan | floor max(N/R, S) | makespan / floor (target <= %.1f) | refused per registered board: mean, "
             "max | peak requests in 1 s / R | past the 300 s budget | gave up on network errors (requests unanswered) "
             "| attempts: mean, max | limit used | CPU devices + emulator (share of %d cores; other processes) |"
             % (target["makespan_ratio"], line["runs"][0]["cores"]),
             "|---:|---:|---:|---|---|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|"]
    for row in rows:
        # A makespan over the devices that registered: a line that lost some did not finish.
        ratio_met = row["registered"] >= target["registered"] and (row["makespan_ratio"] or 1e9) <= target["makespan_ratio"]
        refused = "-" if row["refused_per_board_mean"] is None else "%.1f, %d" % (row["refused_per_board_mean"],
                                                                                  row["refused_per_board_max"])
        lines.append("| %d | %g | %d | %s | %s | %s | %.0f %% | %s s | %.0f s | %s | %s | %.1f | %s | %s (%s) | %.1f, %d "
                     "| %s | %.1f + %.1f s (%.0f %%; %s) |" % (
                         row["devices"], row["rate"], row["burst"], line["answers"][row["answer"]], line["design_names"][row["design"]],
                         row["scheme"], 100 * row["registered"], _num(row["makespan_s"], "%.1f"), row["floor_s"],
                         _target(ratio_met, _num(row["makespan_ratio"])), refused, row["peak_over_rate"],
                         _target(row["past_budget"] <= target["past_budget"], "%d" % row["past_budget"]),
                         row.get("gave_up_network", "-"), row.get("unanswered", "-"),
                         row["attempts_mean"], row["attempts_max"],
                         "%.0f %%" % (100 * row["limit_used"]) if row["limit_used"] else "-",
                         row["cpu_devices_s"], row["cpu_emulator_s"], 100 * (row["cpu_busy_fraction"] or 0),
                         _num(row.get("cpu_other_fraction") and 100 * row["cpu_other_fraction"], "%.0f %%")))
    return lines


def line_section(line):
    designs = []  # at each point, the library's run of the matrix, then the other designs
    for row in line.get("designs", []):
        point = (row["devices"], row["rate"])
        if not any((d["devices"], d["rate"]) == point for d in designs):
            designs += [r for r in line["runs"] if (r["devices"], r["rate"]) == point]
        designs.append(row)
    lines = line_rows(line, line["runs"])
    if line["comparisons"]:
        lines += ["", "Comparisons: the emulator's Retry-After (HTTP 429), HTTPS, and a bucket that holds a second "
                      "of tokens:", ""]
        lines += line_rows(line, line["comparisons"])
    if designs:
        lines += ["", "Comparisons: other designs of the wait after a throttled answer (bench/device_backoff.py), "
                      "each after the library's run of the matrix at the same N and R:", ""]
        lines += line_rows(line, designs)
    return lines


def storm_rows(storm):
    lines = ["| boards | broker down | back | all back, from the broker serving again | from its stop | median | "
             "peak logins in 1 s (share of N) | logins refused | failed connects per board: mean, max | "
             "registered again | cores busy (every process) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in storm["runs"]:
        lines.append("| %d | %.1f s | %d | %s s | %s s | %s s | %d (%.2f) | %d | %.1f, %d | %d (of %d at the first "
                     "boots) | %s |" % (row["boards"], row["downtime_s"], row["back"], _num(row["all_back_after_ready_s"], "%.1f"),
                                   _num(row["all_back_after_stop_s"], "%.1f"), _num(row["back_p50_after_ready_s"], "%.1f"),
                                   row["peak_logins_per_s"], row["peak_over_boards"], row["refused_logins"],
                                   row["failed_connects_mean"], row["failed_connects_max"], row["registrations_again"],
                                   row["registrations_first_boots"],
                                   _num(row.get("machine_busy") and 100 * row["machine_busy"], "%.0f %%")))
    return lines


def soak_rows(soak):
    if "error" in soak:
        return ["Soak: could not run: %s" % soak["error"]]
    lines = ["| board | reconnects (reset, silence, restart) | free heap after each | trend | largest free block "
             "| trend | messages taken in | MemoryErrors |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for leg in ("unix", "chip"):
        row = soak.get(leg) or {}
        if "free_range" not in row:
            lines.append("| %s | could not run: %s | | | | | | |" % (leg, row.get("error")))
            continue
        lines.append("| %s | %d (%s) | %s | %s B/reconnect | %s | %s B/reconnect | %s of %d | %d |" % (
            row["runtime"], row["reconnects"], ", ".join(str(row["ended_by"].count(k)) for k in soak["kinds"]),
            "%d..%d B" % tuple(row["free_range"]) if row["free_range"] else "-", _num(row["free_slope"], "%+.1f"),
            "%d..%d B" % tuple(row["largest_range"]) if row["largest_range"] else "-",
            _num(row["largest_slope"], "%+.1f"), row["messages_taken_in"], row["messages_sent"],
            row["memory_errors"]))
    return lines


def markdown(results):
    v = results["machine"]
    out = ["### Benchmarks", "",
           "`make bench` on %s: %d cores (`nproc`), %s; CPython %s; %s, unix port; %s; load average %.1f at the "
           "start. Figures only, nothing is asserted; how each one is measured and how to read it: "
           "[bench/README.md](bench/README.md)." % (v["date"], v["nproc"], v["cpu"], v["python"], v["micropython"],
                                                   v["mpy_cross"], v["load_average_at_start"][0]), "",
           "![dynreg benchmarks](build/bench.png)", ""]
    sections = (("flash", "Flash", flash_rows), ("ram", "RAM", ram_rows), ("time", "Time", time_rows),
                ("pico", "On the chip: the Pico W image on an emulated RP2040", pico_rows))
    for key, title, fn in sections:
        section = results.get(key)
        if not section:
            continue
        out.append("**%s**" % title)
        out.append("")
        out.extend(["%s: could not run: %s" % (title, section["error"])] if "error" in section else fn(section))
        out.append("")
    line = results.get("line")
    if line:
        out.append("**A production line powers on together** (N devices within %s s, each its own unix-port process "
                   "running `dynreg.ensure` with its defaults; one emulator admitting R registrations a second, "
                   "answering over it as the cloud documents it unless the row says otherwise; chart: "
                   "build/bench-line.png)" % (line.get("spread_s", "?")))
        out.append("")
        out.extend(["Line: could not run: %s" % line["error"]] if "error" in line else line_section(line))
        out.append("")
    storm = results.get("storm")
    if storm:
        out.append("**A reconnect storm** (N boards online over plain MQTT, each its own unix-port process running "
                   "`dynreg.online.stay_online` with its defaults; the emulator's broker stops and starts again)")
        out.append("")
        out.extend(["Storm: could not run: %s" % storm["error"]] if "error" in storm else storm_rows(storm))
        out.append("")
    if results.get("soak"):
        out += ["**The soak** (one board through N reconnects of each kind, a burst of incoming messages in each "
                "session; bench/soak.py)", ""] + soak_rows(results["soak"]) + [""]
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    parser.add_argument("--line-sizes", default=None, help="production line: devices, e.g. 50,200,1000")
    parser.add_argument("--line-rates", default=None, help="production line: registrations a second, e.g. 5,20,50")
    parser.add_argument("--line-comparisons", default="yes", choices=("yes", "no"),
                        help="production line: the comparison runs too (Retry-After, HTTPS, other wait designs)")
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s]
    started = time.monotonic()
    results = {"machine": common.versions()}
    v = results["machine"]
    say("dynreg benchmarks, %s, %d cores, %s, CPython %s, %s" % (v["date"], v["nproc"], v["cpu"], v["python"],
                                                                  v["micropython"]))
    failed = False
    for name in SECTIONS:
        if name not in chosen:
            continue
        say("\n== %s ==" % name)
        section_start = time.monotonic()
        try:
            if name == "flash":
                import flash
                results[name] = flash.run()
            elif name == "ram":
                import mip_ram
                import ram
                results[name] = ram.run()
                say("  the mip path (bench/mip_ram.py, 32-bit unix port):")
                try:
                    results[name]["mip"] = mip_ram.run()
                except Exception as error:  # the rest of the RAM section stands
                    traceback.print_exc()
                    results[name]["mip"] = {"error": "%s: %s" % (type(error).__name__, error)}
                    failed = True
            elif name == "time":
                import timing
                results[name] = timing.run()
            elif name == "pico":
                import pico_bench
                results[name] = pico_bench.run()
            elif name == "line":
                import line
                sizes = tuple(int(n) for n in args.line_sizes.split(",")) if args.line_sizes else line.SIZES
                rates = tuple(float(r) for r in args.line_rates.split(",")) if args.line_rates else line.RATES
                if args.line_comparisons == "no":
                    results[name] = line.run(sizes, rates, comparisons=(), design_points=())
                else:
                    results[name] = line.run(sizes, rates)
            elif name == "soak":
                import soak
                results[name] = soak.run()
            else:
                import storm
                results[name] = storm.run()
        except Exception as error:  # the other sections still run; the error is reported
            traceback.print_exc()
            results[name] = {"error": "%s: %s" % (type(error).__name__, error)}
            failed = True
        say("  (%s took %.0f s)" % (name, time.monotonic() - section_start))
    results["seconds"] = round(time.monotonic() - started, 1)
    os.makedirs(os.path.dirname(OUT_JSON), exist_ok=True)
    with open(OUT_JSON, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    text = markdown(results)
    with open(OUT_MD, "w") as f:
        f.write(text)
    try:
        import chart

        chart.draw(results, OUT_PNG, "%s, %d cores, %s" % (v["date"], v["nproc"], v["cpu"]))
        if results.get("line") and "error" not in results["line"]:
            chart.draw_line(results["line"], OUT_LINE_PNG, "%s, %d cores" % (v["date"], v["nproc"]))
        chart_note = OUT_PNG
    except Exception as error:  # noqa: BLE001 - the figures stand without the chart
        traceback.print_exc()
        chart_note = "not drawn (%s)" % error
        failed = True
    say("\n" + text)
    say("Wrote %s, %s and the chart %s in %.0f s." % (os.path.relpath(OUT_JSON, ROOT), os.path.relpath(OUT_MD, ROOT),
                                                      os.path.relpath(chart_note, ROOT) if chart_note == OUT_PNG
                                                      else chart_note, results["seconds"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

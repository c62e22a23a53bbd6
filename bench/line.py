# A production line powers on together: N devices, each its own unix-port process running the
# frozen library's dynreg.ensure with its default retry policy over real sockets, power on at
# random moments within SPREAD_S seconds and register with one emulator whose registration API
# admits R a second (cloud_emulator/throttle.py). A cloud that admits R a second cannot register
# N devices in less than N/R seconds, nor before the last one powers on: the floor is
# max(N/R, SPREAD_S), and the makespan (first power-on to last credential stored) is given as a
# ratio to it.
#
# Over the limit the emulator answers as the cloud documents it (the throttle's answer "cloud":
# Tencent's current API, HTTP 200 with RequestLimitExceeded and no Retry-After), so that the
# devices' own backoff is what spreads the line. The comparisons: the emulator's Retry-After
# shapes (HTTP 429, "slot" and "next"), one run over HTTPS, and other designs of the wait after
# a throttled answer, put in place of the library's on the device (bench/device_backoff.py).
#
# Every device boots and imports the flow first, prints READY and waits on its stdin; the bench
# releases each one at its power-on moment by writing one byte. Registration is Tencent's, over
# plain HTTP (the infos opt in with "plain_http": true; a real line should not, docs/CLOUDS.md
# "Device info"): on a real line every board brings its own CPU for its TLS handshakes, here 1000 of
# them would share this machine's cores with the emulator, and the figures would measure the
# cores, not the retry policy. One run over HTTPS shows what TLS adds.
import os
import random
import re
import shutil
import subprocess
import threading
import time

from common import BUILD, SECRET, cpu_seconds, device_command, device_env, machine_busy_seconds, median, \
    parse_device_output, peak_per_second, percentile, running_emulator, say, tencent_info

SIZES = (50, 200, 1000)
RATES = (5, 20, 50)
SPREAD_S = 10.0
BURST = 1  # the bucket holds one token: the floor is N/R, not (N - burst)/R
PRODUCT = "BENCHLINE1"
# Over the limit: "cloud", as Tencent documents it (200, RequestLimitExceeded, no Retry-After);
# or HTTP 429 with the emulator's Retry-After of that name (throttle.py).
ANSWERS = {"cloud": "200 RequestLimitExceeded", "slot": "429 Retry-After: slot", "next": "429 Retry-After: next"}
# The comparisons: the emulator's Retry-After shapes, the default over HTTPS, and a bucket that
# holds a second of tokens (burst R) instead of one: N, R, answer, scheme, burst.
COMPARISONS = ((200, 20, "slot", "http", BURST), (200, 20, "next", "http", BURST), (200, 20, "cloud", "https", BURST),
               (200, 20, "cloud", "http", 20), (1000, 5, "cloud", "http", 5))
# Other designs of the wait after a throttled answer (bench/device_backoff.py), at two points of
# the matrix whose default run they are read against.
DESIGNS = ("full", "decorrelated", "equal16")
DESIGN_POINTS = ((200, 20), (1000, 5))
DESIGN_NAMES = {"default": "spent/3, upper half (the library's)", "full": "exponential, full jitter, cap 60 s",
                "decorrelated": "decorrelated jitter, cap 60 s", "equal16": "exponential, equal jitter, cap 16 s"}
TARGETS = {"registered": 1.0, "makespan_ratio": 1.2, "past_budget": 0}
TIME_BUDGET_S = 300.0  # the library's total_ms (dynreg.flow.DEFAULTS): the only bound on a throttled device
WATCHDOG_MARGIN_S = 60


def _release(procs, offsets, t0):
    """Write each device's start byte at its power-on moment."""
    for index in sorted(range(len(procs)), key=lambda i: offsets[i]):
        pause = t0 + offsets[index] - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            procs[index].stdin.write(b"g")
            procs[index].stdin.flush()
        except OSError:
            pass  # killed by the watchdog: its missing RESULT says so


def one_line(size, rate, answer="cloud", scheme="http", design="default", burst=BURST, spread=SPREAD_S):
    name = "line-%d-%g-%s-%s-%s-%d" % (size, rate, answer, scheme, design, burst)
    state = os.path.join(BUILD, name)
    shutil.rmtree(state, ignore_errors=True)
    floor = max(size / rate, spread)
    with running_emulator(state) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100000)
        if answer == "cloud":
            cloud.throttle(PRODUCT, rate, burst)
        else:
            cloud.throttle(PRODUCT, rate, burst, retry_after=answer, answer="http")
        env = device_env()
        infos = [tencent_info(os.path.join(state, "devices", "d%04d" % i), cloud, PRODUCT, "line%04d" % i, scheme=scheme)
                 for i in range(size)]
        draw = random.Random(size * 1000 + rate)  # the same power-on moments in every run
        offsets = sorted(draw.uniform(0, spread) for _ in range(size))
        offsets[0] = 0.0  # the first device powers on at T0
        procs, outputs = [], []
        watchdog = threading.Timer(TIME_BUDGET_S + spread + WATCHDOG_MARGIN_S,
                                   lambda: [p.kill() for p in procs if p.poll() is None])
        command = (lambda info: device_command(info, "pwvr")) if design == "default" else (
            lambda info: device_command(info, "pwvr", None, "device_backoff", design))
        try:
            for info in infos:
                procs.append(subprocess.Popen(command(info), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, env=env))
            for proc in procs:  # every device booted and imported the flow
                line = proc.stdout.readline()
                while line and not line.startswith(b"READY"):
                    line = proc.stdout.readline()
            time.sleep(0.5)  # let the machine settle after spawning
            devices_before = sum(cpu_seconds(proc.pid) for proc in procs)
            emulator_before = cpu_seconds(cloud.process.pid)
            busy_before = machine_busy_seconds()
            watchdog.start()
            t0_wall, t0 = time.time(), time.monotonic()
            releaser = threading.Thread(target=_release, args=(procs, offsets, t0))
            releaser.start()
            for proc in procs:  # each device prints RESULT, then stays up until its stdin closes
                lines = []
                for line in proc.stdout:
                    lines.append(line.decode(errors="replace"))
                    if line.startswith(b"RESULT"):
                        break
                outputs.append("".join(lines))
            releaser.join()
            device_cpu = sum(cpu_seconds(proc.pid) for proc in procs) - devices_before
            emulator_cpu = cpu_seconds(cloud.process.pid) - emulator_before
            machine_cpu = machine_busy_seconds() - busy_before
        finally:
            watchdog.cancel()
            for proc in procs:
                try:
                    proc.stdin.close()  # the device exits
                except OSError:
                    pass
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        log = [e for e in cloud.log() if e.get("api") in ("tencent-v2", "tencent-legacy") and e["ts"] >= t0_wall - 1]
    for index, text in enumerate(outputs):  # kept beside each device's info, for a look afterwards
        with open(os.path.join(state, "devices", "d%04d" % index, "output.log"), "w") as f:
            f.write(text)
    runs = [parse_device_output(text) for text in outputs]
    attempts = [sum(1 for line in text.splitlines() if "registering" in line and "attempt" in line) for text in outputs]
    stored = [(r["times"]["stored"] / 1e9 - t0_wall) for r in runs if "stored" in r["times"]]
    own_time = [(r["times"]["stored"] - r["times"]["go"]) / 1e9 for r in runs if "stored" in r["times"]]
    ok = sorted(e["ts"] - t0_wall for e in log if e.get("result") == "ok")
    refused = sorted(e["ts"] - t0_wall for e in log if e.get("reason") == "throttled")
    refused_by_device = {}
    for e in log:
        if e.get("reason") == "throttled":
            refused_by_device[e.get("device")] = refused_by_device.get(e.get("device"), 0) + 1
    refused_per_board = [refused_by_device.get("line%04d" % i, 0) for i, r in enumerate(runs) if "stored" in r["times"]]
    peak = peak_per_second(sorted(e["ts"] for e in log))
    makespan = max(stored) if stored else None
    cores = len(os.sched_getaffinity(0))
    errors = {}
    for r in runs:
        if r["result"] != "ok":
            key = r["result"][:100]
            errors[key] = errors.get(key, 0) + 1
    # Past its time budget: gave up throttled, when the next wait would pass total_ms, or when
    # total_ms ran out during its last attempt (or stored later than that). Gave up on network
    # errors: its `attempts` (4) failed without an answer, the emulator's HTTP listener over its
    # connections at once (http_server.py), or timeouts.
    gave_up = [r["result"] for r in runs if "registration failed after" in r["result"]]
    past_budget = sum(1 for text in gave_up if _out_of_time(text)) + sum(1 for t in own_time if t > TIME_BUDGET_S)
    unanswered = sum(attempts) - len(log)  # requests the emulator never logged: closed unanswered
    registered = len(stored) / size
    other_cpu = max(0.0, machine_cpu - device_cpu - emulator_cpu)  # the machine's other work meanwhile
    result = {
        "devices": size, "rate": rate, "answer": answer, "scheme": scheme, "design": design, "spread_s": spread,
        "burst": burst, "registered": registered, "floor_s": floor, "makespan_s": makespan,
        "makespan_ratio": makespan / floor if makespan else None,
        "refused_per_board_mean": sum(refused_per_board) / len(refused_per_board) if refused_per_board else None,
        "refused_per_board_max": max(refused_per_board) if refused_per_board else None,
        "peak_requests_per_s": peak, "peak_over_rate": peak / rate, "past_budget": past_budget,
        "gave_up_network": sum(1 for text in gave_up if not _out_of_time(text)), "unanswered": unanswered,
        "attempts_mean": sum(attempts) / size, "attempts_max": max(attempts),
        "device_time_max_s": max(own_time) if own_time else None,
        "refused": len(refused), "requests": len(log),
        "limit_used": len(ok) / (rate * makespan) if makespan else None,
        "cpu_devices_s": device_cpu, "cpu_emulator_s": emulator_cpu,
        "cpu_other_s": other_cpu,
        "cpu_busy_fraction": (device_cpu + emulator_cpu) / (cores * makespan) if makespan else None,
        "cpu_other_fraction": other_cpu / (cores * makespan) if makespan else None,
        "cores": cores, "errors": errors,
        # Registrations and refusals in each second from T0, for the chart.
        "ok_per_s": _per_second(ok), "refused_per_s": _per_second(refused),
        "registered_p50_s": median(stored), "registered_p99_s": percentile(stored, 99),
    }
    say("  N=%-4d R=%-3g burst %-3d %-24s %-5s wait %-12s registered %3.0f %%, makespan %.1f s = %.2fx the floor %.0f s, "
        "refused per board mean %.1f max %d, peak %d/s = %.1fx R, %d past budget, %d gave up on network errors "
        "(%d requests unanswered), attempts mean %.1f max %d, limit used %.0f %%, CPU devices %.1f s + emulator "
        "%.1f s (%.0f %% of %d cores; other processes %.0f %%)"
        % (size, rate, burst, ANSWERS[answer], scheme, design, 100 * registered, makespan or -1,
           result["makespan_ratio"] or -1, floor, result["refused_per_board_mean"] or 0,
           result["refused_per_board_max"] or 0, peak, result["peak_over_rate"], past_budget,
           result["gave_up_network"], unanswered, result["attempts_mean"], result["attempts_max"],
           100 * (result["limit_used"] or 0), device_cpu, emulator_cpu, 100 * (result["cpu_busy_fraction"] or 0), cores,
           100 * (result["cpu_other_fraction"] or 0)))
    return result


def _out_of_time(result):
    """Whether a device that gave up ("registration failed after N attempts in M ms: <last
    error>") was throttled to the end or ran out of total_ms."""
    spent = re.search(r" in (\d+) ms: ", result)
    return ("RequestLimitExceeded" in result or "HTTP 429" in result
            or (spent is not None and int(spent.group(1)) >= 1000 * TIME_BUDGET_S))


def _per_second(times):
    counts = [0] * (int(max(times)) + 1 if times else 0)
    for t in times:
        if t >= 0:
            counts[int(t)] += 1
    return counts


def run(sizes=SIZES, rates=RATES, comparisons=COMPARISONS, designs=DESIGNS, design_points=DESIGN_POINTS):
    runs = [one_line(size, rate) for size in sizes for rate in rates]
    if comparisons:
        say("  comparisons: the emulator's Retry-After, HTTPS, a bucket of a second's tokens")
    compared = [one_line(size, rate, answer, scheme, burst=burst) for size, rate, answer, scheme, burst in comparisons]
    if design_points:
        say("  comparisons: other designs of the wait after a throttled answer (bench/device_backoff.py)")
    other_designs = [one_line(size, rate, design=design) for size, rate in design_points for design in designs]
    return {"runs": runs, "comparisons": compared, "designs": other_designs, "design_names": DESIGN_NAMES,
            "answers": ANSWERS, "targets": TARGETS, "budget": {"seconds": TIME_BUDGET_S}, "spread_s": SPREAD_S}


if __name__ == "__main__":
    import json
    import sys

    # bench/line.py [N R [ANSWER [SCHEME [DESIGN [BURST]]]]]: one line only. ANSWER: cloud, slot,
    # next; SCHEME: http, https; DESIGN: default, full, decorrelated, equal16.
    if len(sys.argv) > 2:
        print(json.dumps(one_line(int(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:6],
                                  *[int(b) for b in sys.argv[6:7]]), indent=1))
    else:
        print(json.dumps(run(), indent=1))

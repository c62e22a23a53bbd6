# A production line powers on together: N devices, each its own unix-port process running the
# frozen library's dynreg.ensure with its default retry policy over real sockets, power on at
# random moments within SPREAD_S seconds and register with one emulator whose registration API
# admits R a second (cloud_emulator/throttle.py). A cloud that admits R a second cannot register
# N devices in less than N/R seconds, nor before the last one powers on: the floor is
# max(N/R, SPREAD_S), and the makespan (first power-on to last credential stored) is given as a
# ratio to it.
#
# Every device boots and imports the flow first, prints READY and waits on its stdin; the bench
# releases each one at its power-on moment by writing one byte. Registration is Tencent's, over
# plain HTTP (the infos opt in with "plain_http": true; a real line should not, README "Device
# info"): on a real line every board brings its own CPU for its TLS handshakes, here 1000 of
# them would share this machine's cores with the emulator, and the figures would measure the
# cores, not the retry policy. One run over HTTPS shows what TLS adds.
import os
import random
import shutil
import subprocess
import threading
import time

from common import BUILD, SECRET, device_command, device_env, parse_device_output, percentile, running_emulator, say, \
    tencent_info, median

SIZES = (50, 200, 1000)
RATES = (5, 20, 50)
SPREAD_S = 10.0
BURST = 1  # the bucket holds one token: the floor is N/R, not (N - burst)/R
PRODUCT = "BENCHLINE1"
# The comparisons: the same line against clouds that do not spread it (throttle.py's modes),
# and one over HTTPS.
COMPARISONS = ((200, 20, "next", "http"), (200, 20, "none", "http"), (200, 20, "slot", "https"))
TARGETS = {"registered": 1.0, "makespan_ratio": 1.15, "mean_attempts": 2.0}
ATTEMPTS_BUDGET, TIME_BUDGET_S = 4, 300.0  # the library's defaults (dynreg.flow.DEFAULTS)
WATCHDOG_MARGIN_S = 60


def _cpu_seconds(pid):
    """CPU time of a live process. /proc/<pid>/stat counts clock ticks of 10 ms, threads that
    ended included; a device's registration takes less than one tick, which the scheduler's
    nanosecond counts of the live threads (schedstat) see. The larger of the two."""
    ticks = nanoseconds = 0
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                nanoseconds += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass  # gone: what was read so far
    return max(ticks / os.sysconf("SC_CLK_TCK"), nanoseconds / 1e9)


def _machine_busy_seconds():
    with open("/proc/stat") as f:
        fields = [int(value) for value in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


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


def one_line(size, rate, mode="slot", scheme="http", spread=SPREAD_S):
    name = "line-%d-%g-%s-%s" % (size, rate, mode, scheme)
    state = os.path.join(BUILD, name)
    shutil.rmtree(state, ignore_errors=True)
    floor = max(size / rate, spread)
    with running_emulator(state) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100000)
        # HTTP 429 with a Retry-After (the emulator's choice, throttle.py): the modes compared here.
        # Tencent's documented answer (200, RequestLimitExceeded, no Retry-After) leaves a device to
        # its own backoff, as mode "none" does.
        cloud.throttle(PRODUCT, rate, BURST, retry_after=mode, answer="http")
        env = device_env()
        infos = [tencent_info(os.path.join(state, "devices", "d%04d" % i), cloud, PRODUCT, "line%04d" % i, scheme=scheme)
                 for i in range(size)]
        draw = random.Random(size * 1000 + rate)  # the same power-on moments in every run
        offsets = sorted(draw.uniform(0, spread) for _ in range(size))
        offsets[0] = 0.0  # the first device powers on at T0
        procs, outputs = [], []
        watchdog = threading.Timer(TIME_BUDGET_S + spread + WATCHDOG_MARGIN_S,
                                   lambda: [p.kill() for p in procs if p.poll() is None])
        try:
            for info in infos:
                procs.append(subprocess.Popen(device_command(info, "pwvr"), stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env))
            for proc in procs:  # every device booted and imported the flow
                line = proc.stdout.readline()
                while line and not line.startswith(b"READY"):
                    line = proc.stdout.readline()
            time.sleep(0.5)  # let the machine settle after spawning
            devices_before = sum(_cpu_seconds(proc.pid) for proc in procs)
            emulator_before = _cpu_seconds(cloud.process.pid)
            busy_before = _machine_busy_seconds()
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
            device_cpu = sum(_cpu_seconds(proc.pid) for proc in procs) - devices_before
            emulator_cpu = _cpu_seconds(cloud.process.pid) - emulator_before
            machine_cpu = _machine_busy_seconds() - busy_before
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
    runs = [parse_device_output(text) for text in outputs]
    attempts = [sum(1 for line in text.splitlines() if "registering" in line and "attempt" in line) for text in outputs]
    stored = [(r["times"]["stored"] / 1e9 - t0_wall) for r in runs if "stored" in r["times"]]
    own_time = [(r["times"]["stored"] - r["times"]["go"]) / 1e9 for r in runs if "stored" in r["times"]]
    ok = sorted(e["ts"] - t0_wall for e in log if e.get("result") == "ok")
    refused = sorted(e["ts"] - t0_wall for e in log if e.get("reason") == "throttled")
    makespan = max(stored) if stored else None
    cores = len(os.sched_getaffinity(0))
    errors = {}
    for r in runs:
        if r["result"] != "ok":
            key = r["result"][:100]
            errors[key] = errors.get(key, 0) + 1
    registered = len(stored) / size
    result = {
        "devices": size, "rate": rate, "retry_after": mode, "scheme": scheme, "spread_s": spread, "burst": BURST,
        "registered": registered, "floor_s": floor, "makespan_s": makespan,
        "makespan_ratio": makespan / floor if makespan else None,
        "attempts_mean": sum(attempts) / size, "attempts_max": max(attempts),
        "device_time_max_s": max(own_time) if own_time else None,
        "over_budget": sum(1 for a in attempts if a > ATTEMPTS_BUDGET) + sum(1 for t in own_time if t > TIME_BUDGET_S),
        "refused": len(refused), "requests": len(log),
        "limit_used": len(ok) / (rate * makespan) if makespan else None,
        "cpu_devices_s": device_cpu, "cpu_emulator_s": emulator_cpu,
        "cpu_other_s": max(0.0, machine_cpu - device_cpu - emulator_cpu),
        "cpu_busy_fraction": (device_cpu + emulator_cpu) / (cores * makespan) if makespan else None,
        "cores": cores, "errors": errors,
        # Registrations and refusals in each second from T0, for the chart.
        "ok_per_s": _per_second(ok), "refused_per_s": _per_second(refused),
        "registered_p50_s": median(stored), "registered_p99_s": percentile(stored, 99),
    }
    say("  N=%-4d R=%-3g Retry-After %-4s %-5s registered %3.0f %%, makespan %.1f s = %.2fx the floor %.0f s, attempts "
        "mean %.2f max %d, %d refused, limit used %.0f %%, CPU devices %.1f s + emulator %.1f s (%.0f %% of %d cores)"
        % (size, rate, mode, scheme, 100 * registered, makespan or -1, result["makespan_ratio"] or -1, floor,
           result["attempts_mean"], result["attempts_max"], len(refused), 100 * (result["limit_used"] or 0),
           device_cpu, emulator_cpu, 100 * (result["cpu_busy_fraction"] or 0), cores))
    return result


def _per_second(times):
    counts = [0] * (int(max(times)) + 1 if times else 0)
    for t in times:
        if t >= 0:
            counts[int(t)] += 1
    return counts


def run(sizes=SIZES, rates=RATES, comparisons=COMPARISONS):
    return {"runs": [one_line(size, rate) for size in sizes for rate in rates],
            "comparisons": [one_line(size, rate, mode, scheme) for size, rate, mode, scheme in comparisons],
            "targets": TARGETS, "budget": {"attempts": ATTEMPTS_BUDGET, "seconds": TIME_BUDGET_S},
            "spread_s": SPREAD_S}


if __name__ == "__main__":
    import json
    import sys

    # bench/line.py [N R [MODE [SCHEME]]]: one line only
    if len(sys.argv) > 2:
        print(json.dumps(one_line(int(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:5]), indent=1))
    else:
        print(json.dumps(run(), indent=1))

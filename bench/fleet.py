# Fleet: N devices on the unix port, each its own process with its own info, register at once
# against one emulator (Tencent, HTTPS), then connect over MQTT (TLS). Every device process
# boots and imports the flow first, prints READY and waits on its stdin; when all are ready
# the bench takes the start time T0 and sends each one byte. Latencies run from T0, so they
# include waiting for a CPU: the machine's cores run the devices and the emulator together.
# Devices use the library's default retry policy (4 attempts, backoff from 1 s).
import os
import shutil
import subprocess
import threading
import time

from common import (BUILD, SECRET, device_command, device_env, parse_device_output, percentile, running_emulator,
                    say, tencent_info, median)

SIZES = (10, 50, 200)
TARGET_P99_S = 2.0
PRODUCT = "BENCHFLEET"
DEVICE_TIMEOUT = 180
REPEATS = 3  # each fleet is run this many times; the table gives the median of each figure


def _tcp_listen_drops():
    """The kernel's ListenDrops: connection attempts a listening socket dropped (a full queue among
    them); each costs the device a SYN retransmission, 1 s later."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    counters = dict(zip(lines[0][1:], (int(value) for value in lines[1][1:])))
    return counters.get("ListenDrops", 0)


def _cpu_seconds(pid):
    """User + system CPU of a live process (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds():
    """CPU seconds every core of the machine spent busy so far (all processes: /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(value) for value in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def one_fleet(size, connect=True):
    state = os.path.join(BUILD, "fleet-cloud-%d%s" % (size, "" if connect else "-register-only"))
    shutil.rmtree(state, ignore_errors=True)
    with running_emulator(state) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100000)
        env = device_env()
        infos = [tencent_info(os.path.join(state, "devices", "d%03d" % i), cloud, PRODUCT, "fleet%03d" % i)
                 for i in range(size)]
        procs, outputs = [], []
        watchdog = threading.Timer(DEVICE_TIMEOUT, lambda: [p.kill() for p in procs if p.returncode is None])
        try:
            for info in infos:
                procs.append(subprocess.Popen(device_command(info, "pwvrc" if connect else "pwvr"), stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env))
            for proc in procs:  # every device booted and imported the flow
                line = proc.stdout.readline()
                while line and not line.startswith(b"READY"):
                    line = proc.stdout.readline()
            time.sleep(0.5)  # let the machine settle after spawning
            drops = _tcp_listen_drops()
            devices_before = sum(_cpu_seconds(proc.pid) for proc in procs)
            emulator_before = _cpu_seconds(cloud.process.pid)
            busy_before = _machine_busy_seconds()
            watchdog.start()
            t0 = time.time_ns()
            for proc in procs:
                proc.stdin.write(b"g")
                proc.stdin.flush()
            for proc in procs:  # each device prints RESULT, then stays up until its stdin closes
                lines = []
                for line in proc.stdout:
                    lines.append(line.decode(errors="replace"))
                    if line.startswith(b"RESULT"):
                        break
                outputs.append("".join(lines))
            device_cpu = sum(_cpu_seconds(proc.pid) for proc in procs if proc.poll() is None)
            emulator_cpu = _cpu_seconds(cloud.process.pid) - emulator_before
            machine_cpu = _machine_busy_seconds() - busy_before
            drops = _tcp_listen_drops() - drops
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
        log = cloud.log()
    runs = [parse_device_output(text) for text in outputs]
    attempts = [sum(1 for line in text.splitlines() if "attempt" in line and "registering" in line) for text in outputs]
    registered = [(r["times"]["stored"] - t0) / 1e9 for r in runs if "stored" in r["times"]]
    connected = [(r["times"]["connected"] - t0) / 1e9 for r in runs if "connected" in r["times"]]
    mqtt_step = [(r["times"]["connected"] - r["times"]["stored"]) / 1e9 for r in runs if "connected" in r["times"]]
    release = [(r["times"]["go"] - t0) / 1e9 for r in runs if "go" in r["times"]]
    answered = [e for e in log if e.get("api") == "tencent-v2"]
    ok_ts = sorted(e["ts"] for e in answered if e.get("result") == "ok")
    logins = sorted(e["ts"] for e in log if e.get("api") == "mqtt-connect" and e.get("result") == "ok")
    span = ok_ts[-1] - t0 / 1e9 if ok_ts else None
    login_span = logins[-1] - (min(r["times"]["stored"] for r in runs if "stored" in r["times"]) / 1e9) if logins else None
    finished = max(registered + connected) if registered else None
    cores = len(os.sched_getaffinity(0))
    devices_cpu = device_cpu - devices_before
    cpu = devices_cpu + emulator_cpu
    errors = {}
    for r in runs:
        if r["result"] != "ok":
            key = r["result"][:80]
            errors[key] = errors.get(key, 0) + 1
    result = {
        "devices": size, "connect": connect,
        "registered": len(registered), "connected": len(connected),
        "registration_success": len(registered) / size, "mqtt_success": len(connected) / size if connect else None,
        "registration_p50_s": median(registered), "registration_p99_s": percentile(registered, 99),
        "registration_max_s": max(registered) if registered else None,
        "connected_p50_s": median(connected), "connected_p99_s": percentile(connected, 99),
        "mqtt_step_p50_s": median(mqtt_step), "mqtt_step_p99_s": percentile(mqtt_step, 99),
        "release_skew_max_s": max(release) if release else None,
        "requests_answered": len(answered), "attempts_total": sum(attempts),
        "devices_that_retried": sum(1 for a in attempts if a > 1),
        "throughput_registrations_per_s": len(ok_ts) / span if span else None,
        "throughput_logins_per_s": len(logins) / login_span if login_span else None,
        # CPU spent after the start by the devices and the emulator, and what it means on this
        # machine: the shortest time the whole fleet could take if every core worked throughout.
        "cpu_after_start_s": cpu, "cpu_devices_s": devices_cpu, "cpu_emulator_s": emulator_cpu,
        "cpu_floor_s": cpu / cores, "cores": cores,
        # Everything else the machine ran meanwhile (the bench itself, other users): noise.
        "cpu_other_s": max(0.0, machine_cpu - cpu),
        "cpu_busy_fraction": cpu / (cores * finished) if finished else None,
        "tcp_listen_drops": drops,
        "errors": errors,
    }
    say("  N=%-4d%s registered %d/%d, connected %d/%d, registration p50 %.2f s p99 %.2f s (target <= %.1f at 200), "
        "%.1f registrations/s, %d retried, %d listen drops, CPU %.1f s (emulator %.1f, others %.1f) = %.0f %% of %d cores"
        % (size, "" if connect else " (registration only)", len(registered), size, len(connected), size, result["registration_p50_s"] or -1,
           result["registration_p99_s"] or -1, TARGET_P99_S, result["throughput_registrations_per_s"] or 0,
           result["devices_that_retried"], drops, cpu, emulator_cpu, result["cpu_other_s"], 100 * (result["cpu_busy_fraction"] or 0), cores))
    return result


_SUMMED = ("registered", "connected", "devices_that_retried", "tcp_listen_drops", "requests_answered", "attempts_total")


def aggregate(runs):
    """REPEATS runs of one fleet: the median of each figure, counts summed over the runs."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if key in _SUMMED:
            out[key] = sum(run[key] for run in runs)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("devices", "cores"):
            values = [run[key] for run in runs if run[key] is not None]
            out[key] = median(values) if values else None
    out["registration_success"] = out["registered"] / (out["devices"] * len(runs))
    out["mqtt_success"] = out["connected"] / (out["devices"] * len(runs)) if out["connect"] else None
    errors = {}
    for run in runs:
        for text, count in run["errors"].items():
            errors[text] = errors.get(text, 0) + count
    out["errors"] = errors
    out["repeats"] = len(runs)
    p99s = [run["registration_p99_s"] for run in runs if run["registration_p99_s"] is not None]
    out["registration_p99_range_s"] = [min(p99s), max(p99s)] if p99s else None
    out["runs"] = [{key: run[key] for key in ("registration_p50_s", "registration_p99_s", "connected_p99_s",
                                               "throughput_registrations_per_s", "cpu_after_start_s",
                                               "cpu_other_s", "tcp_listen_drops", "devices_that_retried")}
                   for run in runs]
    return out


def run(sizes=SIZES, repeats=REPEATS):
    # The largest fleet also without MQTT: how much of its registration latency is the early
    # devices' MQTT connections competing for the same cores.
    return {"sizes": [aggregate([one_fleet(size) for _ in range(repeats)]) for size in sizes],
            "register_only": aggregate([one_fleet(max(sizes), connect=False) for _ in range(repeats)]),
            "targets": {"success": 1.0, "p99_s": TARGET_P99_S, "at": 200}}


if __name__ == "__main__":
    import json
    import sys

    sizes = tuple(int(arg) for arg in sys.argv[1:]) or SIZES
    print(json.dumps(run(sizes), indent=1))

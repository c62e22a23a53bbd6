# A reconnect storm: N boards online, the broker restarts. Each board is its own unix-port
# process running the frozen library (bench/device_online.py): dynreg.ensure, which registers
# at its first boot, then dynreg.online.stay_online with the stored credential and its
# defaults (keepalive 60 s, a reconnect after 1 s doubling to 60 s, a random point in its upper
# half). Once every board has held its session longer than a ping interval, the emulator is
# stopped, left down for a while (none, or half a minute) and started again on the same ports
# and state (RunningEmulator.stop and start: every connection closed, as a broker restart is
# to a device). The figures: how long until every
# board is back, the most logins in any one second against N, and that no board registered
# again (the emulator's log holds no registration request after the first boots).
#
# Registration and MQTT are both plain here (registration over http with the info's plain_http
# opt-in, MQTT on the emulator's mqtt:// listener, Tencent key auth): 200 boards share this
# machine's cores with the emulator, and TLS handshakes would measure the cores, not the
# reconnect policy. A real board logs in over TLS.
import json
import os
import shutil
import subprocess
import time

from common import BUILD, MICROPYTHON, SECRET, device_env, machine_busy_seconds, median, peak_per_second, percentile, \
    running_emulator, say, tencent_info, write_json

BOARDS = 200
# How long the broker stays down: a restart at once, and one that takes half a minute.
OUTAGES_S = (0, 30)
PRODUCT = "BENCHSTORM"
PING_INTERVAL_S = 30  # stay_online's: half its keepalive of 60 s
HELD_S = PING_INTERVAL_S + 5  # online this long before the restart: a session that held resets the backoff
ONLINE_WAIT_S = 180  # bounded waits: all boards online at first ...
BACK_WAIT_S = 300  # ... and back after the restart
REGISTRATION_APIS = ("tencent-v2", "tencent-legacy")


def _first_logins(log, since):
    """{device: time of its first accepted login at or after `since`}."""
    first = {}
    for e in log:
        if e.get("api") == "mqtt-connect" and e.get("result") == "ok" and e["ts"] >= since:
            first.setdefault(e.get("device"), e["ts"])
    return first


def _wait_for_logins(cloud, since, boards, timeout):
    deadline = time.monotonic() + timeout
    while True:
        first = _first_logins(cloud.log(), since)
        if len(first) >= boards or time.monotonic() > deadline:
            return first
        time.sleep(0.5)


def run(boards=BOARDS, outages=OUTAGES_S):
    return {"runs": [one_storm(boards, outage) for outage in outages]}


def one_storm(boards=BOARDS, outage=0):
    state = os.path.join(BUILD, "storm-%d-%d" % (boards, outage))
    shutil.rmtree(state, ignore_errors=True)
    online_ms = int(1000 * (ONLINE_WAIT_S + HELD_S + BACK_WAIT_S + 60))  # no device outlives the bench
    procs, outputs = [], []
    with running_emulator(state) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100000)
        infos = []
        for i in range(boards):
            path = tencent_info(os.path.join(state, "devices", "d%04d" % i), cloud, PRODUCT, "storm%04d" % i,
                                scheme="http")
            with open(path) as f:
                doc = json.load(f)
            doc["mqtt_url"] = "mqtt://localhost:%d" % cloud.mqtt_port
            infos.append(write_json(path, doc))
        env = device_env()
        try:
            booted = time.time()
            for info in infos:
                output = open(os.path.join(os.path.dirname(info), "output.log"), "wb")
                outputs.append(output.name)
                procs.append(subprocess.Popen([MICROPYTHON, "-m", "device_online", info, str(online_ms)],
                                              stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                              env=env))
                output.close()
            online = _wait_for_logins(cloud, booted, boards, ONLINE_WAIT_S)
            if len(online) < boards:
                raise RuntimeError("%d of %d boards online after %d s" % (len(online), boards, ONLINE_WAIT_S))
            all_online = max(online.values())
            time.sleep(max(0.0, all_online + HELD_S - time.time()))
            busy_before = machine_busy_seconds()
            stopping = time.time()
            cloud.stop()
            stopped = time.time()
            time.sleep(outage)
            cloud.start()
            ready = time.time()
            back = _wait_for_logins(cloud, stopping, boards, BACK_WAIT_S)
            busy = (machine_busy_seconds() - busy_before) / (len(os.sched_getaffinity(0)) * (time.time() - stopping))
            time.sleep(2)  # logins still under way are logged
            log = cloud.log()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    logins = sorted(e["ts"] for e in log if e.get("api") == "mqtt-connect" and e["ts"] >= stopping)
    refused_logins = sum(1 for e in log if e.get("api") == "mqtt-connect" and e["ts"] >= stopping
                         and e.get("result") != "ok")
    registrations = [e for e in log if e.get("api") in REGISTRATION_APIS]
    again = [e for e in registrations if e["ts"] >= all_online]
    failed_connects = []
    for path in outputs:
        with open(path, errors="replace") as f:
            failed_connects.append(sum(1 for line in f if "connect failed" in line))
    back_times = sorted(t - ready for t in back.values())
    result = {
        "boards": boards, "outage_s": outage, "transport": "mqtt (plain), Tencent key auth", "held_s": HELD_S,
        "back": len(back), "downtime_s": ready - stopping, "stop_s": stopped - stopping,
        "all_back_after_ready_s": max(back_times) if back_times else None,
        "all_back_after_stop_s": max(back.values()) - stopping if back else None,
        "back_p50_after_ready_s": median(back_times), "back_p99_after_ready_s": percentile(back_times, 99),
        "logins_after_restart": len(logins), "refused_logins": refused_logins,
        "peak_logins_per_s": peak_per_second(logins),
        "peak_over_boards": peak_per_second(logins) / boards,
        "failed_connects_mean": sum(failed_connects) / boards, "failed_connects_max": max(failed_connects),
        "registrations_first_boots": len(registrations) - len(again), "registrations_again": len(again),
        "machine_busy": busy,  # the share of the cores in use, every process's, from the stop until all were back
        "logins_per_s": [sum(1 for t in logins if int(t - stopping) == s) for s in range(int(logins[-1] - stopping) + 1)]
        if logins else [],
    }
    say("  %d boards online (plain MQTT), broker restarted, down %.1f s: %d back, all within %.1f s of the broker "
        "serving again (%.1f s of its stop; median %.1f s), peak %d logins/s = %.2f N, %d logins refused, failed "
        "connects per board mean %.1f max %d, %d registered again (%d registrations at the first boots), cores "
        "%.0f %% busy" % (boards, result["downtime_s"], len(back), result["all_back_after_ready_s"] or -1,
                          result["all_back_after_stop_s"] or -1, result["back_p50_after_ready_s"] or -1,
                          result["peak_logins_per_s"], result["peak_over_boards"], refused_logins,
                          result["failed_connects_mean"], result["failed_connects_max"], len(again),
                          result["registrations_first_boots"], 100 * busy))
    return result


if __name__ == "__main__":
    import sys

    # bench/storm.py [N [OUTAGE_S]]
    if len(sys.argv) > 2:
        print(json.dumps(one_storm(int(sys.argv[1]), float(sys.argv[2])), indent=1))
    else:
        print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else BOARDS), indent=1))

# The soak: one board online through N reconnects of each kind (the broker resets the TCP
# connection; it goes silent, so only the missing PINGRESP tells; the broker restarts), with a
# load of incoming messages in every session, on the 32-bit unix port at a board's heap and on
# the Pico W image on the emulated RP2040. The board (bench/device_soak.py) prints its free
# heap and its largest free block at every reconnect; printed here with their trend (the
# least-squares slope, bytes per reconnect). A leak shows as a falling free heap, fragmentation
# as a falling largest block. Figures only, nothing is asserted.
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

from common import BUILD, ROOT, mpy_cross, running_emulator, say

sys.path.insert(0, os.path.join(ROOT, "host_tests"))
sys.path.insert(0, os.path.join(ROOT, "pico_emulator"))
from raw_mqtt import RawMqtt  # noqa: E402
from runtime import FIRMWARE  # noqa: E402

from cloud_emulator import registry  # noqa: E402
from cloud_emulator.aliyun import login_password  # noqa: E402

UNIX32 = os.path.join(FIRMWARE, "unix32-dynreg", "micropython")  # tools/firmware.sh unix32: a board's word size
# The unix port's heap: the ESP32's GC heap at boot (56 KiB, MICROPY_GC_INITIAL_HEAP_SIZE). There,
# as on the unix port, mbedTLS allocates outside it; the Pico W's own heap is the chip leg's.
UNIX_HEAP = 56 * 1024
KINDS = ("reset", "silence", "restart")
UNIX_N, CHIP_N = 15, 3  # reconnects of each kind
MESSAGES, SIZE = 10, 1024  # the load each session takes in
PK, DN = "a1SoakBench", "soak-01"
TOPIC = "/%s/%s/user/get" % (PK, DN)
SECRET = "b3nchPr0ductS3cret-0123456789"
SOAK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "device_soak.py")
UNIX_ONLINE = {"ping_ms": 1000, "pong_ms": 1000, "timeout_ms": 5000, "reconnect_min_ms": 100,
               "reconnect_max_ms": 500}
# Emulated milliseconds: the chip runs at 0.15 to 0.45x real time, a TLS handshake takes it seconds.
CHIP_ONLINE = {"ping_ms": 3000, "pong_ms": 3000, "timeout_ms": 60000, "reconnect_min_ms": 500,
               "reconnect_max_ms": 2000}
WAIT = 300  # seconds: the bound of every wait for the board


def slope(values):
    # Least-squares slope of values against their index: bytes per reconnect.
    n = len(values)
    if n < 2:
        return None
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sum((i - mean_x) ** 2 for i in range(n))


class Load:
    """The host's publisher: the same Alibaba device under another client id (the login its
    cloud allows), sending bursts to the topic the board subscribes to."""

    def __init__(self, cloud, secret):
        self.cloud, self.secret, self.client, self.sent = cloud, secret, None, 0

    def burst(self, count, size):
        for attempt in range(2):  # a broker restart closed the last connection
            try:
                if self.client is None:
                    self.client = self._login()
                for i in range(count):
                    self.client.publish(TOPIC, bytes([48 + i % 10]) * size)
                self.sent += count
                return
            except (OSError, AssertionError):
                self.client = None
        raise RuntimeError("the host publisher could not send")

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def _login(self):
        timestamp = str(int(time.time() * 1000))
        client_id = "soak-load|securemode=2,signmethod=hmacsha256,timestamp=%s|" % timestamp
        password = login_password(self.secret, "soak-load", PK, DN, timestamp, "hmacsha256")
        client, code = RawMqtt.connect(self.cloud.mqtts_port, client_id, "%s&%s" % (DN, PK), password,
                                       tls=self.cloud.client_ssl_context())
        if code != 0:
            raise RuntimeError("the host publisher's login was refused (CONNACK %s)" % code)
        return client


def _subscriptions(cloud):
    return sum(1 for e in cloud.log() if e.get("api") == "mqtt-subscribe" and e.get("device") == DN
               and e.get("result") == "ok")


def _drive(cloud, load, n, done):
    # Session by session: once the board has subscribed, a burst, then the loss of the next kind.
    # Returns the kind that ended each session, in order.
    ended = []
    for kind in KINDS:
        for _ in range(n):
            _wait(lambda: _subscriptions(cloud) > len(ended) or done(), "session %d" % (len(ended) + 1))
            if done():
                return ended
            time.sleep(0.3)  # the broker logs the SUBSCRIBE just before it takes it
            load.burst(MESSAGES, SIZE)
            time.sleep(0.5)  # the burst through the broker before the connection goes
            load.close()  # not dropped with the board's (the same device): a silenced one would eat the next burst
            if kind == "restart":
                cloud.restart()
            else:
                cloud.drop_connection(PK, DN, how=kind)
            ended.append(kind)
    return ended  # the last session leaves once connected: it takes in no burst


def _wait(condition, what):
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the board did not reach %s in %d s" % (what, WAIT))
        time.sleep(0.05)


def _device(folder, cloud):
    # The board's info: its Alibaba credential already stored (the soak is about staying online).
    secret = base64.b64encode(os.urandom(16)).decode()
    cloud.add_product(PK, SECRET, cloud="aliyun")
    cloud.add_device(PK, DN)
    with cloud.store.transaction() as state:
        registry.record_issued_secret(registry.get_device(state, PK, DN), {"device_secret": secret})
    doc = {"dynreg": 1, "cloud": "aliyun", "product_key": PK, "device_name": DN, "api": "https",
           "mqtt_url": "mqtts://localhost:%d" % cloud.mqtts_port, "ca": cloud.ca_der_path,
           "credential": {"device_secret": secret}}
    path = os.path.join(folder, "device_info.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path, secret


def _figures(output, ended, sent):
    samples = [tuple(int(v) for v in m.groups()) for m in re.finditer(r"^SOAK (\d+) (\d+) (\d+) (\d+)$", output, re.M)]
    end = re.search(r"^SOAK end (\d+)$", output, re.M)
    figures = {"reconnects": len(samples) - 1, "ended_by": ended, "messages_sent": sent,
               "messages_taken_in": int(end.group(1)) if end else None,
               "memory_errors": output.count("MemoryError"),
               "free": [s[1] for s in samples], "largest": [s[2] for s in samples]}
    later = samples[1:]  # after each reconnect; the first session's heap still holds boot's garbage
    for key, index in (("free", 1), ("largest", 2)):
        values = [s[index] for s in later]
        figures[key + "_slope"] = slope(values)
        figures[key + "_range"] = (min(values), max(values)) if values else None
        for kind in KINDS:
            mine = [s[index] for s, by in zip(later, ended) if by == kind]
            figures.setdefault("by_kind", {}).setdefault(kind, {})[key] = (min(mine), max(mine)) if mine else None
    if "leaving after" not in output:
        figures["error"] = "the board did not finish: " + output[-800:]
    return figures


def soak_unix(folder, n):
    if not os.path.exists(UNIX32):
        return {"error": "no %s: tools/firmware.sh unix32" % os.path.relpath(UNIX32, ROOT)}
    compiled = os.path.join(folder, "mpy")
    mpy_cross(SOAK, os.path.join(compiled, "device_soak.mpy"))
    with running_emulator(os.path.join(folder, "cloud")) as cloud:
        info, secret = _device(folder, cloud)
        spec = os.path.join(folder, "spec.json")
        with open(spec, "w") as f:
            json.dump({"info": info, "topic": TOPIC, "online": dict(UNIX_ONLINE, sessions=len(KINDS) * n + 1)}, f)
        env = dict(os.environ, MICROPYPATH=compiled + ":.frozen")
        process = subprocess.Popen([UNIX32, "-X", "heapsize=%d" % UNIX_HEAP, "-m", "device_soak", spec],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=folder)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
        reader.start()
        load = Load(cloud, secret)
        try:
            ended = _drive(cloud, load, n, lambda: process.poll() is not None)
            process.wait(WAIT)
        finally:
            if process.poll() is None:
                process.kill()
            reader.join(10)
    output = "".join(lines)
    with open(os.path.join(folder, "device.out"), "w") as f:
        f.write(output)
    figures = _figures(output, ended, load.sent)
    figures.update(heap=UNIX_HEAP, runtime="32-bit unix port, -X heapsize=%d" % UNIX_HEAP)
    return figures


def soak_chip(folder, n):
    import pico

    problem = pico.check_ready()
    if problem:
        return {"error": problem}
    with running_emulator(os.path.join(folder, "cloud"), client_timeout=60) as cloud:
        info, secret = _device(folder, cloud)
        with open(info) as f:
            doc = json.load(f)
        doc["ca"] = "ca.der"
        with open(info, "w") as f:
            json.dump(doc, f)
        spec = {"info": "online.json", "topic": TOPIC, "online": dict(CHIP_ONLINE, sessions=len(KINDS) * n + 1)}
        script = "import ntptime\nntptime.host = 'localhost'\nntptime.settime()\nimport device_soak\n" \
                 "device_soak.main(%r)\n" % spec
        puts = [(pico.SOCKET_MODULE, "socket.py"), (cloud.ca_der_path, "ca.der"), (info, "online.json"),
                (SOAK, "device_soak.py")]
        result = {}
        runner = threading.Thread(target=lambda: result.update(proc=pico.run(script, puts=puts, tunnel=True,
                                                                             timeout=WAIT * 6)), daemon=True)
        runner.start()
        load = Load(cloud, secret)
        try:
            ended = _drive(cloud, load, n, lambda: not runner.is_alive())
        finally:
            runner.join(WAIT * 6 + 60)
    proc = result.get("proc")
    if proc is None:
        return {"error": "the emulated Pico W did not finish"}
    with open(os.path.join(folder, "device.out"), "w") as f:
        f.write(proc.stdout)
    figures = _figures(proc.stdout, ended, load.sent)
    times = pico.emulated_seconds(proc.stderr)
    figures.update(runtime="Pico W image on the emulated RP2040", emulated_s=times[-1][1] if times else None)
    return figures


def run(unix_n=UNIX_N, chip_n=CHIP_N):
    folder = os.path.join(BUILD, "soak")
    shutil.rmtree(folder, ignore_errors=True)
    results = {"kinds": list(KINDS), "messages_per_session": MESSAGES, "message_bytes": SIZE}
    for leg, soak, n in (("unix", soak_unix, unix_n), ("chip", soak_chip, chip_n)):
        os.makedirs(os.path.join(folder, leg))
        try:
            results[leg] = soak(os.path.join(folder, leg), n)
        except Exception as error:  # the other leg still runs
            results[leg] = {"error": "%s: %s" % (type(error).__name__, error)}
        say("  " + summary(leg, results[leg]))
    return results


def summary(leg, figures):
    if "error" in figures and "free" not in figures:
        return "%s: could not run: %s" % (leg, figures["error"])
    text = "%s (%s): %d reconnects, %s" % (
        leg, figures["runtime"], figures["reconnects"], ", ".join("%d %s" % (figures["ended_by"].count(k), k)
                                                                   for k in KINDS))
    if figures["free_range"]:
        text += "; free heap %d..%d B (slope %+.1f B/reconnect)" % (figures["free_range"] + (figures["free_slope"],))
        text += ", largest free block %d..%d B (slope %+.1f B/reconnect)" % (
            figures["largest_range"] + (figures["largest_slope"] or 0,))
    text += "; messages taken in %s of %d sent; MemoryErrors %d" % (figures["messages_taken_in"],
                                                                    figures["messages_sent"], figures["memory_errors"])
    if "error" in figures:
        text += " (%s)" % figures["error"]
    return text


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the reconnect soak (bench/README.md)")
    parser.add_argument("--unix-n", type=int, default=UNIX_N, help="reconnects of each kind on the unix port")
    parser.add_argument("--chip-n", type=int, default=CHIP_N, help="reconnects of each kind on the emulated Pico W")
    args = parser.parse_args()
    print(json.dumps(run(args.unix_n, args.chip_n), indent=1))

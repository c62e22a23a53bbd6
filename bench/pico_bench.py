# Figures from the chip: the Pico W image on the emulated RP2040 (pico_emulator/), against the
# local cloud emulator through the UART tunnel. Times are the chip's own time.ticks_us(), that
# is emulated time: rp2040js counts cycles but models no flash wait states and no radio, so
# they are not a real Pico's timings. Heap figures are gc.mem_free(), sampled every emulated
# millisecond by a machine.Timer while the flow runs, with gc.threshold(4096) so that garbage
# is collected as a board under memory pressure would. Beside dynreg, in the same run: the
# reference a user would write instead, micropython-lib's `requests` (frozen in the image; it
# does not verify certificates) and umqtt.simple, sending the same request bytes.
import json
import os
import shutil
import sys

from common import SECRET, median, running_emulator, say

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pico_emulator"))
import pico  # noqa: E402

PRODUCT = "BENCHPICO1"
RUNS = 1  # timed boots per flow: emulated time counts cycles, and varies only with the network
CLOCK = "import ntptime\nntptime.host = 'localhost'\nntptime.settime()\n"

# Before each flow: fig() prints a figure; with heap sampling (a separate boot from the timed
# one, as a timer callback every emulated millisecond slows the flow down) LOW[0] keeps the
# lowest gc.mem_free() seen.
PRELUDE = """
import gc, machine, time
def fig(name, value):
    print("FIG", name, value)
gc.collect()
LOW = [gc.mem_free()]
def _sample(t):
    f = gc.mem_free()
    if f < LOW[0]:
        LOW[0] = f
if %(sample)s:
    gc.threshold(4096)
    _timer = machine.Timer(period=1, callback=_sample)
else:
    _timer = machine.Timer()
"""

MICRO = """
import gc, time
from dynreg import hmac, tencent
gc.collect()
fig("heap_free_boot", gc.mem_free())
import dynreg.flow, dynreg.tencent, dynreg.http, dynreg.mqtt, umqtt.simple
gc.collect()
fig("heap_free_after_import", gc.mem_free())
msg = b"x" * 150
t = time.ticks_us()
for i in range(20):
    hmac.digest(b"cold-key-%%02d" %% i, msg, "sha256")
fig("hmac_cold_us", time.ticks_diff(time.ticks_us(), t) // 20)
t = time.ticks_us()
for i in range(20):
    tencent.decrypt_payload(%(payload)r, %(secret)r, 53)
fig("decrypt_us", time.ticks_diff(time.ticks_us(), t) // 20)
import socket, tls
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(open("/ca.der", "rb").read())
for name, port in (("https", %(https)d), ("mqtts", %(mqtts)d)):
    s = socket.socket()
    s.connect(socket.getaddrinfo("localhost", port)[0][-1])
    t = time.ticks_us()
    s = ctx.wrap_socket(s, server_hostname="localhost")
    fig("handshake_%%s_us" %% name, time.ticks_diff(time.ticks_us(), t))
    s.close()
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_NONE  # what requests does: no certificate check
s = socket.socket()
s.connect(socket.getaddrinfo("localhost", %(https)d)[0][-1])
t = time.ticks_us()
s = ctx.wrap_socket(s, server_hostname="localhost")
fig("handshake_unverified_us", time.ticks_diff(time.ticks_us(), t))
s.close()
"""

DYNREG = """
import dynreg
t = time.ticks_ms()
info = dynreg.ensure("/b/device_info.json", log=None)
fig("stored_ms", time.ticks_diff(time.ticks_ms(), t))
c = dynreg.connect(info, log=None)
fig("connected_ms", time.ticks_diff(time.ticks_ms(), t))
c.disconnect()
_timer.deinit()
fig("heap_low", LOW[0])
"""

# The same exchange as a user would write it with micropython-lib: the request built and the
# answer decrypted by dynreg's pure functions, sent with `requests` (no certificate check),
# then umqtt.simple over an unverified TLS context.
REFERENCE = """
import json, os, tls, requests
from umqtt.simple import MQTTClient
from dynreg import tencent
t = time.ticks_ms()
doc = json.load(open("/b/device_info.json"))
url, headers, body = tencent.register_request(doc["product_id"], doc["device_name"], doc["product_secret"],
                                              time.time(), int.from_bytes(os.urandom(4), "big") >> 1,
                                              endpoint=doc["register_url"])
answer = requests.post(url, headers=headers, data=body)
psk = tencent.parse_response(answer.content, doc["product_secret"])["psk"]
doc["credential"] = {"psk": psk}
with open("/b/device_info.json", "w") as f:
    json.dump(doc, f)
fig("stored_ms", time.ticks_diff(time.ticks_ms(), t))
client_id, user, password = tencent.mqtt_login(doc["product_id"], doc["device_name"], psk, "abcde", time.time() + 86400)
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_NONE
c = MQTTClient(client_id, "localhost", %(mqtts)d, user, password, 60, ssl=ctx)
c.connect()
fig("connected_ms", time.ticks_diff(time.ticks_ms(), t))
c.disconnect()
_timer.deinit()
fig("heap_low", LOW[0])
"""

SECOND = """
import dynreg
t = time.ticks_ms()
info = dynreg.ensure("/b/device_info.json", log=None)
c = dynreg.connect(info, log=None)
fig("connected_ms", time.ticks_diff(time.ticks_ms(), t))
c.disconnect()
_timer.deinit()
fig("heap_low", LOW[0])
"""

PSK_PAYLOAD = "s6FB3a1BA/YYbcmSE12XpeDVmQNDcf1QgVD141RRbmmAnFwQfp1ECAu5O016mCOvYlJJ6V59yM4OqQSiWphfTg=="
PSK_SECRET = "hzvf5LF9S0isvBhDSauWMaIk"


def figures(proc):
    if proc.returncode != 0:
        raise RuntimeError("the chip's script failed:\n" + (proc.stdout + proc.stderr)[-2000:])
    return {line.split()[1]: int(line.split()[2]) for line in proc.stdout.splitlines() if line.startswith("FIG ")}


def info_file(folder, cloud, device):
    path = os.path.join(folder, device + ".json")
    with open(path, "w") as f:
        json.dump({"dynreg": 1, "cloud": "tencent", "product_id": PRODUCT, "product_secret": SECRET,
                   "device_name": device, "register_url": "https://localhost:%d" % cloud.https_port,
                   "mqtt_url": "mqtts://localhost:%d" % cloud.mqtts_port, "ca": "/ca.der", "credential": {"psk": ""}}, f)
    return path


def boot(cloud, folder, device, script, flash_load=None, flash_save=None):
    puts = [] if flash_load else [(pico.SOCKET_MODULE, "/socket.py"), (cloud.ca_der_path, "/ca.der"),
                                  (info_file(folder, cloud, device), "/b/device_info.json")]
    timed = figures(pico.run(CLOCK, PRELUDE % {"sample": False} + script % {"mqtts": cloud.mqtts_port}, puts=puts,
                             tunnel=True, flash_load=flash_load, flash_save=flash_save, timeout=600))
    if not flash_load:  # the heap boot starts from a fresh flash too: it registers a device of its own
        puts = puts[:2] + [(info_file(folder, cloud, device + "-heap"), "/b/device_info.json")]
    sampled = figures(pico.run(CLOCK, PRELUDE % {"sample": True} + script % {"mqtts": cloud.mqtts_port},
                               puts=puts, tunnel=True, flash_load=flash_load, timeout=600))
    timed["heap_low"] = sampled["heap_low"]
    return timed


def run():
    problem = pico.check_ready()
    if problem:
        raise RuntimeError("the emulated Pico W cannot run: " + problem)
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "bench", "pico")
    shutil.rmtree(folder, ignore_errors=True)  # a fresh cloud: every device registers anew
    os.makedirs(folder)
    # The emulated chip runs at about 0.3x real time: a TLS handshake and request take it
    # longer, in wall seconds, than the emulator's default 10 s allows a client.
    with running_emulator(os.path.join(folder, "cloud"), client_timeout=60) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=1000)
        micro = figures(pico.run(CLOCK, PRELUDE % {"sample": False} + MICRO % {"payload": PSK_PAYLOAD, "secret": PSK_SECRET,
                                                           "https": cloud.https_port, "mqtts": cloud.mqtts_port},
                                 puts=[(pico.SOCKET_MODULE, "/socket.py"), (cloud.ca_der_path, "/ca.der")],
                                 tunnel=True, timeout=600))
        say("  heap at boot %(heap_free_boot)d B free, after importing the Tencent flow and umqtt %(heap_free_after_import)d B;"
            " HMAC-SHA256 cold key %(hmac_cold_us)d us, decrypt %(decrypt_us)d us, TLS handshakes %(handshake_https_us)d /"
            " %(handshake_mqtts_us)d us, unverified %(handshake_unverified_us)d us (emulated)" % micro)
        flows = {"dynreg": [], "reference": [], "second": []}
        for i in range(RUNS):
            flash = os.path.join(folder, "flash-%d.bin" % i)
            flows["dynreg"].append(boot(cloud, folder, "pico-bench-%d" % i, DYNREG, flash_save=flash))
            flows["second"].append(boot(cloud, folder, "pico-bench-%d" % i, SECOND, flash_load=flash))
            flows["reference"].append(boot(cloud, folder, "pico-ref-%d" % i, REFERENCE))
    result = {"micro": micro, "runs": RUNS}
    for name, runs in flows.items():
        result[name] = {key: median([r[key] for r in runs]) for key in runs[0]}
        result[name]["heap_peak"] = micro["heap_free_boot"] - result[name]["heap_low"]
    ours, ref = result["dynreg"], result["reference"]
    result["ratios"] = {"stored": ours["stored_ms"] / ref["stored_ms"], "connected": ours["connected_ms"] / ref["connected_ms"],
                        "heap_peak": ours["heap_peak"] / ref["heap_peak"]}
    say("  first boot: credential stored %d ms, MQTT connected %d ms, heap peak %d B; reference (requests + umqtt, "
        "unverified TLS) %d / %d ms, %d B; ratios %.2f / %.2f / %.2f; second boot %d ms, heap peak %d B"
        % (ours["stored_ms"], ours["connected_ms"], ours["heap_peak"], ref["stored_ms"], ref["connected_ms"],
           ref["heap_peak"], result["ratios"]["stored"], result["ratios"]["connected"], result["ratios"]["heap_peak"],
           result["second"]["connected_ms"], result["second"]["heap_peak"]))
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))

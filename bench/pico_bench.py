# Figures from the chip: the Pico W image on the emulated RP2040 (pico_emulator/), against the
# local cloud emulator through the UART tunnel. Times are the chip's own time.ticks_us(), that
# is emulated time: rp2040js counts cycles but models no flash wait states and no radio, so
# they are not a real Pico's timings. Heap figures are gc.mem_free(), sampled every emulated
# millisecond by a machine.Timer while the flow runs, with gc.threshold(4096) so that garbage
# is collected as a board under memory pressure would. Beside dynreg, in the same run, what a
# user would write instead with micropython-lib: the same request bytes sent with `requests`
# and umqtt.simple, once as naive as `requests` is (no certificate checked) and once checking
# the servers as dynreg does. Each chain shape of the emulator is measured, since a signature
# check costs the chip from about a hundred milliseconds (RSA-2048) to half a second (ECDSA,
# RSA-4096).
import json
import os
import shutil
import sys

from common import SECRET, running_emulator, say

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pico_emulator"))
import pico  # noqa: E402

PRODUCT = "BENCHPICO1"
RUNS = 1  # timed boots per flow: emulated time counts cycles, and varies only with the network
GOAL = 1.05  # dynreg's first boot against the verifying reference (#28)
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
verified = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
verified.load_verify_locations(open("/ca.der", "rb").read())
unverified = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
unverified.verify_mode = tls.CERT_NONE
for how, ctx in (("", verified), ("_unverified", unverified)):
    for name, port in (("https", %(https)d), ("mqtts", %(mqtts)d)):
        s = socket.socket()
        s.connect(socket.getaddrinfo("localhost", port)[0][-1])
        t = time.ticks_us()
        s = ctx.wrap_socket(s, server_hostname="localhost")
        fig("handshake_%%s%%s_us" %% (name, how), time.ticks_diff(time.ticks_us(), t))
        s.close()
"""

# Every flow starts its timer before its first import, so that each pays for the modules it
# loads (frozen: module objects only).
# dynreg.connect returns once the login's housekeeping is done: on the first login the
# ProductSecret is erased and the free flash scrubbed. Its log line at CONNACK marks the moment
# the board is connected, the figure set against the references, which do neither.
DYNREG = """
t = time.ticks_ms()
import dynreg
info = dynreg.ensure("/b/device_info.json", log=None)
fig("stored_ms", time.ticks_diff(time.ticks_ms(), t))
def at_connack(line):
    if line.endswith("MQTT connected"):
        fig("connected_ms", time.ticks_diff(time.ticks_ms(), t))
c = dynreg.connect(info, log=at_connack)
fig("returned_ms", time.ticks_diff(time.ticks_ms(), t))
c.disconnect()
_timer.deinit()
fig("heap_low", LOW[0])
"""

# The same exchange as a user would write it with micropython-lib: the request built and the
# answer decrypted by dynreg's pure functions. NAIVE sends it with `requests`, which checks no
# certificate (it sets CERT_NONE itself), then logs in with umqtt.simple over an unverified TLS
# context. VERIFYING is the same script checking both servers as dynreg does: `requests` takes
# no TLS context, so the POST goes over a socket wrapped by a context that holds the CA, with
# the host name, written and read as `requests` does (HTTP/1.0, headers, then the body to the
# end); umqtt.simple gets the same context as its `ssl=`.
_REQUEST = """
t = time.ticks_ms()
import json, os, socket, tls
from umqtt.simple import MQTTClient
from dynreg import tencent
doc = json.load(open("/b/device_info.json"))
url, headers, body = tencent.register_request(doc["product_id"], doc["device_name"], doc["product_secret"],
                                              time.time(), int.from_bytes(os.urandom(4), "big") >> 1,
                                              endpoint=doc["register_url"])
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
"""
_LOGIN = """
psk = tencent.parse_response(content, doc["product_secret"])["psk"]
doc["credential"] = {"psk": psk}
with open("/b/device_info.json", "w") as f:
    json.dump(doc, f)
fig("stored_ms", time.ticks_diff(time.ticks_ms(), t))
client_id, user, password = tencent.mqtt_login(doc["product_id"], doc["device_name"], psk, "abcde", time.time() + 86400)
c = MQTTClient(client_id, "localhost", %(mqtts)d, user, password, 60, ssl=ctx)
c.connect(timeout=60)
fig("connected_ms", time.ticks_diff(time.ticks_ms(), t))
c.disconnect()
_timer.deinit()
fig("heap_low", LOW[0])
"""
NAIVE = _REQUEST + """
import requests
ctx.verify_mode = tls.CERT_NONE
content = requests.post(url, headers=headers, data=body).content
""" + _LOGIN
VERIFYING = _REQUEST + """
ctx.load_verify_locations(open(doc["ca"], "rb").read())
host, path = url.split("/", 3)[2:]
host, port = host.split(":")
s = socket.socket()
s.connect(socket.getaddrinfo(host, int(port))[0][-1])
s = ctx.wrap_socket(s, server_hostname=host)
s.write(b"POST /%%s HTTP/1.0\\r\\nHost: %%s\\r\\nConnection: close\\r\\nContent-Length: %%d\\r\\n" %% (path, host, len(body)))
for k in headers:
    s.write(k)
    s.write(b": ")
    s.write(headers[k])
    s.write(b"\\r\\n")
s.write(b"\\r\\n")
s.write(body)
status = s.readline()
while s.readline() not in (b"\\r\\n", b""):
    pass
content = s.read()
s.close()
""" + _LOGIN

SECOND = """
t = time.ticks_ms()
import dynreg
info = dynreg.ensure("/b/device_info.json", log=None)
c = dynreg.connect(info, log=None)
fig("connected_ms", time.ticks_diff(time.ticks_ms(), t))
c.disconnect()
_timer.deinit()
fig("heap_low", LOW[0])
"""

# The emulator's chain shapes (cloud_emulator/crypto.py), each standing for real clouds'
# chains (../shared/spec/cloud-roots/README.md). The first is the emulator's default and gets
# every flow with its heap; the others the handshakes and the first boots, timed.
SHAPES = (
    ("rsa2048-intermediate", "RSA-2048 root, RSA-2048 intermediate, RSA-2048 leaf: DigiCert G1 / G2 "
                             "(Tencent registration, Azure), Amazon Root CA 1"),
    ("rsa2048", "RSA-2048 root signing the RSA-2048 leaf: the shape of the Tencent IoT Hub and Aliyun S1 roots"),
    ("rsa4096-intermediate", "RSA-4096 root, RSA-2048 intermediate, RSA-2048 leaf: GlobalSign R46 / R6 (Alibaba)"),
    ("ecdsa-p256", "ECDSA P-256 root signing an ECDSA leaf: the emulator's chain until #28, one case"),
)

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


def boot(cloud, folder, device, script, flash_load=None, flash_save=None, heap=True, image=None):
    """One flow's figures: a timed boot, and unless `heap` is False a second boot (a device of
    its own, on a fresh flash unless `flash_load`) that samples the heap."""
    code = script % {"mqtts": cloud.mqtts_port}
    timed = _boot_once(cloud, folder, device, PRELUDE % {"sample": False} + code, flash_load, flash_save, image)
    if heap:
        sampled = _boot_once(cloud, folder, device + "-heap", PRELUDE % {"sample": True} + code, flash_load, None, image)
        timed["heap_low"] = sampled["heap_low"]
    return timed


def _boot_once(cloud, folder, device, code, flash_load, flash_save, image, tries=3):
    # The references wait on the network as a user's script would, without dynreg's deadlines:
    # on a loaded host an answer can come too late for them. Emulated time does not count the
    # host's load, so a failed boot is run again (a fresh device), and says so.
    for attempt in range(tries):
        name = device if attempt == 0 else "%s-again%d" % (device, attempt)
        puts = [] if flash_load else [(pico.SOCKET_MODULE, "/socket.py"), (cloud.ca_der_path, "/ca.der"),
                                      (info_file(folder, cloud, name), "/b/device_info.json")]
        try:
            return figures(pico.run(CLOCK, code, puts=puts, tunnel=True, image=image, flash_load=flash_load,
                                    flash_save=flash_save, timeout=600))
        except RuntimeError as error:
            if attempt == tries - 1:
                raise
            why = [line for line in str(error).splitlines() if "Error" in line or "timeout" in line] or ["?"]
            say("  a boot of %s failed, run again: %s" % (device, why[-1]))


def handshakes(cloud):
    return figures(pico.run(CLOCK, PRELUDE % {"sample": False} + MICRO % {
        "payload": PSK_PAYLOAD, "secret": PSK_SECRET, "https": cloud.https_port, "mqtts": cloud.mqtts_port},
        puts=[(pico.SOCKET_MODULE, "/socket.py"), (cloud.ca_der_path, "/ca.der")], tunnel=True, timeout=600))


def verification_ms(micro):
    """What checking the server's chain adds to a first boot's two handshakes."""
    return (micro["handshake_https_us"] - micro["handshake_https_unverified_us"]
            + micro["handshake_mqtts_us"] - micro["handshake_mqtts_unverified_us"]) // 1000


def measure_shape(folder, shape, full, before_image=None):
    # The emulated chip runs at about 0.3x real time, and much slower while it samples its heap
    # every millisecond: a TLS handshake and request take it minutes of wall time, far more than
    # the emulator's default 10 s allows a client.
    with running_emulator(os.path.join(folder, "cloud-" + shape), client_timeout=300, chain=shape) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=1000)
        out = {"micro": handshakes(cloud)}
        flash = os.path.join(folder, "flash-%s.bin" % shape)
        out["dynreg"] = boot(cloud, folder, "pico-%s" % shape, DYNREG, flash_save=flash, heap=full)
        out["verifying"] = boot(cloud, folder, "pico-ver-%s" % shape, VERIFYING, heap=full)
        if full:
            out["second"] = boot(cloud, folder, "pico-%s" % shape, SECOND, flash_load=flash)
            out["naive"] = boot(cloud, folder, "pico-naive-%s" % shape, NAIVE)
        if before_image:
            out["before"] = boot(cloud, folder, "pico-before-%s" % shape, DYNREG, heap=False, image=before_image)
    out["verification_ms"] = verification_ms(out["micro"])
    out["verification_share"] = out["verification_ms"] / out["dynreg"]["connected_ms"]
    out["against_verifying"] = out["dynreg"]["connected_ms"] / out["verifying"]["connected_ms"]
    return out


# AWS (#29): the TLS handshake with the claim's RSA-2048 client certificate and key to the AWS
# listener, against the same handshake to the plain MQTTS listener without a client certificate,
# both verifying the emulator's default chain; each from an empty context (the CA, and the client
# certificate and key parsed) to the handshake's end. Then a whole AWS first boot. The claim goes
# to the chip as DER, as the handshakes load it with `tls` alone.
# The boot's attempts may take a minute: sampling the heap every millisecond slows the chip, and
# its mutual-TLS handshake alone then takes it most of the default 10 s.
AWS_TEMPLATE = "BenchFleet"
AWS_CHAIN = "rsa2048-intermediate"
AWS = """
import socket, tls
def handshake(name, port, client):
    gc.collect()
    start = LOW[0] = gc.mem_free()
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(open("/aws/ca.der", "rb").read())
    if client:
        ctx.load_cert_chain(open("/aws/claim.crt", "rb").read(), open("/aws/claim.key", "rb").read())
    s = socket.socket()
    s.connect(socket.getaddrinfo("localhost", port)[0][-1])
    t = time.ticks_us()
    s = ctx.wrap_socket(s, server_hostname="localhost")
    fig("handshake_%%s_us" %% name, time.ticks_diff(time.ticks_us(), t))
    fig("handshake_%%s_heap_peak" %% name, start - LOW[0])
    s.close()
handshake("mutual", %(aws)d, True)
handshake("server_only", %(mqtts)d, False)
gc.collect()
start = LOW[0] = gc.mem_free()
t = time.ticks_ms()
import dynreg
info = dynreg.ensure("/aws/device_info.json", log=None, timeout_ms=60000)
fig("stored_ms", time.ticks_diff(time.ticks_ms(), t))
c = dynreg.connect(info, log=None, timeout_ms=60000)
fig("returned_ms", time.ticks_diff(time.ticks_ms(), t))
c.disconnect()
_timer.deinit()
fig("first_boot_heap_peak", start - LOW[0])
fig("heap_free_before_first_boot", start)
"""


def aws():
    """The AWS figures: one timed boot, one that samples the heap (a fresh device and flash each)."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "bench", "pico-aws")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with running_emulator(os.path.join(folder, "cloud"), client_timeout=300, chain=AWS_CHAIN) as cloud:
        cloud.add_aws_template(AWS_TEMPLATE, ("SerialNumber",))
        claim = cloud.add_aws_claim(AWS_TEMPLATE, folder=os.path.join(folder, "claim"), name="bench-claim")
        code = AWS % {"aws": cloud.aws_mqtts_port, "mqtts": cloud.mqtts_port}
        out = {}
        for sample in (False, True):
            device = "PICO-AWS-BENCH-%d" % sample
            info = os.path.join(folder, device + ".json")
            with open(info, "w") as f:
                json.dump({"dynreg": 1, "cloud": "aws", "template": AWS_TEMPLATE, "device_name": device,
                           "mqtt_url": "mqtts://localhost:%d" % cloud.aws_mqtts_port, "ca": "ca.der",
                           "claim_cert": "claim.crt", "claim_key": "claim.key", "credential": {}}, f)
            puts = [(pico.SOCKET_MODULE, "/socket.py"), (cloud.ca_der_path, "/aws/ca.der"),
                    (info, "/aws/device_info.json"), (str(claim.cert_der), "/aws/claim.crt"),
                    (str(claim.key_der), "/aws/claim.key")]
            proc = pico.run(CLOCK, PRELUDE % {"sample": sample} + code, puts=puts, tunnel=True, timeout=900)
            out["heap" if sample else "timed"] = figures(proc)
    timed, heap = out["timed"], out["heap"]
    result = {"chain": AWS_CHAIN, "client_key": "RSA-2048"}
    for name in ("mutual", "server_only"):
        result[name] = {"handshake_us": timed["handshake_%s_us" % name],
                        "heap_peak": heap["handshake_%s_heap_peak" % name]}
    result["first_boot"] = {"stored_ms": timed["stored_ms"], "returned_ms": timed["returned_ms"],
                            "heap_peak": heap["first_boot_heap_peak"],
                            "heap_free_before": heap["heap_free_before_first_boot"]}
    m, s, b = result["mutual"], result["server_only"], result["first_boot"]
    say("  AWS (chain %s, verified): TLS handshake with the claim's RSA-2048 client certificate %d ms, heap peak %d B; "
        "the same without a client certificate %d ms, %d B; first boot (ensure + connect): credential stored %d ms, "
        "connect returned %d ms, heap peak %d B of %d B free"
        % (AWS_CHAIN, m["handshake_us"] // 1000, m["heap_peak"], s["handshake_us"] // 1000, s["heap_peak"],
           b["stored_ms"], b["returned_ms"], b["heap_peak"], b["heap_free_before"]))
    return result


def run(shapes=None, before_image=None):
    """`shapes`: names from SHAPES (default all); `before_image`: another Pico W image whose
    first boot is timed beside this one's, in the default shape (a before and after)."""
    problem = pico.check_ready()
    if problem:
        raise RuntimeError("the emulated Pico W cannot run: " + problem)
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "bench", "pico")
    shutil.rmtree(folder, ignore_errors=True)  # a fresh cloud: every device registers anew
    os.makedirs(folder)
    names = [name for name, _ in SHAPES if shapes is None or name in shapes]
    result = {"runs": RUNS, "goal": GOAL, "shapes": {}}
    for index, name in enumerate(names):
        full = index == 0
        shape = measure_shape(folder, name, full, before_image if full else None)
        shape["stands_for"] = dict(SHAPES)[name]
        result["shapes"][name] = shape
        m, ours, ver = shape["micro"], shape["dynreg"], shape["verifying"]
        say("  chain %s: handshakes HTTPS %d ms (unverified %d), MQTTS %d ms (unverified %d); verification %d ms = "
            "%.0f %% of the first boot; first boot MQTT connected %d ms, the verifying reference %d ms: %.2fx "
            "(goal <= %.2fx)" % (name, m["handshake_https_us"] // 1000, m["handshake_https_unverified_us"] // 1000,
                                 m["handshake_mqtts_us"] // 1000, m["handshake_mqtts_unverified_us"] // 1000,
                                 shape["verification_ms"], 100 * shape["verification_share"], ours["connected_ms"],
                                 ver["connected_ms"], shape["against_verifying"], GOAL))
        if full:
            result.update(micro=m, chain=name, dynreg=ours, verifying=ver, reference=shape["naive"],
                          second=shape["second"])
            if "before" in shape:
                result["before"] = shape["before"]
    if "dynreg" in result:
        ours, ref, ver = result["dynreg"], result["reference"], result["verifying"]
        boot_free = result["micro"]["heap_free_boot"]
        for flow in ("dynreg", "reference", "verifying", "second"):
            result[flow]["heap_peak"] = boot_free - result[flow]["heap_low"]
        result["ratios"] = dict((key, {"stored": ours["stored_ms"] / other["stored_ms"],
                                       "connected": ours["connected_ms"] / other["connected_ms"],
                                       "heap_peak": ours["heap_peak"] / other["heap_peak"]})
                                for key, other in (("naive", ref), ("verifying", ver)))
        m = result["micro"]
        say("  heap at boot %(heap_free_boot)d B free, after importing the Tencent flow and umqtt %(heap_free_after_import)d B;"
            " HMAC-SHA256 cold key %(hmac_cold_us)d us, decrypt %(decrypt_us)d us (emulated)" % m)
        say("  first boot (%s): credential stored %d ms, MQTT connected %d ms, dynreg.connect returned %d ms (the "
            "ProductSecret erased, the free flash scrubbed), heap peak %d B; verifying reference "
            "%d / %d ms, %d B (%.2fx / %.2fx / %.2fx); naive reference (requests + umqtt, unverified TLS) %d / %d ms, "
            "%d B (%.2fx / %.2fx / %.2fx); second boot %d ms, heap peak %d B"
            % (result["chain"], ours["stored_ms"], ours["connected_ms"], ours["returned_ms"], ours["heap_peak"], ver["stored_ms"],
               ver["connected_ms"], ver["heap_peak"], result["ratios"]["verifying"]["stored"],
               result["ratios"]["verifying"]["connected"], result["ratios"]["verifying"]["heap_peak"],
               ref["stored_ms"], ref["connected_ms"], ref["heap_peak"], result["ratios"]["naive"]["stored"],
               result["ratios"]["naive"]["connected"], result["ratios"]["naive"]["heap_peak"],
               result["second"]["connected_ms"], result["second"]["heap_peak"]))
        if "before" in result:
            say("  before / after (%s): credential stored %d / %d ms, MQTT connected %d / %d ms"
                % (before_image, result["before"]["stored_ms"], ours["stored_ms"], result["before"]["connected_ms"],
                   ours["connected_ms"]))
    result["aws"] = aws()
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="The chip's section of make bench, alone.")
    parser.add_argument("--shapes", help="comma-separated chain shapes (default: all)")
    parser.add_argument("--before-image", help="a Pico W image (firmware.uf2) to time beside this one")
    parser.add_argument("--aws", action="store_true", help="only the AWS figures")
    args = parser.parse_args()
    if args.aws:
        print(json.dumps(aws(), indent=1))
    else:
        print(json.dumps(run(args.shapes.split(",") if args.shapes else None, args.before_image), indent=1))

# The whole zero-touch flow on the Pico W image, on an emulated RP2040 (pico_emulator/), as a
# production line would run it: `dynreg provision` writes the product identity, the CA, the
# site settings and firmware/ onto the board through the real mpremote over its USB serial
# port; the board then boots firmware/main.py, sets its clock by SNTP, registers (mbedTLS on
# the chip does the TLS), stores the credential on its own littlefs flash, connects and
# publishes; the flash is kept, and the next boot connects without registering. The only
# stand-in is the radio: pico_emulator/board/socket.py carries TCP over UART0 to loopback.
# Every claim is checked against the cloud emulator's log.
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from cloud_emulator.testing import running_emulator
from e2e import ROOT, registrations

sys.path.insert(0, os.path.join(ROOT, "pico_emulator"))
import pico  # noqa: E402

PROVISION = [os.path.join(ROOT, ".venv", "bin", "dynreg"), "provision"]  # the line's command
TENCENT = "PICOTC0001"
ALIYUN = "a1PicoMqtt1"
SECRET = "p1c0-Pr0duct-S3cret-0123"
AZURE_GROUP, AZURE_SCOPE, AZURE_HUB = "pico-line", "0ne00PICOW1", "pico-emu.azure-devices.net"
AZURE_KEY = "cGljby13LWdyb3VwLWtleS0wMTIzNDU2Nzg5YWJjZGVmZ2hpams="  # base64 of 38 bytes
UNIQUE_ID = "e66138524459a1b2"  # the emulated flash's unique id: the DeviceName when derived
BOOT_TIMEOUT = 240  # wall seconds; the emulator runs at about 0.4x real time
ENDS = (b"published status on", b"stopped:", b"failed:")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    problem = pico.check_ready()
    if problem:
        pytest.fail("the emulated Pico W cannot run: " + problem)
    # The emulated chip runs at about 0.3x real time, slower still on a loaded machine: a TLS
    # handshake and request can take it longer, in wall seconds, than the default 10 s.
    with running_emulator(tmp_path_factory.mktemp("cloud"), client_timeout=60) as cloud:
        cloud.add_product(TENCENT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100)
        cloud.add_product(ALIYUN, SECRET, cloud="aliyun")
        cloud.add_device(ALIYUN, "pico-mqtt-01")
        cloud.add_product(AZURE_GROUP, AZURE_KEY, cloud="azure", id_scope=AZURE_SCOPE, hub=AZURE_HUB, assign_seconds=1)
        yield cloud


def provision(tmp_path, cloud, doc, ca=None):
    # A fresh board (empty flash), provisioned by `dynreg provision` over mpremote; ca=False:
    # no CA at all (the built-in roots).
    app = tmp_path / "app"
    app.mkdir()
    for name in ("boot.py", "main.py", "board.py", "watchdog.py"):
        shutil.copy(os.path.join(ROOT, "firmware", name), app / name)
    shutil.copy(pico.SOCKET_MODULE, app / "socket.py")  # the radio's stand-in
    info = tmp_path / "product_info.json"
    info.write_text(json.dumps(doc))
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"network": "uart-tunnel", "ntp_servers": ["localhost"], "boot_attempts": 1}))
    flash = str(tmp_path / "flash.bin")
    with pico.PicoBoard(flash, unique_id=UNIQUE_ID) as board:
        ca_args = [] if ca is False else ["--ca", ca or cloud.ca_der_path]
        proc = subprocess.run(PROVISION + ["--ports", board.port, "--info", str(info)] + ca_args
                              + ["--site", str(site), "--app", str(app)],
                              capture_output=True, text=True, timeout=600, cwd=ROOT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "provisioned" in output and "sha256 ok" in output, output
    assert SECRET not in output
    return flash, output


def boot(flash):
    # Power on: boot.py and main.py run from the flash; the flash is kept at power off.
    with pico.PicoBoard(flash, unique_id=UNIQUE_ID) as board:
        return console_until(board, lambda b: any(end in b.console for end in ENDS) or b.process.poll() is not None,
                             lambda b: any(end in b.console for end in ENDS))


def console_until(board, done, reached=None, timeout=BOOT_TIMEOUT):
    # The board's console once done(board) holds, within `timeout` wall seconds; reached(board),
    # when given, must hold then too. Added to the run's transcript, for the secrets scan of `make test`.
    stop = time.monotonic() + timeout
    while not done(board):
        if time.monotonic() > stop:
            break
        time.sleep(0.2)
    if not done(board) or (reached and not reached(board)):
        raise AssertionError("the board did not get there:\n" + board.console_text() + "\n"
                             + board.runner_log()[-2000:])
    console = board.console_text()
    transcript = os.environ.get("DYNREG_TRANSCRIPT")
    if transcript:
        with open(transcript, "a") as f:
            f.write("-- emulated Pico W boot --\n" + console)
    assert SECRET not in console
    return console


def read_info(flash):
    proc = pico.run("print(open('device_info.json').read())", flash_load=flash)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tencent_info(cloud):
    return {"dynreg": 1, "cloud": "tencent", "product_id": TENCENT, "product_secret": SECRET,
            "device_name_from": "unique_id", "register_url": "https://localhost:%d" % cloud.https_port,
            "mqtt_url": "mqtts://localhost:%d" % cloud.mqtts_port, "ca": "ca.der", "credential": {"psk": ""}}


def flash_holds(flash, secret):
    # The secret, or either half of it (a copy across a page), anywhere in the chip's 2 MiB.
    with open(flash, "rb") as f:
        image = f.read()
    return any(part.encode() in image for part in (secret, secret[:12], secret[12:]))


def test_tencent_over_https_registers_once_on_the_chip(cloud, tmp_path):
    flash, _ = provision(tmp_path, cloud, tencent_info(cloud))
    assert flash_holds(flash, SECRET)  # provisioned: the search finds it
    first = boot(flash)
    assert "clock: set from localhost" in first, first
    assert "registering %s/%s with tencent" % (TENCENT, UNIQUE_ID) in first, first
    assert "credential stored in device_info.json" in first and "MQTT connected" in first, first
    assert "published status on %s/%s/data" % (TENCENT, UNIQUE_ID) in first, first
    [registration] = registrations(cloud, UNIQUE_ID)
    assert registration["result"] == "ok" and registration["transport"] == "https"
    stored = read_info(flash)
    psk = stored["credential"]["psk"]
    assert psk and psk == cloud.device(TENCENT, UNIQUE_ID)["psk"]  # on the board's own flash
    # The first accepted login spent the ProductSecret: it is gone from the board's flash.
    assert "ProductSecret erased from device_info.json" in first and "product_secret" not in stored, first
    # ... and from the flash: no old copy in a freed block or an old commit (the scrub).
    assert "dynreg: free flash scrubbed (" in first and not flash_holds(flash, SECRET), first

    second = boot(flash)
    assert "holds a credential: no registration" in second and "registering" not in second, second
    assert "published status on" in second
    assert len(registrations(cloud, UNIQUE_ID)) == 1  # never registers twice
    logins = [e["result"] for e in cloud.log() if e.get("api") == "mqtt-connect" and e.get("device") == UNIQUE_ID]
    assert logins == ["ok", "ok"]


def test_alibaba_over_mqtt_with_tls_registers_on_the_chip(cloud, tmp_path):
    doc = {"dynreg": 1, "cloud": "aliyun", "product_key": ALIYUN, "product_secret": SECRET,
           "device_name": "pico-mqtt-01", "api": "mqtt", "mqtt_url": "mqtts://localhost:%d" % cloud.mqtts_port,
           "ca": "ca.der", "credential": {}}
    flash, _ = provision(tmp_path, cloud, doc)
    first = boot(flash)
    assert "registering %s/pico-mqtt-01 with aliyun, mqtt API, mqtts://localhost:%d" % (ALIYUN, cloud.mqtts_port) in first, first
    assert "published status on /%s/pico-mqtt-01/user/update" % ALIYUN in first, first
    assert [e["api"] for e in registrations(cloud, "pico-mqtt-01")] == ["aliyun-mqtt-register"]
    stored = read_info(flash)
    assert stored["credential"]["device_secret"] == cloud.device(ALIYUN, "pico-mqtt-01")["device_secret"]
    assert "ProductSecret erased from device_info.json" in first and "product_secret" not in stored, first
    second = boot(flash)
    assert "holds a credential: no registration" in second and "published status on" in second, second
    assert len(registrations(cloud, "pico-mqtt-01")) == 1


def test_azure_dps_provisions_on_the_chip_then_the_hub_takes_the_derived_key(cloud, tmp_path):
    url = "mqtts://localhost:%d" % cloud.mqtts_port
    doc = {"dynreg": 1, "cloud": "azure", "id_scope": AZURE_SCOPE, "group_key": AZURE_KEY,
           "device_name_from": "unique_id", "register_url": url, "mqtt_url": url, "ca": "ca.der", "credential": {}}
    flash, output = provision(tmp_path, cloud, doc)
    assert AZURE_KEY not in output
    first = boot(flash)
    assert AZURE_KEY not in first
    assert "registering %s/%s with azure, mqtt API, mqtts://localhost" % (AZURE_SCOPE, UNIQUE_ID) in first, first
    assert "published status on devices/%s/messages/events/" % UNIQUE_ID in first, first
    assert [e["result"] for e in registrations(cloud, UNIQUE_ID) if e["api"] == "azure-dps-register"] == ["assigning"]
    stored = read_info(flash)
    view = cloud.device(AZURE_GROUP, UNIQUE_ID)
    assert stored["credential"] == {"hub": AZURE_HUB, "device_id": UNIQUE_ID, "device_key": view["device_key"]}
    assert "group_key" not in stored and "group key erased from device_info.json" in first, first
    second = boot(flash)
    assert "holds a credential: no registration" in second and "published status on" in second, second
    assert len([e for e in registrations(cloud, UNIQUE_ID) if e["api"] == "azure-dps-register"]) == 1


def test_a_wrong_ca_is_refused_by_mbedtls_on_the_chip(cloud, tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding
    from cloud_emulator.crypto import _create_ca

    other_ca = tmp_path / "other-ca.der"  # a CA of its own: the board trusts it, not the cloud's
    other_ca.write_bytes(_create_ca().certificate.public_bytes(Encoding.DER))
    doc = dict(tencent_info(cloud), device_name="pico-wrong-ca")
    flash, _ = provision(tmp_path, cloud, doc, ca=str(other_ca))
    console = boot(flash)
    assert "TLSError" in console and "not correctly signed by the trusted CA" in console, console
    assert registrations(cloud, "pico-wrong-ca") == []
    assert read_info(flash)["credential"] == {"psk": ""}  # nothing stored


ERRORS_SCRIPT = """
import hashlib, ntptime, dynreg
from binascii import hexlify
ntptime.host = "localhost"
ntptime.settime()
path = %r
before = open(path).read()
try:
    info = dynreg.ensure(path, backoff_ms=200, timeout_ms=30000)
    print("RESULT ok", hexlify(hashlib.sha256(info.credential["psk"].encode()).digest()).decode())
except dynreg.Error as e:
    print("RESULT", type(e).__name__, getattr(e, "code", None), "unchanged" if open(path).read() == before else "changed")
"""


def test_tencent_errors_as_tencent_sends_them_on_the_chip(cloud, tmp_path):
    # A code in a 200 answer, no Retry-After (PROTOCOLS.md 2.6): RequestLimitExceeded twice, then
    # registered; InternalError once, then registered; AuthFailure.SignatureFailure final after
    # one request, nothing stored. Two boots: every request takes the first queued fault.
    import hashlib

    def script(name, **fields):
        doc = dict(tencent_info(cloud), device_name=name, **fields)
        del doc["device_name_from"]
        (tmp_path / name).mkdir()
        path = tmp_path / name / "device_info.json"  # a store, by its name, to the secrets scan
        path.write_text(json.dumps(doc))
        return (str(path), name + ".json"), ERRORS_SCRIPT % (name + ".json")

    def run(*devices):
        puts = [(pico.SOCKET_MODULE, "socket.py"), (cloud.ca_der_path, "ca.der")] + [put for put, _ in devices]
        proc = pico.run(*[code for _, code in devices], puts=puts, tunnel=True, timeout=900)
        assert SECRET not in proc.stdout
        results = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("RESULT")]
        assert len(results) == len(devices), proc.stdout + proc.stderr[-3000:]
        return results, proc.stdout

    def requests(mark):
        return [e["result"] for e in cloud.log()[mark:] if e.get("api") == "tencent-v2"]

    def psk_hash(name):
        return hashlib.sha256(cloud.device(TENCENT, name)["psk"].encode()).hexdigest()

    cloud.fault("http_status", count=2, status=429)  # as Tencent throttles: 200, RequestLimitExceeded
    mark = len(cloud.log())
    wrong = "Wr0ng-Pr0duct-S3cret-999"
    results, output = run(script("pico-throttled"), script("pico-bad-secret", product_secret=wrong))
    assert results[0] == ["ok", psk_hash("pico-throttled")], output
    assert output.count("(server answered RequestLimitExceeded); retrying in") == 2, output
    assert results[1] == ["RejectedError", "AuthFailure.SignatureFailure", "unchanged"], output
    # 3 requests for the first device, exactly 1 for the second
    assert requests(mark) == ["fault:http_status"] * 2 + ["ok", "AuthFailure.SignatureFailure"]
    assert [e["result"] for e in registrations(cloud, "pico-bad-secret")] == ["AuthFailure.SignatureFailure"]

    cloud.fault("http_status", count=1, status=500)  # 200, InternalError
    mark = len(cloud.log())
    results, output = run(script("pico-internal"))
    assert results[0] == ["ok", psk_hash("pico-internal")], output
    assert output.count("(server answered InternalError); retrying in") == 1, output
    assert requests(mark) == ["fault:http_status", "ok"]


def test_mpremote_works_with_the_emulated_board_as_with_a_real_one(tmp_path):
    # exec and run (raw-paste mode), fs cp and ls, a soft reset, and the file still there
    # after a power cycle (the runner saves the flash at power off and loads it at power on).
    mpremote = os.path.join(ROOT, ".venv", "bin", "mpremote")
    script = tmp_path / "hello.py"
    script.write_text("import sys\nprint('hello from', sys.platform)\n")
    flash = str(tmp_path / "flash.bin")

    def run(board, *commands):
        proc = subprocess.run([mpremote, "connect", board.port] + list(commands), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    with pico.PicoBoard(flash, tunnel=False) as board:
        assert "MicroPython v1.28.0" in run(board, "exec", "import sys; print(sys.version)")
        assert "hello from rp2" in run(board, "run", str(script))
        run(board, "fs", "cp", str(script), ":hello.py")
        assert "hello.py" in run(board, "fs", "ls", ":")
        run(board, "soft-reset")
        assert "['hello.py']" in run(board, "exec", "import os; print([n for n in os.listdir() if n.endswith('.py')])")
    with pico.PicoBoard(flash, tunnel=False) as board:
        assert "hello from rp2" in run(board, "exec", "exec(open('hello.py').read())")


def test_an_info_without_a_ca_trusts_only_the_built_in_roots_on_the_chip(cloud, tmp_path):
    # The emulator's CA is none of the clouds' roots: on the chip's mbedTLS too, a board whose
    # info names no CA (as one for the real cloud does) refuses it, before its request.
    doc = tencent_info(cloud)
    del doc["ca"]
    flash, _ = provision(tmp_path, cloud, doc, ca=False)
    mark = len(cloud.log())
    console = boot(flash)
    assert "failed: TLSError" in console and "not correctly signed by the trusted CA" in console, \
        console
    assert cloud.log()[mark:] == []  # no request reached the emulator
    assert read_info(flash)["credential"] == {"psk": ""}

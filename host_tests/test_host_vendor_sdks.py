# Conformance: the clouds' own device SDKs, independent clients, against the local emulator
# (tools/vendor_sdk.py runs them unchanged in their own virtualenv; only where they connect is
# redirected). Whatever they send, the real cloud accepts from them, so the emulator must too,
# and must refuse them with a wrong secret. Then our device, on the frozen MicroPython unix
# build, registers the same products with the same secrets and gets the same outcome.
import base64
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import types

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloud_emulator.crypto import SERVER_CERT_FILE, SERVER_KEY_FILE
from cloud_emulator.testing import running_emulator
from e2e import (SECRET, folder_snapshot, read_json, registrations, run_device, write_aliyun_info, write_azure_info,
                 write_device_info, write_info)
from hostile import HostileBroker, hold, read_packet

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from runtime import VENDOR_PYTHON, VENDOR_SDK  # noqa: E402

TENCENT = "VENDORSDK1"
ALIYUN = "a1VendorSdk"  # pre-registered devices: HTTPS and MQTT registration
ALIYUN_FREE = "a1VendorNwl"  # pre-registration-free (regnwl)
WRONG_SECRET = "WrongProductSecret000000"
AZURE_GROUP = "vendor-sdk"  # a DPS enrollment group (symmetric key)
AZURE_SCOPE = "0ne00VENDOR"
AZURE_HUB = "vendor-emu.azure-devices.net"
AZURE_KEY = base64.b64encode(hashlib.sha512(b"vendor sdk group key").digest()).decode()
AZURE_WRONG_KEY = base64.b64encode(hashlib.sha512(b"not the group's key").digest()).decode()
AWS_TEMPLATE = "VendorSdkFleet"  # its pre-provisioning hook lets only serials SN-OK-... in
AWS_PREFIX = "vendor-"
AWS_CONFIG = {"fleet": "vendor-sdk"}
EVENT_WAIT = 60  # seconds: the most an SDK is given for what it must do (never reached when all is well)

if not os.path.exists(VENDOR_PYTHON):
    pytest.skip("no build/vendor-sdks: run tools/bootstrap.sh (make test does)", allow_module_level=True)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(TENCENT, SECRET, auth="key", dynreg=True, mode="autocreate")
        cloud.add_product(ALIYUN, SECRET, cloud="aliyun")
        cloud.add_product(ALIYUN_FREE, SECRET, cloud="aliyun", regnwl=True)
        cloud.add_product(AZURE_GROUP, AZURE_KEY, cloud="azure", id_scope=AZURE_SCOPE, hub=AZURE_HUB, assign_seconds=1)
        cloud.add_aws_template(AWS_TEMPLATE, ("SerialNumber", "Color"), thing_name_prefix=AWS_PREFIX,
                               allow="SN-OK-.*", device_configuration=AWS_CONFIG)
        cloud.aws_claim = cloud.add_aws_claim(AWS_TEMPLATE)
        for who in ("sdk", "our"):
            for case in ("https", "https-bad", "mqtt", "mqtt-bad"):
                cloud.add_device(ALIYUN, "%s-%s" % (who, case))
        yield cloud


def _spec(cloud, tmp_path, sdk, mode, product, device, secret=SECRET, **extra):
    folder = tmp_path / ("sdk-" + device)  # the SDK's store: a device_info.json, as the secrets scan knows it
    folder.mkdir(exist_ok=True)
    return dict({"sdk": sdk, "mode": mode, "product": product, "device": device, "secret": secret,
                 "info": str(folder / "device_info.json"), "https_port": cloud.https_port,
                 "mqtts_port": cloud.mqtts_port, "ca_pem": cloud.ca_pem_path, "wait": EVENT_WAIT}, **extra)


def run_sdk(spec):
    """Runs the SDK to its end: (RESULT text, the labels it printed: start, stored, connected)."""
    proc = subprocess.run([VENDOR_PYTHON, VENDOR_SDK, json.dumps(spec)], capture_output=True, text=True,
                          timeout=EVENT_WAIT * 3)
    return _outcome(proc.stdout, proc.stderr)


def run_sdk_until(cloud, spec, refusal):
    """Runs an SDK that the emulator must refuse without telling it why in a way it reports (a
    refused CONNACK, which the SDKs only retry): waits for the emulator's log record matching
    `refusal`, then stops the SDK. -> (that record, the labels the SDK printed)."""
    proc = subprocess.Popen([VENDOR_PYTHON, VENDOR_SDK, json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        record = cloud.wait_for_log(refusal, timeout=EVENT_WAIT)
    finally:
        proc.kill()
        out, err = proc.communicate(timeout=30)
    return record, _outcome(out, err)[1]


def _outcome(out, err):
    labels = [line.split()[1] for line in out.splitlines() if line.startswith("T ")]
    results = [line[len("RESULT "):] for line in out.splitlines() if line.startswith("RESULT ")]
    for secret in (SECRET, WRONG_SECRET, AZURE_KEY, AZURE_WRONG_KEY):
        assert secret not in out + err
    assert "-----BEGIN" not in out + err  # no key or certificate (AWS's answers carry both)
    return (results[-1] if results else "no RESULT: " + err[-300:]), labels


def _our_device(cloud, tmp_path, name, secret, product=None, api=None, **fields):
    folder = tmp_path / ("our-" + name)
    folder.mkdir()
    if api is None:
        info = write_info(folder, cloud, TENCENT, name, secret=secret)
    else:
        info = write_aliyun_info(folder, cloud, product, name, secret=secret, api=api, **fields)
    return info, run_device(info, ensure={"attempts": 1}, connect={})


def _record(cloud, api, device):
    [record] = [e for e in registrations(cloud, device) if e["api"] == api]
    return record


# -- Tencent: tencent-iot-device 1.0.0 ----------------------------------------------------------

def _parse_connect(body):
    # -> (protocol name, level, client id, username, password) of a CONNECT the SDK sent
    def string(at):
        size = struct.unpack_from("!H", body, at)[0]
        return body[at + 2:at + 2 + size].decode(), at + 2 + size

    name, at = string(0)
    level, flags = body[at], body[at + 1]
    client_id, at = string(at + 4)
    if flags & 0x04:
        at = string(string(at)[1])[1]  # will topic and message
    username, at = string(at) if flags & 0x80 else (None, at)
    password, at = string(at) if flags & 0x40 else (None, at)
    return name, level, client_id, username, password


def _tencent_sdk_connect(cloud, spec):
    """The CONNECT the SDK sends to log in, caught on a listener with the emulator's own server
    certificate (so the SDK's TLS checks pass as against the emulator)."""
    caught = []

    def script(conn, stop):
        kind, body = read_packet(conn)
        caught.append((kind, body))
        hold(conn, stop)  # no CONNACK: the SDK retries, the test has what it needs

    material = types.SimpleNamespace(server_cert_path=os.path.join(cloud.state_dir, SERVER_CERT_FILE),
                                     server_key_path=os.path.join(cloud.state_dir, SERVER_KEY_FILE))
    with HostileBroker(script, material) as broker:
        proc = subprocess.Popen([VENDOR_PYTHON, VENDOR_SDK, json.dumps(dict(spec, mqtts_port=broker.port))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + EVENT_WAIT
            while not caught and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.communicate(timeout=30)
    assert caught and caught[0][0] >> 4 == 1, "the SDK sent no CONNECT"
    return _parse_connect(caught[0][1])


def test_tencent_sdk_registers_and_logs_in(cloud, tmp_path):
    name = "sdk-tc-01"
    spec = _spec(cloud, tmp_path, "tencent", "https", TENCENT, name)
    result, labels = run_sdk(spec)
    assert result == "ok" and "stored" in labels, result
    psk = cloud.device(TENCENT, name)["psk"]
    assert read_json(spec["info"])["key_deviceinfo"]["deviceSecret"] == psk  # what the SDK stored
    assert _record(cloud, "tencent-v2", name)["result"] == "ok"

    # Its login, as the SDK builds it: MQTT 3.1 (MQIsdp, level 3), sdkappid 21010406, an
    # expiry in milliseconds (caught on a listener of our own first, to show exactly that).
    protocol, level, client_id, username, _ = _tencent_sdk_connect(cloud, dict(spec, mode="login"))
    assert (protocol, level, client_id) == ("MQIsdp", 3, TENCENT + name)
    assert username.split(";")[1] == "21010406" and len(username.split(";")[3]) == 13, username
    result, labels = run_sdk(dict(spec, mode="login"))  # against the emulator: mosquitto serves MQTT 3.1
    assert result == "ok" and labels[-1] == "connected", result
    logins = [e for e in cloud.log() if e.get("api") == "mqtt-connect" and e.get("device") == name]
    assert [(e["result"], e["protocol"], e["transport"]) for e in logins] == [("ok", "MQIsdp/3", "mqtts")]


def test_tencent_sdk_login_with_a_wrong_psk_is_refused(cloud, tmp_path):
    name = "sdk-tc-02"
    spec = _spec(cloud, tmp_path, "tencent", "https", TENCENT, name)
    assert run_sdk(spec)[0] == "ok"
    doc = read_json(spec["info"])
    doc["key_deviceinfo"]["deviceSecret"] = "AAAAAAAAAAAAAAAAAAAAAA=="
    with open(spec["info"], "w") as f:
        json.dump(doc, f)
    record, labels = run_sdk_until(cloud, dict(spec, mode="login"), lambda e: e.get("api") == "mqtt-connect"
                                   and e.get("device") == name)
    assert record["result"] == "bad-password" and record["protocol"] == "MQIsdp/3" and "connected" not in labels


def test_tencent_sdk_with_a_wrong_product_secret_is_refused_and_so_is_our_device(cloud, tmp_path):
    result, labels = run_sdk(_spec(cloud, tmp_path, "tencent", "https", TENCENT, "sdk-tc-bad", secret=WRONG_SECRET))
    assert result.startswith("refused") and "stored" not in labels, result
    info, ours = _our_device(cloud, tmp_path, "our-tc-bad", WRONG_SECRET)
    assert not ours["ok"] and ours["error"] == "RejectedError", ours
    for name in ("sdk-tc-bad", "our-tc-bad"):
        assert cloud.device(TENCENT, name) is None
        assert _record(cloud, "tencent-v2", name)["result"] == "AuthFailure.SignatureFailure"


def test_our_device_registers_the_tencent_product_too(cloud, tmp_path):
    info, ours = _our_device(cloud, tmp_path, "our-tc-01", SECRET)
    assert ours["ok"] and ours["connected"], ours
    assert read_json(info)["credential"]["psk"] == cloud.device(TENCENT, "our-tc-01")["psk"]


# -- Alibaba: aliyun-iot-linkkit 1.2.13 ---------------------------------------------------------

ALIYUN_CASES = [
    # SDK mode, our device's api, product, registration log api
    ("https", "https", ALIYUN, "aliyun-https-register"),
    ("mqtt", "mqtt", ALIYUN, "aliyun-mqtt-register"),
    ("regnwl", "regnwl", ALIYUN_FREE, "aliyun-mqtt-regnwl"),
]


@pytest.mark.parametrize("mode, api, product, log_api", ALIYUN_CASES)
def test_linkkit_registers_and_logs_in_and_so_does_our_device(cloud, tmp_path, mode, api, product, log_api):
    sdk_name, our_name = "sdk-%s" % mode, "our-%s" % mode
    spec = _spec(cloud, tmp_path, "aliyun", mode, product, sdk_name, connect=True)
    result, labels = run_sdk(spec)
    assert result == "ok" and labels[-2:] == ["stored", "connected"], result
    extra = {"instance_id": "iot-06z00emu"} if api == "regnwl" else {}
    info, ours = _our_device(cloud, tmp_path, our_name, SECRET, product=product, api=api, **extra)
    assert ours["ok"] and ours["connected"], ours
    for name in (sdk_name, our_name):
        assert _record(cloud, log_api, name)["result"] == "ok"
        logins = [e for e in cloud.log() if e.get("api") == "mqtt-connect" and e.get("device") == name]
        assert [e["result"] for e in logins] == ["ok"]
    view = cloud.device(product, sdk_name)
    stored = read_json(spec["info"])
    if mode == "regnwl":
        assert stored["password"] == view["device_token"] and stored["clientId"].startswith(view["client_id"])
    else:
        assert stored["deviceSecret"] == view["device_secret"]

    # A later boot of the SDK with what it stored: DeviceSecret login, or connwl with the token.
    result, labels = run_sdk(dict(spec, mode="connwl" if mode == "regnwl" else "login"))
    assert result == "ok" and labels[-1] == "connected", result
    assert [e["result"] for e in cloud.log() if e.get("api") == "mqtt-connect" and e.get("device") == sdk_name] == [
        "ok", "ok"]


@pytest.mark.parametrize("mode, api, product, log_api", ALIYUN_CASES)
def test_linkkit_with_a_wrong_product_secret_is_refused_and_so_is_our_device(cloud, tmp_path, mode, api, product,
                                                                              log_api):
    sdk_name, our_name = "sdk-%s-bad" % mode, "our-%s-bad" % mode
    spec = _spec(cloud, tmp_path, "aliyun", mode, product, sdk_name, secret=WRONG_SECRET)
    if mode == "https":  # linkkit reports the HTTPS refusal itself
        result, labels = run_sdk(spec)
        assert result.startswith("refused"), result
        sdk_record = _record(cloud, log_api, sdk_name)
    else:  # a refused CONNACK, which linkkit only retries
        sdk_record, labels = run_sdk_until(cloud, spec, lambda e: e.get("api") == log_api
                                           and e.get("device") == sdk_name)
    assert "stored" not in labels
    extra = {"instance_id": "iot-06z00emu"} if api == "regnwl" else {}
    _, ours = _our_device(cloud, tmp_path, our_name, WRONG_SECRET, product=product, api=api, **extra)
    assert not ours["ok"] and ours["error"] == "RejectedError", ours
    our_record = _record(cloud, log_api, our_name)
    assert sdk_record["result"] == our_record["result"]  # HTTPS: the cloud's code; MQTT: the refusal
    assert (sdk_record.get("reason") or sdk_record["result"]) == (our_record.get("reason") or our_record["result"]) \
        == "bad-signature"
    for name in (sdk_name, our_name):
        view = cloud.device(product, name)
        assert view is None or not (view.get("device_secret") or view.get("device_token")), view


def test_linkkit_over_mqtt_3_1_registers_and_logs_in(cloud, tmp_path):
    # linkkit's own protocol option: Alibaba documents MQTT 3.1 and 3.1.1. The registration
    # result reaches it on /ext/register from mosquitto, as from amqtt over 3.1.1.
    name = "sdk-mqtt31"
    cloud.add_device(ALIYUN, name)
    spec = _spec(cloud, tmp_path, "aliyun", "mqtt", ALIYUN, name, connect=True, protocol="MQTTv31")
    result, labels = run_sdk(spec)
    assert result == "ok" and labels[-2:] == ["stored", "connected"], result
    assert read_json(spec["info"])["deviceSecret"] == cloud.device(ALIYUN, name)["device_secret"]
    register = _record(cloud, "aliyun-mqtt-register", name)
    logins = [e for e in cloud.log() if e.get("api") == "mqtt-connect" and e.get("device") == name]
    assert (register["result"], register["protocol"]) == ("ok", "MQIsdp/3")
    assert [(e["result"], e["protocol"]) for e in logins] == [("ok", "MQIsdp/3")]


def test_linkkit_login_with_a_wrong_device_secret_is_refused(cloud, tmp_path):
    name = "sdk-login-bad"
    cloud.add_device(ALIYUN, name)
    spec = _spec(cloud, tmp_path, "aliyun", "https", ALIYUN, name)
    assert run_sdk(spec)[0] == "ok"  # registered: a DeviceSecret is issued
    with open(spec["info"], "w") as f:
        json.dump({"productKey": ALIYUN, "deviceName": name, "deviceSecret": "0" * 32}, f)
    record, labels = run_sdk_until(cloud, dict(spec, mode="login"), lambda e: e.get("api") == "mqtt-connect"
                                   and e.get("device") == name and e.get("result") != "ok")
    assert record["result"] == "bad-password" and record["connack"] == 4 and "connected" not in labels


# -- Azure: azure-iot-device 2.14.0 -------------------------------------------------------------

def _azure_logins(cloud, device):
    return [e["result"] for e in cloud.log() if e.get("api") == "mqtt-connect" and e.get("device") == device]


def test_azure_sdk_provisions_and_logs_in_to_the_assigned_hub_and_so_does_our_device(cloud, tmp_path):
    spec = _spec(cloud, tmp_path, "azure", "dps", AZURE_SCOPE, "sdk-dps-01", secret=AZURE_KEY, connect=True)
    result, labels = run_sdk(spec)
    assert result == "ok" and labels == ["start", "stored", "connected"], result
    assert read_json(spec["info"]) == {"hub": AZURE_HUB, "device_id": "sdk-dps-01"}
    assert [e["result"] for e in registrations(cloud, "sdk-dps-01")] == ["assigning"]
    assert _azure_logins(cloud, "sdk-dps-01") == ["ok"]
    assert cloud.device(AZURE_GROUP, "sdk-dps-01")["status"] == "activated"
    folder = tmp_path / "our-dps-01"
    folder.mkdir()
    info = write_azure_info(folder, cloud, AZURE_SCOPE, "our-dps-01", AZURE_KEY)
    ours = run_device(info, ensure={"attempts": 1}, connect={})
    assert ours["ok"] and ours["connected"], ours
    assert read_json(info)["credential"]["device_key"] == cloud.device(AZURE_GROUP, "our-dps-01")["device_key"]
    assert _azure_logins(cloud, "our-dps-01") == ["ok"]


def test_azure_sdk_with_a_wrong_group_key_is_refused_and_so_is_our_device(cloud, tmp_path):
    spec = _spec(cloud, tmp_path, "azure", "dps", AZURE_SCOPE, "sdk-dps-bad", secret=AZURE_WRONG_KEY)
    result, labels = run_sdk(spec)
    assert result.startswith("refused") and "401" in result and "stored" not in labels, result
    [registration] = registrations(cloud, "sdk-dps-bad")
    assert registration["result"] == "unauthorized" and registration["status"] == 401
    folder = tmp_path / "our-dps-bad"
    folder.mkdir()
    info = write_azure_info(folder, cloud, AZURE_SCOPE, "our-dps-bad", AZURE_WRONG_KEY)
    ours = run_device(info, ensure={"attempts": 1}, connect={})
    assert ours["error"] == "RejectedError" and ours["code"] == 401000, ours
    assert read_json(info)["credential"] == {}
    assert cloud.device(AZURE_GROUP, "our-dps-bad") is None and cloud.device(AZURE_GROUP, "sdk-dps-bad") is None


# -- AWS: awsiotsdk 1.31.0 (awscrt 0.36.1) ------------------------------------------------------

def _aws_sdk(cloud, tmp_path, serial, claim=None, **extra):
    claim = claim or cloud.aws_claim
    return _spec(cloud, tmp_path, "aws", "provision", AWS_TEMPLATE, serial, secret="", template=AWS_TEMPLATE,
                 parameters={"SerialNumber": serial, "Color": "red"}, claim_cert=str(claim.cert_pem),
                 claim_key=str(claim.key_pem), aws_mqtts_port=cloud.aws_mqtts_port, **extra)


def _our_aws_device(cloud, tmp_path, serial, claim=None):
    # A fresh board of the same batch: the claim's files copied beside its info (the board erases
    # them), the same template and Color; SerialNumber is its device name.
    claim = claim or cloud.aws_claim
    folder = tmp_path / ("our-" + serial)
    folder.mkdir()
    shutil.copy(claim.cert_pem, folder / "claim.crt")
    shutil.copy(claim.key_pem, folder / "claim.key")
    return write_device_info(folder / "device_info.json", {
        "dynreg": 1, "cloud": "aws", "template": AWS_TEMPLATE, "device_name": serial,
        "mqtt_url": "mqtts://localhost:%d" % cloud.aws_mqtts_port, "ca": cloud.ca_der_path,
        "claim_cert": "claim.crt", "claim_key": "claim.key", "parameters": {"Color": "red"}, "credential": {}})


def _aws_story(cloud, *names):
    # What the emulator saw of one board, by its claim connection's client id and its thing name:
    # (api, kind of login or None, result, status) in order.
    return [(e["api"], e.get("kind"), e["result"], e.get("status")) for e in cloud.log()
            if e.get("api", "").startswith("aws-") and e.get("device") in names]


def _device_certificates(cloud):
    return {e["certificate_id"]: e for e in cloud.aws_certificates() if e["kind"] == "device"}


def _certificate_id(cert):
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


PROVISIONED = [("aws-login", "claim", "ok", None), ("aws-create-keys", None, "ok", None),
               ("aws-register-thing", None, "ok", None), ("aws-login", "thing", "ok", None)]


def test_awsiotsdk_provisions_by_claim_and_logs_in_as_its_thing_and_so_does_our_device(cloud, tmp_path):
    minted_before = set(_device_certificates(cloud))
    serial = "SN-OK-SDK01"
    spec = _aws_sdk(cloud, tmp_path, serial, connect=True)
    result, labels = run_sdk(spec)
    assert result == "ok" and labels == ["start", "stored", "connected"], result
    thing = AWS_PREFIX + serial
    stored = read_json(spec["info"])
    assert (stored["thingName"], stored["deviceConfiguration"]) == (thing, AWS_CONFIG)
    folder = os.path.dirname(spec["info"])
    with open(os.path.join(folder, "certificate.pem.crt"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(folder, "private.pem.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert stored["certificateId"] == _certificate_id(cert)

    ours = _our_aws_device(cloud, tmp_path, "SN-OK-OUR01")
    result_ours = run_device(ours, ensure={"attempts": 1}, connect={})
    assert result_ours["ok"] and result_ours["connected"], result_ours
    credential = read_json(ours)["credential"]
    assert credential["thing_name"] == AWS_PREFIX + "SN-OK-OUR01"
    with open(os.path.join(os.path.dirname(ours), credential["cert_file"]), "rb") as f:
        our_cert = x509.load_der_x509_certificate(f.read())

    # The same outcome for both: one certificate each, ACTIVE and attached to its thing, which
    # has the parameters sent; the same requests and logins, each accepted.
    minted = {cid: row for cid, row in _device_certificates(cloud).items() if cid not in minted_before}
    assert set(minted) == {_certificate_id(cert), _certificate_id(our_cert)}
    for serial, certificate in (("SN-OK-SDK01", cert), ("SN-OK-OUR01", our_cert)):
        thing = AWS_PREFIX + serial
        row = minted[_certificate_id(certificate)]
        assert (row["status"], row["thing"], row["logins"]) == ("ACTIVE", thing, 1), row
        view = cloud.aws_thing(thing)
        assert view["parameters"] == {"SerialNumber": serial, "Color": "red"}
        assert view["certificates"] == [_certificate_id(certificate)]
        assert _aws_story(cloud, serial, thing) == PROVISIONED


def test_awsiotsdk_with_a_disabled_claim_is_refused_and_so_is_our_device(cloud, tmp_path):
    claim = cloud.add_aws_claim(AWS_TEMPLATE, name="disabled")
    cloud.disable_aws_claim(claim.certificate_id)
    minted_before = set(_device_certificates(cloud))
    spec = _aws_sdk(cloud, tmp_path, "SN-OK-SDK-OFF", claim=claim, connect=True)
    result, labels = run_sdk(spec)
    # AWS drops a disabled certificate's connection without a CONNACK: awscrt's "unexpected hangup".
    assert result == "refused CONNECT: AWS_ERROR_MQTT_UNEXPECTED_HANGUP" and "stored" not in labels, result
    assert os.listdir(os.path.dirname(spec["info"])) == []
    ours = _our_aws_device(cloud, tmp_path, "SN-OK-OUR-OFF", claim=claim)
    before = folder_snapshot(ours)
    result_ours = run_device(ours, ensure={"attempts": 1}, connect={})
    assert not result_ours["ok"] and result_ours["error"] == "NetworkError", result_ours
    assert "no CONNACK" in result_ours["message"], result_ours
    assert folder_snapshot(ours) == before
    for serial in ("SN-OK-SDK-OFF", "SN-OK-OUR-OFF"):
        assert _aws_story(cloud, serial, AWS_PREFIX + serial) == [("aws-login", "claim", "claim-disabled", None)]
    assert set(_device_certificates(cloud)) == minted_before


def test_awsiotsdk_with_a_serial_the_template_refuses_gets_403_and_so_does_our_device(cloud, tmp_path):
    minted_before = set(_device_certificates(cloud))
    spec = _aws_sdk(cloud, tmp_path, "SN-NO-SDK01", connect=True)
    result, labels = run_sdk(spec)
    assert result == "refused 403 AccessDenied" and "stored" not in labels, result
    assert os.listdir(os.path.dirname(spec["info"])) == []
    ours = _our_aws_device(cloud, tmp_path, "SN-NO-OUR01")
    before = folder_snapshot(ours)
    result_ours = run_device(ours, ensure={"attempts": 1}, connect={})
    assert not result_ours["ok"] and result_ours["error"] == "RejectedError", result_ours
    assert result_ours["code"] == 403 and "AccessDenied" in result_ours["message"], result_ours
    assert folder_snapshot(ours) == before
    refused = [("aws-login", "claim", "ok", None), ("aws-create-keys", None, "ok", None),
               ("aws-register-thing", None, "AccessDenied", 403)]
    for serial in ("SN-NO-SDK01", "SN-NO-OUR01"):
        assert _aws_story(cloud, serial, AWS_PREFIX + serial) == refused
        assert cloud.aws_thing(AWS_PREFIX + serial) is None
    # What a refusal costs either of them: the certificate minted for it, left PENDING_ACTIVATION.
    minted = [row for cid, row in _device_certificates(cloud).items() if cid not in minted_before]
    assert [row["status"] for row in minted] == ["PENDING_ACTIVATION"] * 2

# End to end on the MicroPython unix port: a device (host_tests/device/run_device.py) runs
# dynreg.ensure / dynreg.connect against the local cloud emulator, which the tests start
# themselves (real HTTPS with a test CA, a real amqtt broker). Outcomes are checked on the
# device's info file and on the emulator's request log.
import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from cloud_emulator.testing import running_emulator
from e2e import SECRET, other_ca, write_info, run_device, read_json, registrations, replace_credential

KEY_PRODUCT = "KEYAUTO001"
CERT_PRODUCT = "CERTAUTO01"
PRECREATE_PRODUCT = "PRECREATE1"
NO_DYNREG_PRODUCT = "NODYNREG01"
FAST = {"attempts": 3, "backoff_ms": 50, "timeout_ms": 3000}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, umqtt):
    # One emulator per umqtt.simple version (conftest.py): every test here runs on each.
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(KEY_PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=1000)
        cloud.add_product(CERT_PRODUCT, SECRET, auth="cert", dynreg=True, mode="autocreate", limit=1000)
        cloud.add_product(PRECREATE_PRODUCT, SECRET, auth="key", dynreg=True, mode="precreate", limit=1000)
        cloud.add_device(PRECREATE_PRODUCT, "known01")
        cloud.add_product(NO_DYNREG_PRODUCT, SECRET, auth="key", dynreg=False, mode="autocreate", limit=1000)
        yield cloud


def _device(tmp_path, cloud, name, product=KEY_PRODUCT, **fields):
    folder = tmp_path / name
    folder.mkdir()
    return write_info(folder, cloud, product, device_name=name, **fields)


def _entries(cloud, api, device):
    return [e for e in cloud.log() if e.get("api") == api and e.get("device") == device]


# -- happy paths ------------------------------------------------------------------------------

@pytest.mark.parametrize("api,algorithm,scheme,log_api", [
    ("current", "hmacsha256", "https", "tencent-v2"),
    ("current", "hmacsha1", "https", "tencent-v2"),
    ("legacy", "hmacsha256", "https", "tencent-legacy"),
    ("current", "hmacsha256", "http", "tencent-v2"),
])
def test_key_device_registers_stores_connects_and_publishes(cloud, tmp_path, api, algorithm, scheme, log_api):
    name = "k-%s-%s-%s" % (api, algorithm, scheme)
    info = _device(tmp_path, cloud, name, api=api, algorithm=algorithm, scheme=scheme)
    topic = "%s/%s/data" % (KEY_PRODUCT, name)
    result = run_device(info, ensure={}, connect={}, publish=topic)
    assert result["ok"] and result["connected"], result
    # The console says which; plain HTTP only with the info's opt-in (write_info sets it for "http").
    assert "with tencent, %s API, %s://" % (api, scheme) in result["output"], result["output"]
    assert "(attempt 1)" in result["output"], result["output"]
    stored = read_json(info)["credential"]["psk"]
    issued = cloud.device(KEY_PRODUCT, name)
    assert stored == issued["psk"] and issued["status"] == "activated"
    [registration] = registrations(cloud, name)
    assert registration["api"] == log_api and registration["result"] == "ok"
    assert registration["transport"] == scheme
    if api == "current":
        assert registration["algorithm"] == algorithm
    assert [e["result"] for e in _entries(cloud, "mqtt-connect", name)] == ["ok"]
    cloud.wait_for_log(lambda e: e.get("api") == "mqtt-publish" and e.get("device") == name)
    assert [e["topic"] for e in _entries(cloud, "mqtt-publish", name)] == [topic]


def test_key_device_over_mqtt_tls(cloud, tmp_path):
    info = _device(tmp_path, cloud, "k-mqtts", mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port)
    result = run_device(info, ensure={}, connect={})
    assert result["ok"] and result["connected"], result
    assert [e["transport"] for e in _entries(cloud, "mqtt-connect", "k-mqtts")] == ["mqtts"]


@pytest.mark.parametrize("api", ["current", "legacy"])
def test_cert_device_registers_and_connects_with_its_certificate(cloud, tmp_path, api):
    name = "c-" + api
    info = _device(tmp_path, cloud, name, product=CERT_PRODUCT, auth="cert", api=api,
                   mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port)
    result = run_device(info, ensure={}, connect={}, publish="%s/%s/data" % (CERT_PRODUCT, name))
    assert result["ok"] and result["connected"], result
    doc = read_json(info)
    assert doc["credential"] == {"cert_file": name + "_cert.crt", "key_file": name + "_private.key"}
    folder = os.path.dirname(info)
    with open(os.path.join(folder, doc["credential"]["cert_file"]), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CERT_PRODUCT + name
    with open(os.path.join(folder, doc["credential"]["key_file"]), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert cloud.device(CERT_PRODUCT, name)["status"] == "activated"


def test_precreated_device_registers(cloud, tmp_path):
    info = _device(tmp_path, cloud, "known01", product=PRECREATE_PRODUCT)
    result = run_device(info, ensure={})
    assert result["ok"] and result["credential"] == ["psk"], result
    assert cloud.device(PRECREATE_PRODUCT, "known01")["status"] == "registered"


def test_second_boot_never_registers(cloud, tmp_path):
    info = _device(tmp_path, cloud, "twice")
    first = run_device(info, ensure={}, connect={})
    stored = read_json(info)
    second = run_device(info, ensure={}, connect={})
    assert first["ok"] and second["ok"] and second["connected"]
    assert "no registration" in second["output"]
    assert read_json(info) == stored
    assert len(registrations(cloud, "twice")) == 1
    assert [e["result"] for e in _entries(cloud, "mqtt-connect", "twice")] == ["ok", "ok"]


def test_registration_before_login_issues_new_secret_and_old_one_stops_working(cloud, tmp_path):
    first = _device(tmp_path, cloud, "relogin")
    assert run_device(first, ensure={})["ok"]
    old_psk = read_json(first)["credential"]["psk"]
    (tmp_path / "again").mkdir()
    second = write_info(tmp_path / "again", cloud, KEY_PRODUCT, device_name="relogin")
    assert run_device(second, ensure={})["ok"]
    new_psk = read_json(second)["credential"]["psk"]
    assert new_psk != old_psk
    # The first board's psk was replaced: CONNACK 4 (bad user name or password). Its psk never
    # logged in, so it registers once more (a third psk) and logs in with that.
    recovered = run_device(first, ensure={}, connect={})
    assert recovered["connected"] and "provisioning again" in recovered["output"], recovered
    assert read_json(first)["credential"]["psk"] == cloud.device(KEY_PRODUCT, "relogin")["psk"]
    # Now the second board's psk is the stale one, and the device has logged in: the cloud
    # registers it no more, and that refusal is the board's answer (one try, nothing stored).
    before = open(second).read()
    refused = run_device(second, ensure={}, connect={})
    assert refused["error"] == "RejectedError" and refused["code"] == "FailedOperation.DeviceAlreadyActivated", refused
    assert open(second).read() == before
    assert [e["result"] for e in _entries(cloud, "mqtt-connect", "relogin")] == ["bad-password", "ok", "bad-password"]
    assert [e["result"] for e in registrations(cloud, "relogin")] == [
        "ok", "ok", "ok", "FailedOperation.DeviceAlreadyActivated"]


# -- rejections: RejectedError with the cloud's code, nothing stored, no retry ------------------

def _rejected(cloud, info, expected_code, **spec):
    before = open(info).read()
    result = run_device(info, ensure=dict(FAST), **spec)
    assert not result["ok"] and result["error"] == "RejectedError", result
    assert result["code"] == expected_code
    assert open(info).read() == before
    assert os.listdir(os.path.dirname(info)) == ["device_info.json"]
    return result


def test_bad_signature_current_api(cloud, tmp_path):
    # Final after exactly one request: the route saw one (a fault's answer would be logged too).
    info = _device(tmp_path, cloud, "badsig", secret="WrongSecret0123456789")
    mark = len(cloud.log())
    result = _rejected(cloud, info, "AuthFailure.SignatureFailure")
    assert [e["result"] for e in _v2_requests(cloud, mark)] == ["AuthFailure.SignatureFailure"]
    assert [e["result"] for e in registrations(cloud, "badsig")] == ["AuthFailure.SignatureFailure"]
    assert "retrying" not in result["output"] and "wrong ProductSecret" in result["message"]


def test_bad_signature_legacy_api(cloud, tmp_path):
    info = _device(tmp_path, cloud, "badsig-legacy", secret="WrongSecret0123456789", api="legacy")
    result = _rejected(cloud, info, 1010)
    assert "Check signature failed" in result["message"]
    assert len(registrations(cloud, "badsig-legacy")) == 1


def test_unknown_product(cloud, tmp_path):
    _rejected(cloud, _device(tmp_path, cloud, "nobody", product="UNKNOWN001"), "ResourceNotFound.ProductNotExist")


def test_dynamic_registration_disabled(cloud, tmp_path):
    _rejected(cloud, _device(tmp_path, cloud, "dis01", product=NO_DYNREG_PRODUCT),
              "UnauthorizedOperation.DynamicRegisterDisabled")


def test_device_not_precreated(cloud, tmp_path):
    _rejected(cloud, _device(tmp_path, cloud, "stranger", product=PRECREATE_PRODUCT),
              "ResourceNotFound.DeviceNotExist")


def test_stale_timestamp(cloud, tmp_path):
    _rejected(cloud, _device(tmp_path, cloud, "stale"), "AuthFailure.SignatureExpire", clock_offset=-1000)


def test_clock_within_window_is_accepted(cloud, tmp_path):
    assert run_device(_device(tmp_path, cloud, "skewed"), ensure={}, clock_offset=-200)["ok"]


def test_replayed_nonce(cloud, tmp_path):
    assert run_device(_device(tmp_path, cloud, "nonce-a"), ensure={}, nonce=424242)["ok"]
    _rejected(cloud, _device(tmp_path, cloud, "nonce-b"), "AuthFailure.NonceReplay", nonce=424242)


def test_re_registration_after_login_is_refused(cloud, tmp_path):
    info = _device(tmp_path, cloud, "active01")
    assert run_device(info, ensure={}, connect={})["connected"]
    (tmp_path / "wiped").mkdir()
    wiped = write_info(tmp_path / "wiped", cloud, KEY_PRODUCT, device_name="active01")  # secret lost
    _rejected(cloud, wiped, "FailedOperation.DeviceAlreadyActivated")
    assert run_device(info, ensure={}, connect={})["connected"]  # the stored secret still works


# -- faults: bounded retries, then NetworkError; TLS refused; nothing stored --------------------

def _failed(info, error, **ensure):
    before = open(info).read()
    result = run_device(info, ensure=dict(FAST, **ensure))
    assert not result["ok"] and result["error"] == error, result
    assert open(info).read() == before
    assert os.listdir(os.path.dirname(info)) == ["device_info.json"]
    return result


def _v2_requests(cloud, mark):
    # Every request the current API's route took since `mark`, a fault's answer among them.
    return [e for e in cloud.log()[mark:] if e.get("api") == "tencent-v2"]


@pytest.mark.parametrize("answer, named", [("cloud", "server answered ServiceUnavailable"),
                                           ("http", "server answered HTTP 503")])
def test_server_errors_are_retried_then_network_error(cloud, tmp_path, answer, named):
    # "cloud": as Tencent reports it, HTTP 200 and ServiceUnavailable; "http": an HTTP 503.
    info = _device(tmp_path, cloud, "five-xx-" + answer)
    cloud.fault("http_status", count=3, status=503, answer=answer)
    result = _failed(info, "NetworkError")
    assert "after 3 attempts" in result["message"] and named in result["message"], result["message"]
    assert result["output"].count("retrying in") == 2
    assert registrations(cloud, "five-xx-" + answer) == []  # no request reached the registration logic


# -- errors as Tencent sends them: a code in a 200 answer, no Retry-After (PROTOCOLS.md 2.6) ------

def test_internal_error_is_retried_then_registered(cloud, tmp_path):
    info = _device(tmp_path, cloud, "internal-error")
    cloud.fault("http_status", count=2, status=500)  # HTTP 200, Response.Error.Code InternalError
    mark = len(cloud.log())
    result = run_device(info, ensure=dict(FAST))
    assert result["ok"] and result["credential"] == ["psk"], result
    requests = _v2_requests(cloud, mark)
    assert [(e["result"], e.get("answer")) for e in requests] == [("fault:http_status", "cloud")] * 2 + [("ok", None)]
    assert result["output"].count("(server answered InternalError); retrying in") == 2, result["output"]
    assert read_json(info)["credential"]["psk"] == cloud.device(KEY_PRODUCT, "internal-error")["psk"]


def test_throttled_twice_then_registered(cloud, tmp_path):
    info = _device(tmp_path, cloud, "throttled-twice")
    cloud.fault("http_status", count=2, status=429)  # HTTP 200, RequestLimitExceeded, no Retry-After
    mark = len(cloud.log())
    result = run_device(info, ensure=dict(FAST))
    assert result["ok"] and result["credential"] == ["psk"], result
    requests = _v2_requests(cloud, mark)
    assert [e["result"] for e in requests] == ["fault:http_status"] * 2 + ["ok"]  # 3 requests in all
    assert result["output"].count("(server answered RequestLimitExceeded); retrying in") == 2, result["output"]
    assert read_json(info)["credential"]["psk"] == cloud.device(KEY_PRODUCT, "throttled-twice")["psk"]


def test_read_timeout_is_retried_then_network_error(cloud, tmp_path):
    info = _device(tmp_path, cloud, "slow")
    cloud.fault("delay", count=2, seconds=2.5)
    result = _failed(info, "NetworkError", attempts=2, timeout_ms=1000)
    assert "after 2 attempts" in result["message"]


def test_connection_closed_without_answer_is_network_error(cloud, tmp_path):
    info = _device(tmp_path, cloud, "closed")
    cloud.fault("close", count=3)
    _failed(info, "NetworkError")


def test_wrong_ca_is_refused_without_retry(cloud, tmp_path):
    info = _device(tmp_path, cloud, "wrongca", ca=other_ca(tmp_path / "other-ca.der"))
    result = _failed(info, "TLSError")
    assert "not correctly signed" in result["message"]
    assert "retrying" not in result["output"]
    assert registrations(cloud, "wrongca") == []


def test_wrong_host_name_is_refused(tmp_path):
    # An emulator on 127.0.0.2: its certificate names localhost and 127.0.0.1 only.
    with running_emulator(tmp_path / "cloud2", host="127.0.0.2") as other:
        other.add_product(KEY_PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=10)
        (tmp_path / "dev").mkdir()
        info = write_info(tmp_path / "dev", other, KEY_PRODUCT, device_name="wronghost",
                          register_url="https://127.0.0.2:%d" % other.https_port)
        result = _failed(info, "TLSError")
        assert "retrying" not in result["output"]
        assert registrations(other, "wronghost") == []


@pytest.mark.parametrize("reached,refusal", [(True, "bad-password"), (False, "unknown-device")],
                         ids=["answer-replaced", "request-stopped"])
def test_a_foreign_psk_refused_at_its_first_login_registers_once_more(cloud, tmp_path, reached, refusal):
    # Plain HTTP's attack: the answer of another device of the product, replayed to this one,
    # decrypts as well as its own. The board stores that foreign psk; its login is refused
    # (CONNACK 4 when the cloud saw its request and issued it a psk, 5 when the request never
    # got there), and since the credential never logged in it registers once more, logs in,
    # and the info records the login (and drops the ProductSecret) in one write.
    name = "victim-" + refusal
    other = _device(tmp_path, cloud, name + "-peer")
    assert run_device(other, ensure={})["ok"]
    foreign = read_json(other)["credential"]["psk"]
    info = _device(tmp_path, cloud, name, scheme="http")
    if reached:
        assert run_device(info, ensure={})["ok"]  # the cloud issued this device a psk ...
    replace_credential(info, "psk", foreign)  # ... and the man in the middle handed it the peer's
    assert "logged_in" not in read_json(info)
    result = run_device(info, ensure={}, connect={}, publish="%s/%s/data" % (KEY_PRODUCT, name))
    assert result["ok"] and result["connected"] and result["published"], result
    assert "no registration" in result["output"] and "provisioning again" in result["output"], result["output"]
    doc = read_json(info)
    issued = cloud.device(KEY_PRODUCT, name)
    assert doc["credential"] == {"psk": issued["psk"]} and issued["psk"] != foreign
    assert doc["logged_in"] is True and "product_secret" not in doc and issued["status"] == "activated"
    assert [e["result"] for e in registrations(cloud, name)] == ["ok"] * (2 if reached else 1)  # one more, no loop
    assert [e["result"] for e in _entries(cloud, "mqtt-connect", name)] == [refusal, "ok"]
    assert run_device(other, ensure={}, connect={})["connected"]  # the peer's own psk untouched


def test_a_credential_that_logged_in_and_is_then_refused_never_registers_again(cloud, tmp_path):
    # keep_product_secret: the ProductSecret stays, so only the login record stands between a
    # refused login and a registration the cloud would refuse anyway.
    info = _device(tmp_path, cloud, "wrongpsk", keep_product_secret=True)
    first = run_device(info, ensure={}, connect={})
    assert first["connected"], first
    doc = read_json(info)
    assert doc["logged_in"] is True and doc["product_secret"] == SECRET
    before = replace_credential(info, "psk", "AAAAAAAAAAAAAAAAAAAAAA==")
    result = run_device(info, ensure={}, connect={})
    assert not result["ok"] and result["error"] == "RejectedError" and result["code"] == 4, result
    assert "provisioning again" not in result["output"]
    assert [e["result"] for e in _entries(cloud, "mqtt-connect", "wrongpsk")] == ["ok", "bad-password"]  # one CONNECT
    assert len(registrations(cloud, "wrongpsk")) == 1
    assert open(info).read() == before  # nothing rewritten


def test_plain_http_without_the_opt_in_is_refused_before_any_request(cloud, tmp_path):
    info = _device(tmp_path, cloud, "no-opt-in", scheme="http")
    doc = read_json(info)
    del doc["plain_http"]
    with open(info, "w") as f:
        json.dump(doc, f)
    result = _failed(info, "ConfigError")
    assert "plain_http: true" in result["message"], result
    assert [e for e in cloud.log() if e.get("device") == "no-opt-in"] == []


def test_no_secret_in_device_output(cloud, tmp_path):
    info = _device(tmp_path, cloud, "quiet")
    result = run_device(info, ensure={}, connect={})  # the default log: every status line printed
    psk = read_json(info)["credential"]["psk"]
    assert result["ok"] and result["connected"], result
    assert "registering %s/quiet with tencent" % KEY_PRODUCT in result["output"]  # the lines were there
    assert "credential stored in" in result["output"]
    for secret in (psk, SECRET):
        assert secret not in result["output"]


def test_an_info_in_the_tencent_sdk_format_registers_with_the_endpoints_and_ca_it_carries(cloud, tmp_path):
    # The C SDK's file, read and written as is, with dynreg's endpoint and CA keys beside the
    # SDK's own (the SDK ignores keys it does not know).
    folder = tmp_path / "sdk-format"
    folder.mkdir()
    path = folder / "device_info.json"
    path.write_text(json.dumps({
        "auth_mode": "KEY", "productId": KEY_PRODUCT, "productSecret": SECRET, "deviceName": "sdkfmt01",
        "key_deviceinfo": {"deviceSecret": "YOUR_IOT_PSK"}, "region": "china",
        "register_url": "https://localhost:%d/device/register" % cloud.https_port,
        "mqtt_url": "mqtts://localhost:%d" % cloud.mqtts_port, "ca": cloud.ca_der_path}))
    result = run_device(str(path), ensure=FAST, connect={})
    assert result["ok"] and result["connected"], result
    doc = read_json(str(path))
    assert doc["key_deviceinfo"] == {"deviceSecret": cloud.device(KEY_PRODUCT, "sdkfmt01")["psk"]}
    assert doc["auth_mode"] == "KEY" and doc["region"] == "china" and doc["ca"] == cloud.ca_der_path
    assert [e["result"] for e in registrations(cloud, "sdkfmt01")] == ["ok"]

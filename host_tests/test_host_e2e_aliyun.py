# End to end for Alibaba on the MicroPython unix port against the local cloud emulator: HTTPS
# and MQTT registration, the pre-registration-free mode, every login, gateway sub-devices,
# every listed error with "nothing stored", and "never registers twice" from the request log.
import json
import os

import pytest

from cloud_emulator.testing import running_emulator
from e2e import SECRET, write_aliyun_info, run_device, read_json, registrations, replace_credential

PK = "a1DynRegPk1"  # pre-registered devices, HTTPS and MQTT registration
FREE_PK = "a1FreeRegPk"  # pre-registration-free (regnwl)
OFF_PK = "a1DisabledX"  # dynamic registration off
GW_PK = "a1GatewayPk"
SUB_PK = "a1SubDevice"
FAST = {"attempts": 3, "backoff_ms": 50, "timeout_ms": 3000}
SIXTY = 60  # sub-devices of one gateway: their subdevices.json is over 8 KiB


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, umqtt):
    # One emulator per umqtt.simple version (conftest.py): every test here runs on each.
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(PK, SECRET, cloud="aliyun")
        cloud.add_product(FREE_PK, SECRET, cloud="aliyun", regnwl=True)
        cloud.add_product(OFF_PK, SECRET, cloud="aliyun", dynreg=False)
        cloud.add_product(GW_PK, SECRET, cloud="aliyun", gateway=True)
        cloud.add_product(SUB_PK, SECRET, cloud="aliyun", subdevice=True)
        for name in ["https-md5", "https-sha1", "https-sha256", "mqtt-reg", "twice-01",
                     "active-01", "badsign-1", "badsign-m", "relogin1", "wrongsecret", "keptsecret", "plainmqtt",
                     "off-0001"]:
            cloud.add_device(OFF_PK if name == "off-0001" else PK, name)
        for name in ["gateway-01", "gateway-02", "gateway-03", "gateway-04", "gateway-05"]:
            cloud.add_device(GW_PK, name)
        for name in ["sensor-0001", "sensor-0002", "sensor-0003", "sensor-0004", "sensor-0005", "sensor-0006"]:
            cloud.add_device(SUB_PK, name)
        for n in range(SIXTY):
            cloud.add_device(SUB_PK, "line3-bay-sensor-%04d" % n)
        yield cloud


def _device(tmp_path, cloud, name, product=PK, **fields):
    folder = tmp_path / name
    folder.mkdir()
    return write_aliyun_info(folder, cloud, product, name, **fields)


def _log(cloud, api=None, device=None):
    return [e for e in cloud.log() if (api is None or e.get("api") == api) and (device is None or e.get("device") == device)]


def _untouched(info, before):
    assert open(info).read() == before
    assert os.listdir(os.path.dirname(info)) == ["device_info.json"]


# -- registration paths -------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["hmacmd5", "hmacsha1", "hmacsha256"])
def test_https_registration_then_device_secret_login(cloud, tmp_path, method):
    name = "https-" + method[4:]
    info = _device(tmp_path, cloud, name, algorithm=method)
    topic = "/%s/%s/user/update" % (PK, name)
    result = run_device(info, ensure={}, connect={}, publish=topic)
    assert result["ok"] and result["connected"], result
    stored = read_json(info)["credential"]
    view = cloud.device(PK, name)
    assert stored == {"device_secret": view["device_secret"]} and view["status"] == "activated"
    [registration] = registrations(cloud, name)
    assert registration["api"] == "aliyun-https-register" and registration["result"] == "ok"
    assert [e["result"] for e in _log(cloud, "mqtt-connect", name)] == ["ok"]
    cloud.wait_for_log(lambda e: e.get("api") == "mqtt-publish" and e.get("device") == name)
    assert [e["topic"] for e in _log(cloud, "mqtt-publish", name)] == [topic]


def test_mqtt_registration_then_login(cloud, tmp_path):
    info = _device(tmp_path, cloud, "mqtt-reg", api="mqtt")
    result = run_device(info, ensure={}, connect={})
    assert result["ok"] and result["connected"], result
    assert read_json(info)["credential"] == {"device_secret": cloud.device(PK, "mqtt-reg")["device_secret"]}
    assert [e["api"] for e in registrations(cloud, "mqtt-reg")] == ["aliyun-mqtt-register"]
    assert [e["result"] for e in _log(cloud, "mqtt-connect", "mqtt-reg")] == ["ok"]  # then one login


def test_registration_free_mode_stores_client_id_and_token_then_connwl_login(cloud, tmp_path):
    info = _device(tmp_path, cloud, "newdev-01", product=FREE_PK, api="regnwl", instance_id="iot-06z00emu")
    result = run_device(info, ensure={}, connect={}, publish="/%s/newdev-01/user/update" % FREE_PK)
    assert result["ok"] and result["connected"], result
    stored = read_json(info)["credential"]
    view = cloud.device(FREE_PK, "newdev-01")
    assert stored == {"client_id": view["client_id"], "device_token": view["device_token"]}
    assert [e["api"] for e in registrations(cloud, "newdev-01")] == ["aliyun-mqtt-regnwl"]
    again = run_device(info, ensure={}, connect={})
    assert again["connected"] and "no registration" in again["output"]
    assert len(registrations(cloud, "newdev-01")) == 1


def test_second_boot_never_registers(cloud, tmp_path):
    info = _device(tmp_path, cloud, "twice-01")
    assert run_device(info, ensure={}, connect={})["connected"]
    stored = read_json(info)
    second = run_device(info, ensure={}, connect={})
    assert second["connected"] and read_json(info) == stored
    assert len(registrations(cloud, "twice-01")) == 1
    assert [e["result"] for e in _log(cloud, "mqtt-connect", "twice-01")] == ["ok", "ok"]


def test_new_secret_before_login_replaces_the_old_one(cloud, tmp_path):
    first = _device(tmp_path, cloud, "relogin1")
    assert run_device(first, ensure={})["ok"]
    (tmp_path / "again").mkdir()
    second = write_aliyun_info(tmp_path / "again", cloud, PK, "relogin1")
    assert run_device(second, ensure={})["ok"]
    assert read_json(first)["credential"] != read_json(second)["credential"]
    # The first board's secret was replaced (CONNACK 4) and never logged in: it registers once
    # more and logs in. Then the second board's is the stale one, and the device is active:
    # its registration is refused (6289), and that is its answer.
    recovered = run_device(first, ensure={}, connect={})
    assert recovered["connected"] and "provisioning again" in recovered["output"], recovered
    before = open(second).read()
    refused = run_device(second, ensure={}, connect={})
    assert refused["error"] == "RejectedError" and refused["code"] == 6289, refused
    assert open(second).read() == before
    assert [e["result"] for e in _log(cloud, "mqtt-connect", "relogin1")] == ["bad-password", "ok", "bad-password"]
    assert [e["result"] for e in registrations(cloud, "relogin1")] == ["ok", "ok", "ok", "6289"]


# -- errors: RejectedError with the cloud's code, nothing stored, no retry loop -------------------

def _rejected(info, code, spec_ensure=None):
    before = open(info).read()
    result = run_device(info, ensure=dict(FAST, **(spec_ensure or {})))
    assert not result["ok"] and result["error"] == "RejectedError", result
    assert result["code"] == code, result
    _untouched(info, before)
    assert "retrying" not in result["output"]
    return result


def test_already_active_6289_and_the_stored_secret_still_works(cloud, tmp_path):
    info = _device(tmp_path, cloud, "active-01")
    assert run_device(info, ensure={}, connect={})["connected"]
    (tmp_path / "lost").mkdir()
    lost = write_aliyun_info(tmp_path / "lost", cloud, PK, "active-01")  # a board that lost its secret
    result = _rejected(lost, 6289)
    assert "already active" in result["message"]
    assert run_device(info, ensure={}, connect={})["connected"]


def test_bad_sign_over_https(cloud, tmp_path):
    info = _device(tmp_path, cloud, "badsign-1", secret="WrongProductSecret01")
    _rejected(info, 401)
    assert [e["result"] for e in registrations(cloud, "badsign-1")] == ["401"]  # one request, refused


def test_wrong_product_secret_over_mqtt_is_one_connack_refusal(cloud, tmp_path):
    info = _device(tmp_path, cloud, "badsign-m", api="mqtt", secret="WrongProductSecret01")
    result = _rejected(info, 4)
    assert len(registrations(cloud, "badsign-m")) == 1  # refused once, never retried in a loop


def test_unknown_product(cloud, tmp_path):
    _rejected(_device(tmp_path, cloud, "nobody-1", product="a1NoSuchPrd"), 6250)


def test_device_not_pre_registered(cloud, tmp_path):
    _rejected(_device(tmp_path, cloud, "stranger1"), 6100)


def test_dynamic_registration_disabled(cloud, tmp_path):
    _rejected(_device(tmp_path, cloud, "off-0001", product=OFF_PK), 403)


def test_mqtt_registration_refuses_a_plain_endpoint_before_connecting(cloud, tmp_path):
    info = _device(tmp_path, cloud, "plainmqtt", api="mqtt", mqtt_url="mqtt://localhost:%d" % cloud.mqtt_port)
    before = open(info).read()
    result = run_device(info, ensure=dict(FAST))
    assert result["error"] == "ConfigError" and "TLS" in result["message"], result
    _untouched(info, before)
    assert registrations(cloud, "plainmqtt") == []


def test_a_wrong_device_secret_that_never_logged_in_registers_once_more(cloud, tmp_path):
    # As after an answer that was not this device's: refused (CONNACK 4), one more registration
    # (the cloud allows it until the first login), one more login, and the info records it.
    info = _device(tmp_path, cloud, "wrongsecret")
    assert run_device(info, ensure={})["ok"]
    replace_credential(info, "device_secret", "0" * 32)
    result = run_device(info, ensure={}, connect={})
    assert result["ok"] and result["connected"] and "provisioning again" in result["output"], result
    doc = read_json(info)
    assert doc["credential"] == {"device_secret": cloud.device(PK, "wrongsecret")["device_secret"]}
    assert doc["logged_in"] is True and "product_secret" not in doc
    assert [e["result"] for e in _log(cloud, "mqtt-connect", "wrongsecret")] == ["bad-password", "ok"]
    assert [e["result"] for e in registrations(cloud, "wrongsecret")] == ["ok", "ok"]


def test_a_device_secret_that_logged_in_and_is_then_refused_never_registers_again(cloud, tmp_path):
    info = _device(tmp_path, cloud, "keptsecret", keep_product_secret=True)
    assert run_device(info, ensure={}, connect={})["connected"]
    assert read_json(info)["logged_in"] is True and read_json(info)["product_secret"] == SECRET
    before = replace_credential(info, "device_secret", "0" * 32)
    result = run_device(info, ensure={}, connect={})
    assert result["error"] == "RejectedError" and result["code"] == 4, result
    assert [e["result"] for e in _log(cloud, "mqtt-connect", "keptsecret")] == ["ok", "bad-password"]
    assert len(registrations(cloud, "keptsecret")) == 1
    assert open(info).read() == before


def test_a_device_token_that_never_logged_in_registers_once_more(cloud, tmp_path):
    info = _device(tmp_path, cloud, "newdev-02", product=FREE_PK, api="regnwl", instance_id="iot-06z00emu")
    assert run_device(info, ensure={})["ok"]
    doc = read_json(info)
    doc["credential"]["device_token"] = "not-the-token"
    with open(info, "w") as f:
        json.dump(doc, f)
    result = run_device(info, ensure={}, connect={})
    assert result["ok"] and result["connected"] and "provisioning again" in result["output"], result
    view = cloud.device(FREE_PK, "newdev-02")
    doc = read_json(info)
    assert doc["credential"] == {"client_id": view["client_id"], "device_token": view["device_token"]}
    assert doc["logged_in"] is True
    assert [e["result"] for e in _log(cloud, "mqtt-connect", "newdev-02")] == ["bad-password", "ok"]
    assert len(registrations(cloud, "newdev-02")) == 2


# -- gateway sub-devices ------------------------------------------------------------------------

def test_gateway_registers_two_subdevices_persists_secrets_and_adds_topology(cloud, tmp_path):
    info = _device(tmp_path, cloud, "gateway-01", product=GW_PK)
    subs = [[SUB_PK, "sensor-0001"], [SUB_PK, "sensor-0002"]]
    result = run_device(info, ensure={}, connect={}, subdevices=subs)
    assert result["ok"], result
    assert sorted(result["registered"]) == ["%s/sensor-0001" % SUB_PK, "%s/sensor-0002" % SUB_PK]
    assert result["errors"] == {}
    stored = read_json(os.path.join(os.path.dirname(info), "subdevices.json"))["devices"]
    for pk, dn in subs:
        entry = stored["%s/%s" % (pk, dn)]
        assert entry["device_secret"] == cloud.device(pk, dn)["device_secret"] and entry["topo"] is True
    assert sorted(cloud.device(GW_PK, "gateway-01")["sub_devices"]) == sorted("%s/%s" % (pk, dn) for pk, dn in subs)
    again = run_device(info, ensure={}, connect={}, subdevices=subs)  # nothing left to do
    assert again["ok"] and sorted(again["registered"]) == sorted(result["registered"])
    assert len(_log(cloud, "aliyun-sub-register", "gateway-01")) == 1
    assert len(_log(cloud, "aliyun-topo-add", "gateway-01")) == 1


def test_gateway_subdevice_refusals_are_each_ones_own(cloud, tmp_path):
    # The cloud answers a request with one code: a sub-device it does not know (6100) and the
    # gateway itself (6402) are refused, each on its own, and hold back no other.
    info = _device(tmp_path, cloud, "gateway-02", product=GW_PK)
    result = run_device(info, ensure={}, connect={},
                        subdevices=[[SUB_PK, "sensor-0003"], [SUB_PK, "sensor-9999"], [GW_PK, "gateway-02"]])
    assert result["ok"] and result["registered"] == ["%s/sensor-0003" % SUB_PK], result
    assert result["errors"] == {"%s/sensor-9999" % SUB_PK: 6100, "%s/gateway-02" % GW_PK: 6402}, result
    stored = read_json(os.path.join(os.path.dirname(info), "subdevices.json"))["devices"]
    assert sorted(stored) == ["%s/sensor-0003" % SUB_PK] and stored["%s/sensor-0003" % SUB_PK]["topo"] is True
    assert cloud.device(GW_PK, "gateway-02")["sub_devices"] == ["%s/sensor-0003" % SUB_PK]
    assert [e["result"] for e in _log(cloud, "aliyun-sub-register", "gateway-02")] == ["6100", "ok", "6100", "6402"]


def test_a_sub_device_refused_at_topo_add_is_its_own_error_not_the_gateways(cloud, tmp_path):
    # Two sub-devices got their secrets but not their topology (the topo.add reply never came),
    # then the operator deleted one in the console: its topo.add is refused (6100) at every
    # connect, as an error of its own, and the other and a new one are added all the same.
    info = _device(tmp_path, cloud, "gateway-03", product=GW_PK)
    a, b, c = [SUB_PK, "sensor-0004"], [SUB_PK, "sensor-0005"], [SUB_PK, "sensor-0006"]
    assert run_device(info, ensure={}, connect={}, subdevices=[a, b])["errors"] == {}
    path = os.path.join(os.path.dirname(info), "subdevices.json")
    doc = read_json(path)
    for entry in doc["devices"].values():
        entry["topo"] = False
    with open(path, "w") as f:
        json.dump(doc, f)
    with cloud.store.transaction() as state:  # deleted in the console
        del state["products"][SUB_PK]["devices"]["sensor-0005"]
    for _ in range(2):  # the next boot meets the same refusal, and no more
        result = run_device(info, ensure={}, connect={}, subdevices=[a, b, c])
        assert result["ok"], result
        assert result["registered"] == ["%s/sensor-0004" % SUB_PK, "%s/sensor-0006" % SUB_PK], result
        assert result["errors"] == {"%s/sensor-0005" % SUB_PK: 6100}, result
    stored = read_json(path)["devices"]
    assert [stored["%s/%s" % tuple(key)]["topo"] for key in (a, b, c)] == [True, False, True]
    assert cloud.device(SUB_PK, "sensor-0006")["gateway"] == "%s/gateway-03" % GW_PK
    assert [e["result"] for e in _log(cloud, "aliyun-sub-register", "gateway-03")] == ["ok", "ok"]  # a, b; c
    assert [(e["result"], e["sub_devices"]) for e in _log(cloud, "aliyun-topo-add", "gateway-03")] == [
        ("ok", "%s/sensor-0004,%s/sensor-0005" % (SUB_PK, SUB_PK)),
        ("6100", "%s/sensor-0004,%s/sensor-0005,%s/sensor-0006" % (SUB_PK, SUB_PK, SUB_PK)),
        ("ok", "%s/sensor-0004" % SUB_PK), ("6100", "%s/sensor-0005" % SUB_PK), ("ok", "%s/sensor-0006" % SUB_PK),
        ("6100", "%s/sensor-0005" % SUB_PK)]


def test_a_gateway_with_sixty_sub_devices_registers_them_in_batches_and_reads_them_back(cloud, tmp_path):
    # Sixty realistic entries make a subdevices.json over 8 KiB; each request carries
    # gateway.BATCH sub-devices at most (their secrets on flash before the next), and the
    # second boot reads the file back and asks nothing.
    from dynreg import gateway

    info = _device(tmp_path, cloud, "gateway-04", product=GW_PK)
    subs = [[SUB_PK, "line3-bay-sensor-%04d" % n] for n in range(SIXTY)]
    result = run_device(info, ensure={}, connect={}, subdevices=subs)
    assert result["ok"] and result["errors"] == {} and len(result["registered"]) == SIXTY, result
    path = os.path.join(os.path.dirname(info), "subdevices.json")
    assert os.path.getsize(path) > 8192
    stored = read_json(path)["devices"]
    for pk, dn in subs:
        assert stored["%s/%s" % (pk, dn)]["device_secret"] == cloud.device(pk, dn)["device_secret"]
    assert len(cloud.device(GW_PK, "gateway-04")["sub_devices"]) == SIXTY
    for api in ("aliyun-sub-register", "aliyun-topo-add"):
        sizes = [len(e["sub_devices"].split(",")) for e in _log(cloud, api, "gateway-04")]
        assert sizes == [gateway.BATCH] * (SIXTY // gateway.BATCH), (api, sizes)
    again = run_device(info, ensure={}, connect={}, subdevices=subs)
    assert again["ok"] and again["errors"] == {} and len(again["registered"]) == SIXTY, again
    assert len(_log(cloud, "aliyun-sub-register", "gateway-04")) == SIXTY // gateway.BATCH  # nothing more asked


def test_more_sub_devices_than_a_gateway_holds_are_refused_before_any_request(cloud, tmp_path):
    from dynreg import gateway

    info = _device(tmp_path, cloud, "gateway-05", product=GW_PK)
    subs = [[SUB_PK, "node-%04d" % n] for n in range(gateway.MAX_SUBDEVICES + 1)]
    result = run_device(info, ensure={}, connect={}, subdevices=subs)
    assert result["error"] == "ConfigError", result
    assert result["message"] == "%d sub-devices: a gateway holds at most %d" % (len(subs), gateway.MAX_SUBDEVICES)
    assert _log(cloud, "aliyun-sub-register", "gateway-05") == []
    assert not os.path.exists(os.path.join(os.path.dirname(info), "subdevices.json"))


def test_a_batchs_sub_register_reply_fits_the_packet_limit():
    # The reply as the cloud documents it (PROTOCOLS.md 3.3), each field as long as Alibaba's
    # rules let it be (ProductKey and DeviceName 32 characters) and the secret and iotId twice
    # their usual 32 and 26, with the PUBLISH's topic: within dynreg's 8 KiB default.
    from dynreg import gateway

    entry = {"iotId": "i" * 52, "productKey": "p" * 32, "deviceName": "d" * 32, "deviceSecret": "s" * 64}
    reply = json.dumps({"id": "4294967295", "code": 200, "data": [entry] * gateway.BATCH, "message": "success",
                        "method": "thing.sub.register", "version": "1.0"})
    topic = "/sys/%s/%s/thing/sub/register_reply" % ("p" * 32, "d" * 32)
    assert 2 + len(topic) + len(reply) <= 8192 // 2, len(reply)

# The ProductSecret, once spent (docs/CLOUDS.md "The ProductSecret, once spent"): after the
# cloud accepts the device's own first MQTT login, dynreg.connect erases the ProductSecret
# from the info, on both clouds and in both info formats, unless the info sets
# keep_product_secret; the same write records the login ("logged_in": true). A refused login
# erases nothing. Devices on the MicroPython v1.28.0
# unix port against the cloud emulator; the power cut during the erase is in
# test_mp_power_loss.py (littlefs and FAT) and test_host_pico_power.py (the Pico W's flash).
import json

import pytest

from cloud_emulator.testing import running_emulator
from e2e import SECRET, read_json, registrations, run_device, write_aliyun_info, write_info

TENCENT = "SPENTTC001"
TENCENT_CLOSING = "SPENTTC002"  # its dynamic registration is switched off during a test
ALIYUN = "a1SpentKey1"
ALIYUN_FREE = "a1SpentFree"
FAST = {"attempts": 1, "timeout_ms": 3000}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, umqtt):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(TENCENT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100)
        cloud.add_product(TENCENT_CLOSING, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100)
        cloud.add_product(ALIYUN, SECRET, cloud="aliyun")
        cloud.add_product(ALIYUN_FREE, SECRET, cloud="aliyun", regnwl=True)
        for name in ("ali-spent-1", "ali-keep-1"):
            cloud.add_device(ALIYUN, name)
        yield cloud


def _folder(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    return folder


def _sdk_info(folder, psk, name):
    # The Tencent C SDK's own file holding the psk the cloud issued. The format names no
    # endpoints, so it cannot register with the emulator; it connects with an mqtt_url option.
    path = folder / "device_info.json"
    path.write_text(json.dumps({"auth_mode": "KEY", "productId": TENCENT, "productSecret": SECRET,
                                "deviceName": name, "key_deviceinfo": {"deviceSecret": psk}, "region": "china"}))
    return str(path)


def _boot_twice(cloud, info, name, **connect):
    first = run_device(info, ensure=dict(FAST), connect=dict(connect))
    assert first["ok"] and first["connected"], first
    assert "ProductSecret erased from" in first["output"], first["output"]
    second = run_device(info, ensure=dict(FAST), connect=dict(connect))
    assert second["ok"] and second["connected"], second
    assert "ProductSecret erased" not in second["output"]  # nothing left to erase
    assert len(registrations(cloud, name)) == 1
    return read_json(info)


@pytest.mark.parametrize("kind", ["tencent", "tencent-sdk", "aliyun-https", "aliyun-regnwl"])
def test_the_product_secret_is_erased_after_the_first_accepted_login(cloud, tmp_path, umqtt, kind):
    name = "spent-" + kind
    folder = _folder(tmp_path, name)
    connect = {}
    if kind == "tencent":
        info = write_info(folder, cloud, TENCENT, name)
    elif kind == "tencent-sdk":
        registered = write_info(_folder(tmp_path, name + "-first"), cloud, TENCENT, name)
        assert run_device(registered, ensure=dict(FAST))["ok"]  # the cloud issues the psk
        info = _sdk_info(folder, cloud.device(TENCENT, name)["psk"], name)
        connect = {"mqtt_url": "mqtt://localhost:%d" % cloud.mqtt_port}
    elif kind == "aliyun-https":
        info = write_aliyun_info(folder, cloud, ALIYUN, "ali-spent-1")
        name = "ali-spent-1"
    else:
        info = write_aliyun_info(folder, cloud, ALIYUN_FREE, name, api="regnwl", instance_id="iot-06z00emu")
    before = read_json(info)
    doc = _boot_twice(cloud, info, name, **connect)
    product = {"tencent": TENCENT, "tencent-sdk": TENCENT, "aliyun-https": ALIYUN, "aliyun-regnwl": ALIYUN_FREE}[kind]
    issued = cloud.device(product, name)
    assert doc["logged_in"] is True  # in both formats (the SDK ignores keys it does not know)
    if kind == "tencent-sdk":
        assert doc["productSecret"] == ""  # the SDK format keeps the field, empty
        assert doc["key_deviceinfo"] == {"deviceSecret": issued["psk"]}
    else:
        assert "product_secret" not in doc
        expected = {"tencent": {"psk": issued.get("psk")},
                    "aliyun-https": {"device_secret": issued.get("device_secret")},
                    "aliyun-regnwl": {"client_id": issued.get("client_id"), "device_token": issued.get("device_token")}}
        assert doc["credential"] == expected[kind]
    # Every other field as it was.
    for field in before:
        if field not in ("product_secret", "productSecret", "credential", "key_deviceinfo", "logged_in"):
            assert doc[field] == before[field], field


def test_keep_product_secret_keeps_it(cloud, tmp_path, umqtt):
    info = write_aliyun_info(_folder(tmp_path, "keep"), cloud, ALIYUN, "ali-keep-1", keep_product_secret=True)
    result = run_device(info, ensure=dict(FAST), connect={})
    assert result["ok"] and result["connected"], result
    assert "ProductSecret erased" not in result["output"]
    assert read_json(info)["product_secret"] == SECRET and read_json(info)["logged_in"] is True


def test_a_refused_login_erases_nothing(cloud, tmp_path, umqtt):
    # Registered, then a psk the cloud never issued: its login is refused (CONNACK 4). It never
    # logged in, so the board registers once more; the product's dynamic registration has been
    # switched off meanwhile, and that refusal is the board's answer. The info stays as it was,
    # ProductSecret included, so the operator can still recover the board.
    info = write_info(_folder(tmp_path, "refused"), cloud, TENCENT_CLOSING, "spent-refused")
    assert run_device(info, ensure=dict(FAST))["ok"]
    doc = read_json(info)
    doc["credential"] = {"psk": "AAAAAAAAAAAAAAAAAAAAAA=="}  # a psk the cloud never issued
    with open(info, "w") as f:
        json.dump(doc, f)
    before = open(info).read()
    cloud.add_product(TENCENT_CLOSING, SECRET, auth="key", dynreg=False, mode="autocreate", limit=100)
    result = run_device(info, connect={"timeout_ms": 3000})
    assert result["error"] == "RejectedError" and result["code"] == "UnauthorizedOperation.DynamicRegisterDisabled", \
        result
    assert open(info).read() == before and read_json(info)["product_secret"] == SECRET
    assert len(registrations(cloud, "spent-refused")) == 2


def test_once_erased_a_device_that_loses_its_credential_cannot_register(cloud, tmp_path, umqtt):
    info = write_info(_folder(tmp_path, "lost"), cloud, TENCENT, "spent-lost")
    first = run_device(info, ensure=dict(FAST), connect={})
    assert first["ok"] and "ProductSecret erased" in first["output"], first
    doc = read_json(info)
    doc["credential"] = {"psk": ""}  # the credential gone, as after a factory reset of the info
    with open(info, "w") as f:
        json.dump(doc, f)
    result = run_device(info, ensure=dict(FAST))
    assert result["error"] == "ConfigError" and "product_secret" in result["message"], result
    assert len(registrations(cloud, "spent-lost")) == 1  # no second request

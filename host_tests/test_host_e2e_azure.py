# End to end for Azure DPS (symmetric-key group enrollment) on the MicroPython unix port
# against the local emulator: provisioning with polling, the hub login with the derived key,
# the group key erased once the hub accepted it, the second boot straight to the hub, every
# refusal with nothing stored, and provisioning again only when the hub lost the device.
import base64
import hashlib
import hmac
import os

import pytest

from cloud_emulator.testing import running_emulator
from e2e import folder_snapshot, read_json, registrations, run_device, write_azure_info

SCOPE = "0ne00DYNREG"
OTHER_SCOPE = "0ne00NOSUCH"
GROUP = "line-a"
OFF_GROUP = "line-off"
OFF_SCOPE = "0ne00DISABL"
HUB = "dynreg-emu.azure-devices.net"
GROUP_KEY = base64.b64encode(hashlib.sha512(b"dynreg test group key").digest()).decode()
WRONG_KEY = base64.b64encode(hashlib.sha512(b"another group's key").digest()).decode()
FAST = {"attempts": 3, "backoff_ms": 50, "timeout_ms": 8000}


def derived(registration_id, group_key=GROUP_KEY):
    # The oracle: CPython's hmac over the group key, as Microsoft documents the derivation.
    digest = hmac.new(base64.b64decode(group_key), registration_id.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, umqtt):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(GROUP, GROUP_KEY, cloud="azure", id_scope=SCOPE, hub=HUB, assign_seconds=1)
        cloud.add_product(OFF_GROUP, GROUP_KEY, cloud="azure", id_scope=OFF_SCOPE, hub=HUB, dynreg=False)
        yield cloud


def _device(tmp_path, cloud, name, scope=SCOPE, key=GROUP_KEY, **fields):
    folder = tmp_path / name
    folder.mkdir()
    return write_azure_info(folder, cloud, scope, name, key, **fields)


def _log(cloud, api, device):
    return [e for e in cloud.log() if e.get("api") == api and e.get("device") == device]


def test_first_boot_provisions_then_the_hub_accepts_the_derived_key_and_the_group_key_goes(cloud, tmp_path):
    name = "sn-e6614c310000"
    info = _device(tmp_path, cloud, name)
    topic = "devices/%s/messages/events/" % name
    result = run_device(info, ensure={}, connect={}, publish=topic)
    assert result["ok"] and result["connected"], result
    doc = read_json(info)
    assert doc["credential"] == {"hub": HUB, "device_id": name, "device_key": derived(name)}
    assert "group_key" not in doc  # spent: the hub accepted the device's own key
    [registration] = registrations(cloud, name)
    assert registration["result"] == "assigning" and registration["status"] == 202
    polls = _log(cloud, "azure-dps-status", name)
    assert [e["result"] for e in polls][-1] == "ok" and all(e["result"] in ("assigning", "ok") for e in polls)
    assert [e["result"] for e in _log(cloud, "mqtt-connect", name)] == ["ok"]
    view = cloud.device(GROUP, name)
    assert view["status"] == "activated" and view["device_key"] == derived(name) and view["in_hub"]
    cloud.wait_for_log(lambda e: e.get("api") == "mqtt-publish" and e.get("device") == name)
    # The second boot: straight to the hub, no DPS at all.
    again = run_device(info, ensure={}, connect={})
    assert again["connected"] and "no registration" in again["output"]
    assert len(registrations(cloud, name)) == 1
    assert len(_log(cloud, "azure-dps-connect", name)) == 1


@pytest.mark.parametrize("case, scope, key, code", [
    ("wrong-key", SCOPE, WRONG_KEY, 401000),
    ("unknown-scope", OTHER_SCOPE, GROUP_KEY, 404000),
    ("disabled", OFF_SCOPE, GROUP_KEY, "disabled"),
])
def test_refusals_are_rejected_errors_and_store_nothing(cloud, tmp_path, case, scope, key, code):
    info = _device(tmp_path, cloud, "refused-" + case, scope=scope, key=key)
    before = folder_snapshot(info)
    result = run_device(info, ensure=FAST, connect={})
    assert not result["ok"] and result["error"] == "RejectedError" and result["code"] == code, result
    assert folder_snapshot(info) == before
    assert len(_log(cloud, "azure-dps-connect", "refused-" + case)) == 1  # refused: never retried


def test_a_device_deleted_from_its_hub_provisions_once_more_and_logs_in(cloud, tmp_path):
    name = "deleted-01"
    info = _device(tmp_path, cloud, name)
    assert run_device(info, ensure={}, connect={})["connected"]
    cloud.set_hub_device(GROUP, name, "delete")
    result = run_device(info, ensure={}, connect={})
    assert result["connected"], result
    assert "provisioning again" in result["output"]
    assert len(registrations(cloud, name)) == 2
    assert [e["result"] for e in _log(cloud, "mqtt-connect", name)] == ["ok", "unknown-device", "ok"]
    assert read_json(info)["credential"]["device_key"] == derived(name)  # no group key needed any more


def test_a_device_disabled_in_its_hub_provisions_once_then_gives_up(cloud, tmp_path):
    name = "disabled-01"
    info = _device(tmp_path, cloud, name)
    assert run_device(info, ensure={}, connect={})["connected"]
    stored = read_json(info)
    cloud.set_hub_device(GROUP, name, "disable")
    result = run_device(info, ensure={}, connect={})
    assert not result["ok"] and result["error"] == "RejectedError" and result["code"] == 5, result
    assert len(registrations(cloud, name)) == 2  # one more provisioning, not a loop
    assert [e["result"] for e in _log(cloud, "mqtt-connect", name)] == ["ok", "device-disabled", "device-disabled"]
    assert read_json(info)["credential"] == stored["credential"]


def test_a_throttled_dps_is_waited_out(cloud, tmp_path):
    name = "throttled-01"
    cloud.throttle(GROUP, 0.5, 1)
    try:
        first = _device(tmp_path, cloud, "throttle-00")
        assert run_device(first, ensure={})["ok"]  # takes the only token
        info = _device(tmp_path, cloud, name)
        result = run_device(info, ensure={"attempts": 1, "backoff_ms": 50})  # a 429 spends no attempt
    finally:
        cloud.throttle(GROUP, None)
    assert result["ok"], result
    assert [e["result"] for e in registrations(cloud, name)] == ["throttled", "assigning"]
    assert "DPS answered 429" in result["output"]


def test_dps_over_plain_mqtt_is_refused_before_any_request(cloud, tmp_path):
    info = _device(tmp_path, cloud, "plain-01", register_url="mqtt://localhost:%d" % cloud.mqtt_port)
    result = run_device(info, ensure=FAST)
    assert result["error"] == "ConfigError" and "mqtts://" in result["message"], result
    assert registrations(cloud, "plain-01") == [] and _log(cloud, "azure-dps-connect", "plain-01") == []

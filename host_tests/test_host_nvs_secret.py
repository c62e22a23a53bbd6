# An ESP32 board provisioned through NVS (boards/README.md "ESP32: identity from NVS") holds
# its ProductSecret twice: in the info file that board.info_from_nvs writes at the first boot,
# and in NVS. Once the first login has spent it (the library erases it from the info), the
# board erases NVS's copy too, and at every boot where the info holds none but NVS still does
# (a cut between the two erasures). The board application (firmware/main.py, board.py) on the
# MicroPython v1.28.0 unix port against the cloud emulator; only the chip's NVS is stood in,
# by host_tests/device/esp32_nvs/esp32.py on MICROPYPATH (its blobs in nvs.json, written at
# commit() as the chip writes them).
import json
import os
import subprocess

import pytest

import runtime
from cloud_emulator.testing import running_emulator
from e2e import MICROPYTHON, ROOT, SECRET, read_json, registrations

TENCENT = "NVSSPENT01"
FAST = {"ping_ms": 300, "pong_ms": 5000, "timeout_ms": 5000, "reconnect_min_ms": 100, "reconnect_max_ms": 1000,
        "boot_attempts": 1, "sessions": 1}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(TENCENT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100)
        yield cloud


def _board(tmp_path, cloud, name):
    # A factory-fresh ESP32: no info file, the product identity and the CA in NVS.
    folder = tmp_path / name
    folder.mkdir()
    with open(cloud.ca_der_path, "rb") as f:
        ca = f.read()
    blobs = {"product_id": TENCENT.encode(), "product_secret": SECRET.encode(), "device_name": name.encode(),
             "register_url": b"https://localhost:%d" % cloud.https_port,
             "mqtt_url": b"mqtts://localhost:%d" % cloud.mqtts_port, "ca": ca}
    (folder / "nvs.json").write_text(json.dumps({"dynreg": {k: v.hex() for k, v in blobs.items()}}))
    (folder / "site.json").write_text(json.dumps(FAST))
    return folder


def _nvs(folder):
    return json.loads((folder / "nvs.json").read_text())["dynreg"]


def _boot(folder):
    env = dict(os.environ, DYNREG_NVS_FILE=str(folder / "nvs.json"),
               MICROPYPATH=runtime.micropypath("host_tests/device/esp32_nvs", "firmware"))
    proc = subprocess.run([MICROPYTHON, os.path.join(ROOT, "firmware", "main.py")], cwd=str(folder), env=env,
                          capture_output=True, text=True, timeout=60)
    console = proc.stdout + proc.stderr
    transcript = os.environ.get("DYNREG_TRANSCRIPT")
    if transcript:  # every device's output, for the secrets scan of `make test`
        with open(transcript, "a") as f:
            f.write(console)
    assert SECRET not in console
    assert proc.returncode == 0, console
    return console


def test_the_first_login_erases_the_nvs_copy_too(cloud, tmp_path):
    folder = _board(tmp_path, cloud, "nvs-spent-01")
    before = _nvs(folder)
    first = _boot(folder)
    assert "nvs: product identity written to device_info.json" in first, first
    assert "published status on %s/nvs-spent-01/data" % TENCENT in first, first
    # After the library's erasure (at the login), not before: until then the secret may still
    # be needed to register again.
    spent = first.index("dynreg: ProductSecret erased from device_info.json")
    assert first.count("nvs: product_secret erased") == 1 and first.index("nvs: product_secret erased") > spent, first
    assert "product_secret" not in read_json(str(folder / "device_info.json"))
    after = _nvs(folder)
    assert "product_secret" not in after
    assert after == dict((k, v) for k, v in before.items() if k != "product_secret")  # the rest kept
    second = _boot(folder)
    assert "nvs:" not in second and "published status on" in second, second  # nothing left to erase
    assert len(registrations(cloud, "nvs-spent-01")) == 1


def test_a_board_cut_between_the_two_erasures_erases_nvs_at_the_next_boot(cloud, tmp_path):
    folder = _board(tmp_path, cloud, "nvs-spent-02")
    _boot(folder)
    # As if the power went after the info lost the secret and before NVS did.
    nvs = json.loads((folder / "nvs.json").read_text())
    nvs["dynreg"]["product_secret"] = SECRET.encode().hex()
    (folder / "nvs.json").write_text(json.dumps(nvs))
    console = _boot(folder)
    assert console.count("nvs: product_secret erased") == 1, console
    assert console.index("nvs: product_secret erased") < console.index("MQTT connected"), console  # at the boot
    assert "product_secret" not in _nvs(folder)
    assert len(registrations(cloud, "nvs-spent-02")) == 1

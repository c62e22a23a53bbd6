# Plain MQTT and the logins that send a reusable secret: an Alibaba DeviceSecret password (the
# cloud never checks its timestamp, PROTOCOLS.md 3.4), a deviceToken, an Azure SAS token (a
# day) and a Tencent client certificate (which authenticates only inside TLS). A device on the
# MicroPython v1.28.0 unix port is pointed at a local TCP listener with mqtt:// (the info's
# mqtt_url, or dynreg.connect's option): it raises ConfigError and the listener never sees a
# connection, let alone a byte. Tencent key auth, whose password expires, still goes out over
# plain TCP (docs/CLOUDS.md "Plain transports": what it exposes): the listener captures its CONNECT.
import json

import pytest

from e2e import run_device
from hostile import HostileBroker, read_packet

PSK = "lDZ6Uqt+I9E0wW7rvDUs7Q=="
DEVICE_SECRET = "8d1f0cdab49dd229cf3b75aaaaaaaaaa"
DEVICE_TOKEN = "t0kenOfTheCapturedDevice"
DEVICE_KEY = "ZGV2aWNlLWtleS1vZi10aGUtY2FwdHVyZWQtZGV2aWNl"  # base64 of 33 bytes
PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"

KINDS = {
    "aliyun-device-secret": ({"cloud": "aliyun", "product_key": "a1CaptureK1", "device_name": "capture-01",
                              "credential": {"device_secret": DEVICE_SECRET}},
                             "Alibaba needs TLS: an mqtts:// mqtt_url"),
    "aliyun-device-token": ({"cloud": "aliyun", "product_key": "a1CaptureK1", "device_name": "capture-02",
                             "api": "regnwl", "instance_id": "iot-06z00emu",
                             "credential": {"client_id": "a1CaptureK1.capture-02.AbCdEfGh",
                                            "device_token": DEVICE_TOKEN}},
                            "Alibaba needs TLS: an mqtts:// mqtt_url"),
    "azure-sas-token": ({"cloud": "azure", "id_scope": "0ne00000A0A", "device_name": "capture-03",
                         "credential": {"hub": "capture.azure-devices.net", "device_id": "capture-03",
                                        "device_key": DEVICE_KEY}},
                        "Azure needs TLS: an mqtts:// mqtt_url"),
    "tencent-certificate": ({"cloud": "tencent", "product_id": "CAPTURE001", "device_name": "capture-04",
                             "auth": "cert", "credential": {"cert_file": "c.crt", "key_file": "k.key"}},
                            "Tencent cert auth needs TLS: an mqtts:// mqtt_url"),
}


def _capture(conn, stop, seen):
    # Reads the CONNECT and hangs up without a CONNACK.
    seen.append(read_packet(conn))


def _info(tmp_path, fields, **extra):
    folder = tmp_path / "device"
    folder.mkdir()
    for name in ("c.crt", "k.key"):
        (folder / name).write_text(PEM)
    doc = dict({"dynreg": 1}, **fields)
    doc.update(extra)
    path = folder / "device_info.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("where", ["info", "option"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_login_with_a_reusable_secret_sends_nothing_over_plain_mqtt(tmp_path, kind, where):
    fields, message = KINDS[kind]
    seen = []
    with HostileBroker(lambda conn, stop: _capture(conn, stop, seen)) as listener:
        url = "mqtt://localhost:%d" % listener.port
        if where == "info":
            info, connect = _info(tmp_path, fields, mqtt_url=url), {"timeout_ms": 3000}
        else:
            info, connect = _info(tmp_path, fields), {"mqtt_url": url, "timeout_ms": 3000}
        before = open(info).read()
        result = run_device(info, ensure={}, connect=connect)
    assert result["error"] == "ConfigError" and result["message"] == message, result
    assert listener.connections == 0 and seen == []  # not even a TCP connect
    assert open(info).read() == before
    for secret in (DEVICE_SECRET, DEVICE_TOKEN, DEVICE_KEY):
        assert secret not in result["output"]


def test_a_tencent_key_login_goes_out_over_plain_mqtt_as_readable_as_readme_says(tmp_path):
    # The control: the same listener captures a CONNECT when one is sent. Its username and
    # password are in clear, replayable until the expiry the username names (24 h).
    seen = []
    fields = {"cloud": "tencent", "product_id": "CAPTURE001", "device_name": "capture-05",
              "credential": {"psk": PSK}}
    with HostileBroker(lambda conn, stop: _capture(conn, stop, seen)) as listener:
        info = _info(tmp_path, fields, mqtt_url="mqtt://localhost:%d" % listener.port)
        result = run_device(info, ensure={}, connect={"timeout_ms": 3000})
    assert result["error"] == "NetworkError" and "CONNACK" in result["message"], result
    assert listener.connections == 1 and len(seen) == 1
    first, body = seen[0]
    assert first == 0x10  # CONNECT
    assert b"CAPTURE001capture-05;12010126;" in body and b";hmacsha256" in body
    assert PSK.encode() not in body  # the psk itself never travels; its HMAC does

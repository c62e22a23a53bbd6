# Every wait of the device is bounded by its deadline, inside a packet and inside the TLS
# handshake too (dynreg.net, dynreg.mqtt._Link): a device on the MicroPython v1.28.0 unix
# port against peers that stall or trickle at a chosen byte (hostile.py). A read that times
# out on its own is not enough: the trickling peers send a byte well within any socket
# timeout, so only a deadline over the whole exchange ends them. Each device runs with
# timeout_ms=3000; the peers would take minutes, and the subprocess would be killed (a failed
# test) long before.
import json

import pytest

from cloud_emulator.crypto import ensure_tls_material
from cloud_emulator.testing import running_emulator
from e2e import SECRET, folder_snapshot, registrations, run_device, write_info
from hostile import CONNACK_OK, HostileBroker, TrickleProxy, hold, publish, read_packet

PK = "a1StallMqtt"
TENCENT = "STALLTC001"
FAST = {"attempts": 1, "timeout_ms": 3000}
DEVICE_SECRET = "Zm9vYmFyYmF6cXV4cXV1eDAxMjM0NTY3"


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    return ensure_tls_material(tmp_path_factory.mktemp("hostile-tls"))


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, umqtt):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(TENCENT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100)
        yield cloud


def _mqtt_device(tmp_path, material, port, name="stall-dev-01", **fields):
    # An Alibaba device whose broker is the hostile one, trusting the test CA that signed it.
    folder = tmp_path / name
    folder.mkdir()
    doc = {"dynreg": 1, "cloud": "aliyun", "product_key": PK, "product_secret": SECRET, "device_name": name,
           "api": "mqtt", "mqtt_url": "mqtts://localhost:%d" % port, "ca": str(material.ca_der_path),
           "credential": {}}
    doc.update(fields)
    path = folder / "device_info.json"
    path.write_text(json.dumps(doc))
    return str(path)


def _after_connack(then):
    def script(conn, stop):
        kind, _ = read_packet(conn)
        assert kind >> 4 == 1  # CONNECT
        conn.sendall(CONNACK_OK)
        then(conn, stop)

    return script


def _result_publish():
    return publish("/ext/register", json.dumps({"productKey": PK, "deviceName": "stall-dev-01",
                                                "deviceSecret": DEVICE_SECRET}).encode())


def test_mqtt_registration_ends_when_the_broker_stalls_inside_the_result(tmp_path, material, umqtt):
    # The PUBLISH's header, its length and half the topic; then nothing, the connection open.
    packet = _result_publish()

    def stall(conn, stop):
        conn.sendall(packet[:8])
        hold(conn, stop)

    with HostileBroker(_after_connack(stall), material) as broker:
        info = _mqtt_device(tmp_path, material, broker.port)
        before = folder_snapshot(info)
        result = run_device(info, ensure=dict(FAST), timeout=60)
    assert result["error"] == "NetworkError" and "timed out" in result["message"], result
    assert folder_snapshot(info) == before  # nothing stored
    assert broker.connections == 1


def test_mqtt_registration_ends_when_the_broker_trickles_the_result(tmp_path, material, umqtt):
    # A valid result, one byte every 0.5 s: each read returns in time, the whole takes a minute.
    packet = _result_publish()

    def trickle(conn, stop):
        for i in range(len(packet)):
            if stop.is_set():
                return
            conn.sendall(packet[i:i + 1])
            stop.wait(0.5)
        hold(conn, stop)

    with HostileBroker(_after_connack(trickle), material) as broker:
        info = _mqtt_device(tmp_path, material, broker.port)
        result = run_device(info, ensure=dict(FAST), timeout=60)
    assert len(packet) * 0.5 > 3 * FAST["timeout_ms"] / 1000
    assert result["error"] == "NetworkError" and "timed out" in result["message"], result


def test_a_stalled_connack_ends_by_the_connect_deadline(tmp_path, material, umqtt):
    def half_connack(conn, stop):
        read_packet(conn)
        conn.sendall(CONNACK_OK[:1])
        hold(conn, stop)

    with HostileBroker(half_connack, material) as broker:
        info = _mqtt_device(tmp_path, material, broker.port)
        result = run_device(info, ensure=dict(FAST), timeout=60)
    assert result["error"] == "NetworkError" and "timed out" in result["message"], result


@pytest.mark.parametrize("header, words", [
    (b"\x90\xff\xff\xff\x7f", "MQTT packet of 268435455 bytes over the limit of 8192"),  # a SUBACK of 268 MB
    (b"\x90\x81\x40", "MQTT packet of 8193 bytes over the limit of 8192"),  # one past the limit
    (b"\x30\xff\xff\xff\xff\x01", "length over 4 bytes"),  # no valid MQTT length
])
def test_an_oversized_packet_is_refused_before_it_is_read(tmp_path, material, umqtt, header, words):
    def oversized(conn, stop):
        conn.sendall(header)
        hold(conn, stop)

    with HostileBroker(_after_connack(oversized), material) as broker:
        info = _mqtt_device(tmp_path, material, broker.port)
        result = run_device(info, ensure=dict(FAST), timeout=60)
    assert result["error"] == "ProtocolError" and words in result["message"], result


def test_an_oversized_publish_is_dropped_a_piece_at_a_time_and_the_result_after_it_taken(tmp_path, material, umqtt):
    # A PUBLISH over max_packet is not a ProtocolError (MQTT lets a client skip it): it is read
    # and discarded, never held whole, and the registration result after it is taken.
    def oversized_then_result(conn, stop):
        conn.sendall(publish("/ext/register", b"x" * 9000) + _result_publish())
        hold(conn, stop)

    with HostileBroker(_after_connack(oversized_then_result), material) as broker:
        info = _mqtt_device(tmp_path, material, broker.port)
        result = run_device(info, ensure=dict(FAST), timeout=60)
    assert result["ok"] and result["credential"] == ["device_secret"], result


def test_an_oversized_publish_that_never_comes_ends_by_the_deadline(tmp_path, material, umqtt):
    # 268 MB announced, not one byte of it sent: the device neither allocates it nor waits for
    # it past the attempt's deadline.
    def announced(conn, stop):
        conn.sendall(b"\x30\xff\xff\xff\x7f")
        hold(conn, stop)

    with HostileBroker(_after_connack(announced), material) as broker:
        info = _mqtt_device(tmp_path, material, broker.port)
        result = run_device(info, ensure=dict(FAST), timeout=60)
    assert result["error"] == "NetworkError" and "timed out" in result["message"], result


def test_a_packet_at_the_limit_is_taken(tmp_path, material, umqtt):
    # 8192 bytes exactly, with the registration result at its start: the limit is inclusive.
    payload = json.dumps({"deviceSecret": DEVICE_SECRET, "pad": ""}).encode()
    topic = "/ext/register"
    pad = 8192 - (2 + len(topic) + len(payload))
    payload = payload[:-2] + b"x" * pad + b'"}'
    packet = publish(topic, payload)
    assert packet[1:3] == b"\x80\x40" and len(packet) == 1 + 2 + 8192  # remaining length 8192

    def send(conn, stop):
        conn.sendall(packet)
        hold(conn, stop)

    with HostileBroker(_after_connack(send), material) as broker:
        info = _mqtt_device(tmp_path, material, broker.port)
        result = run_device(info, ensure=dict(FAST), timeout=60)
    assert result["ok"] and result["credential"] == ["device_secret"], result


def test_a_gateway_request_ends_when_the_suback_never_comes(tmp_path, material, umqtt):
    # umqtt's subscribe() waits for its SUBACK with a blocking read; the gateway's deadline ends it.
    seen = []

    def no_suback(conn, stop):
        while not stop.is_set():
            kind, _ = read_packet(conn)
            seen.append(kind >> 4)
            if kind >> 4 == 8:  # SUBSCRIBE: no SUBACK, ever
                hold(conn, stop)
                return

    with HostileBroker(_after_connack(no_suback), material) as broker:
        info = _mqtt_device(tmp_path, material, broker.port, api="https",
                            credential={"device_secret": DEVICE_SECRET})
        result = run_device(info, connect={"timeout_ms": 3000}, subdevices=[[PK, "sub-device-1"]], timeout=60)
    assert seen == [8], seen
    assert result["error"] == "NetworkError" and "timed out" in result["message"], result
    assert not (tmp_path / "stall-dev-01" / "subdevices.json").exists()


def test_a_trickled_tls_handshake_ends_by_the_deadline_over_https(tmp_path, cloud):
    # The emulator's real HTTPS listener behind a proxy that passes its bytes on one every 0.2 s:
    # the server's first flight alone would take minutes.
    with TrickleProxy(cloud.https_port, 0.2) as proxy:
        folder = tmp_path / "https"
        folder.mkdir()
        info = write_info(folder, cloud, TENCENT, "trickle-https")
        doc = json.load(open(info))
        doc["register_url"] = "https://localhost:%d" % proxy.port
        json.dump(doc, open(info, "w"))
        result = run_device(info, ensure=dict(FAST), timeout=60)
    assert result["error"] == "NetworkError" and "TLS handshake" in result["message"] \
        and "timed out" in result["message"], result
    assert 0 < proxy.relayed_to_device < 200
    assert registrations(cloud, "trickle-https") == []


def test_a_trickled_tls_handshake_ends_by_the_deadline_over_mqtts(tmp_path, cloud):
    folder = tmp_path / "mqtts"
    folder.mkdir()
    info = write_info(folder, cloud, TENCENT, "trickle-mqtts")
    assert run_device(info, ensure=dict(FAST))["ok"]  # registered; now the broker trickles
    with TrickleProxy(cloud.mqtts_port, 0.2) as proxy:
        result = run_device(info, connect={"mqtt_url": "mqtts://localhost:%d" % proxy.port, "timeout_ms": 3000},
                            timeout=60)
    assert result["error"] == "NetworkError" and "timed out" in result["message"], result
    assert 0 < proxy.relayed_to_device < 200

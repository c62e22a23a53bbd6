# The bounded waits on the Pico W image, on an emulated RP2040: mbedTLS and umqtt.simple run on
# the chip, over the UART0 stand-in for the radio (pico_emulator/board/socket.py), against the
# hostile brokers of hostile.py. On a board a blocking socket waits forever (lwIP's -1), so
# without dynreg's deadline these scripts would never print their result.
import json
import os
import sys

import pytest

from cloud_emulator.crypto import ensure_tls_material
from e2e import ROOT, SECRET
from hostile import CONNACK_OK, HostileBroker, ScriptedBroker, hold, publish, publish_qos1, read_packet

sys.path.insert(0, os.path.join(ROOT, "pico_emulator"))
import pico  # noqa: E402

PK = "a1StallPico"

SCRIPT = """
import ntptime, dynreg
ntptime.host = "localhost"
ntptime.settime()
try:
    dynreg.ensure(%r, attempts=1, timeout_ms=5000, log=None)
    print("RESULT ok")
except dynreg.Error as e:
    print("RESULT", type(e).__name__, e)
"""


def _after_connack(then):
    def script(conn, stop):
        read_packet(conn)
        conn.sendall(CONNACK_OK)
        then(conn, stop)

    return script


def _stall_in_publish(conn, stop):
    conn.sendall(publish("/ext/register", b'{"deviceSecret":"abcdefgh"}')[:8])
    hold(conn, stop)


def _oversized(conn, stop):
    conn.sendall(b"\x90\xff\xff\xff\x7f")  # a SUBACK of 268 MB (a PUBLISH that long would be skipped)
    hold(conn, stop)


def test_a_stall_inside_a_packet_and_an_oversized_one_end_on_the_chip(tmp_path):
    problem = pico.check_ready()
    if problem:
        pytest.fail("the emulated Pico W cannot run: " + problem)
    (tmp_path / "tls").mkdir()
    material = ensure_tls_material(tmp_path / "tls")
    with HostileBroker(_after_connack(_stall_in_publish), material) as stalling, \
            HostileBroker(_after_connack(_oversized), material) as oversized:
        puts = [(pico.SOCKET_MODULE, "socket.py"), (str(material.ca_der_path), "ca.der")]
        for name, broker in (("stall", stalling), ("big", oversized)):
            doc = {"dynreg": 1, "cloud": "aliyun", "product_key": PK, "product_secret": SECRET,
                   "device_name": "pico-" + name, "api": "mqtt", "mqtt_url": "mqtts://localhost:%d" % broker.port,
                   "ca": "ca.der", "credential": {}}
            (tmp_path / name).mkdir()
            path = tmp_path / name / "device_info.json"  # a store, by its name, to the secrets scan
            path.write_text(json.dumps(doc))
            puts.append((str(path), name + ".json"))
        proc = pico.run(SCRIPT % "stall.json", SCRIPT % "big.json", puts=puts, tunnel=True, timeout=600)
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert len(results) == 2, proc.stdout + proc.stderr[-3000:]
    assert results[0].startswith("RESULT NetworkError") and "timed out" in results[0], results
    assert results[1].startswith("RESULT ProtocolError") and "over the limit of 8192" in results[1], results
    assert stalling.connections == 1 and oversized.connections == 1
    assert SECRET not in proc.stdout


ONLINE = """
import ntptime
ntptime.host = "localhost"
ntptime.settime()
from dynreg import online
got = []
def on_connect(client):
    client.subscribe(b"%s", 1)
def on_message(client, topic, msg):
    got.append(len(msg))
try:
    n = online.stay_online("online.json", on_connect, on_message, online_ms=8000, ping_ms=2000, pong_ms=10000,
                           timeout_ms=10000)
    print("RESULT", n, got)
except Exception as e:
    print("RESULT", type(e).__name__, e)
"""


def test_a_message_over_max_packet_is_dropped_on_the_chip(tmp_path):
    # A QoS 1 message of 9000 bytes, over the 8192 default: the chip reads it in pieces and
    # drops it, acknowledges it, and takes the one after it on the same connection.
    problem = pico.check_ready()
    if problem:
        pytest.fail("the emulated Pico W cannot run: " + problem)
    topic = "/%s/pico-online/user/get" % PK
    sends = [publish_qos1(topic, b"x" * 9000, 0x1234), publish_qos1(topic, b"small", 0x1235)]
    proc, broker = online_on_the_chip(tmp_path, PK, "pico-online", sends, ONLINE % topic, timeout=600)
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert results == ["RESULT 1 [5]"], proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.count("dynreg: MQTT message of 9037 bytes dropped (over max_packet 8192)") == 1, proc.stdout
    assert broker.pubacks == [0x1234, 0x1235] and broker.connections == 1, (broker.pubacks, proc.stdout)


def online_on_the_chip(tmp_path, product_key, device_name, sends, script, timeout):
    # An Alibaba device with a DeviceSecret on the emulated Pico W runs `script` (its info is
    # online.json) against a broker that sends `sends` after its CONNACK. -> (the run, the broker)
    (tmp_path / "tls").mkdir()
    material = ensure_tls_material(tmp_path / "tls")
    with ScriptedBroker(material, {"send": sends}) as broker:
        doc = {"dynreg": 1, "cloud": "aliyun", "product_key": product_key, "device_name": device_name, "api": "https",
               "mqtt_url": "mqtts://localhost:%d" % broker.port, "ca": "ca.der",
               "credential": {"device_secret": "Zm9vYmFyYmF6cXV4cXV1eDAxMjM0NTY3"}}
        (tmp_path / "online").mkdir()
        path = tmp_path / "online" / "device_info.json"
        path.write_text(json.dumps(doc))
        puts = [(pico.SOCKET_MODULE, "socket.py"), (str(material.ca_der_path), "ca.der"), (str(path), "online.json")]
        return pico.run(script, puts=puts, tunnel=True, timeout=timeout), broker

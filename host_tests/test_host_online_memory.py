# A board that stays online for months meets its tightest heap at a reconnect: dynreg.online on
# the MicroPython v1.28.0 unix port (dynreg and umqtt.simple frozen), against a scripted broker
# over real TLS that cuts the first sessions short (hostile.ScriptedBroker). The device script
# (host_tests/device/online_memory.py) fills the heap with ballast once a session is lost, so
# that the reconnect runs out of memory there and then, whatever the machine's speed.
import json
import os
import subprocess
import tempfile

import pytest

import e2e
from e2e import MICROPYTHON, ROOT
from hostile import ScriptedBroker

TOPIC = "/a1MemoryPk1/memory-01/user/get"
QUICK = {"ping_ms": 500, "pong_ms": 3000, "timeout_ms": 3000, "reconnect_min_ms": 100, "reconnect_max_ms": 200}
HEAP = 128 * 1024  # -X heapsize: a board's (the ballast can fill it)
SQUEEZED = 1024  # bytes left free: far less than a reconnect needs, enough for a log line
WAIT = 60
SCRIPT = os.path.join(ROOT, "host_tests", "device", "online_memory.py")


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    from cloud_emulator.crypto import ensure_tls_material

    return ensure_tls_material(tmp_path_factory.mktemp("tls"))


def run(tmp_path, broker, **spec):
    folder = tmp_path / "device"
    folder.mkdir()
    doc = {"dynreg": 1, "cloud": "aliyun", "product_key": "a1MemoryPk1", "device_name": "memory-01",
           "api": "https", "mqtt_url": "mqtts://localhost:%d" % broker.port, "ca": str(broker.material.ca_der_path),
           "credential": {"device_secret": "Zm9vYmFyYmF6cXV4cXV1eDAxMjM0NTY3"}}
    (folder / "device_info.json").write_text(json.dumps(doc))
    spec = dict(spec, info=str(folder / "device_info.json"), subscribe=TOPIC, online=dict(QUICK, **spec["online"]))
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="spec-", delete=False) as f:
        json.dump(spec, f)
    try:
        proc = subprocess.run([MICROPYTHON, "-X", "heapsize=%d" % HEAP, SCRIPT, f.name], capture_output=True,
                              text=True, timeout=WAIT, env=e2e.device_env(), cwd=ROOT)
    finally:
        os.remove(f.name)
    output = proc.stdout + proc.stderr
    transcript = os.environ.get("DYNREG_TRANSCRIPT")
    if transcript:
        with open(transcript, "a") as t:
            t.write(output)
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("RESULT "), output
    result = json.loads(lines[-1][len("RESULT "):])
    result["output"] = output
    return result


def test_a_memory_error_at_a_reconnect_is_a_loss_retried_after_a_collection(tmp_path, material):
    # The heap runs short after the first session: the reconnect fails with a MemoryError
    # (before: out of stay_online, and the board application stopped). The pressure passes
    # (the ballast goes), and the next attempt logs in.
    with ScriptedBroker(material, {"cut": True}, {}) as broker:
        result = run(tmp_path, broker, squeeze=SQUEEZED, release=True, online={"sessions": 2})
    output = result["output"]
    assert result.get("sessions") == 2 and "error" not in result, output
    assert output.count("dynreg: connect failed (MemoryError") == 1, output
    assert output.count("dynreg: reconnecting in") == 2 and broker.connections >= 2, output


def test_memory_errors_in_a_row_end_stay_online_with_the_memory_error(tmp_path, material):
    # A heap that never comes back: five attempts, then the MemoryError itself goes out (the
    # board application resets the board on it), with one line that says why.
    with ScriptedBroker(material, {"cut": True}, {}) as broker:
        result = run(tmp_path, broker, squeeze=SQUEEZED, online={"sessions": 2})
    output = result["output"]
    assert result.get("error") == "MemoryError", output
    assert output.count("dynreg: connect failed (MemoryError") == 5, output
    assert output.count("dynreg: out of memory 5 times since the last session that held: giving up") == 1, output


def test_the_brokers_tls_context_is_built_once_for_every_reconnect(tmp_path, material):
    # Three sessions, two of them cut short: one TLS context (one parse of the CA) for the
    # three logins; before, one for each.
    with ScriptedBroker(material, {"cut": True}, {"cut": True}, {}) as broker:
        result = run(tmp_path, broker, online={"sessions": 3})
    assert result.get("sessions") == 3, result["output"]
    assert broker.connections == 3 and result["tls_contexts"] == 1, result

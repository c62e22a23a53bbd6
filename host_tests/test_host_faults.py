# Network faults end to end: the local cloud emulator injects each fault (per request, per TLS
# handshake, per MQTT connection, or a port that never accepts) and a real device (dynreg on
# the MicroPython unix port, host_tests/device/run_device.py) must come out as designed:
# bounded retries only for network trouble (counted on the emulator's request log, total time
# measured), jittered backoff, Retry-After honoured (measured between the log's timestamps),
# no retry on a rejection, a bad answer or a TLS refusal, a clear error type and message, and
# nothing stored (the device's folder byte-identical).
import os
import time

import pytest

from cloud_emulator.testing import running_emulator
from e2e import (SECRET, write_info, write_aliyun_info, run_device, read_json, registrations, retry_waits,
                 folder_snapshot)

PID = "FAULTPRD01"  # Tencent, auto-create
PK = "a1FaultPrd1"  # Alibaba, devices pre-registered (HTTPS and MQTT registration)
SLACK_S = 0.8  # process scheduling and TLS handshakes on a busy host, per bound


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, umqtt):
    # One emulator per umqtt.simple version (conftest.py): every test here runs on each.
    with running_emulator(tmp_path_factory.mktemp("cloud"), client_timeout=5.0) as cloud:
        cloud.add_product(PID, SECRET, auth="key", dynreg=True, mode="autocreate", limit=1000)
        cloud.add_product(PK, SECRET, cloud="aliyun")
        yield cloud


@pytest.fixture(autouse=True)
def no_fault_outlives_its_test(cloud):
    yield
    cloud.clear_faults()


def observed(test, **numbers):
    # The numbers each test saw (pytest -s prints them; docs/RELIABILITY.md quotes them).
    print("\nOBSERVED %s %s" % (test, " ".join("%s=%s" % item for item in sorted(numbers.items()))))


# -- helpers ------------------------------------------------------------------------------------

def _tencent(tmp_path, cloud, name, **fields):
    folder = tmp_path / name
    folder.mkdir()
    return write_info(folder, cloud, PID, device_name=name, **fields)


def _aliyun(tmp_path, cloud, name, api="mqtt", **fields):
    cloud.add_device(PK, name)
    folder = tmp_path / name
    folder.mkdir()
    return write_aliyun_info(folder, cloud, PK, name, api=api, **fields)


def _since(cloud, mark):
    return cloud.log()[mark:]


def _faults(records, kind):
    return [r for r in records if r.get("result") == "fault:" + kind]


def _run(info, **spec):
    # run_device with the device's own elapsed time; returns (result, wall-clock seconds).
    start = time.monotonic()
    result = run_device(info, elapsed=True, **spec)
    return result, time.monotonic() - start


def _fails(info, error, ensure, **spec):
    # The device fails with `error` and its folder is byte-identical afterwards.
    before = folder_snapshot(info)
    result, wall = _run(info, ensure=ensure, **spec)
    assert not result["ok"] and result["error"] == error, result
    assert folder_snapshot(info) == before
    return result, wall


def _settle(cloud, mark, device, count, timeout=5.0):
    # Wait until `count` registrations of `device` are logged after `mark`: a delayed request is
    # processed after the device gave up on it, and must not spill into the next test.
    deadline = time.monotonic() + timeout
    while len(registrations(_since(cloud, mark), device)) < count:
        assert time.monotonic() < deadline, "the delayed requests were never processed"
        time.sleep(0.05)
    return registrations(_since(cloud, mark), device)


def _gaps(records):
    return [round(b["ts"] - a["ts"], 3) for a, b in zip(records, records[1:])]


# -- connect timeout: a port whose accept queue is full -------------------------------------------

def test_connect_timeout_is_retried_within_bounds_then_network_error(cloud, tmp_path):
    with cloud.blackhole() as port:
        info = _tencent(tmp_path, cloud, "conn-timeout", register_url="https://127.0.0.1:%d" % port)
        mark = len(cloud.log())
        ensure = {"attempts": 3, "backoff_ms": 50, "max_backoff_ms": 200, "timeout_ms": 500}
        result, wall = _fails(info, "NetworkError", ensure)
    assert "after 3 attempts" in result["message"] and "cannot connect to 127.0.0.1" in result["message"]
    waits = retry_waits(result["output"])
    assert len(waits) == 2 and all(25 <= w <= 100 for w in waits), waits
    # each attempt ends at its connect timeout: 3 x 500 ms plus the waits
    assert 1.5 + sum(waits) / 1000 - 0.05 <= result["elapsed_ms"] / 1000 <= 1.5 + sum(waits) / 1000 + SLACK_S
    assert _since(cloud, mark) == []  # nothing reached the emulator
    observed("connect_timeout", attempts=3, waits_ms=waits, elapsed_ms=result["elapsed_ms"], wall_s=round(wall, 2))


# -- read timeout, trickle --------------------------------------------------------------------------

def test_read_timeout_is_retried_within_bounds_then_network_error(cloud, tmp_path):
    info = _tencent(tmp_path, cloud, "read-timeout")
    cloud.fault("delay", count=2, seconds=1.5)
    mark = len(cloud.log())
    ensure = {"attempts": 2, "backoff_ms": 50, "timeout_ms": 500}
    result, wall = _fails(info, "NetworkError", ensure)
    assert "after 2 attempts" in result["message"] and "timed out" in result["message"]
    assert len(_faults(_since(cloud, mark), "delay")) == 2
    assert result["elapsed_ms"] / 1000 <= 2 * 0.5 + 0.05 + SLACK_S
    # the emulator still processed both requests: the answers were what got lost
    assert [r["result"] for r in _settle(cloud, mark, "read-timeout", 2)] == ["ok", "ok"]
    observed("read_timeout", attempts=2, elapsed_ms=result["elapsed_ms"])


def test_trickled_answer_is_cut_off_and_retried(cloud, tmp_path):
    # A valid answer, one byte every 50 ms: every read succeeds, the whole answer would take
    # ~15 s; the device gives up on each attempt and retries, then fails with a NetworkError.
    # Plain HTTP: a TLS handshake of a loaded machine could spend an attempt's 600 ms before the
    # request, which would then never meet the trickle.
    info = _tencent(tmp_path, cloud, "trickle", scheme="http")
    cloud.fault("trickle", count=2, interval=0.05)
    mark = len(cloud.log())
    ensure = {"attempts": 2, "backoff_ms": 50, "timeout_ms": 600}
    result, wall = _fails(info, "NetworkError", ensure)
    assert "after 2 attempts" in result["message"], result
    assert "too slow" in result["message"] or "timed out" in result["message"], result
    records = _since(cloud, mark)
    assert len(_faults(records, "trickle")) == 2
    assert [r["result"] for r in registrations(records, "trickle")] == ["ok", "ok"]  # processed, answer lost
    assert result["elapsed_ms"] / 1000 < 2 * 2.0  # bounded (see the next test for how tightly)
    observed("trickle", attempts=2, elapsed_ms=result["elapsed_ms"])




def test_trickled_answer_is_bounded_by_timeout_ms(cloud, tmp_path):
    # timeout_ms bounds "the whole response": a trickle of one byte every 200 ms must end the
    # attempt about timeout_ms after it started, not after a whole line (or body) has trickled in.
    info = _tencent(tmp_path, cloud, "trickle-tight")
    cloud.fault("trickle", count=1, interval=0.2)
    ensure = {"attempts": 1, "timeout_ms": 500}
    result, wall = _fails(info, "NetworkError", ensure)
    observed("trickle_bound", timeout_ms=500, elapsed_ms=result["elapsed_ms"])
    assert result["elapsed_ms"] <= 500 + 200 + 300, result["elapsed_ms"]


# -- a body cut short: reset, truncated ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["reset", "truncate"])
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_body_cut_short_is_retried_then_network_error(cloud, tmp_path, kind, scheme):
    name = "%s-%s" % (kind, scheme)
    info = _tencent(tmp_path, cloud, name, scheme=scheme)
    cloud.fault(kind, count=3)
    mark = len(cloud.log())
    ensure = {"attempts": 3, "backoff_ms": 50, "timeout_ms": 2000}
    result, wall = _fails(info, "NetworkError", ensure)
    assert "after 3 attempts" in result["message"], result
    if kind == "truncate":
        assert "cut short" in result["message"], result
    records = _since(cloud, mark)
    assert len(_faults(records, kind)) == 3
    assert len(registrations(records, name)) == 3  # each attempt was processed; the answers were lost
    assert result["elapsed_ms"] / 1000 <= 3 * 0.2 + 0.3 + SLACK_S
    observed(name, attempts=3, elapsed_ms=result["elapsed_ms"], message=repr(result["message"][-60:]))


def test_reset_then_retry_stores_the_newest_credential(cloud, tmp_path):
    # The first answer is lost to a reset; the retry gets a new psk (the first one is void) and
    # that one is stored and logs in.
    info = _tencent(tmp_path, cloud, "reset-then-ok")
    cloud.fault("reset", count=1)
    mark = len(cloud.log())
    result, wall = _run(info, ensure={"attempts": 3, "backoff_ms": 50, "timeout_ms": 2000}, connect={})
    assert result["ok"] and result["connected"], result
    records = _since(cloud, mark)
    assert len(_faults(records, "reset")) == 1 and len(registrations(records, "reset-then-ok")) == 2
    assert read_json(info)["credential"]["psk"] == cloud.device(PID, "reset-then-ok")["psk"]
    observed("reset_then_ok", attempts=2, elapsed_ms=result["elapsed_ms"])


# -- server errors: bounded retries, jitter, Retry-After, total budget --------------------------------
# As HTTP statuses (answer "http"): Tencent's own answer, a code in a 200, is retried the same way
# (test_host_e2e_tencent.py, test_host_throttle.py).

def test_5xx_retries_are_bounded_and_jittered(cloud, tmp_path):
    ensure = {"attempts": 4, "backoff_ms": 200, "max_backoff_ms": 800, "timeout_ms": 1000}
    sequences = []
    for name in ("jitter-a", "jitter-b"):
        info = _tencent(tmp_path, cloud, name)
        cloud.fault("http_status", count=3, status=503, answer="http")
        mark = len(cloud.log())
        result, wall = _run(info, ensure=ensure)
        assert result["ok"], result
        records = _since(cloud, mark)
        attempts = _faults(records, "http_status") + registrations(records, name)
        assert [r["result"] for r in attempts] == ["fault:http_status"] * 3 + ["ok"]
        waits = retry_waits(result["output"])
        assert len(waits) == 3
        for wait, base in zip(waits, (200, 400, 800)):
            assert base // 2 <= wait <= base, waits
        for gap, wait in zip(_gaps(attempts), waits):
            assert wait / 1000 - 0.01 <= gap <= wait / 1000 + SLACK_S, (_gaps(attempts), waits)
        sequences.append(waits)
        observed(name, attempts=4, waits_ms=waits, log_gaps_s=_gaps(attempts), elapsed_ms=result["elapsed_ms"])
    # jitter: two devices do not wait in lockstep (equal by chance: about 1 in 8 million)
    assert sequences[0] != sequences[1], sequences


def test_5xx_until_the_last_attempt_is_network_error_and_nothing_stored(cloud, tmp_path):
    info = _tencent(tmp_path, cloud, "five-xx-all")
    cloud.fault("http_status", count=5, status=502, answer="http")
    mark = len(cloud.log())
    result, wall = _fails(info, "NetworkError", {"attempts": 3, "backoff_ms": 50, "timeout_ms": 1000})
    assert "after 3 attempts" in result["message"] and "HTTP 502" in result["message"]
    assert len(_faults(_since(cloud, mark), "http_status")) == 3
    assert cloud.faults()[0]["count"] == 2  # no fourth request
    observed("5xx_all", attempts=3, elapsed_ms=result["elapsed_ms"])


def test_429_retry_after_is_honoured(cloud, tmp_path):
    info = _tencent(tmp_path, cloud, "retry-after")
    cloud.fault("http_status", count=1, status=429, retry_after=1)
    mark = len(cloud.log())
    result, wall = _run(info, ensure={"attempts": 3, "backoff_ms": 50, "timeout_ms": 1000})
    assert result["ok"], result
    records = _since(cloud, mark)
    attempts = _faults(records, "http_status") + registrations(records, "retry-after")
    assert [r["result"] for r in attempts] == ["fault:http_status", "ok"]
    assert retry_waits(result["output"]) == [1000]  # Retry-After, not the 25-50 ms backoff
    [gap] = _gaps(attempts)
    assert 1.0 - 0.01 <= gap <= 1.0 + SLACK_S, gap
    assert "HTTP 429" in result["output"]
    observed("retry_after", attempts=2, retry_after_s=1, log_gap_s=gap, elapsed_ms=result["elapsed_ms"])


def test_429_retry_after_beyond_total_ms_ends_at_once(cloud, tmp_path):
    info = _tencent(tmp_path, cloud, "retry-after-long")
    cloud.fault("http_status", count=3, status=429, retry_after=30)
    mark = len(cloud.log())
    result, wall = _fails(info, "NetworkError", {"attempts": 3, "backoff_ms": 50, "max_backoff_ms": 2000,
                                                 "total_ms": 20000, "timeout_ms": 1000})
    assert "after 1 attempt " in result["message"] and "HTTP 429" in result["message"], result
    assert len(_faults(_since(cloud, mark), "http_status")) == 1
    assert result["elapsed_ms"] < 1000
    observed("retry_after_too_long", attempts=1, elapsed_ms=result["elapsed_ms"])


def test_alibaba_failing_inside_is_retried_then_registered(cloud, tmp_path):
    # Answered as Alibaba reports it: HTTP 200, code 500 ("an unknown error occurred"), then 503.
    info = _aliyun(tmp_path, cloud, "ali-500", api="https")
    cloud.fault("http_status", count=1, status=500)
    cloud.fault("http_status", count=1, status=503)
    mark = len(cloud.log())
    result, wall = _run(info, ensure={"attempts": 3, "backoff_ms": 50, "timeout_ms": 2000})
    assert result["ok"], result
    records = [r for r in _since(cloud, mark) if r["api"] == "aliyun-https-register"]
    assert [(r["result"], r.get("answer")) for r in records] == [("fault:http_status", "cloud")] * 2 + [("ok", None)]
    assert "(server answered code 500); retrying" in result["output"], result["output"]
    assert "(server answered code 503); retrying" in result["output"], result["output"]
    assert read_json(info)["credential"]["device_secret"] == cloud.device(PK, "ali-500")["device_secret"]


def test_total_ms_bounds_all_attempts(cloud, tmp_path):
    info = _tencent(tmp_path, cloud, "budget", scheme="http")  # plain: no handshake to spend the budget on
    cloud.fault("http_status", count=50, status=503, answer="http")
    mark = len(cloud.log())
    ensure = {"attempts": 50, "backoff_ms": 100, "max_backoff_ms": 400, "total_ms": 1500, "timeout_ms": 1000}
    result, wall = _fails(info, "NetworkError", ensure)
    tried = len(_faults(_since(cloud, mark), "http_status"))
    # The budget, not the attempt count, ended the tries: 50 attempts need waits of at least
    # 50 + 100 + 48 * 200 ms, far past 1500, however fast the machine. The last attempt may get
    # so little of the budget that it never reaches the cloud, so the cloud saw the attempts the
    # device counted or fewer (on a loaded machine an attempt may end at its timeout before its
    # request is out). At least two fit: the first ends at its 1000 ms. How many fit, and each
    # attempt's share of the budget, is checked to the millisecond on a fake clock in test_retries.py.
    counted = int(result["message"].split("after ")[1].split(" attempt")[0])
    assert 2 <= counted < 50 and tried <= counted, (tried, result["message"])
    observed("total_ms", attempts=tried, total_ms=1500, elapsed_ms=result["elapsed_ms"])




def test_total_ms_bounds_slow_attempts_too(cloud, tmp_path):
    # Each answer is delayed past timeout_ms. A second attempt given its full timeout_ms would
    # end after at least 2 x 1900 ms; cut at the 2000 ms budget it ends near 2000. The bound
    # sits between the two, 1800 ms from the correct figure, so no machine is slow enough to
    # fail it wrongly.
    info = _tencent(tmp_path, cloud, "budget-slow")
    cloud.fault("delay", count=5, seconds=3)
    mark = len(cloud.log())
    ensure = {"attempts": 5, "backoff_ms": 50, "max_backoff_ms": 100, "total_ms": 2000, "timeout_ms": 1900}
    result, wall = _fails(info, "NetworkError", ensure)
    _settle(cloud, mark, "budget-slow", len(_faults(_since(cloud, mark), "delay")))
    observed("total_ms_slow_attempts", total_ms=2000, elapsed_ms=result["elapsed_ms"])
    assert result["elapsed_ms"] < 2 * 1900, result["elapsed_ms"]


def test_rejection_after_a_5xx_is_not_retried(cloud, tmp_path):
    info = _tencent(tmp_path, cloud, "reject-after-5xx", secret="WrongSecret0123456789")
    cloud.fault("http_status", count=1, status=500, answer="http")
    mark = len(cloud.log())
    result, wall = _fails(info, "RejectedError", {"attempts": 4, "backoff_ms": 50, "timeout_ms": 1000})
    assert result["code"] == "AuthFailure.SignatureFailure"
    records = _since(cloud, mark)
    assert [r["result"] for r in _faults(records, "http_status") + registrations(records, "reject-after-5xx")] \
        == ["fault:http_status", "AuthFailure.SignatureFailure"]
    assert result["output"].count("retrying in") == 1
    observed("reject_after_5xx", attempts=2, elapsed_ms=result["elapsed_ms"])


# -- a wrong content type ---------------------------------------------------------------------------

def test_html_instead_of_json_is_a_protocol_error_without_retry(cloud, tmp_path):
    info = _tencent(tmp_path, cloud, "html-200")
    cloud.fault("wrong_content_type", count=2)
    mark = len(cloud.log())
    result, wall = _fails(info, "ProtocolError", {"attempts": 3, "backoff_ms": 50, "timeout_ms": 1000})
    assert "retrying" not in result["output"]
    assert len(_faults(_since(cloud, mark), "wrong_content_type")) == 1 and cloud.faults()[0]["count"] == 1
    observed("html_200", attempts=1, message=repr(result["message"]))


def test_html_error_page_with_5xx_is_retried(cloud, tmp_path):
    info = _tencent(tmp_path, cloud, "html-502")
    cloud.fault("wrong_content_type", count=1, status=502)
    mark = len(cloud.log())
    result, wall = _run(info, ensure={"attempts": 3, "backoff_ms": 50, "timeout_ms": 1000})
    assert result["ok"], result
    records = _since(cloud, mark)
    assert [r["result"] for r in _faults(records, "wrong_content_type") + registrations(records, "html-502")] \
        == ["fault:wrong_content_type", "ok"]
    observed("html_502", attempts=2)


# -- TLS: refused as TLSError, never retried ---------------------------------------------------------

def _other_ca(path):
    # A CA of its own: the device trusts it instead of the emulator's.
    from cloud_emulator.crypto import _create_ca
    from cryptography.hazmat.primitives.serialization import Encoding

    path.write_bytes(_create_ca().certificate.public_bytes(Encoding.DER))
    return str(path)


@pytest.mark.parametrize("fault,reason", [
    ("wrong_ca", "not correctly signed"),
    ("tls_expired", "expired"),
    ("tls_wrong_host", "Common Name"),
])
def test_tls_faults_on_https_are_tls_errors_without_retry(cloud, tmp_path, fault, reason):
    name = "https-" + fault.replace("_", "-")
    fields = {"ca": _other_ca(tmp_path / "other-ca.der")} if fault == "wrong_ca" else {}
    info = _tencent(tmp_path, cloud, name, **fields)
    if fault != "wrong_ca":
        cloud.fault(fault, count=2)
    mark = len(cloud.log())
    result, wall = _fails(info, "TLSError", {"attempts": 3, "backoff_ms": 50, "timeout_ms": 1000})
    assert reason in result["message"] and "localhost" in result["message"], result
    assert "retrying" not in result["output"]
    records = _since(cloud, mark)
    assert registrations(records, name) == []
    if fault != "wrong_ca":
        assert [(r["api"], r["transport"], r["result"]) for r in records] == [("tls", "https", "fault:" + fault)]
        assert cloud.faults()[0]["count"] == 1  # one handshake, no retry
    observed(name, attempts=1, message=repr(result["message"]))


@pytest.mark.parametrize("fault,reason", [("tls_expired", "expired"), ("tls_wrong_host", "Common Name")])
def test_tls_faults_on_mqtts_registration_are_tls_errors_without_retry(cloud, tmp_path, fault, reason):
    name = "mqtts-" + fault.replace("_", "-")
    info = _aliyun(tmp_path, cloud, name)
    cloud.fault(fault, count=2)
    mark = len(cloud.log())
    result, wall = _fails(info, "TLSError", {"attempts": 3, "backoff_ms": 50, "timeout_ms": 1000})
    assert reason in result["message"], result
    assert "retrying" not in result["output"]
    records = _since(cloud, mark)
    assert [(r["api"], r["transport"], r["result"]) for r in records] == [("tls", "mqtts", "fault:" + fault)]
    assert cloud.faults()[0]["count"] == 1
    assert cloud.device(PK, name)["status"] == "created"
    observed(name, attempts=1, message=repr(result["message"]))


def test_tls_fault_on_mqtts_login_is_a_tls_error(cloud, tmp_path):
    info = _tencent(tmp_path, cloud, "login-expired", mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port)
    assert _run(info, ensure={})[0]["ok"]
    stored = folder_snapshot(info)
    cloud.fault("tls_expired")
    mark = len(cloud.log())
    result, wall = _run(info, ensure={}, connect={"timeout_ms": 1000})
    assert not result["ok"] and result["error"] == "TLSError" and "expired" in result["message"], result
    assert folder_snapshot(info) == stored
    assert [r["result"] for r in _since(cloud, mark)] == ["fault:tls_expired"]  # no CONNECT was judged
    assert _run(info, ensure={}, connect={})[0]["connected"]  # the next connection is served normally


# -- MQTT: a CONNECT never answered, a session dropped before /ext/register ----------------------------

def test_mqtt_registration_without_connack_is_retried_then_network_error(cloud, tmp_path):
    info = _aliyun(tmp_path, cloud, "no-connack")
    cloud.fault("mqtt_no_connack", count=3)
    mark = len(cloud.log())
    ensure = {"attempts": 3, "backoff_ms": 50, "timeout_ms": 500}
    result, wall = _fails(info, "NetworkError", ensure)
    assert "after 3 attempts" in result["message"], result
    records = _since(cloud, mark)
    assert [(r["api"], r["transport"]) for r in _faults(records, "mqtt_no_connack")] == [("mqtt-connect", "mqtts")] * 3
    assert registrations(records, "no-connack") == []  # never judged: no secret issued
    # each attempt: TLS handshake, CONNECT, then the CONNACK wait bounded by timeout_ms
    waits = sum(retry_waits(result["output"])) / 1000
    assert 1.5 + waits <= result["elapsed_ms"] / 1000 <= 1.5 + waits + SLACK_S
    observed("mqtt_no_connack_register", attempts=3, elapsed_ms=result["elapsed_ms"],
             message=repr(result["message"][-60:]))


def test_mqtt_login_without_connack_is_a_bounded_network_error(cloud, tmp_path):
    info = _tencent(tmp_path, cloud, "login-no-connack")
    assert _run(info, ensure={})[0]["ok"]
    cloud.fault("mqtt_no_connack")
    mark = len(cloud.log())
    result, wall = _run(info, ensure={}, connect={"timeout_ms": 700})
    assert not result["ok"] and result["error"] == "NetworkError", result
    assert [(r["api"], r["transport"], r["result"]) for r in _since(cloud, mark)] \
        == [("mqtt-connect", "mqtt", "fault:mqtt_no_connack")]
    assert 0.7 <= result["elapsed_ms"] / 1000 <= 0.7 + SLACK_S
    observed("mqtt_no_connack_login", elapsed_ms=result["elapsed_ms"], message=repr(result["message"]))


def test_mqtt_registration_session_dropped_before_result_is_retried(cloud, tmp_path):
    # CONNACK 0, then the broker closes without publishing /ext/register: the secret was issued
    # but lost; the retry gets a new one, which is stored and logs in.
    info = _aliyun(tmp_path, cloud, "dropped-once")
    cloud.fault("mqtt_close_after_connack", count=1)
    mark = len(cloud.log())
    result, wall = _run(info, ensure={"attempts": 3, "backoff_ms": 50, "timeout_ms": 1000}, connect={})
    assert result["ok"] and result["connected"], result
    records = _since(cloud, mark)
    assert len(_faults(records, "mqtt_close_after_connack")) == 1
    assert [r["result"] for r in registrations(records, "dropped-once")] == ["ok", "ok"]
    assert len([r for r in records if r["api"] == "mqtt-deliver" and r.get("device") == "dropped-once"]) == 1
    assert read_json(info)["credential"] == {"device_secret": cloud.device(PK, "dropped-once")["device_secret"]}
    observed("mqtt_dropped_once", attempts=2, elapsed_ms=result["elapsed_ms"])


def test_mqtt_registration_session_always_dropped_is_network_error(cloud, tmp_path):
    info = _aliyun(tmp_path, cloud, "dropped-all")
    cloud.fault("mqtt_close_after_connack", count=2)
    mark = len(cloud.log())
    ensure = {"attempts": 2, "backoff_ms": 50, "timeout_ms": 1000}
    result, wall = _fails(info, "NetworkError", ensure)
    assert "after 2 attempts" in result["message"], result
    records = _since(cloud, mark)
    assert len(_faults(records, "mqtt_close_after_connack")) == 2
    assert [r for r in records if r["api"] == "mqtt-deliver"] == []
    assert result["elapsed_ms"] / 1000 <= 2 * 1.0 + SLACK_S  # the drop is noticed, not waited out
    observed("mqtt_dropped_all", attempts=2, elapsed_ms=result["elapsed_ms"], message=repr(result["message"][-70:]))


# -- the fault queue's own rules ----------------------------------------------------------------------

def test_fault_parameters_are_checked():
    from cloud_emulator.faults import FaultError, make_fault

    assert make_fault("http_status", status=429, retry_after=3) == {
        "kind": "http_status", "count": 1, "status": 429, "retry_after": 3}
    assert make_fault("http_status", status=500, answer="http")["answer"] == "http"
    assert make_fault("reset", count=2) == {"kind": "reset", "count": 2}
    assert make_fault("truncate", body_bytes=10)["body_bytes"] == 10
    for kind, values in [("trickle", {}), ("trickle", {"interval": 0}), ("http_status", {"status": 700}),
                         ("http_status", {"status": 429, "retry_after": -1}), ("delay", {"interval": 1.0}),
                         ("http_status", {"status": 429, "answer": "429"}),
                         ("http_status", {"status": 429, "retry_after": 3, "answer": "cloud"}),
                         ("delay", {"seconds": 1, "answer": "http"}),
                         ("reset", {"body_bytes": 1.5}), ("tls_expired", {"seconds": 1}), ("nonsense", {})]:
        with pytest.raises(FaultError):
            make_fault(kind, **values)

# A cloud that admits R registrations a second: the emulator's token bucket per product, its
# over-limit answers in each cloud's shape (by default as the clouds report them: HTTP 200 and a
# code, no Retry-After; or HTTP 429 with Retry-After, the emulator's choice), and devices that
# come back, when told or by their own backoff, and succeed.
import http.client
import json
import ssl

import pytest

from cloud_emulator.testing import running_emulator
from cloud_emulator.throttle import RegistrationThrottle, Throttled, set_throttle
from e2e import SECRET, read_json, registrations, retry_waits, run_device, write_aliyun_info, write_info

TENCENT, ALIYUN = "THROTTLE01", "a1Throttle1"


def _seconds(throttled):
    return None if throttled is None else throttled.seconds


def test_a_bucket_admits_its_burst_then_its_rate():
    state = {}
    set_throttle(state, "P", 0.5, 2, "next")  # two at once, then one every 2 s
    bucket = RegistrationThrottle()
    assert [_seconds(bucket.check(state, "P", 100.0, "d%d" % i)) for i in range(3)] == [None, None, 2]
    assert _seconds(bucket.check(state, "P", 101.0, "d2")) == 1  # half a token there: 1 s to go
    assert bucket.check(state, "P", 102.0, "d2") is None and _seconds(bucket.check(state, "P", 102.0, "d3")) == 2
    assert bucket.check(state, "other", 102.0) is None  # a product without a limit
    set_throttle(state, "P", None, None)
    assert bucket.check(state, "P", 102.0) is None


def test_a_reserving_bucket_gives_each_refused_device_a_later_slot_and_keeps_it():
    state = {}
    set_throttle(state, "P", 2, 1)  # one at once, then one every 0.5 s
    bucket = RegistrationThrottle()
    assert bucket.check(state, "P", 100.0, "a") is None
    # Refused together, told apart: b's token comes at 100.5, c's at 101.0, d's at 101.5.
    assert [_seconds(bucket.check(state, "P", 100.0, name)) for name in "bcd"] == [1, 1, 2]
    assert _seconds(bucket.check(state, "P", 100.2, "b")) == 1  # back too early: its slot stands
    assert _seconds(bucket.check(state, "P", 100.6, "e")) == 2  # a newcomer queues behind d (102.0)
    assert bucket.check(state, "P", 101.0, "b") is None and bucket.check(state, "P", 101.0, "c") is None
    assert bucket.check(state, "P", 101.5, "d") is None
    assert _seconds(bucket.check(state, "P", 101.5, "f")) == 1  # its slot is 102.5: e's, 102.0, is not f's
    assert bucket.check(state, "P", 102.0, "e") is None and _seconds(bucket.check(state, "P", 102.0, "f")) == 1
    assert bucket.check(state, "P", 102.5, "f") is None


def test_a_throttle_that_sends_no_retry_after_and_one_without_a_device_reserve_nothing():
    state = {}
    set_throttle(state, "P", 1, 1, "none")
    bucket = RegistrationThrottle()
    assert bucket.check(state, "P", 100.0, "a") is None
    assert bucket.check(state, "P", 100.0, "b") == Throttled(None)
    assert bucket.check(state, "P", 101.0, "c") is None  # b reserved nothing: the token went to c
    set_throttle(state, "Q", 1, 1)  # reserving, but an MQTT registration names no slot to come back to
    assert bucket.check(state, "Q", 100.0) is None and _seconds(bucket.check(state, "Q", 100.0)) == 1
    assert bucket.check(state, "Q", 101.0) is None


def test_an_api_that_answers_in_the_body_sends_no_retry_after_and_reserves_nothing():
    state = {}
    set_throttle(state, "P", 1, 1)  # the defaults: Retry-After slot, answer cloud
    bucket = RegistrationThrottle()
    assert bucket.check(state, "P", 100.0, "a", body_answer=True) is None
    assert bucket.check(state, "P", 100.0, "b", body_answer=True) == Throttled(None, True)
    assert bucket.check(state, "P", 101.0, "c", body_answer=True) is None  # b reserved nothing
    # The same product's other APIs (Tencent's legacy one) keep the 429 with a reserved slot.
    assert bucket.check(state, "P", 101.0, "d") == Throttled(1)
    set_throttle(state, "P", 1, 1, answer="http")
    assert bucket.check(state, "P", 101.0, "e", body_answer=True) == Throttled(2)  # queued behind d


@pytest.mark.parametrize("rate, burst, mode, answer", [(0, 1, "slot", "cloud"), (-1, 1, "slot", "cloud"),
                                                       (float("inf"), 1, "slot", "cloud"), (1, 0, "slot", "cloud"),
                                                       (1, 1, "later", "cloud"), (1, 1, "slot", "429")])
def test_a_limit_that_makes_no_sense_is_refused(rate, burst, mode, answer):
    with pytest.raises(ValueError):
        set_throttle({}, "P", rate, burst, mode, answer)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(TENCENT, SECRET, auth="key", dynreg=True, mode="autocreate")
        cloud.add_product(ALIYUN, SECRET, cloud="aliyun")
        for name in ("https-a", "https-b", "mqtt-a", "mqtt-b", "aliyun-https-first", "aliyun-https-second",
                     "aliyun-mqtt-first", "aliyun-mqtt-second"):
            cloud.add_device(ALIYUN, name)
        yield cloud


def _post(cloud, path, body, content_type):
    # (status, Retry-After or None, body) of one POST over HTTPS.
    connection = http.client.HTTPSConnection("localhost", cloud.https_port, timeout=30,
                                             context=ssl.create_default_context(cafile=cloud.ca_pem_path))
    headers = {"Content-Type": content_type}
    if path == "/device/register":
        headers.update({"X-TC-Algorithm": "hmacsha256", "X-TC-Timestamp": "1", "X-TC-Nonce": "1",
                        "X-TC-Signature": "bm90IGEgc2lnbmF0dXJl"})
    connection.request("POST", path, body, headers)
    response = connection.getresponse()
    answer = response.status, response.getheader("Retry-After"), json.loads(response.read())
    connection.close()
    return answer


def test_over_the_limit_each_cloud_answers_as_it_documents(cloud):
    # One registration in 50 s: the second request, signed or not, is over the limit. Tencent:
    # HTTP 200, RequestLimitExceeded, no Retry-After (PROTOCOLS.md 2.6); Alibaba: code 429
    # ("Error codes for devices") in a 200, as its other refusals here. (Each test's rate is its
    # own: the serving process keeps a product's bucket while its limit stays the same.)
    cloud.throttle(TENCENT, 1 / 50)
    cloud.throttle(ALIYUN, 1 / 50)
    try:
        v2 = json.dumps({"ProductId": TENCENT, "DeviceName": "probe-cloud"})
        first = _post(cloud, "/device/register", v2, "application/json")
        status, retry_after, body = _post(cloud, "/device/register", v2, "application/json")
        assert first[0] == 200 and first[2]["Response"]["Error"]["Code"].startswith("AuthFailure")  # refused, yet counted
        assert (status, retry_after) == (200, None)
        assert body["Response"]["Error"] == {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded"}
        assert body["Response"]["RequestId"]
        form = "productKey=%s&deviceName=probe-cloud&random=1&sign=00&signMethod=hmacsha256" % ALIYUN
        assert _post(cloud, "/auth/register/device", form, "application/x-www-form-urlencoded")[2]["code"] == 401
        answer = _post(cloud, "/auth/register/device", form, "application/x-www-form-urlencoded")
        assert answer == (200, None, {"code": 429, "message": "too many requests"})
    finally:
        cloud.throttle(TENCENT, None)
        cloud.throttle(ALIYUN, None)
    throttled = [e for e in cloud.log() if e.get("reason") == "throttled" and e.get("device") == "probe-cloud"]
    assert [(e["api"], e["result"]) for e in throttled] == [("tencent-v2", "RequestLimitExceeded"),
                                                            ("aliyun-https-register", "429")]
    assert all("retry_after" not in e for e in throttled)


def test_over_the_limit_each_cloud_answers_429_with_retry_after_when_set_so(cloud):
    # The emulator's own shape, answer "http": 429 with the throttle's Retry-After.
    cloud.throttle(TENCENT, 1 / 60, answer="http")
    cloud.throttle(ALIYUN, 1 / 60, answer="http")
    try:
        v2 = json.dumps({"ProductId": TENCENT, "DeviceName": "probe"})
        first = _post(cloud, "/device/register", v2, "application/json")
        status, retry_after, body = _post(cloud, "/device/register", v2, "application/json")
        assert first[0] == 200 and first[2]["Response"]["Error"]["Code"].startswith("AuthFailure")  # refused, yet counted
        assert status == 429 and 1 <= int(retry_after) <= 60, (status, retry_after)
        assert body["Response"]["Error"]["Code"] == "RequestLimitExceeded"
        form = "productKey=%s&deviceName=probe&random=1&sign=00&signMethod=hmacsha256" % ALIYUN
        assert _post(cloud, "/auth/register/device", form, "application/x-www-form-urlencoded")[2]["code"] == 401
        status, retry_after, body = _post(cloud, "/auth/register/device", form, "application/x-www-form-urlencoded")
        assert (status, body) == (429, {"code": 429, "message": "too many requests"}) and int(retry_after) >= 1
    finally:
        cloud.throttle(TENCENT, None)
        cloud.throttle(ALIYUN, None)
    throttled = [e for e in cloud.log() if e.get("reason") == "throttled" and e.get("device") == "probe"]
    assert [e["api"] for e in throttled] == ["tencent-v2", "aliyun-https-register"]
    assert all(1 <= e["retry_after"] <= 60 for e in throttled)


def test_a_cloud_set_to_send_no_retry_after_sends_none(cloud):
    cloud.throttle(TENCENT, 1 / 60, retry_after="none")  # a Retry-After mode asks for the 429: answer "http"
    try:
        v2 = json.dumps({"ProductId": TENCENT, "DeviceName": "probe-none"})
        _post(cloud, "/device/register", v2, "application/json")
        status, retry_after, body = _post(cloud, "/device/register", v2, "application/json")
    finally:
        cloud.throttle(TENCENT, None)
    assert (status, retry_after) == (429, None)
    assert body["Response"]["Error"] == {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded"}


def test_a_throttled_device_comes_back_when_told_and_registers(cloud, tmp_path):
    # One every 2 s: the second device is told "Retry-After: 2" (HTTP 429, answer "http") and waits it.
    cloud.throttle(TENCENT, 0.5, 1, answer="http")
    try:
        devices = []
        for name in ("later-a", "later-b"):
            (tmp_path / name).mkdir()
            devices.append(write_info(tmp_path / name, cloud, TENCENT, device_name=name))
        first = run_device(devices[0], ensure={"attempts": 3, "backoff_ms": 50, "timeout_ms": 5000})
        second = run_device(devices[1], ensure={"attempts": 3, "backoff_ms": 50, "timeout_ms": 5000})
    finally:
        cloud.throttle(TENCENT, None)
    assert first["ok"] and second["ok"], second
    assert [e["result"] for e in registrations(cloud, "later-b")] == ["RequestLimitExceeded", "ok"]
    assert retry_waits(second["output"])[0] >= 2000  # the cloud's Retry-After, not the 50 ms backoff
    assert read_json(devices[1])["credential"]["psk"] == cloud.device(TENCENT, "later-b")["psk"]


def test_a_device_throttled_as_tencent_answers_registers_on_a_later_attempt(cloud, tmp_path):
    # HTTP 200 and RequestLimitExceeded, no Retry-After: the device's own backoff. One every
    # 4 s: the waits before its fourth attempt add up to at least 0.75 + 1.5 + 3 s.
    cloud.throttle(TENCENT, 0.25, 1)
    try:
        results = []
        for name in ("own-backoff-a", "own-backoff-b"):
            (tmp_path / name).mkdir()
            info = write_info(tmp_path / name, cloud, TENCENT, device_name=name)
            results.append(run_device(info, ensure={"attempts": 4, "backoff_ms": 1500, "timeout_ms": 5000}))
    finally:
        cloud.throttle(TENCENT, None)
    assert all(r["ok"] for r in results), results
    attempts = [e["result"] for e in registrations(cloud, "own-backoff-b")]
    assert attempts[-1] == "ok" and set(attempts[:-1]) == {"RequestLimitExceeded"}, attempts
    assert results[1]["output"].count("(server answered RequestLimitExceeded); retrying") == len(attempts) - 1
    assert read_json(info)["credential"]["psk"] == cloud.device(TENCENT, "own-backoff-b")["psk"]


@pytest.mark.parametrize("api", ["https", "mqtt"])
def test_a_throttled_alibaba_device_registers_on_a_later_attempt(cloud, tmp_path, api):
    # HTTPS: code 429 in a 200 (the default answer), no Retry-After. MQTT: CONNACK 3 (server
    # unavailable). Both retried with backoff; at least 0.75 + 1.5 s pass before the third
    # attempt, when the bucket has a token again.
    cloud.throttle(ALIYUN, 0.5, 1)
    try:
        results = []
        for name in ("%s-a" % api, "%s-b" % api):
            (tmp_path / name).mkdir()
            info = write_aliyun_info(tmp_path / name, cloud, ALIYUN, name, api=api)
            results.append(run_device(info, ensure={"attempts": 4, "backoff_ms": 1500, "timeout_ms": 5000}))
    finally:
        cloud.throttle(ALIYUN, None)
    assert all(r["ok"] for r in results), results
    attempts = [e["result"] for e in registrations(cloud, "%s-b" % api)]
    assert attempts[-1] == "ok" and set(attempts[:-1]) == {"429" if api == "https" else "throttled"}, attempts


@pytest.mark.parametrize("shape", ["tencent", "aliyun-https", "aliyun-mqtt"])
def test_throttling_spends_no_attempt_on_the_device(cloud, tmp_path, shape):
    # One registration in 6 s, each cloud's own answer (no Retry-After), and a second device
    # allowed a single failed attempt: it is refused again and again, and registers once the
    # bucket has a token, every refusal waited out by its own growing backoff.
    product = TENCENT if shape == "tencent" else ALIYUN
    cloud.throttle(product, 1 / 6)
    try:
        results = []
        for name in ("%s-first" % shape, "%s-second" % shape):
            (tmp_path / name).mkdir()
            if shape == "tencent":
                info = write_info(tmp_path / name, cloud, TENCENT, device_name=name)
            else:
                info = write_aliyun_info(tmp_path / name, cloud, ALIYUN, name, api=shape.split("-")[1])
            results.append(run_device(info, ensure={"attempts": 1, "backoff_ms": 400, "timeout_ms": 5000}))
    finally:
        cloud.throttle(product, None)
    assert all(r["ok"] for r in results), results
    attempts = [e["result"] for e in registrations(cloud, "%s-second" % shape)]
    assert attempts[-1] == "ok" and len(attempts) >= 3, attempts
    assert set(attempts[:-1]) == {{"tencent": "RequestLimitExceeded", "aliyun-https": "429"}.get(shape, "throttled")}
    waits = retry_waits(results[1]["output"])
    assert len(waits) == len(attempts) - 1 and waits[-1] >= waits[0], waits

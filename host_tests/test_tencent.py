# dynreg.tencent against the public vectors of PROTOCOLS.md section 5 and our own edge
# cases (runs on CPython and MicroPython).
import json

from support import vectors, exact
from dynreg import tencent, ConfigError, NetworkError, ProtocolError, RejectedError, TLSError

PUBLIC = vectors("tencent_public")
EDGE = vectors("tencent_edge")


def _all(section):
    return PUBLIC.get(section, []) + EDGE.get(section, [])


def test_signatures():
    for v in _all("signature"):
        got = tencent.sign(v["product_secret"], v["timestamp"], v["nonce"], v["body"].encode(),
                           host=v["host"], algorithm=v["algorithm"])
        assert got == v["signature"], v["source"]


def test_register_request_matches_vectors():
    for v in _all("signature"):
        url, headers, body = tencent.register_request(
            v["product_id"], v["device_name"], v["product_secret"], v["timestamp"], v["nonce"],
            host=v["host"], algorithm=v["algorithm"])
        assert url == "https://" + v["host"] + "/device/register"
        assert body == v["body"].encode(), v["source"]
        assert headers["X-TC-Signature"] == v["signature"], v["source"]
        assert headers["X-TC-Algorithm"] == v["algorithm"]
        assert headers["X-TC-Timestamp"] == str(v["timestamp"])
        assert headers["X-TC-Nonce"] == str(v["nonce"])
        assert headers["Content-Type"] == "application/json; charset=utf-8"


def test_register_request_endpoint_signs_host_without_port():
    v = EDGE["signature"][2]  # signed for host "localhost"
    url, headers, _ = tencent.register_request(v["product_id"], v["device_name"], v["product_secret"],
                                               v["timestamp"], v["nonce"], endpoint="http://localhost:8080/")
    assert url == "http://localhost:8080/device/register"
    assert headers["X-TC-Signature"] == v["signature"]


def test_legacy_signatures():
    for v in _all("legacy_signature"):
        got = tencent.legacy_signature(v["product_id"], v["device_name"], v["product_secret"],
                                       v["timestamp"], v["nonce"])
        assert got == v["signature"], v["source"]


def test_legacy_request():
    v = PUBLIC["legacy_signature"][0]
    url, headers, body = tencent.legacy_request(v["product_id"], v["device_name"], v["product_secret"],
                                                v["timestamp"], v["nonce"])
    assert url == "https://gateway.tencentdevices.com/register/dev"
    assert headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    assert doc == {"deviceName": "xyz", "nonce": 5456, "productId": "ASJ3GXJXGX",
                   "timestamp": 1551000065, "signature": v["signature"]}
    assert body.startswith(b'{"deviceName":"xyz","nonce":5456,')


def test_mqtt_logins():
    for v in _all("mqtt_login"):
        got = tencent.mqtt_login(v["product_id"], v["device_name"], v["psk"], v["connid"], v["expiry"],
                                 algorithm=v["algorithm"])
        assert got == (v["client_id"], v["username"], v["password"]), v["source"]


def test_decrypt_payloads():
    for v in _all("payload"):
        expected = json.loads(v["plaintext"])
        got = tencent.decrypt_payload(v["payload"], v["product_secret"], v["len"])
        assert got == expected, v["source"]


def test_decrypt_public_payload_without_len():
    v = PUBLIC["payload"][0]
    assert tencent.decrypt_payload(v["payload"], v["product_secret"]) == json.loads(v["plaintext"])


def test_malformed_payloads_are_protocol_errors():
    assert len(EDGE["bad_payload"]) == 18  # every malformed case of tencent_edge.json
    for v in EDGE["bad_payload"]:
        exact(ProtocolError, tencent.parse_response,
              json.dumps({"Response": {"Len": v["len"], "Payload": v["payload"], "RequestId": "r"}}).encode(),
              v["product_secret"])


def test_parse_current_response():
    v = PUBLIC["payload"][0]
    body = json.dumps({"Response": {"Len": 53, "Payload": v["payload"], "RequestId": "0a1b"}}).encode()
    assert tencent.parse_response(body, v["product_secret"]) == {"psk": "lDZ6Uqt+I9E0wW7rvDUs7Q=="}


def test_parse_legacy_response():
    v = PUBLIC["payload"][0]
    body = json.dumps({"code": 0, "message": "", "len": 53, "payload": v["payload"]}).encode()
    assert tencent.parse_response(body, v["product_secret"]) == {"psk": "lDZ6Uqt+I9E0wW7rvDUs7Q=="}


def test_an_answer_without_len_has_its_zero_padding_stripped():
    # PROTOCOLS.md 2.3: truncate to Len; where it is absent strip trailing NULs.
    v = PUBLIC["payload"][0]
    for body in ({"Response": {"Payload": v["payload"], "RequestId": "0a1b"}},
                 {"code": 0, "message": "", "payload": v["payload"]}):
        got = tencent.parse_response(json.dumps(body).encode(), v["product_secret"])
        assert got == {"psk": "lDZ6Uqt+I9E0wW7rvDUs7Q=="}, body
    for body in ({"Response": {"Len": None, "Payload": v["payload"]}}, {"code": 0, "len": "53", "payload": v["payload"]}):
        exact(ProtocolError, tencent.parse_response, json.dumps(body).encode(), v["product_secret"])


def test_parse_certificate_response():
    v = EDGE["payload"][3]
    expected = json.loads(v["plaintext"])
    body = json.dumps({"Response": {"Len": v["len"], "Payload": v["payload"], "RequestId": "x"}}).encode()
    got = tencent.parse_response(body, v["product_secret"])
    assert got == {"cert": expected["clientCert"], "key": expected["clientKey"]}


def test_cloud_errors_are_rejections():
    body = b'{"Response":{"Error":{"Code":"FailedOperation.DeviceNotExist","Message":"Pre create mode: device not exists"},"RequestId":"r1"}}'
    e = exact(RejectedError, tencent.parse_response, body, "hzvf5LF9S0isvBhDSauWMaIk")
    assert e.code == "FailedOperation.DeviceNotExist"
    assert e.message == "Pre create mode: device not exists"
    e = exact(RejectedError, tencent.parse_response, b'{"code":1010,"message":"Check signature failed"}',
              "hzvf5LF9S0isvBhDSauWMaIk")
    assert e.code == 1010 and e.message == "Check signature failed"


def _v2_error(code):
    return ('{"Response":{"Error":{"Code":"%s","Message":"m"},"RequestId":"r1"}}' % code).encode()


def test_a_busy_or_failing_cloud_is_a_network_error_naming_its_code():
    # PROTOCOLS.md 2.6: Tencent answers these in a 200, without Retry-After; retried like a 5xx.
    secret = "hzvf5LF9S0isvBhDSauWMaIk"
    for code in ("InternalError", "InternalError.DbOperationFailed", "RequestLimitExceeded",
                 "RequestLimitExceeded.UinLimitExceeded", "RequestLimitExceeded.IPLimitExceeded",
                 "RequestLimitExceeded.GlobalRegionUinLimitExceeded", "ServiceUnavailable", "ResourceUnavailable",
                 "ResourceInsufficient", "ResourceInsufficient.Quota"):
        e = exact(NetworkError, tencent.parse_response, _v2_error(code), secret)
        assert not isinstance(e, TLSError) and code in str(e) and secret not in str(e), (code, str(e))
        assert e.retry_after_ms is None
        # Only the rate limit is throttling, which spends no attempt; a failure inside counts.
        assert e.throttled == code.startswith("RequestLimitExceeded"), code


def test_a_refusal_says_whether_the_console_can_turn_it():
    # Waiting, with the console fixed, turns these: dynamic registration off, a DeviceName not
    # pre-created, the auto-create quota, an unknown code. These stay whatever happens: a wrong
    # ProductSecret, a device activated before, a ProductId that does not exist.
    secret = "hzvf5LF9S0isvBhDSauWMaIk"
    for code, fixable in (("UnauthorizedOperation.DynamicRegisterDisabled", True),
                          ("ResourceNotFound.DeviceNotExist", True), ("LimitExceeded.DeviceExceedLimit", True),
                          ("NoSuchCode.Yet", True), ("AuthFailure.SignatureFailure", False),
                          ("FailedOperation.DeviceAlreadyActivated", False),
                          ("ResourceNotFound.ProductNotExist", False)):
        e = exact(RejectedError, tencent.parse_response, _v2_error(code), secret)
        assert e.fixed_in_console is fixable, code
    e = exact(RejectedError, tencent.parse_response, b'{"code":1010,"message":"Check signature failed"}', secret)
    assert e.fixed_in_console is False


def test_other_cloud_codes_are_final_rejections_unknown_ones_too():
    secret = "hzvf5LF9S0isvBhDSauWMaIk"
    for code in ("AuthFailure.SignatureFailure", "AuthFailure.SignatureExpire", "ResourceNotFound.DeviceNotExist",
                 "LimitExceeded.DeviceExceedLimit", "FailedOperation.DeviceAlreadyActivated", "NoSuchCode.Yet",
                 "InternalErrors", "RequestLimitExceededNow", "ResourceUnavailable.DeviceDisabled",
                 "ServiceUnavailable.X", ""):
        e = exact(RejectedError, tencent.parse_response, _v2_error(code), secret)
        assert e.code == code, (code, e.code)
    # The legacy API's numeric codes: no source names a transient one (docs/API.md, "Busy or final"), so all are final.
    for code in (1010, 429, 500, 503, 4400, 6000):
        body = ('{"code":%d,"message":"m"}' % code).encode()
        assert exact(RejectedError, tencent.parse_response, body, secret).code == code


def test_malformed_envelopes_are_protocol_errors():
    secret = "hzvf5LF9S0isvBhDSauWMaIk"
    payload = PUBLIC["payload"][0]["payload"]
    bodies = [
        b"", b"null", b"[]", b"{", b"\xff\xfe{}", b'{"Response":[]}', b'{"Response":{}}',
        b'{"Response":{"Error":"boom"}}', b'{"Response":{"Len":"53","Payload":"' + payload.encode() + b'"}}',
        b'{"Response":{"Len":53,"Payload":5}}', b'{"Response":{"Len":true,"Payload":"' + payload.encode() + b'"}}',
        b'{"code":"0","len":53,"payload":"x"}', b'{"code":0,"len":53}', b'{"unexpected":1}',
        # Nested 3000 and 1300 deep, within the 8 KiB size limit: the container limit refuses them.
        b"[" * 3000 + b"]" * 3000, b'{"a":' * 1300 + b"1" + b"}" * 1300,
        b'{"Response":{"Len":53,"Payload":"' + payload.encode() + b'"', b" " * 8193,
    ]
    for body in bodies:
        exact(ProtocolError, tencent.parse_response, body, secret)


def test_device_name_rule():
    tencent.check_device_name("a")
    tencent.check_device_name("A" * 48)
    tencent.check_device_name("AA:BB:cc-dd_09")
    for bad in ("", "a" * 49, "dev 1", "dev/1", "dév", "a.b", None, 12):
        e = exact(ConfigError, tencent.check_device_name, bad)
        assert "DeviceName" in str(e)


def test_short_product_secret_refused_without_echo():
    secret = "ShortSecret123"
    e = exact(ConfigError, tencent.register_request, "ASJ3GXJXGX", "xyz", secret, 1551000065, 1)
    assert "ProductSecret" in str(e) and secret not in str(e)
    exact(ConfigError, tencent.decrypt_payload, PUBLIC["payload"][0]["payload"], secret)
    tencent.check_product_secret("x" * 16)


def test_bad_identity_refused_before_signing():
    exact(ConfigError, tencent.register_request, "ASJ3GXJXGX", "bad name", "hzvf5LF9S0isvBhDSauWMaIk", 1, 1)
    exact(ConfigError, tencent.register_request, 'AS"J3', "xyz", "hzvf5LF9S0isvBhDSauWMaIk", 1, 1)
    exact(ConfigError, tencent.legacy_request, "", "xyz", "hzvf5LF9S0isvBhDSauWMaIk", 1, 1)


def test_unknown_algorithm():
    exact(ConfigError, tencent.sign, "hzvf5LF9S0isvBhDSauWMaIk", 1, 1, b"{}", algorithm="hmacmd5")
    exact(ConfigError, tencent.mqtt_login, "P", "d", "QUJD", "c", 1, algorithm="sha256")


def test_bad_psk_in_login_is_config_error():
    exact(ConfigError, tencent.mqtt_login, "ASJ3GXJXGX", "xyz", "@@@", "AbC12", 1)

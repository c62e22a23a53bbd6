# dynreg.aliyun against the public vectors of PROTOCOLS.md section 5 and our own edge cases
# (runs on CPython and MicroPython).
import json

from support import vectors, exact
from dynreg import aliyun, ConfigError, NetworkError, ProtocolError, RejectedError, TLSError

PUBLIC = vectors("aliyun_public")
EDGE = vectors("aliyun_edge")


def _all(section):
    return PUBLIC.get(section, []) + EDGE.get(section, [])


def test_signs():
    for v in _all("sign"):
        got = aliyun.sign(v["product_key"], v["device_name"], v["product_secret"], v["random"], v["method"])
        assert got == v["sign"], v["source"]


# HMAC-SHA256 of "deviceNameOvenDevice01productKeya1IoK3f7xyzrandomA1b2C3d4E5f6G7h" with the
# public vector's ProductSecret, computed with `openssl dgst -sha256 -hmac`.
ALNUM_RANDOM = "A1b2C3d4E5f6G7h"  # 15 characters, the shape of the C SDK v3's fixed value
ALNUM_SIGN = "bdeb47022c936868cb04b8f0f9ecee62110a4e50564e70d01d4e9e614a76c51a"


def test_random_is_an_int_or_any_string_the_cloud_takes():
    v = PUBLIC["sign"][2]
    assert aliyun.sign(v["product_key"], v["device_name"], v["product_secret"], 567345) == v["sign"]
    assert aliyun.sign(v["product_key"], v["device_name"], v["product_secret"], ALNUM_RANDOM) == ALNUM_SIGN
    url, _, body = aliyun.register_request(v["product_key"], v["device_name"], v["product_secret"], ALNUM_RANDOM)
    assert body == ("productKey=a1IoK3f7xyz&deviceName=OvenDevice01&random=A1b2C3d4E5f6G7h&sign=%s"
                    "&signMethod=hmacsha256" % ALNUM_SIGN).encode()
    client_id, _, password = aliyun.mqtt_register_login(v["product_key"], v["device_name"], v["product_secret"],
                                                        ALNUM_RANDOM)
    assert client_id == "OvenDevice01|securemode=2,authType=register,random=A1b2C3d4E5f6G7h,signmethod=hmacsha256|"
    assert password == ALNUM_SIGN
    # Empty, too long, not text, or holding the client id's separators: refused before signing.
    for bad in ("", "x" * 65, "a,b", "a|b", "a=b", "a&b", "a b", "\u00e9t\u00e9", 1.5, None, b"567345"):
        exact(ConfigError, aliyun.sign, v["product_key"], v["device_name"], v["product_secret"], bad)
        exact(ConfigError, aliyun.mqtt_register_login, v["product_key"], v["device_name"], v["product_secret"], bad)


def test_registration_over_plain_http_is_refused():
    # The answer carries the DeviceSecret in clear.
    v = PUBLIC["sign"][2]
    exact(ConfigError, aliyun.register_request, v["product_key"], v["device_name"], v["product_secret"], 1,
          endpoint="http://localhost:8080")
    url, _, _ = aliyun.register_request(v["product_key"], v["device_name"], v["product_secret"], 1,
                                        endpoint="https://localhost:8443")
    assert url == "https://localhost:8443/auth/register/device"


def test_unknown_method_is_config_error_naming_the_methods():
    v = PUBLIC["sign"][0]
    for method in ("hmacsha512", "HMACSHA256x", "sha256", ""):
        e = exact(ConfigError, aliyun.sign, v["product_key"], v["device_name"], v["product_secret"], 1, method)
        for name in ("hmacmd5", "hmacsha1", "hmacsha256"):  # what to write instead
            assert name in str(e), str(e)


def test_register_request_is_form_encoded():
    v = PUBLIC["sign"][2]
    url, headers, body = aliyun.register_request(v["product_key"], v["device_name"], v["product_secret"], v["random"])
    assert url == "https://iot-auth.cn-shanghai.aliyuncs.com/auth/register/device"
    assert headers == {"Content-Type": "application/x-www-form-urlencoded"}
    assert body == ("productKey=a1IoK3f7xyz&deviceName=OvenDevice01&random=567345&sign=%s&signMethod=hmacsha256"
                    % v["sign"]).encode()


def test_register_request_region_endpoint_and_escaping():
    v = EDGE["sign"][0]  # DeviceName with colons
    url, _, body = aliyun.register_request(v["product_key"], v["device_name"], v["product_secret"], v["random"],
                                           region="ap-southeast-1")
    assert url == "https://iot-auth.ap-southeast-1.aliyuncs.com/auth/register/device"
    assert b"deviceName=AA%3ABB%3ACC%3ADD%3AEE%3AFF&" in body
    assert ("sign=" + v["sign"]).encode() in body
    url, _, _ = aliyun.register_request(v["product_key"], v["device_name"], v["product_secret"], 1,
                                        endpoint="https://localhost:8443/")
    assert url == "https://localhost:8443/auth/register/device"


def test_parse_register_response():
    body = b'{"code":200,"data":{"productKey":"a1IoK3f7xyz","deviceName":"OvenDevice01","deviceSecret":"8d1f0cdab49dd229cf3b75aaaaaaaaaa"},"message":"success"}'
    assert aliyun.parse_register_response(body) == {"deviceSecret": "8d1f0cdab49dd229cf3b75aaaaaaaaaa"}


def test_already_active_is_rejection():
    e = exact(RejectedError, aliyun.parse_register_response, b'{"code":6289,"message":"device is already active"}')
    assert e.code == 6289 and e.message == "device is already active"


def test_a_throttled_or_failing_cloud_is_a_network_error_naming_its_code():
    # Alibaba's codes for devices: 429 throttled, 500 an unknown system error; 503 service not available.
    for code in (429, 500, 503):
        body = ('{"code":%d,"message":"m"}' % code).encode()
        e = exact(NetworkError, aliyun.parse_register_response, body)
        assert not isinstance(e, TLSError) and str(code) in str(e) and e.retry_after_ms is None, str(e)
        assert e.throttled == (code == 429), code  # only throttling spends no attempt
    # 6100: a DeviceName not pre-created (the console can add it), and unknown codes, are retried
    # slowly by a board; a wrong secret, an activated device, a product or name that cannot be are not.
    for code, fixable in ((400, True), (401, False), (460, True), (6100, True), (6250, False), (6280, False),
                          (6289, False), (6760, True), (99999, True)):
        body = ('{"code":%d,"message":"m"}' % code).encode()
        e = exact(RejectedError, aliyun.parse_register_response, body)
        assert e.code == code and e.fixed_in_console is fixable, code


def test_malformed_register_responses():
    for body in (b"", b"{", b"[]", b'{"code":"200"}', b'{"code":200}', b'{"code":200,"data":[]}',
                 b'{"code":200,"data":{"deviceSecret":7}}', b'{"code":200,"data":{"deviceSecret":""}}',
                 b'{"code":true,"data":{"deviceSecret":"x"}}', b"\xff\xfe", b"[" * 200 + b"]" * 200,
                 b'{"code":200,"data":{"deviceSecret":"' + b"a" * 9000 + b'"}}'):
        exact(ProtocolError, aliyun.parse_register_response, body)


def test_mqtt_logins():
    for v in _all("mqtt_login"):
        client_id, username, password = aliyun.mqtt_login(v["product_key"], v["device_name"], v["device_secret"],
                                                           v["client_id"], v["timestamp"], v["method"])
        assert password == v["password"], v["source"]
        assert username == v["device_name"] + "&" + v["product_key"]
        assert client_id == "%s|securemode=2,signmethod=%s,timestamp=%s|" % (v["client_id"], v["method"], v["timestamp"])


def test_mqtt_register_login():
    v = PUBLIC["sign"][2]
    client_id, username, password = aliyun.mqtt_register_login(v["product_key"], v["device_name"],
                                                                v["product_secret"], v["random"])
    assert client_id == "OvenDevice01|securemode=2,authType=register,random=567345,signmethod=hmacsha256|"
    assert username == "OvenDevice01&a1IoK3f7xyz" and password == v["sign"]
    client_id, _, password = aliyun.mqtt_register_login(v["product_key"], v["device_name"], v["product_secret"],
                                                        v["random"], mode="regnwl", instance_id="iot-06z00ax1o2")
    assert client_id == ("OvenDevice01|securemode=-2,authType=regnwl,random=567345,signmethod=hmacsha256,"
                         "instanceId=iot-06z00ax1o2|")
    assert password == v["sign"]
    # Pre-registration-free registration exists only on new instances: no instance_id, no request.
    exact(ConfigError, aliyun.mqtt_register_login, v["product_key"], v["device_name"], v["product_secret"],
          v["random"], mode="regnwl")
    client_id, _, _ = aliyun.mqtt_register_login(v["product_key"], v["device_name"], v["product_secret"],
                                                 v["random"], instance_id="iot-06z00ax1o2")
    assert client_id == ("OvenDevice01|securemode=-2,authType=register,random=567345,signmethod=hmacsha256,"
                         "instanceId=iot-06z00ax1o2|")
    exact(ConfigError, aliyun.mqtt_register_login, v["product_key"], v["device_name"], v["product_secret"], 1,
          mode="connwl")


def test_regnwl_login():
    assert aliyun.regnwl_login("cid.123", "a1IoK3f7xyz", "OvenDevice01", "tok3n") == (
        "cid.123|securemode=-2,authType=connwl|", "OvenDevice01&a1IoK3f7xyz", "tok3n")


def test_register_messages():
    assert aliyun.parse_register_message(b'{"productKey":"a1IoK3f7xyz","deviceName":"OvenDevice01","deviceSecret":"s3"}') == {
        "deviceSecret": "s3"}
    assert aliyun.parse_register_message(
        b'{"clientId":"c1","productKey":"a1IoK3f7xyz","deviceName":"OvenDevice01","deviceToken":"t1"}',
        "regnwl") == {"clientId": "c1", "deviceToken": "t1"}
    for payload in (b"", b"{}", b'{"deviceSecret":5}', b'{"clientId":"c"}', b"\x00\x01"):
        exact(ProtocolError, aliyun.parse_register_message, payload)
        exact(ProtocolError, aliyun.parse_register_message, payload, "regnwl")


def test_topo_signs():
    for v in EDGE["topo_sign"]:
        got = aliyun.topo_sign(v["product_key"], v["device_name"], v["device_secret"], v["timestamp"], v["method"])
        assert got == v["sign"], v["source"]


def test_sub_register_message():
    topic, reply_topic, payload = aliyun.sub_register_message("a1GwProd001", "gateway01",
                                                              [("a1SubProd01", "sensor-0001")], 17)
    assert topic == "/sys/a1GwProd001/gateway01/thing/sub/register"
    assert reply_topic == topic + "_reply"
    assert json.loads(payload) == {"id": "17", "version": "1.0", "method": "thing.sub.register",
                                   "params": [{"deviceName": "sensor-0001", "productKey": "a1SubProd01"}]}


def test_sub_register_reply_keeps_secrets_and_reports_errors():
    requested = [("a1SubProd01", "sensor-0001"), ("a1SubProd01", "sensor-0002")]
    reply = json.dumps({"id": "17", "code": 200, "message": "success", "data": [
        {"iotId": "i1", "productKey": "a1SubProd01", "deviceName": "sensor-0001", "deviceSecret": "s1"}]}).encode()
    secrets, errors = aliyun.parse_sub_register_reply(reply, 17, requested)
    assert secrets == {("a1SubProd01", "sensor-0001"): {"deviceSecret": "s1", "iotId": "i1"}}
    assert list(errors) == [("a1SubProd01", "sensor-0002")]
    reply = json.dumps({"id": "18", "code": 6100, "message": "device not found"}).encode()
    secrets, errors = aliyun.parse_sub_register_reply(reply, 18, requested)
    assert secrets == {} and errors == {key: (6100, "device not found") for key in requested}
    exact(ProtocolError, aliyun.parse_sub_register_reply, reply, 99, requested)  # another request's reply


def test_topo_add_message_and_reply():
    v = EDGE["topo_sign"][0]
    topic, reply_topic, payload = aliyun.topo_add_message(
        "a1GwProd001", "gateway01", [(v["product_key"], v["device_name"], v["device_secret"])], v["timestamp"], 5)
    assert topic == "/sys/a1GwProd001/gateway01/thing/topo/add"
    [param] = json.loads(payload)["params"]
    assert param == {"productKey": v["product_key"], "deviceName": v["device_name"],
                     "clientId": v["product_key"] + "." + v["device_name"], "timestamp": v["timestamp"],
                     "signmethod": "hmacSha256", "sign": v["sign"]}
    assert aliyun.parse_topo_add_reply(b'{"id":"5","code":200,"data":[],"message":"success"}', 5) == []
    e = exact(RejectedError, aliyun.parse_topo_add_reply, b'{"id":"5","code":460,"message":"request parameter error"}', 5)
    assert e.code == 460


def test_identity_rules():
    aliyun.check_device_name("abcd")
    aliyun.check_device_name("A" * 32)
    for bad in ("abc", "a" * 33, "dev/1", "dev 1", "dév1", None):
        exact(ConfigError, aliyun.check_device_name, bad)
    for bad in ("", "a1-2", None, "x" * 33):
        exact(ConfigError, aliyun.check_product_key, bad)

# The clouds' own endpoints, which every end-to-end test replaces with the emulator's: the
# registration URL and the MQTT broker a device uses when its info names none, and the port
# a URL gets from its scheme when it names none (runs on CPython and MicroPython). Every
# expected value is written out from PROTOCOLS.md (2.1, 2.2, 2.4, 3.1, 3.2), never taken from
# the library.
import json

from support import scratch_dir, write, read, exact
import dynreg
from dynreg import aliyun, azure, http, mqtt, store, tencent

# PROTOCOLS.md section 5: the public Tencent vector and the public Alibaba sign vector.
PID, DN, SECRET, TS, NONCE = "ASJ3GXJXGX", "xyz", "hzvf5LF9S0isvBhDSauWMaIk", 1551000065, 5456
V2_SIGNATURE = "LMAs/Lpuk+Jo1QzOr3S1dJYsYbA7dbMaTI4asKjM50k="  # signed for ap-guangzhou.gateway.tencentdevices.com
PK, ALI_DN, ALI_SECRET = "a1IoK3f7xyz", "OvenDevice01", "6vEu5Qlj5S0abcd1"


# -- registration URLs ------------------------------------------------------------------------

def test_tencent_current_api_defaults_to_ap_guangzhou_over_https():
    url, headers, _ = tencent.register_request(PID, DN, SECRET, TS, NONCE)
    assert url == "https://ap-guangzhou.gateway.tencentdevices.com/device/register"
    # The host is part of the string to sign: the public vector was signed for this one.
    assert headers["X-TC-Signature"] == V2_SIGNATURE


def test_tencent_legacy_api_defaults_to_the_c_sdks_host():
    url, _, _ = tencent.legacy_request(PID, DN, SECRET, TS, NONCE)
    assert url == "https://gateway.tencentdevices.com/register/dev"


def test_alibaba_https_registration_defaults_to_cn_shanghai():
    url, _, _ = aliyun.register_request(PK, ALI_DN, ALI_SECRET, 567345)
    assert url == "https://iot-auth.cn-shanghai.aliyuncs.com/auth/register/device"
    url, _, _ = aliyun.register_request(PK, ALI_DN, ALI_SECRET, 567345, region="ap-southeast-1")
    assert url == "https://iot-auth.ap-southeast-1.aliyuncs.com/auth/register/device"
    url, _, _ = aliyun.register_request(PK, ALI_DN, ALI_SECRET, 567345, region="cn-shanghai")
    assert url == "https://iot-auth.cn-shanghai.aliyuncs.com/auth/register/device"


TENCENT_REFUSAL = b'{"Response":{"Error":{"Code":"ResourceNotFound.ProductNotExist","Message":"no"},"RequestId":"r"}}'
ALIYUN_REFUSAL = b'{"code":6250,"message":"product not found"}'


def _ensure(doc, answer, error):
    # dynreg.ensure on the info `doc`, the transport faked: (the `error` it raised, the URLs
    # it posted to). The fake cloud refuses, so nothing is stored.
    folder = scratch_dir()
    path = folder + "/device_info.json"
    write(path, json.dumps(doc))
    posted = []

    def post(url, *args, **kwargs):
        posted.append(url)
        return 200, answer, None

    real_post = http.post
    http.post = post
    try:
        e = exact(error, dynreg.ensure, path, attempts=1, log=None)
    finally:
        http.post = real_post
    assert read(path) == json.dumps(doc)
    return e, posted


def _posted_url(doc, answer):
    # The one URL dynreg.ensure posted to.
    [url] = _ensure(doc, answer, dynreg.RejectedError)[1]
    return url


def test_a_tencent_info_without_register_url_registers_with_the_cloud_itself():
    doc = {"dynreg": 1, "cloud": "tencent", "product_id": PID, "product_secret": SECRET, "device_name": DN,
           "credential": {"psk": ""}}
    assert _posted_url(doc, TENCENT_REFUSAL) == "https://ap-guangzhou.gateway.tencentdevices.com/device/register"
    doc["api"] = "legacy"
    assert _posted_url(doc, TENCENT_REFUSAL) == "https://gateway.tencentdevices.com/register/dev"
    sdk = {"auth_mode": "KEY", "productId": PID, "productSecret": SECRET, "deviceName": DN,
           "key_deviceinfo": {"deviceSecret": "YOUR_IOT_PSK"}}  # the C SDK's file names no URL at all
    assert _posted_url(sdk, TENCENT_REFUSAL) == "https://ap-guangzhou.gateway.tencentdevices.com/device/register"


def test_an_alibaba_info_without_register_url_registers_with_its_region():
    doc = {"dynreg": 1, "cloud": "aliyun", "product_key": PK, "product_secret": ALI_SECRET, "device_name": ALI_DN,
           "credential": {}}
    assert _posted_url(doc, ALIYUN_REFUSAL) == "https://iot-auth.cn-shanghai.aliyuncs.com/auth/register/device"
    doc["region"] = "ap-southeast-1"
    assert _posted_url(doc, ALIYUN_REFUSAL) == "https://iot-auth.ap-southeast-1.aliyuncs.com/auth/register/device"


# -- MQTT brokers -------------------------------------------------------------------------------

def _info(**doc):
    return store.Info("device_info.json", doc)


def test_a_register_url_written_with_the_apis_path_is_taken_as_its_base():
    # The clouds' docs print the whole endpoint; a register_url is the base, and the path is
    # added once, not twice.
    for register_url, api, posted in (
            ("https://localhost:8443/device/register", "current", "https://localhost:8443/device/register"),
            ("https://localhost:8443/device/register/", "current", "https://localhost:8443/device/register"),
            ("https://localhost:8443/", "current", "https://localhost:8443/device/register"),
            ("http://localhost:8080/register/dev", "legacy", "http://localhost:8080/register/dev")):
        doc = {"dynreg": 1, "cloud": "tencent", "product_id": PID, "product_secret": SECRET, "device_name": DN,
               "register_url": register_url, "api": api, "plain_http": True, "credential": {"psk": ""}}
        assert _posted_url(doc, TENCENT_REFUSAL) == posted
    doc = {"dynreg": 1, "cloud": "aliyun", "product_key": PK, "product_secret": ALI_SECRET, "device_name": ALI_DN,
           "api": "https", "register_url": "https://localhost:8443/auth/register/device",
           "credential": {}}
    assert _posted_url(doc, ALIYUN_REFUSAL) == "https://localhost:8443/auth/register/device"


def test_plain_http_registration_is_an_explicit_opt_in():
    # Tencent's answer is encrypted but names no device and carries no MAC: over http:// anyone
    # on the line can replay another device's. Without "plain_http": true in the info, an
    # http:// register_url is refused before any request, in both formats and both APIs.
    own = {"dynreg": 1, "cloud": "tencent", "product_id": PID, "product_secret": SECRET, "device_name": DN,
           "register_url": "http://localhost:8080", "credential": {"psk": ""}}
    sdk = {"auth_mode": "KEY", "productId": PID, "productSecret": SECRET, "deviceName": DN,
           "key_deviceinfo": {"deviceSecret": "YOUR_IOT_PSK"}, "register_url": "http://localhost:8080"}
    legacy = dict(own, api="legacy")
    for doc in (own, legacy, sdk, dict(own, plain_http=False)):
        e, posted = _ensure(doc, TENCENT_REFUSAL, dynreg.ConfigError)
        assert "plain_http: true" in str(e) and posted == [], str(e)
    assert _posted_url(dict(own, plain_http=True), TENCENT_REFUSAL) == "http://localhost:8080/device/register"
    assert _posted_url(dict(legacy, plain_http=True), TENCENT_REFUSAL) == "http://localhost:8080/register/dev"
    assert _posted_url(dict(sdk, plain_http=True), TENCENT_REFUSAL) == "http://localhost:8080/device/register"
    e, posted = _ensure(dict(own, plain_http="yes"), TENCENT_REFUSAL, dynreg.ConfigError)
    assert "plain_http must be true or false" in str(e) and posted == []
    # Alibaba's answer is the DeviceSecret in clear: no opt-in opens plain HTTP.
    ali = {"dynreg": 1, "cloud": "aliyun", "product_key": PK, "product_secret": ALI_SECRET, "device_name": ALI_DN,
           "register_url": "http://localhost:8080", "plain_http": True, "credential": {}}
    e, posted = _ensure(ali, ALIYUN_REFUSAL, dynreg.ConfigError)
    assert "https://" in str(e) and posted == []


def test_a_register_url_with_another_path_is_refused_before_any_request():
    e = exact(dynreg.ConfigError, tencent.register_request, PID, DN, SECRET, TS, NONCE,
              endpoint="https://localhost:8443/iot/device/register")
    assert "base URL" in str(e) and "/iot/device/register" in str(e)
    e = exact(dynreg.ConfigError, aliyun.register_request, PK, ALI_DN, ALI_SECRET, 567345,
              endpoint="https://localhost:8443/register")
    assert "base URL" in str(e)


def test_an_answer_that_makes_no_sense_names_its_http_status():
    e = exact(dynreg.ProtocolError, http.parsed, 404, tencent.parse_response, b'{"error":"not found"}', SECRET)
    assert str(e).startswith("HTTP 404, and ") and "neither Response nor code" in str(e)
    e = exact(dynreg.ProtocolError, http.parsed, 200, tencent.parse_response, b'{"error":"not found"}', SECRET)
    assert "HTTP" not in str(e)
    e = exact(dynreg.RejectedError, http.parsed, 403, aliyun.parse_register_response, ALIYUN_REFUSAL)
    assert e.code == 6250  # the cloud's own refusal stands as it is


def test_refusals_say_what_they_mean_on_the_line():
    # The cloud's code and message stay as sent; the text adds the fix.
    cases = [
        (tencent.parse_response, (b'{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"x"},'
                                  b'"RequestId":"r"}}', SECRET), "wrong ProductSecret"),
        (tencent.parse_response, (b'{"code":1010,"message":"Check signature failed"}', SECRET), "wrong ProductSecret"),
        (tencent.parse_response, (b'{"Response":{"Error":{"Code":"X","Message":"Pre create mode: device not exists"},'
                                  b'"RequestId":"r"}}', SECRET), "create this DeviceName in the console"),
        (aliyun.parse_register_response, (b'{"code":6289,"message":"device is already active"}',), "reset it"),
        (aliyun.parse_register_response, (b'{"code":401,"message":"request auth error"}',), "wrong ProductSecret"),
    ]
    for parse, args, fix in cases:
        e = exact(dynreg.RejectedError, parse, *args)
        assert fix in str(e) and e.message in str(e), str(e)
    e = exact(dynreg.RejectedError, aliyun.parse_register_response, b'{"code":7777,"message":"new"}')
    assert str(e) == "cloud rejected the request: 7777 new"  # no hint for a code nobody documented


def test_tencent_broker_is_the_products_own_host_over_tls():
    info = _info(dynreg=1, cloud="tencent", product_id=PID, product_secret=SECRET, device_name=DN,
                 credential={"psk": "lDZ6Uqt+I9E0wW7rvDUs7Q=="})
    assert tencent.broker(info) == "ASJ3GXJXGX.iotcloud.tencentdevices.com"
    assert mqtt.endpoint(info, tencent.broker(info)) == ("ASJ3GXJXGX.iotcloud.tencentdevices.com", 8883, True)
    sdk = _info(auth_mode="KEY", productId=PID, productSecret=SECRET, deviceName=DN,
                key_deviceinfo={"deviceSecret": "lDZ6Uqt+I9E0wW7rvDUs7Q=="})
    assert tencent.broker(sdk) == "ASJ3GXJXGX.iotcloud.tencentdevices.com"


def test_alibaba_broker_of_a_new_instance_is_named_by_its_instance_id():
    info = _info(dynreg=1, cloud="aliyun", product_key=PK, product_secret=ALI_SECRET, device_name=ALI_DN,
                 instance_id="iot-06z00ax1o4qq7gd", region="ap-southeast-1",
                 credential={"device_secret": "8d1f0cdab49dd229cf3b75aaaaaaaaaa"})
    assert aliyun.broker(info) == "iot-06z00ax1o4qq7gd.mqtt.iothub.aliyuncs.com"


def test_alibaba_broker_of_an_old_instance_is_named_by_product_key_and_region():
    info = _info(dynreg=1, cloud="aliyun", product_key=PK, product_secret=ALI_SECRET, device_name=ALI_DN,
                 credential={"device_secret": "8d1f0cdab49dd229cf3b75aaaaaaaaaa"})
    assert aliyun.broker(info) == "a1IoK3f7xyz.iot-as-mqtt.cn-shanghai.aliyuncs.com"
    info = _info(dynreg=1, cloud="aliyun", product_key=PK, product_secret=ALI_SECRET, device_name=ALI_DN,
                 region="ap-southeast-1", credential={"device_secret": "8d1f0cdab49dd229cf3b75aaaaaaaaaa"})
    assert aliyun.broker(info) == "a1IoK3f7xyz.iot-as-mqtt.ap-southeast-1.aliyuncs.com"


def test_an_mqtt_url_without_a_port_gets_its_schemes_port():
    info = _info(dynreg=1, cloud="tencent", product_id=PID, product_secret=SECRET, device_name=DN,
                 mqtt_url="mqtt://broker.example.com", credential={"psk": "lDZ6Uqt+I9E0wW7rvDUs7Q=="})
    assert mqtt.endpoint(info, tencent.broker(info)) == ("broker.example.com", 1883, False)
    assert mqtt.endpoint(info, "unused", "mqtts://broker.example.com") == ("broker.example.com", 8883, True)
    assert mqtt.endpoint(info, "unused", "mqtts://broker.example.com:443") == ("broker.example.com", 443, True)


def _stored(doc, files=()):
    folder = scratch_dir()
    for name in files:
        write(folder + "/" + name, "-----BEGIN X-----\nAAAA\n-----END X-----\n")
    write(folder + "/device_info.json", json.dumps(doc))
    return store.load(folder + "/device_info.json")


def test_logins_that_send_a_reusable_secret_need_tls():
    # Refused by the cloud's login, before mqtt.connect opens anything: an Alibaba DeviceSecret
    # password (never expired), a deviceToken, an Azure SAS token (a day), and a Tencent
    # client certificate (which authenticates only inside TLS).
    ali = {"dynreg": 1, "cloud": "aliyun", "product_key": PK, "device_name": ALI_DN,
           "credential": {"device_secret": "8d1f0cdab49dd229cf3b75aaaaaaaaaa"}}
    cases = [
        (aliyun, _stored(ali), "Alibaba needs TLS: an mqtts:// mqtt_url"),
        (aliyun, _stored(dict(ali, api="regnwl", instance_id="iot-06z00ax1o4qq7gd",
                              credential={"client_id": PK + "." + ALI_DN + ".AbCdEfGh", "device_token": "t0ken"})),
         "Alibaba needs TLS: an mqtts:// mqtt_url"),
        (azure, _stored({"dynreg": 1, "cloud": "azure", "id_scope": "0ne00000A0A", "device_name": "device-001",
                         "credential": {"hub": "myhub.azure-devices.net", "device_id": "device-001",
                                        "device_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}),
         "Azure needs TLS: an mqtts:// mqtt_url"),
        (tencent, _stored({"dynreg": 1, "cloud": "tencent", "product_id": PID, "device_name": DN, "auth": "cert",
                           "credential": {"cert_file": "c.crt", "key_file": "k.key"}}, ("c.crt", "k.key")),
         "Tencent cert auth needs TLS: an mqtts:// mqtt_url"),
    ]
    for cloud, info, text in cases:
        assert not info.needs_registration
        e = exact(dynreg.ConfigError, cloud.login, info, False)
        assert str(e) == text
        client_id, username, _ = cloud.login(info, True)
        assert client_id and username
    client_id = aliyun.login(cases[0][1], True)[0]
    assert "|securemode=2," in client_id  # never 3, the plain-TCP mode


def test_a_tencent_key_login_may_use_the_plain_port():
    # Its password is an HMAC that expires (PROTOCOLS.md 2.4): docs/CLOUDS.md "Plain transports" says what it exposes.
    info = _stored({"dynreg": 1, "cloud": "tencent", "product_id": PID, "device_name": DN,
                    "credential": {"psk": "lDZ6Uqt+I9E0wW7rvDUs7Q=="}})
    client_id, username, password = tencent.login(info, False)
    assert client_id == PID + DN and username.startswith(PID + DN + ";12010126;")
    assert password.endswith(";hmacsha256")


# -- default ports ------------------------------------------------------------------------------

def test_a_url_without_a_port_gets_its_schemes_default_port():
    assert http.split_url("http://iot.example.com/device/register") == ("http", "iot.example.com", 80,
                                                                         "/device/register")
    assert http.split_url("https://iot.example.com") == ("https", "iot.example.com", 443, "/")
    assert http.split_url("mqtt://iot.example.com") == ("mqtt", "iot.example.com", 1883, "/")
    assert http.split_url("mqtts://iot.example.com/") == ("mqtts", "iot.example.com", 8883, "/")


def test_an_explicit_port_wins_over_the_default():
    assert http.split_url("http://localhost:8080/x") == ("http", "localhost", 8080, "/x")
    assert http.split_url("https://localhost:8443") == ("https", "localhost", 8443, "/")
    assert http.split_url("mqtts://localhost:1883") == ("mqtts", "localhost", 1883, "/")

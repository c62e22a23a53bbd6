"""Tests of the cloud emulator's Alibaba Cloud IoT Platform part (cloud_emulator/aliyun.py).

The emulator runs as a subprocess through cloud_emulator.testing. Every request is built and
signed here with the standard library only (hmac, hashlib, http.client, ssl, a raw-socket
MQTT 3.1.1 client), independently of the emulator's code and of the device library; the
public vectors of PROTOCOLS.md section 5 pin both the test signers and the emulator.
"""

import hashlib
import hmac
import http.client
import json
import random
import re
import socket
import string
import struct
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from cloud_emulator import aliyun
from cloud_emulator.testing import running_emulator

ROOT = Path(__file__).resolve().parent.parent
from raw_mqtt import RawMqtt  # noqa: E402

REGISTER_PATH = "/auth/register/device"
CLIENT_TIMEOUT = 1.5  # also the grace period of a registration connection before the emulator closes it
HASHES = {"hmacmd5": hashlib.md5, "hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256}

# PROTOCOLS.md section 5
VECTOR_PK = "a1IoK3f7xyz"
VECTOR_DN = "OvenDevice01"
VECTOR_SECRET = "6vEu5Qlj5S0abcd1"
VECTOR_RANDOM = "567345"
VECTOR_SIGNS = {
    "hmacmd5": "756c4b8b9d9d8b7c24c1f05f25f265e3",
    "hmacsha1": "87266148987ebb8dea268014eb9e384a9894b965",
    "hmacsha256": "dead14bc3fe9c679699be78fb60bf6cd2f56ed9d53f418cf427401409eded6af",
}
VECTOR_DEVICE_SECRET = "8d1f0cdab49dd229cf3b75aaaaaaaaaa"
VECTOR_CLIENT_ID = "OvenDevice01"
VECTOR_TS = "1700000000000"
VECTOR_LOGIN_PASSWORD = "82135890fdb94f336253ef3907ea01f4786b471a749d660d124f1f01d1e6ee5b"

SECRET_RULE = re.compile(r"[A-Za-z0-9]{32}\Z")


# -- signing, independent of the emulator --------------------------------------------------------


def sign(key: str, fields: dict[str, str], method: str = "hmacsha256") -> str:
    content = "".join(name + fields[name] for name in sorted(fields))
    return hmac.new(key.encode(), content.encode(), HASHES.get(method.lower(), hashlib.sha256)).hexdigest()


def registration_sign(secret: str, pk: str, dn: str, rnd: str, method: str = "hmacsha256") -> str:
    return sign(secret, {"deviceName": dn, "productKey": pk, "random": rnd}, method)


def login_fields(pk: str, dn: str, device_secret: str, *, client: str | None = None, method: str = "hmacsha256",
                 timestamp: str | None = "1700000000000", securemode: str = "2") -> tuple[str, str, str]:
    client = client or f"{pk}.{dn}"
    params = f"securemode={securemode},signmethod={method}"
    fields = {"clientId": client, "deviceName": dn, "productKey": pk}
    if timestamp is not None:
        params += f",timestamp={timestamp}"
        fields["timestamp"] = timestamp
    return f"{client}|{params}|", f"{dn}&{pk}", sign(device_secret, fields, method)


def registration_login(pk: str, dn: str, secret: str, *, auth_type: str = "register", method: str = "hmacsha256",
                       securemode: str = "2", extra: str = "") -> tuple[str, str, str]:
    rnd = str(random.randint(1, 10**9))
    client_id = f"{dn}|authType={auth_type},random={rnd},signmethod={method},securemode={securemode}{extra}|"
    return client_id, f"{dn}&{pk}", registration_sign(secret, pk, dn, rnd, method)


def new_pk() -> str:
    return "a1" + "".join(random.choices(string.ascii_letters + string.digits, k=9))


def new_secret() -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=16))


def new_dn(prefix: str = "dev") -> str:
    return f"{prefix}-{random.randint(0, 10**8)}"


# -- HTTPS ----------------------------------------------------------------------------------------


def post_form(cloud, body: str, *, content_type: str = "application/x-www-form-urlencoded",
              tls: bool = True) -> tuple[int, dict]:
    if tls:
        connection = http.client.HTTPSConnection("localhost", cloud.https_port, timeout=5,
                                                 context=cloud.client_ssl_context())
    else:
        connection = http.client.HTTPConnection("127.0.0.1", cloud.http_port, timeout=5)
    try:
        connection.request("POST", REGISTER_PATH, body=body.encode(), headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def https_register(cloud, pk: str, dn: str, secret: str, *, method: str = "hmacsha256", upper: bool = False,
                   signature: str | None = None, tls: bool = True) -> dict:
    rnd = str(random.randint(1, 10**9))
    signature = signature or registration_sign(secret, pk, dn, rnd, method)
    body = urllib.parse.urlencode({"productKey": pk, "deviceName": dn, "random": rnd,
                                   "sign": signature.upper() if upper else signature, "signMethod": method})
    status, reply = post_form(cloud, body, tls=tls)
    assert status == 200
    return reply


def mqtt_connect(cloud, client_id, username, password, *, tls=True, keepalive=60):
    port = cloud.mqtts_port if tls else cloud.mqtt_port
    return RawMqtt.connect(port, client_id, username, password, tls=cloud.client_ssl_context() if tls else None,
                           keepalive=keepalive)


def request(client, topic, message):
    # Publish a gateway request and return its reply.
    client.publish(topic, json.dumps(message).encode())
    reply_topic, payload, _ = client.next_publish()
    assert reply_topic == topic + "_reply"
    return json.loads(payload)


def connack(cloud, client_id: str, username: str | None, password: str | None, *, tls: bool = True,
            keepalive: int = 60) -> int:
    client, code = mqtt_connect(cloud, client_id, username, password, tls=tls, keepalive=keepalive)
    client.close()
    return code


def mqtt_register(cloud, pk: str, dn: str, secret: str, **options) -> tuple[int, dict | None, str | None]:
    """Connect with registration parameters; (CONNACK code, result JSON, result topic)."""
    client, code = mqtt_connect(cloud, *registration_login(pk, dn, secret, **options))
    try:
        if code != 0:
            return code, None, None
        topic, payload, flags = client.next_publish()
        assert flags == 0  # QoS 0, no retain, no dup
        return code, json.loads(payload), topic
    finally:
        client.close()


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("aliyun"), client_timeout=CLIENT_TIMEOUT) as running:
        yield running


@pytest.fixture
def product(cloud):
    """A fresh direct-connection Alibaba product with dynamic registration: (product key, secret)."""
    pk, secret = new_pk(), new_secret()
    cloud.add_product(pk, secret, cloud="aliyun")
    return pk, secret


@pytest.fixture
def registered(cloud, product):
    """A pre-registered device that got its DeviceSecret over HTTPS: (pk, dn, device secret)."""
    pk, secret = product
    dn = new_dn()
    cloud.add_device(pk, dn)
    return pk, dn, https_register(cloud, pk, dn, secret)["data"]["deviceSecret"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloud_emulator", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)


def last_log(cloud, api: str) -> dict:
    return [record for record in cloud.log() if record["api"] == api][-1]


# -- public vectors ------------------------------------------------------------------------------------


def test_public_vectors_pin_the_test_signers_and_the_emulator():
    for method, expected in VECTOR_SIGNS.items():
        assert registration_sign(VECTOR_SECRET, VECTOR_PK, VECTOR_DN, VECTOR_RANDOM, method) == expected
        assert aliyun.registration_sign(VECTOR_SECRET, VECTOR_PK, VECTOR_DN, VECTOR_RANDOM, method) == expected
        assert aliyun.registration_sign(VECTOR_SECRET, VECTOR_PK, VECTOR_DN, VECTOR_RANDOM, method.upper()) == \
            expected
        assert aliyun.hex_matches(expected, expected.upper())
    assert not aliyun.hex_matches(VECTOR_SIGNS["hmacmd5"], VECTOR_SIGNS["hmacsha1"])
    _, _, password = login_fields(VECTOR_PK, VECTOR_DN, VECTOR_DEVICE_SECRET, client=VECTOR_CLIENT_ID,
                                  timestamp=VECTOR_TS)
    assert password == VECTOR_LOGIN_PASSWORD
    assert aliyun.login_password(VECTOR_DEVICE_SECRET, VECTOR_CLIENT_ID, VECTOR_PK, VECTOR_DN, VECTOR_TS,
                                 "hmacsha256") == VECTOR_LOGIN_PASSWORD
    assert aliyun.parse_mqtt_client_id(f"{VECTOR_CLIENT_ID}|timestamp={VECTOR_TS},signmethod=hmacsha256,"
                                       "securemode=2|") == \
        (VECTOR_CLIENT_ID, {"timestamp": VECTOR_TS, "signmethod": "hmacsha256", "securemode": "2"})
    assert aliyun.parse_mqtt_client_id("a|b|securemode=2|") == ("a|b", {"securemode": "2"})
    assert aliyun.parse_mqtt_client_id("no-params") is None


# -- HTTPS registration ----------------------------------------------------------------------------------


@pytest.mark.parametrize("upper", [False, True], ids=["lower-hex", "upper-hex"])
@pytest.mark.parametrize("method", ["hmacmd5", "hmacsha1", "hmacsha256"])
def test_https_registration_issues_a_device_secret(cloud, product, method, upper):
    pk, secret = product
    dn = new_dn("oven")
    cloud.add_device(pk, dn)
    assert cloud.device(pk, dn)["status"] == "created"
    reply = https_register(cloud, pk, dn, secret, method=method.upper() if upper else method, upper=upper)
    assert reply["code"] == 200 and reply["message"] == "success"
    assert set(reply["data"]) == {"productKey", "deviceName", "deviceSecret"}
    assert (reply["data"]["productKey"], reply["data"]["deviceName"]) == (pk, dn)
    assert SECRET_RULE.match(reply["data"]["deviceSecret"])
    device = cloud.device(pk, dn)
    assert device["status"] == "registered" and device["device_secret"] == reply["data"]["deviceSecret"]
    record = last_log(cloud, "aliyun-https-register")
    assert (record["result"], record["transport"], record["algorithm"]) == ("ok", "https", method)


def test_https_registration_refusals(cloud, product):
    pk, secret = product
    dn = new_dn()
    assert https_register(cloud, new_pk(), dn, secret) == {"code": 6250, "message": "product not found"}
    assert https_register(cloud, pk, dn, secret) == {"code": 6100, "message": "device not found"}
    cloud.add_device(pk, dn)
    assert https_register(cloud, pk, dn, secret[::-1]) == {"code": 401, "message": "request auth error"}
    assert https_register(cloud, pk, "abc", secret)["code"] == 6280  # DeviceNames have 4 to 32 characters
    rnd = "42"
    good = {"productKey": pk, "deviceName": dn, "random": rnd,
            "sign": registration_sign(secret, pk, dn, rnd), "signMethod": "hmacsha256"}
    assert post_form(cloud, urllib.parse.urlencode(good), content_type="application/json") == \
        (200, {"code": 460, "message": "request parameter error"})
    for broken in ({**good, "signMethod": "sha256"}, {k: v for k, v in good.items() if k != "random"},
                   {**good, "random": ""}):
        assert post_form(cloud, urllib.parse.urlencode(broken))[1]["code"] == 460
    assert post_form(cloud, urllib.parse.urlencode(good) + "&productKey=" + pk)[1]["code"] == 460  # duplicate
    assert cloud.device(pk, dn)["status"] == "created"
    cloud.add_product(pk, secret, cloud="aliyun", dynreg=False)
    assert https_register(cloud, pk, dn, secret)["code"] == 403
    reasons = [r["reason"] for r in cloud.log() if r["api"] == "aliyun-https-register" and r.get("product") == pk]
    assert reasons[:4] == ["device-not-found", "bad-signature", "invalid-device-name", "invalid-content-type"]
    assert reasons[-1] == "dynreg-disabled"


def test_injected_server_errors_are_alibaba_codes_in_a_200_unless_asked_for_the_status(cloud, product):
    # A10a: 500 "service error" for any 5xx but 503, 503 "service not available", 429 "too many
    # requests", in a 200; answer "http": the status itself, the code the status (our choice).
    pk, secret = product
    dn = new_dn()
    cloud.add_device(pk, dn)
    for status in (500, 502, 503, 429):
        cloud.fault("http_status", status=status)
    cloud.fault("http_status", status=500, answer="http")
    answers = [post_form(cloud, "productKey=x") for _ in range(5)]
    assert answers == [(200, {"code": 500, "message": "service error"}),
                       (200, {"code": 500, "message": "service error"}),
                       (200, {"code": 503, "message": "service not available"}),
                       (200, {"code": 429, "message": "too many requests"}),
                       (500, {"code": 500, "message": "Injected fault: HTTP 500"})]
    assert "deviceSecret" in https_register(cloud, pk, dn, secret)["data"]


def test_both_clouds_share_the_listeners_but_not_their_products(cloud, product):
    pk, secret = product
    dn = new_dn()
    cloud.add_device(pk, dn)
    tencent_pid = "".join(random.choices(string.ascii_uppercase + string.digits, k=10))
    cloud.add_product(tencent_pid, secret + "padding", mode="precreate")
    cloud.add_device(tencent_pid, dn)
    assert https_register(cloud, tencent_pid, dn, secret + "padding")["code"] == 6250
    legacy = json.dumps({"deviceName": dn, "nonce": 7, "productId": pk, "timestamp": int(time.time()),
                         "signature": "x"})
    connection = http.client.HTTPConnection("127.0.0.1", cloud.http_port, timeout=5)
    try:
        connection.request("POST", "/register/dev", body=legacy, headers={"Content-Type": "application/json"})
        assert json.loads(connection.getresponse().read())["code"] == 1004  # Tencent: product not exists
    finally:
        connection.close()
    reply = https_register(cloud, pk, dn, secret, tls=False)  # also answered on plain HTTP, logged as such
    assert reply["code"] == 200 and last_log(cloud, "aliyun-https-register")["transport"] == "http"


def test_every_registration_replaces_the_secret_until_the_device_logs_in(cloud, product):
    pk, secret = product
    dn = new_dn()
    cloud.add_device(pk, dn)
    first = https_register(cloud, pk, dn, secret, method="hmacsha1")["data"]["deviceSecret"]
    code, result, _ = mqtt_register(cloud, pk, dn, secret)  # MQTT registration replaces it as well
    second = https_register(cloud, pk, dn, secret)["data"]["deviceSecret"]
    assert code == 0 and len({first, result["deviceSecret"], second}) == 3
    for stale in (first, result["deviceSecret"]):
        assert connack(cloud, *login_fields(pk, dn, stale)) == 4
    assert cloud.device(pk, dn)["status"] == "registered"
    assert connack(cloud, *login_fields(pk, dn, second)) == 0
    assert cloud.device(pk, dn)["status"] == "activated"
    assert https_register(cloud, pk, dn, secret) == {"code": 6289, "message": "device is already active"}
    assert mqtt_register(cloud, pk, dn, secret)[0] == 5
    assert cloud.device(pk, dn)["device_secret"] == second
    assert connack(cloud, *login_fields(pk, dn, second)) == 0  # the active secret keeps working
    cloud.reset_device(pk, dn)  # operator reset (ResetThing)
    assert connack(cloud, *login_fields(pk, dn, second)) == 5
    assert https_register(cloud, pk, dn, secret)["code"] == 200


# -- MQTT registration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["securemode-2", "instance"])
def test_mqtt_register_publishes_the_secret_right_after_connack(cloud, product, form):
    pk, secret = product
    dn = new_dn()
    cloud.add_device(pk, dn)
    options = {"securemode": "-2", "extra": ",instanceId=iot-06z00ax1o4qq7gd"} if form == "instance" else {}
    client, code = mqtt_connect(cloud, *registration_login(pk, dn, secret, method="hmacsha1", **options),
                                keepalive=0)  # registration does not check the keepalive
    try:
        assert code == 0
        topic, payload, flags = client.next_publish()  # no SUBSCRIBE was sent
        assert (topic, flags) == ("/ext/register", 0)
        result = json.loads(payload)
        assert set(result) == {"productKey", "deviceName", "deviceSecret"}
        assert (result["productKey"], result["deviceName"]) == (pk, dn)
        assert SECRET_RULE.match(result["deviceSecret"])
        assert cloud.device(pk, dn)["device_secret"] == result["deviceSecret"]
        client.publish(f"/sys/{pk}/{dn}/thing/event/property/post", b"{}")  # a registration session publishes nothing
        assert client.subscribe(f"/sys/{pk}/{dn}/#") == 0x80
        # The emulator closes a registration connection after its grace period.
        started = time.monotonic()
        with pytest.raises((ConnectionError, OSError)):
            client.sock.settimeout(CLIENT_TIMEOUT + 3)
            while True:
                client.read_packet()
        assert time.monotonic() - started < CLIENT_TIMEOUT + 2
    finally:
        client.close()
    record = last_log(cloud, "aliyun-mqtt-register")
    assert (record["result"], record["connack"], record["product"], record["device"]) == ("ok", 0, pk, dn)
    cloud.wait_for_log(lambda r: r["api"] == "mqtt-deliver" and r.get("device") == dn and r["topic"] == "/ext/register")


def test_mqtt_register_refusals(cloud, product):
    pk, secret = product
    dn = new_dn()
    assert connack(cloud, *registration_login(pk, dn, secret), tls=False) == 5  # TLS only
    assert connack(cloud, *registration_login(pk, dn, secret)) == 5  # not pre-registered
    cloud.add_device(pk, dn)
    client_id, username, _ = registration_login(pk, dn, secret)
    assert connack(cloud, client_id, username, "0" * 64) == 4  # wrong signature
    assert connack(cloud, *registration_login(pk, dn, secret[::-1])) == 4
    assert connack(cloud, *registration_login(pk, dn, secret, method="sha256")) == 4
    assert connack(cloud, *registration_login(pk, dn, secret, securemode="3")) == 5
    assert connack(cloud, *registration_login(new_pk(), dn, secret)) == 5  # unknown product
    assert connack(cloud, *registration_login(pk, dn, secret, auth_type="regnwl")) == 5  # regnwl not enabled
    assert cloud.device(pk, dn)["status"] == "created"
    results = [r["result"] for r in cloud.log() if r["api"] == "aliyun-mqtt-register" and r.get("product") == pk]
    assert results == ["tls-required", "device-not-found", "bad-signature", "bad-signature", "bad-sign-method",
                       "bad-securemode"]
    assert last_log(cloud, "aliyun-mqtt-regnwl")["result"] == "regnwl-disabled"


def test_regnwl_creates_the_device_and_its_token_logs_in_with_connwl(cloud):
    pk, secret = new_pk(), new_secret()
    cloud.add_product(pk, secret, cloud="aliyun", regnwl=True)
    dn = new_dn("free")
    code, result, topic = mqtt_register(cloud, pk, dn, secret, auth_type="regnwl", securemode="-2", method="hmacmd5")
    assert (code, topic) == (0, "/ext/regnwl")
    assert set(result) == {"clientId", "productKey", "deviceName", "deviceToken"}
    assert (result["productKey"], result["deviceName"]) == (pk, dn)
    device = cloud.device(pk, dn)
    assert device["origin"] == "regnwl" and device["status"] == "registered"
    assert (device["device_token"], device["client_id"]) == (result["deviceToken"], result["clientId"])
    assert "device_secret" not in device
    client_id = f"{result['clientId']}|securemode=-2,authType=connwl|"
    username = f"{dn}&{pk}"
    assert connack(cloud, client_id, username, result["deviceToken"], tls=False) == 5
    assert connack(cloud, client_id, username, result["deviceToken"][::-1]) == 4
    assert connack(cloud, f"{pk}.{dn}|securemode=-2,authType=connwl|", username, result["deviceToken"]) == 2
    assert connack(cloud, client_id, username, result["deviceToken"], keepalive=10) == 2
    assert cloud.device(pk, dn)["status"] == "registered"
    sdk_style = f"{result['clientId']}|authType=connwl,securemode=-2,_ss=1,ext=3,_v=sdk-c-4.1.0|"
    assert connack(cloud, sdk_style, username, result["deviceToken"]) == 0
    assert cloud.device(pk, dn)["status"] == "activated"
    assert mqtt_register(cloud, pk, dn, secret, auth_type="regnwl")[0] == 5  # already active
    assert last_log(cloud, "aliyun-mqtt-regnwl")["result"] == "device-already-active"
    cloud.add_product(pk, secret, cloud="aliyun", regnwl=True, limit=1)
    assert mqtt_register(cloud, pk, new_dn("free"), secret, auth_type="regnwl")[0] == 5  # product full
    assert last_log(cloud, "aliyun-mqtt-regnwl")["result"] == "device-limit-reached"


# -- DeviceSecret logins and topics ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["hmacmd5", "hmacsha1", "hmacsha256"])
def test_device_secret_login(cloud, registered, method):
    pk, dn, device_secret = registered
    assert connack(cloud, *login_fields(pk, dn, device_secret, method=method, timestamp=None)) == 0
    client_id, username, password = login_fields(pk, dn, device_secret, method=method, client="AnyClient-7")
    assert connack(cloud, client_id, username, password.upper()) == 0
    assert connack(cloud, client_id.replace("1700000000000", "1700000000001"), username, password) == 4
    assert connack(cloud, client_id, username, password, tls=False) == 5  # securemode 2 needs TLS
    assert connack(cloud, client_id, username, password, keepalive=0) == 2  # keepalive must be 30..1200
    assert connack(cloud, client_id, username, password, keepalive=1201) == 2
    assert connack(cloud, client_id, f"{dn}&{new_pk()}", password) == 5
    assert connack(cloud, client_id, f"{dn}+{pk}", password) == 4
    assert connack(cloud, "no-params-at-all", username, password) == 2
    assert cloud.device(pk, dn)["status"] == "activated"


def test_securemode_3_is_plain_tcp_only_and_off_by_default(cloud, product, registered):
    pk, dn, device_secret = registered
    plain = login_fields(pk, dn, device_secret, securemode="3")
    assert connack(cloud, *plain, tls=False) == 5
    assert last_log(cloud, "mqtt-connect")["result"] == "tcp-not-allowed"
    assert connack(cloud, *plain) == 5  # securemode 3 over TLS: mismatch
    cloud.add_product(pk, product[1], cloud="aliyun", securemode3=True)
    assert connack(cloud, *plain, tls=False) == 0


def test_a_device_uses_only_its_own_topics(cloud, registered):
    pk, dn, device_secret = registered
    client, code = mqtt_connect(cloud, *login_fields(pk, dn, device_secret))
    assert code == 0
    try:
        assert client.subscribe(f"/sys/{pk}/{dn}/thing/service/+") == 0
        assert client.subscribe(f"/{pk}/{dn}/user/#") == 0
        assert client.subscribe(f"/sys/{pk}/other-device/#") == 0x80
        assert client.subscribe(f"/{pk}/+/user/get") == 0x80
        assert client.subscribe("/ext/register") == 0x80
        client.publish(f"/{pk}/other-device/user/update", b"not mine")
        client.publish(f"/{pk}/{dn}/user/get", b"mine")
        assert client.next_publish()[:2] == (f"/{pk}/{dn}/user/get", b"mine")
        assert client.ping()
    finally:
        client.close()
    denied = cloud.wait_for_log(lambda r: r["api"] == "mqtt-publish" and r["topic"] == f"/{pk}/other-device/user/update")
    assert denied["result"] == "acl-denied"


# -- gateways and sub-devices ------------------------------------------------------------------------------


@pytest.fixture
def gateway(cloud):
    """A logged-in gateway subscribed to its replies, and a sub-device product with two pre-registered devices."""
    gw_pk, gw_secret, sub_pk, sub_secret = new_pk(), new_secret(), new_pk(), new_secret()
    cloud.add_product(gw_pk, gw_secret, cloud="aliyun", gateway=True)
    cloud.add_product(sub_pk, sub_secret, cloud="aliyun", subdevice=True)
    gw_dn = new_dn("gw")
    cloud.add_device(gw_pk, gw_dn)
    subs = [new_dn("sensor"), new_dn("sensor")]
    for name in subs:
        cloud.add_device(sub_pk, name)
    gw_device_secret = https_register(cloud, gw_pk, gw_dn, gw_secret)["data"]["deviceSecret"]
    client, code = mqtt_connect(cloud, *login_fields(gw_pk, gw_dn, gw_device_secret))
    assert code == 0
    prefix = f"/sys/{gw_pk}/{gw_dn}/thing/"
    for topic in ("sub/register_reply", "topo/add_reply"):
        assert client.subscribe(prefix + topic) == 0
    yield client, prefix, gw_pk, gw_dn, sub_pk, subs
    client.close()


def sub_register(client, prefix: str, entries: list[dict], message_id: str = "7") -> dict:
    return request(client, prefix + "sub/register", {"id": message_id, "version": "1.0", "params": entries,
                                                    "method": "thing.sub.register"})


def test_sub_device_registration_issues_a_new_secret_every_call(cloud, gateway):
    client, prefix, _, _, sub_pk, subs = gateway
    entries = [{"deviceName": name, "productKey": sub_pk} for name in subs]
    reply = sub_register(client, prefix, entries, "41")
    assert (reply["id"], reply["code"], reply["message"]) == ("41", 200, "success")
    assert (reply["method"], reply["version"]) == ("thing.sub.register", "1.0")
    assert [(item["productKey"], item["deviceName"]) for item in reply["data"]] == [(sub_pk, name) for name in subs]
    for item in reply["data"]:
        assert SECRET_RULE.match(item["deviceSecret"]) and item["iotId"]
        device = cloud.device(sub_pk, item["deviceName"])
        assert device["device_secret"] == item["deviceSecret"] and device["iot_id"] == item["iotId"]
    again = sub_register(client, prefix, entries[:1], "42")
    assert again["code"] == 200 and again["data"][0]["deviceSecret"] != reply["data"][0]["deviceSecret"]
    assert again["data"][0]["iotId"] == reply["data"][0]["iotId"]
    assert cloud.device(sub_pk, subs[0])["device_secret"] == again["data"][0]["deviceSecret"]
    record = last_log(cloud, "aliyun-sub-register")
    assert record["result"] == "ok" and record["sub_devices"] == f"{sub_pk}/{subs[0]}"


def test_sub_device_registration_errors_are_all_or_nothing(cloud, gateway):
    client, prefix, gw_pk, gw_dn, sub_pk, subs = gateway
    good = {"deviceName": subs[0], "productKey": sub_pk}
    plain_pk = new_pk()
    cloud.add_product(plain_pk, new_secret(), cloud="aliyun")  # not a sub-device product
    cloud.add_device(plain_pk, "direct-1")
    cases = [
        ([good, {"deviceName": "missing-1", "productKey": sub_pk}], 6100, "device not found"),
        ([good, {"productKey": sub_pk}], 460, "request parameter error"),
        ([good, {"deviceName": "direct-1", "productKey": plain_pk}], 401, "request auth error"),
        ([good, {"deviceName": gw_dn, "productKey": gw_pk}], 6402, "topo relation cannot add by self"),
        ([good, good], 460, "request parameter error"),
        ([good, {"deviceName": "x-1", "productKey": new_pk()}], 6250, "product not found"),
    ]
    for index, (entries, code, message) in enumerate(cases):
        reply = sub_register(client, prefix, entries, str(100 + index))
        assert (reply["id"], reply["code"], reply["message"], reply["data"]) == (str(100 + index), code, message, {})
    assert "device_secret" not in cloud.device(sub_pk, subs[0])  # the valid entry got nothing
    assert sub_register(client, prefix, [], "9")["code"] == 460
    assert request(client, prefix + "sub/register", {"id": 9, "params": [good]})["code"] == 460  # id is a string
    assert request(client, prefix + "sub/register", {"id": "9", "params": [good], "method": "thing.topo.add"})[
        "code"] == 460
    # "sys":{"ack":0} asks for no reply; the request is still processed.
    client.publish(prefix + "sub/register", json.dumps({"id": "10", "params": [good], "sys": {"ack": 0}}).encode())
    record = cloud.wait_for_log(lambda r: r["api"] == "aliyun-sub-register" and r.get("reply") is False)
    assert record["result"] == "ok" and "device_secret" in cloud.device(sub_pk, subs[0])
    cloud.add_product(sub_pk, new_secret(), cloud="aliyun", subdevice=True, dynreg=False)
    assert sub_register(client, prefix, [good], "11")["code"] == 401


def test_a_non_gateway_cannot_register_sub_devices(cloud, registered):
    pk, dn, device_secret = registered
    client, code = mqtt_connect(cloud, *login_fields(pk, dn, device_secret))
    try:
        assert code == 0 and client.subscribe(f"/sys/{pk}/{dn}/thing/sub/register_reply") == 0
        reply = sub_register(client, f"/sys/{pk}/{dn}/thing/", [{"deviceName": "abcd", "productKey": pk}])
        assert reply["code"] == 460
    finally:
        client.close()


def test_topo_add_checks_each_sub_device_signature(cloud, gateway):
    client, prefix, gw_pk, gw_dn, sub_pk, subs = gateway
    secrets = {item["deviceName"]: item["deviceSecret"] for item in sub_register(
        client, prefix, [{"deviceName": name, "productKey": sub_pk} for name in subs])["data"]}

    def entry(name: str, *, key: str | None = None, client_id: str | None = "default", method: str = "hmacSha256"):
        timestamp = str(int(time.time() * 1000))
        fields = {"deviceName": name, "productKey": sub_pk, "timestamp": timestamp}
        if client_id is not None:
            fields["clientId"] = f"{sub_pk}.{name}" if client_id == "default" else client_id
        return {**fields, "signmethod": method, "sign": sign(key or secrets[name], fields, method)}

    def topo_add(entries: list[dict], message_id: str = "5") -> dict:
        return request(client, prefix + "topo/add", {"id": message_id, "version": "1.0", "params": entries,
                                                    "method": "thing.topo.add"})

    bad = topo_add([entry(subs[0]), entry(subs[1], key=secrets[subs[0]])], "6")
    assert (bad["id"], bad["code"], bad["message"]) == ("6", 401, "request auth error")
    assert "gateway" not in cloud.device(sub_pk, subs[0])
    reply = topo_add([entry(subs[0]), entry(subs[1], client_id=None, method="hmacSha1")])
    assert (reply["id"], reply["code"], reply["method"]) == ("5", 200, "thing.topo.add")
    assert reply["data"] == [{"productKey": sub_pk, "deviceName": name} for name in subs]
    assert cloud.device(sub_pk, subs[0])["gateway"] == f"{gw_pk}/{gw_dn}"
    assert cloud.device(gw_pk, gw_dn)["sub_devices"] == sorted(f"{sub_pk}/{name}" for name in subs)
    assert topo_add([{**entry(subs[0]), "deviceName": gw_dn, "productKey": gw_pk}])["code"] == 6402
    assert topo_add([{k: v for k, v in entry(subs[0]).items() if k != "sign"}])["code"] == 460
    # A new registration replaces the secret: the old one no longer signs.
    stale = secrets[subs[0]]
    sub_register(client, prefix, [{"deviceName": subs[0], "productKey": sub_pk}])
    assert topo_add([entry(subs[0], key=stale)])["code"] == 401
    record = cloud.wait_for_log(lambda r: r["api"] == "mqtt-publish" and r["topic"] == prefix + "topo/add")
    assert '"sign":"<h' in record["payload"] and not re.search(r"[0-9a-f]{40}", record["payload"])


# -- persistence, CLI, secrecy ----------------------------------------------------------------------------


def test_restart_keeps_aliyun_state(tmp_path):
    pk, secret, dn = new_pk(), new_secret(), new_dn()
    with running_emulator(tmp_path) as cloud:
        cloud.add_product(pk, secret, cloud="aliyun", regnwl=True)
        cloud.add_device(pk, dn)
        device_secret = https_register(cloud, pk, dn, secret)["data"]["deviceSecret"]
        assert connack(cloud, *login_fields(pk, dn, device_secret)) == 0
        _, token_result, _ = mqtt_register(cloud, pk, "free-1", secret, auth_type="regnwl", securemode="-2")
    with running_emulator(tmp_path) as cloud:
        assert https_register(cloud, pk, dn, secret)["code"] == 6289
        assert connack(cloud, *login_fields(pk, dn, device_secret)) == 0
        assert connack(cloud, f"{token_result['clientId']}|securemode=-2,authType=connwl|", f"free-1&{pk}",
                       token_result["deviceToken"]) == 0
        assert cloud.device(pk, dn)["cloud"] == "aliyun"


def test_cli_manages_aliyun_products_without_echoing_secrets(cloud):
    pk, secret, dn = new_pk(), new_secret(), new_dn("cli")
    state = str(cloud.state_dir)
    added = run_cli("add-product", "--state", state, "--cloud", "aliyun", "--product-key", pk, "--secret", secret,
                    "--regnwl", "on", "--gateway", "--securemode3", "on")
    assert added.returncode == 0, added.stderr
    assert secret not in added.stdout + added.stderr and "node gateway" in added.stdout
    assert run_cli("add-device", "--state", state, "--product-key", pk, "--device-name", dn).returncode == 0
    device_secret = https_register(cloud, pk, dn, secret)["data"]["deviceSecret"]
    listing = run_cli("devices", "--state", state)
    line = next(row for row in listing.stdout.splitlines() if dn in row)
    assert "aliyun" in line and "registered" in line and "<hidden>" in line and device_secret not in listing.stdout
    assert device_secret in run_cli("devices", "--state", state, "--show-secrets").stdout
    products = run_cli("products", "--state", state).stdout
    assert pk in products and secret not in products
    assert run_cli("reset-device", "--state", state, "--product-key", pk, "--device-name", dn).returncode == 0
    assert cloud.device(pk, dn)["status"] == "created" and "device_secret" not in cloud.device(pk, dn)
    for bad in (["--cloud", "aliyun", "--product-key", "a1short", "--secret", secret],  # keys have 11 characters
                ["--cloud", "aliyun", "--product-key", new_pk(), "--secret", secret, "--mode", "autocreate"],
                ["--product-id", "ABCDEFGHIJ", "--secret", secret, "--regnwl", "on"]):  # an Alibaba-only flag
        refused = run_cli("add-product", "--state", state, *bad)
        assert refused.returncode == 2 and secret not in refused.stdout + refused.stderr
    assert run_cli("add-device", "--state", state, "--product-key", pk, "--device-name", "abc").returncode == 2


def test_no_secret_reaches_the_log_or_the_output(cloud):
    """Runs last in this module: every secret issued above is looked for in the log and the output."""
    state = json.loads((cloud.state_dir / "state.json").read_text())
    secrets = set()
    for product in state["products"].values():
        secrets.add(product["secret"])
        for device in product["devices"].values():
            secrets.update(device[field] for field in ("device_secret", "device_token") if field in device)
    assert len(secrets) > 30
    log_text = (cloud.state_dir / "requests.log").read_text()
    output = cloud.output()
    for secret in secrets:
        assert secret not in log_text
        assert secret not in output
    for record in map(json.loads, log_text.splitlines()):
        assert not {"secret", "device_secret", "deviceSecret", "device_token", "sign", "password"} & set(record)
        assert "deviceSecret\":\"" not in record.get("payload", "")

"""Tests of the local cloud emulator (cloud_emulator/), run on CPython.

The emulator runs as a subprocess through cloud_emulator.testing. Requests are signed here
with the standard library only, independently of the emulator's and the device library's
code; the public vectors of PROTOCOLS.md section 5 pin both sides.
"""

import base64
import hashlib
import hmac
import json
import os
import random
import socket
import ssl
import stat
import string
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from cloud_emulator import crypto, tencent
from cloud_emulator.testing import running_emulator

ROOT = Path(__file__).resolve().parent.parent
from raw_mqtt import RawMqtt  # noqa: E402
V2 = "/device/register"
LEGACY = "/register/dev"
SDK_APPID = "12010126"

# PROTOCOLS.md section 5
VECTOR_PID = "ASJ3GXJXGX"
VECTOR_DN = "xyz"
VECTOR_SECRET = "hzvf5LF9S0isvBhDSauWMaIk"
VECTOR_TS = 1551000065
VECTOR_NONCE = 5456
VECTOR_BODY_HASH = "7d1634512a1174d342996d3672ebb64590a92533c30d978b9ad43ec280de9fa2"
VECTOR_V2_SIGNATURE = "LMAs/Lpuk+Jo1QzOr3S1dJYsYbA7dbMaTI4asKjM50k="
VECTOR_LEGACY_SIGNATURE = "NjU4OTRmYTA4MmUzNDAxOWE1ODFiMzYwNWJhODBlNjRkN2EwMDA5ZQ=="
VECTOR_PAYLOAD = "s6FB3a1BA/YYbcmSE12XpeDVmQNDcf1QgVD141RRbmmAnFwQfp1ECAu5O016mCOvYlJJ6V59yM4OqQSiWphfTg=="
VECTOR_PLAINTEXT = b'{"encryptionType":2,"psk":"lDZ6Uqt+I9E0wW7rvDUs7Q=="}'
VECTOR_PSK = "lDZ6Uqt+I9E0wW7rvDUs7Q=="
VECTOR_MQTT_USERNAME = "ASJ3GXJXGXxyz;12010126;AbC12;1551003665"
VECTOR_MQTT_PASSWORD = "89372a0ba1cad15c0ad6b3a77d88eb3b581d9a047a3adc7f5132436b541d70f8;hmacsha256"

CLIENT_TIMEOUT = 1.0  # the emulator's slow-client deadline in these tests
HASHES = {"hmacsha256": hashlib.sha256, "hmacsha1": hashlib.sha1}


# -- signing, independent of the emulator -----------------------------------------------------


def body_v2(pid: str, dn: str) -> bytes:
    return ('{"ProductId":"%s","DeviceName":"%s"}' % (pid, dn)).encode()


def sign_v2(secret: str, host: str, algorithm: str, ts: int, nonce: int, body: bytes, path: str = V2) -> str:
    body_hash = HASHES[algorithm](body).hexdigest()
    text = "\n".join(["POST", host, path, "", algorithm, str(ts), str(nonce), body_hash])
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), HASHES[algorithm]).digest()).decode()


def sign_legacy(secret: str, pid: str, dn: str, ts: int, nonce: int) -> str:
    text = f"deviceName={dn}&nonce={nonce}&productId={pid}&timestamp={ts}"
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest().encode()).decode()


def mqtt_credentials(pid: str, dn: str, psk: str, *, algorithm: str = "hmacsha256", expiry: int | None = None,
                     connid: str = "AbC12", appid: str = SDK_APPID) -> tuple[str, str]:
    expiry = int(time.time()) + 3600 if expiry is None else expiry
    username = f"{pid}{dn};{appid};{connid};{expiry}"
    digest = hmac.new(base64.b64decode(psk), username.encode(), HASHES[algorithm]).hexdigest()
    return username, f"{digest};{algorithm}"


def decrypt_payload(payload: str, secret: str, length: int) -> bytes:
    decryptor = Cipher(algorithms.AES(secret[:16].encode()), modes.CBC(b"0" * 16)).decryptor()
    return (decryptor.update(base64.b64decode(payload)) + decryptor.finalize())[:length]


def new_nonce() -> int:
    return random.randint(1, 2**31 - 1)


def new_product_id() -> str:
    return "".join(random.choices(string.ascii_uppercase + string.digits, k=10))


def new_secret() -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=24))


# -- HTTP ---------------------------------------------------------------------------------------


def http_exchange(cloud, raw: bytes, *, tls: bool = False, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """Send raw request bytes, read until the server closes; returns (status, headers, body)."""
    sock = socket.create_connection(("127.0.0.1", cloud.https_port if tls else cloud.http_port), timeout=timeout)
    if tls:
        sock = cloud.client_ssl_context().wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers | {":status-line": lines[0]}, body


def post(cloud, path: str, body: bytes, headers: dict[str, str], *, tls: bool = False,
         timeout: float = 5.0) -> tuple[int, dict]:
    headers = {"Host": "localhost", "Content-Type": "application/json; charset=utf-8"} | headers
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items() if v is not None)
    head += f"Content-Length: {len(body)}\r\n\r\n"
    status, _, reply = http_exchange(cloud, head.encode() + body, tls=tls, timeout=timeout)
    return status, json.loads(reply)


def register_v2(cloud, pid: str, dn: str, secret: str, *, algorithm: str = "hmacsha256", ts: int | None = None,
                nonce: int | None = None, tls: bool = False, host: str = "localhost", sign_host: str | None = None,
                signature: str | None = None, timeout: float = 5.0) -> dict:
    ts = int(time.time()) if ts is None else ts
    nonce = new_nonce() if nonce is None else nonce
    body = body_v2(pid, dn)
    signature = signature or sign_v2(secret, sign_host or host.split(":")[0], algorithm, ts, nonce, body)
    status, reply = post(cloud, V2, body, {"Host": host, "X-TC-Algorithm": algorithm, "X-TC-Timestamp": str(ts),
                                           "X-TC-Nonce": str(nonce), "X-TC-Signature": signature}, tls=tls,
                         timeout=timeout)
    assert status == 200
    return reply["Response"]


def register_legacy(cloud, pid: str, dn: str, secret: str, *, ts: int | None = None, nonce: int | None = None,
                    tls: bool = False, signature: str | None = None) -> dict:
    ts = int(time.time()) if ts is None else ts
    nonce = new_nonce() if nonce is None else nonce
    body = {"deviceName": dn, "nonce": nonce, "productId": pid, "timestamp": ts,
            "signature": signature or sign_legacy(secret, pid, dn, ts, nonce)}
    status, reply = post(cloud, LEGACY, json.dumps(body).encode(), {}, tls=tls)
    assert status == 200
    return reply


def psk_from_v2(response: dict, secret: str) -> str:
    plaintext = json.loads(decrypt_payload(response["Payload"], secret, response["Len"]))
    assert plaintext["encryptionType"] == 2
    assert len(base64.b64decode(plaintext["psk"])) == 16
    return plaintext["psk"]


def error_code(response: dict) -> str:
    return response["Error"]["Code"]




def mqtt_login_code(port: int, client_id: str, username: str | None, password: str | None, *,
                    tls: ssl.SSLContext | None = None) -> int:
    client, code = RawMqtt.connect(port, client_id, username, password, tls=tls)
    client.close()
    return code


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud"), client_timeout=CLIENT_TIMEOUT) as running:
        yield running


@pytest.fixture(autouse=True)
def no_fault_outlives_its_test(cloud):
    yield
    cloud.clear_faults()


@pytest.fixture
def product(cloud):
    """A fresh key-auth, auto-create product: (product id, secret)."""
    pid, secret = new_product_id(), new_secret()
    cloud.add_product(pid, secret, auth="key", dynreg=True, mode="autocreate", limit=100)
    return pid, secret


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloud_emulator", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)


# -- public vectors -----------------------------------------------------------------------------


def test_public_vectors_pin_the_test_signers():
    body = body_v2(VECTOR_PID, VECTOR_DN)
    assert hashlib.sha256(body).hexdigest() == VECTOR_BODY_HASH
    assert sign_v2(VECTOR_SECRET, "ap-guangzhou.gateway.tencentdevices.com", "hmacsha256", VECTOR_TS, VECTOR_NONCE,
                   body) == VECTOR_V2_SIGNATURE
    assert sign_legacy(VECTOR_SECRET, VECTOR_PID, VECTOR_DN, VECTOR_TS, VECTOR_NONCE) == VECTOR_LEGACY_SIGNATURE
    username, password = mqtt_credentials(VECTOR_PID, VECTOR_DN, VECTOR_PSK, expiry=1551003665)
    assert (username, password) == (VECTOR_MQTT_USERNAME, VECTOR_MQTT_PASSWORD)
    assert decrypt_payload(VECTOR_PAYLOAD, VECTOR_SECRET, 53) == VECTOR_PLAINTEXT


def test_public_vectors_pin_the_emulator_verifiers():
    text = tencent.v2_string_to_sign(host="ap-guangzhou.gateway.tencentdevices.com", path=V2, query="",
                                     algorithm="hmacsha256", timestamp=str(VECTOR_TS), nonce=str(VECTOR_NONCE),
                                     body=body_v2(VECTOR_PID, VECTOR_DN))
    assert text.endswith(VECTOR_BODY_HASH)
    assert tencent.v2_signature(VECTOR_SECRET, text, "hmacsha256") == VECTOR_V2_SIGNATURE
    assert tencent.legacy_signature(VECTOR_SECRET, VECTOR_DN, VECTOR_NONCE, VECTOR_PID, VECTOR_TS) == \
        VECTOR_LEGACY_SIGNATURE
    assert tencent.mqtt_password(VECTOR_PSK, VECTOR_MQTT_USERNAME, "hmacsha256") == VECTOR_MQTT_PASSWORD
    assert crypto.encrypt_registration_payload(VECTOR_PLAINTEXT, VECTOR_SECRET) == (VECTOR_PAYLOAD, 53)
    assert tencent.host_without_port("localhost:8443") == "localhost"
    assert tencent.host_without_port("[::1]:8443") == "[::1]"


def test_vector_request_is_outside_the_time_window(cloud):
    cloud.add_product(VECTOR_PID, VECTOR_SECRET)
    response = register_v2(cloud, VECTOR_PID, VECTOR_DN, VECTOR_SECRET, ts=VECTOR_TS, nonce=VECTOR_NONCE,
                           host="ap-guangzhou.gateway.tencentdevices.com")
    assert error_code(response) == "AuthFailure.SignatureExpire"
    legacy = register_legacy(cloud, VECTOR_PID, VECTOR_DN, VECTOR_SECRET, ts=VECTOR_TS, nonce=VECTOR_NONCE)
    assert legacy["code"] == 1002


# -- registration happy paths ----------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("algorithm", ["hmacsha256", "hmacsha1"])
def test_v2_registration_issues_a_psk(cloud, product, algorithm, tls):
    pid, secret = product
    response = register_v2(cloud, pid, "dev-1", secret, algorithm=algorithm, tls=tls,
                           host=f"localhost:{cloud.https_port if tls else cloud.http_port}")
    assert set(response) >= {"Len", "Payload", "RequestId"}, response
    assert response["Len"] == 53
    uuid.UUID(response["RequestId"])
    assert response["State"] == 0
    psk = psk_from_v2(response, secret)
    device = cloud.device(pid, "dev-1")
    assert device["status"] == "registered" and device["psk"] == psk
    record = cloud.log()[-1]
    assert record["api"] == "tencent-v2" and record["result"] == "ok"
    assert (record["product"], record["device"], record["algorithm"]) == (pid, "dev-1", algorithm)
    assert record["transport"] == ("https" if tls else "http")


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_legacy_registration_issues_a_psk(cloud, product, tls):
    pid, secret = product
    reply = register_legacy(cloud, pid, "dev:legacy_1", secret, tls=tls)
    assert reply["code"] == 0 and reply["message"] == "" and reply["len"] == 53
    plaintext = json.loads(decrypt_payload(reply["payload"], secret, reply["len"]))
    assert plaintext["encryptionType"] == 2
    assert cloud.device(pid, "dev:legacy_1")["psk"] == plaintext["psk"]
    record = cloud.log()[-1]
    assert (record["api"], record["result"], record["algorithm"]) == ("tencent-legacy", "ok", "hmacsha1")


def test_http_1_0_request_gets_a_framed_answer(cloud, product):
    pid, secret = product
    ts, nonce, body = int(time.time()), new_nonce(), body_v2(pid, "old-client")
    signature = sign_v2(secret, "localhost", "hmacsha256", ts, nonce, body)
    raw = (f"POST {V2} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           f"X-TC-Algorithm: hmacsha256\r\nX-TC-Timestamp: {ts}\r\nX-TC-Nonce: {nonce}\r\n"
           f"X-TC-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    status, headers, reply = http_exchange(cloud, raw)
    assert status == 200 and headers[":status-line"].startswith("HTTP/1.0 200")
    assert headers["content-length"] == str(len(reply)) and headers["connection"] == "close"
    assert "Payload" in json.loads(reply)["Response"]


def test_certificate_product_issues_a_client_certificate_that_logs_in(cloud, tmp_path):
    pid, secret = new_product_id(), new_secret()
    cloud.add_product(pid, secret, auth="cert")
    response = register_v2(cloud, pid, "cam-1", secret, tls=True)
    plaintext = decrypt_payload(response["Payload"], secret, response["Len"])
    assert len(plaintext) == response["Len"]
    issued = json.loads(plaintext)
    assert issued["encryptionType"] == 1
    certificate = x509.load_pem_x509_certificate(issued["clientCert"].encode())
    ca = x509.load_der_x509_certificate(Path(cloud.ca_der_path).read_bytes())
    certificate.verify_directly_issued_by(ca)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == pid + "cam-1"
    assert "PRIVATE KEY" in issued["clientKey"]

    # Registering again before any login replaces the certificate; the first one stops working.
    again = register_v2(cloud, pid, "cam-1", secret)
    second = json.loads(decrypt_payload(again["Payload"], secret, again["Len"]))
    contexts = []
    for index, credentials in enumerate((issued, second)):
        (tmp_path / f"c{index}.pem").write_text(credentials["clientCert"])
        (tmp_path / f"k{index}.pem").write_text(credentials["clientKey"])
        context = cloud.client_ssl_context()
        context.load_cert_chain(tmp_path / f"c{index}.pem", tmp_path / f"k{index}.pem")
        contexts.append(context)
    username, _ = mqtt_credentials(pid, "cam-1", VECTOR_PSK)
    assert mqtt_login_code(cloud.mqtts_port, pid + "cam-1", username, None, tls=contexts[0]) == 5
    assert mqtt_login_code(cloud.mqtts_port, pid + "cam-1", username, None, tls=cloud.client_ssl_context()) == 5
    assert mqtt_login_code(cloud.mqtt_port, pid + "cam-1", username, None) == 5
    assert cloud.device(pid, "cam-1")["status"] == "registered"
    assert mqtt_login_code(cloud.mqtts_port, pid + "cam-1", username, None, tls=contexts[1]) == 0
    assert cloud.device(pid, "cam-1")["status"] == "activated"
    reasons = [r["result"] for r in cloud.log() if r["api"] == "mqtt-connect" and r.get("product") == pid]
    assert reasons == ["certificate-mismatch", "certificate-required", "certificate-required", "ok"]


# -- registration refusals -------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["hmacsha256", "hmacsha1"])
def test_bad_v2_signature_is_refused(cloud, product, algorithm):
    pid, secret = product
    wrong = register_v2(cloud, pid, "dev-sig", secret[::-1], algorithm=algorithm)
    assert error_code(wrong) == "AuthFailure.SignatureFailure"
    # Signed over the Host with its port (the emulator strips the port): refused.
    with_port = register_v2(cloud, pid, "dev-sig", secret, algorithm=algorithm, host=f"localhost:{cloud.http_port}",
                            sign_host=f"localhost:{cloud.http_port}")
    assert error_code(with_port) == "AuthFailure.SignatureFailure"
    assert cloud.device(pid, "dev-sig") is None
    assert cloud.log()[-1]["reason"] == "bad-signature"


def test_bad_legacy_signature_is_refused_with_the_cloud_message(cloud, product):
    pid, secret = product
    ts, nonce = int(time.time()), new_nonce()
    text = f"deviceName=d1&nonce={nonce}&productId={pid}&timestamp={ts}"
    raw_digest = base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()).decode()
    reply = register_legacy(cloud, pid, "d1", secret, ts=ts, nonce=nonce, signature=raw_digest)  # classic mistake
    assert reply == {"code": 1010, "message": "Check signature failed"}


def test_timestamp_window_is_five_minutes(cloud, product):
    pid, secret = product
    now = int(time.time())
    for offset in (-330, 330):
        assert error_code(register_v2(cloud, pid, "dev-clock", secret, ts=now + offset)) == \
            "AuthFailure.SignatureExpire"
        assert register_legacy(cloud, pid, "dev-clock", secret, ts=now + offset)["code"] == 1002
    assert "Payload" in register_v2(cloud, pid, "dev-clock", secret, ts=now - 270)
    assert register_legacy(cloud, pid, "dev-clock", secret, ts=now + 270)["code"] == 0


def test_replayed_nonce_is_refused(cloud, product):
    pid, secret = product
    ts, nonce = int(time.time()), new_nonce()
    assert "Payload" in register_v2(cloud, pid, "dev-replay", secret, ts=ts, nonce=nonce)
    assert error_code(register_v2(cloud, pid, "dev-replay", secret, ts=ts, nonce=nonce)) == "AuthFailure.NonceReplay"
    assert register_legacy(cloud, pid, "dev-replay", secret, nonce=nonce)["code"] == 1003
    other_pid, other_secret = new_product_id(), new_secret()
    cloud.add_product(other_pid, other_secret)
    assert "Payload" in register_v2(cloud, other_pid, "dev-replay", other_secret, nonce=nonce)


@pytest.mark.parametrize("name", ["", "a b", "dev/1", "x" * 49, "dév"])
def test_device_name_rule(cloud, product, name):
    pid, secret = product
    assert error_code(register_v2(cloud, pid, name, secret)) == "InvalidParameterValue"
    assert register_legacy(cloud, pid, name, secret)["code"] == 1001


def test_longest_device_name_with_every_allowed_character(cloud, product):
    pid, secret = product
    name = ("aZ09:_-" * 7)[:48]
    assert "Payload" in register_v2(cloud, pid, name, secret)


def test_unknown_product_and_disabled_dynamic_registration(cloud):
    pid, secret = new_product_id(), new_secret()
    assert error_code(register_v2(cloud, pid, "d", secret)) == "ResourceNotFound.ProductNotExist"
    assert register_legacy(cloud, pid, "d", secret)["code"] == 1004
    cloud.add_product(pid, secret, dynreg=False)
    response = register_v2(cloud, pid, "d", secret)
    assert response["Error"]["Message"] == "Not support dynamic device register, please check setting first"
    assert register_legacy(cloud, pid, "d", secret) == {
        "code": 1005, "message": "Not support dynamic device register, please check setting first"}


def test_precreate_mode_needs_the_device_to_exist(cloud):
    pid, secret = new_product_id(), new_secret()
    cloud.add_product(pid, secret, mode="precreate")
    refused = register_v2(cloud, pid, "pre-1", secret)
    assert refused["Error"] == {"Code": "ResourceNotFound.DeviceNotExist", "Message": "Pre create mode: device not exists"}
    assert register_legacy(cloud, pid, "pre-1", secret)["code"] == 1006
    cloud.add_device(pid, "pre-1")
    assert cloud.device(pid, "pre-1")["status"] == "created"
    response = register_v2(cloud, pid, "pre-1", secret)
    assert response["State"] == 1
    assert cloud.device(pid, "pre-1")["psk"] == psk_from_v2(response, secret)


def test_autocreate_stops_at_the_device_limit_even_under_concurrency(cloud):
    pid, secret = new_product_id(), new_secret()
    cloud.add_product(pid, secret, mode="autocreate", limit=5)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda i=i: results.append(register_v2(cloud, pid, f"d{i}", secret)))
               for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum("Payload" in r for r in results) == 5
    assert [error_code(r) for r in results if "Error" in r] == ["LimitExceeded.DeviceExceedLimit"] * 7
    assert len([device for device in cloud.devices() if device["product_id"] == pid]) == 5


def test_reregistration_rotates_the_secret_until_the_first_login(cloud, product):
    pid, secret = product
    first = psk_from_v2(register_v2(cloud, pid, "dev-rot", secret), secret)
    second_response = register_v2(cloud, pid, "dev-rot", secret)
    assert second_response["State"] == 1
    second = psk_from_v2(second_response, secret)
    assert first != second
    assert mqtt_login_code(cloud.mqtt_port, pid + "dev-rot", *mqtt_credentials(pid, "dev-rot", first)) == 4
    assert cloud.device(pid, "dev-rot")["status"] == "registered"
    assert mqtt_login_code(cloud.mqtt_port, pid + "dev-rot", *mqtt_credentials(pid, "dev-rot", second)) == 0
    assert cloud.device(pid, "dev-rot")["status"] == "activated"

    refused = register_v2(cloud, pid, "dev-rot", secret)
    assert error_code(refused) == "FailedOperation.DeviceAlreadyActivated"
    assert register_legacy(cloud, pid, "dev-rot", secret)["code"] == 1008
    assert cloud.device(pid, "dev-rot")["psk"] == second

    cloud.reset_device(pid, "dev-rot")  # operator reset in the console
    assert cloud.device(pid, "dev-rot")["status"] == "created"
    assert mqtt_login_code(cloud.mqtt_port, pid + "dev-rot", *mqtt_credentials(pid, "dev-rot", second)) == 5
    assert psk_from_v2(register_v2(cloud, pid, "dev-rot", secret), secret) not in (first, second)


def test_malformed_requests_are_refused(cloud, product):
    pid, secret = product
    ts, nonce = str(int(time.time())), str(new_nonce())
    body = body_v2(pid, "dev-x")
    good = {"X-TC-Algorithm": "hmacsha256", "X-TC-Timestamp": ts, "X-TC-Nonce": nonce,
            "X-TC-Signature": sign_v2(secret, "localhost", "hmacsha256", int(ts), int(nonce), body)}
    assert error_code(post(cloud, V2, body, good | {"X-TC-Nonce": None})[1]["Response"]) == "MissingParameter"
    assert error_code(post(cloud, V2, body, good | {"X-TC-Algorithm": "HMACSHA256"})[1]["Response"]) == \
        "InvalidParameterValue"
    assert error_code(post(cloud, V2, b"{not json", good)[1]["Response"]) == "InvalidParameter"
    assert error_code(post(cloud, V2, body, good | {"Content-Type": "text/plain"})[1]["Response"]) == \
        "InvalidParameter"
    legacy = {"deviceName": "dev-x", "nonce": str(nonce), "productId": pid, "timestamp": int(ts),
              "signature": sign_legacy(secret, pid, "dev-x", int(ts), int(nonce))}
    assert post(cloud, LEGACY, json.dumps(legacy).encode(), {})[1]["code"] == 1001  # nonce must be a number


# -- HTTP limits and framing -----------------------------------------------------------------


def test_http_limits(cloud, product):
    pid, _ = product
    big = b"x" * 5000
    status, _, reply = http_exchange(cloud, (f"POST {V2} HTTP/1.1\r\nHost: localhost\r\n"
                                             f"Content-Length: {len(big)}\r\n\r\n").encode() + big)
    assert status == 413 and error_code(json.loads(reply)["Response"]) == "RequestSizeLimitExceeded"
    status, _, reply = http_exchange(cloud, (f"POST {LEGACY} HTTP/1.1\r\nHost: localhost\r\n"
                                             f"Content-Length: {len(big)}\r\n\r\n").encode() + big, tls=True)
    assert status == 413 and json.loads(reply)["code"] == 413
    long_header = f"POST {V2} HTTP/1.1\r\nHost: localhost\r\nX-Pad: {'p' * 3000}\r\nContent-Length: 0\r\n\r\n"
    assert http_exchange(cloud, long_header.encode())[0] == 431
    many_headers = f"POST {V2} HTTP/1.1\r\nHost: localhost\r\n" + "X-A: 1\r\n" * 60 + "Content-Length: 0\r\n\r\n"
    assert http_exchange(cloud, many_headers.encode())[0] == 431
    assert http_exchange(cloud, f"POST /{'a' * 3000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())[0] == 414
    chunked = f"POST {V2} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert http_exchange(cloud, chunked.encode())[0] == 501
    assert http_exchange(cloud, f"POST {V2} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())[0] == 411
    assert http_exchange(cloud, f"GET {V2} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())[0] == 405
    assert http_exchange(cloud, b"GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n")[0] == 404
    assert http_exchange(cloud, f"POST {V2} HTTP/2.0\r\nHost: localhost\r\n\r\n".encode())[0] == 505
    assert http_exchange(cloud, f"POST {V2} HTTP/1.1\r\nContent-Length: 0\r\n\r\n".encode())[0] == 400


def test_slow_clients_are_cut_off(cloud):
    started = time.monotonic()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5)  # never start TLS / never send CONNECT
            for port in (cloud.https_port, cloud.mqtt_port)]
    status, _, _ = http_exchange(cloud, f"POST {V2} HTTP/1.1\r\nHost: local".encode(), timeout=5)
    assert status == 408
    for sock in idle:
        with sock:
            assert sock.recv(100) == b""
    assert CLIENT_TIMEOUT * 0.9 < time.monotonic() - started < CLIENT_TIMEOUT + 2


# -- faults -----------------------------------------------------------------------------------


def _raw_post(cloud, path, body):
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    status, headers, reply = http_exchange(cloud, (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    return status, "retry-after" in headers, json.loads(reply)


def test_fault_http_status(cloud, product):
    # By default as each API reports a failure: Tencent's current API in a 200 answer's
    # Response.Error, without Retry-After (PROTOCOLS.md 2.6); the legacy API, whose shape no
    # source gives, with the HTTP status. answer "http" (or a Retry-After): the HTTP status.
    pid, secret = product
    cloud.fault("http_status", status=503, count=2)
    status, retry_after, reply = _raw_post(cloud, V2, body_v2(pid, "f1"))
    assert (status, retry_after, error_code(reply["Response"])) == (200, False, "ServiceUnavailable")
    assert reply["Response"]["RequestId"]
    status, reply = post(cloud, LEGACY, b"{}", {}, tls=True)
    assert status == 503 and reply["code"] == 503
    for status in (500, 502, 429):
        cloud.fault("http_status", status=status)
    cloud.fault("http_status", status=503, answer="http")
    cloud.fault("http_status", status=429, retry_after=7)
    answers = [_raw_post(cloud, V2, body_v2(pid, "f1")) for _ in range(5)]
    assert [(s, r, error_code(reply["Response"])) for s, r, reply in answers] == [
        (200, False, "InternalError"), (200, False, "InternalError"), (200, False, "RequestLimitExceeded"),
        (503, False, "ServiceUnavailable"), (429, True, "RequestLimitExceeded")]
    assert "Payload" in register_v2(cloud, pid, "f1", secret)
    records = cloud.log()[-8:]
    assert [r["result"] for r in records] == ["fault:http_status"] * 7 + ["ok"]
    # what each answer was: the legacy API's (the second) has no body shape for it
    assert [r.get("answer") for r in records[:7]] == ["cloud", "http", "cloud", "cloud", "cloud", "http", "http"]


def test_fault_delay_triggers_client_timeouts_and_still_processes(cloud, product):
    pid, secret = product
    cloud.fault("delay", seconds=0.8)
    with pytest.raises(socket.timeout):
        register_v2(cloud, pid, "slow", secret, timeout=0.3)
    assert cloud.device(pid, "slow") is None
    # The cloud still registers the device after the delay: the answer is what got lost.
    cloud.wait_for_log(lambda record: record.get("device") == "slow" and record["result"] == "ok")
    assert cloud.device(pid, "slow")["status"] == "registered"
    cloud.fault("delay", seconds=0.3)
    started = time.monotonic()
    assert "Payload" in register_v2(cloud, pid, "slow", secret)
    assert time.monotonic() - started >= 0.3


def test_fault_close_drops_the_connection_without_processing(cloud, product):
    pid, secret = product
    cloud.fault("close")
    ts, nonce = int(time.time()), new_nonce()
    body = body_v2(pid, "cut")
    raw = (f"POST {V2} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           f"X-TC-Algorithm: hmacsha256\r\nX-TC-Timestamp: {ts}\r\nX-TC-Nonce: {nonce}\r\n"
           f"X-TC-Signature: {sign_v2(secret, 'localhost', 'hmacsha256', ts, nonce, body)}\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", cloud.http_port), timeout=5) as sock:
        sock.sendall(raw)
        assert sock.recv(1024) == b""  # closed, no answer
    assert cloud.device(pid, "cut") is None
    assert "Payload" in register_v2(cloud, pid, "cut", secret, ts=ts, nonce=nonce)  # nonce was never seen


# -- MQTT ------------------------------------------------------------------------------------


@pytest.fixture
def registered(cloud, product):
    pid, secret = product
    psk = psk_from_v2(register_v2(cloud, pid, "mq-1", secret), secret)
    return pid, "mq-1", psk


def test_mqtt_login_checks(cloud, registered):
    pid, dn, psk = registered
    client_id = pid + dn
    username, password = mqtt_credentials(pid, dn, psk)
    digest, _, algorithm = password.partition(";")
    assert mqtt_login_code(cloud.mqtt_port, client_id, username, "0" * 64 + ";hmacsha256") == 4
    assert mqtt_login_code(cloud.mqtt_port, client_id, username, digest.upper() + ";" + algorithm) == 4
    assert mqtt_login_code(cloud.mqtt_port, client_id, *mqtt_credentials(pid, dn, psk, expiry=int(time.time()) - 5)) == 4
    assert mqtt_login_code(cloud.mqtt_port, client_id + "x", username, password) == 2
    assert mqtt_login_code(cloud.mqtt_port, client_id, username.replace(SDK_APPID, "12010127"), password) == 4
    assert mqtt_login_code(cloud.mqtt_port, client_id, None, None) == 4
    assert mqtt_login_code(cloud.mqtt_port, pid + "ghost", *mqtt_credentials(pid, "ghost", psk)) == 5
    other = new_product_id()
    assert mqtt_login_code(cloud.mqtt_port, other + dn, *mqtt_credentials(other, dn, psk)) == 5
    assert cloud.device(pid, dn)["status"] == "registered"
    assert mqtt_login_code(cloud.mqtt_port, client_id, *mqtt_credentials(pid, dn, psk, algorithm="hmacsha1")) == 0
    assert cloud.device(pid, dn)["status"] == "activated"
    assert mqtt_login_code(cloud.mqtts_port, client_id, username, password, tls=cloud.client_ssl_context()) == 0
    results = [r["result"] for r in cloud.log() if r["api"] == "mqtt-connect" and r.get("product") == pid]
    assert results == ["bad-password", "bad-password", "expired", "clientid-mismatch", "unknown-device",
                       "ok", "ok"]


def test_mqtt_logins_the_vendor_sdks_send_are_accepted(cloud, registered):
    # PROTOCOLS.md 2.4: the Python SDK sends sdkappid 21010406 and a millisecond expiry, the C
    # SDK LONG_MAX; Tencent's signing sample shows 21010406 with LONG_MAX cut to 17 digits.
    pid, dn, psk = registered
    client_id = pid + dn
    now = int(time.time())
    for appid, expiry in (("21010406", now * 1000 + 3600_000), (SDK_APPID, 9223372036854775807),
                          ("21010406", 92233720368547758), (SDK_APPID, now * 1000)):
        assert mqtt_login_code(cloud.mqtt_port, client_id, *mqtt_credentials(pid, dn, psk, appid=appid,
                                                                               expiry=expiry)) == 0, (appid, expiry)
    # Still refused: a wrong signature with either sdkappid, an expired login, another sdkappid,
    # an expiry past 19 digits.
    username, _ = mqtt_credentials(pid, dn, psk, appid="21010406", expiry=now * 1000)
    assert mqtt_login_code(cloud.mqtt_port, client_id, username, "0" * 64 + ";hmacsha256") == 4
    assert mqtt_login_code(cloud.mqtt_port, client_id, *mqtt_credentials(pid, dn, psk, appid="21010406",
                                                                           expiry=now - 5)) == 4
    assert mqtt_login_code(cloud.mqtt_port, client_id, *mqtt_credentials(pid, dn, psk, appid="21010407")) == 4
    assert mqtt_login_code(cloud.mqtt_port, client_id, *mqtt_credentials(pid, dn, psk, expiry=10**19)) == 4


def test_legacy_registration_takes_the_c_sdks_content_type(cloud, product):
    # The Tencent C SDKs post the legacy API's JSON body as application/x-www-form-urlencoded.
    pid, secret = product

    def body(dn):
        ts, nonce = int(time.time()), new_nonce()
        return json.dumps({"deviceName": dn, "nonce": nonce, "productId": pid, "timestamp": ts,
                           "signature": sign_legacy(secret, pid, dn, ts, nonce)}).encode()

    status, reply = post(cloud, LEGACY, body("legacy-form-1"), {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and reply["code"] == 0, reply
    assert cloud.device(pid, "legacy-form-1")["psk"]
    status, reply = post(cloud, LEGACY, body("legacy-form-2"), {"Content-Type": "text/plain"})
    assert reply["code"] != 0 and "Content-Type" in reply["message"], reply  # any other type: refused
    assert cloud.device(pid, "legacy-form-2") is None


@pytest.mark.parametrize("protocol, password_only, connack, reason", [
    (("MQTX", 4), False, None, "unsupported-protocol"),  # closed without a CONNACK
    (("MQTT", 5), False, 1, "unsupported-protocol-level"),
    (("MQTT", 3), False, 1, "unsupported-protocol-level"),  # MQTT 3.1 is "MQIsdp", level 3
    (("MQTT", 4), True, 4, "password-without-username"),
])
def test_connect_refused_before_any_login_check_is_logged_with_its_reason(cloud, registered, protocol,
                                                                         password_only, connack, reason):
    pid, dn, psk = registered
    client_id = "%s%s-%s" % (pid, dn, protocol[0])
    client, code = RawMqtt.connect(cloud.mqtt_port, client_id, *mqtt_credentials(pid, dn, psk), protocol=protocol,
                                   password_only=password_only)
    client.close()
    assert code == connack
    record = cloud.wait_for_log(lambda e: e.get("api") == "mqtt-connect" and e.get("client_id") == client_id)
    assert record["result"] == reason and record["protocol"] == "%s/%s" % protocol and record.get("connack") == connack
    assert psk not in json.dumps(record)  # the password is never logged


def test_mqtt_3_1_clients_are_served_by_the_same_rules(cloud, registered):
    # MQTT 3.1 ("MQIsdp", level 3) goes to mosquitto (cloud_emulator/mqtt31.py), judged by the
    # same cloud: a right psk logs in, topics follow the device's rights, a wrong psk is refused.
    pid, dn, psk = registered
    client, code = RawMqtt.connect(cloud.mqtts_port, pid + dn, *mqtt_credentials(pid, dn, psk),
                                   tls=cloud.client_ssl_context(), protocol=("MQIsdp", 3))
    try:
        assert code == 0
        assert client.subscribe(f"{pid}/{dn}/control", qos=1) == 1
        client.subscribe(f"{pid}/other/control", qos=1)  # MQTT 3.1 has no refusal code: not subscribed
        client.publish(f"{pid}/{dn}/data", b'{"t":1}', qos=0)
        client.publish(f"{pid}/other/data", b"not mine", qos=0)
        cloud.wait_for_log(lambda e: e.get("api") == "mqtt-publish" and e.get("topic") == f"{pid}/other/data")
    finally:
        client.close()
    records = [e for e in cloud.log() if (e.get("product"), e.get("device")) == (pid, dn) and e["api"].startswith("mqtt-")]
    assert [(e["api"], e["result"]) for e in records] == [
        ("mqtt-connect", "ok"), ("mqtt-subscribe", "ok"), ("mqtt-subscribe", "acl-denied"),
        ("mqtt-publish", "ok"), ("mqtt-publish", "acl-denied")]
    assert records[0]["protocol"] == "MQIsdp/3" and records[0]["transport"] == "mqtts"
    client, code = RawMqtt.connect(cloud.mqtt_port, pid + dn, *mqtt_credentials(pid, dn, VECTOR_PSK),
                                   protocol=("MQIsdp", 3))
    client.close()
    assert code == 5  # mosquitto's code for every refused login (the log keeps the cloud's reason)
    record = cloud.wait_for_log(lambda e: e.get("api") == "mqtt-connect" and e.get("product") == pid
                                and e.get("result") != "ok")
    assert record["result"] == "bad-password" and record["protocol"] == "MQIsdp/3"


def test_mqtt_3_1_connect_refused_by_mosquitto_itself_is_logged(cloud):
    # MQTT 3.1 requires a client id; mosquitto refuses an empty one before asking the emulator.
    before = len(cloud.log())
    client, code = RawMqtt.connect(cloud.mqtt_port, "", None, None, protocol=("MQIsdp", 3))
    client.close()
    assert code == 2
    record = cloud.wait_for_log(lambda e: e.get("api") == "mqtt-connect" and e.get("protocol") == "MQIsdp/3"
                                and e.get("result") == "refused-by-mosquitto")
    assert record["connack"] == 2 and record["transport"] == "mqtt" and record in cloud.log()[before:]


def test_precreated_device_without_secret_cannot_log_in(cloud, product):
    pid, _ = product
    cloud.add_device(pid, "never-registered")
    assert mqtt_login_code(cloud.mqtt_port, pid + "never-registered",
                           *mqtt_credentials(pid, "never-registered", VECTOR_PSK)) == 5
    assert cloud.log()[-1]["result"] == "not-registered"


def test_mqtt_topic_access_is_limited_to_the_device(cloud, registered):
    pid, dn, psk = registered
    client, code = RawMqtt.connect(cloud.mqtt_port, pid + dn, *mqtt_credentials(pid, dn, psk))
    assert code == 0
    try:
        assert client.subscribe(f"$thing/down/property/{pid}/{dn}", qos=1) == 1
        assert client.subscribe(f"$thing/down/+/{pid}/{dn}", qos=1) == 1
        assert client.subscribe(f"{pid}/{dn}/#", qos=0) == 0
        assert client.subscribe(f"{pid}/other/control", qos=1) == 0x80
        assert client.subscribe(f"{pid}/+/control", qos=1) == 0x80
        assert client.subscribe(f"$thing/down/#", qos=1) == 0x80
        assert client.subscribe(f"$thing/up/property/{pid}/{dn}", qos=1) == 0x80
        assert client.subscribe("#", qos=1) == 0x80

        client.publish(f"$thing/up/property/{pid}/{dn}", b'{"method":"report"}', qos=1)
        client.publish(f"{pid}/other/data", b"not mine", qos=1)
        long_payload = ("y" * 300).encode()
        client.publish(f"{pid}/{dn}/data", long_payload, qos=1)
        topic, payload, _ = client.next_publish()  # own subscription: the broker delivers it back
        assert (topic, payload) == (f"{pid}/{dn}/data", long_payload)
        assert client.ping()  # still connected after a "$" topic and a refused publish
    finally:
        client.close()
    published = {}
    for topic in (f"$thing/up/property/{pid}/{dn}", f"{pid}/other/data", f"{pid}/{dn}/data"):
        published[topic] = cloud.wait_for_log(lambda r, t=topic: r["api"] == "mqtt-publish" and r["topic"] == t)
    assert published[f"$thing/up/property/{pid}/{dn}"]["result"] == "ok"
    assert published[f"{pid}/other/data"]["result"] == "acl-denied"
    assert published[f"{pid}/{dn}/data"]["payload"] == "y" * 200
    subscribe_results = [r["result"] for r in cloud.log() if r["api"] == "mqtt-subscribe" and r.get("device") == dn
                         and r.get("product") == pid]
    assert subscribe_results == ["ok"] * 3 + ["acl-denied"] * 5


# -- persistence, CLI, secrecy -------------------------------------------------------------------


def test_restart_keeps_state(tmp_path):
    pid, secret = new_product_id(), new_secret()
    with running_emulator(tmp_path) as cloud:
        cloud.add_product(pid, secret)
        ts, nonce = int(time.time()), new_nonce()
        psk = psk_from_v2(register_v2(cloud, pid, "keep", secret, ts=ts, nonce=nonce), secret)
        ca = Path(cloud.ca_der_path).read_bytes()
        ready = cloud.state_dir / "ready.json"
        assert ready.exists()
    assert cloud.process.returncode == 0  # SIGTERM is a clean exit
    assert not ready.exists()
    with running_emulator(tmp_path) as cloud:
        assert Path(cloud.ca_der_path).read_bytes() == ca
        assert cloud.device(pid, "keep")["psk"] == psk
        assert error_code(register_v2(cloud, pid, "keep", secret, ts=ts, nonce=nonce)) == "AuthFailure.NonceReplay"
        assert mqtt_login_code(cloud.mqtt_port, pid + "keep", *mqtt_credentials(pid, "keep", psk)) == 0
        context = ssl.create_default_context(cadata=Path(cloud.ca_der_path).read_bytes())
        with context.wrap_socket(socket.create_connection(("127.0.0.1", cloud.https_port)),
                                 server_hostname="127.0.0.1"):
            pass  # the server certificate has an IP SAN and chains to the exported DER CA
    assert len([r for r in cloud.log() if r["api"] == "tencent-v2"]) == 2


def test_cli_manages_a_running_emulator_without_echoing_secrets(cloud):
    pid, secret = new_product_id(), new_secret()
    state = str(cloud.state_dir)
    added = run_cli("add-product", "--state", state, "--product-id", pid, "--secret", secret, "--mode", "precreate",
                    "--limit", "3")
    assert added.returncode == 0 and secret not in added.stdout + added.stderr
    assert run_cli("add-device", "--state", state, "--product-id", pid, "--device-name", "cli-1").returncode == 0
    psk = psk_from_v2(register_v2(cloud, pid, "cli-1", secret), secret)  # the server sees the new product
    listing = run_cli("devices", "--state", state)
    assert listing.returncode == 0 and psk not in listing.stdout
    line = next(row for row in listing.stdout.splitlines() if "cli-1" in row)
    assert "registered" in line and "<hidden>" in line
    assert psk in run_cli("devices", "--state", state, "--show-secrets").stdout
    assert run_cli("fault", "--state", state, "--kind", "http_status", "--status", "500").returncode == 0
    status, reply = post(cloud, V2, b"{}", {})
    assert status == 200 and error_code(reply["Response"]) == "InternalError"  # as Tencent reports it
    assert run_cli("fault", "--state", state, "--kind", "http_status", "--status", "500", "--answer", "http"
                   ).returncode == 0
    assert post(cloud, V2, b"{}", {})[0] == 500
    refused = run_cli("fault", "--state", state, "--kind", "http_status", "--status", "429", "--answer", "cloud",
                      "--retry-after", "3")
    assert refused.returncode != 0 and "Retry-After" in refused.stderr, refused.stderr
    assert run_cli("reset-device", "--state", state, "--product-id", pid, "--device-name", "cli-1").returncode == 0
    assert cloud.device(pid, "cli-1")["status"] == "created"
    log = run_cli("log", "--state", state)
    assert log.returncode == 0 and "tencent-v2" in log.stdout and secret not in log.stdout
    bad = run_cli("add-product", "--state", state, "--product-id", "lower", "--secret", secret)
    assert bad.returncode == 2 and secret not in bad.stdout + bad.stderr
    short = run_cli("add-product", "--state", state, "--product-id", new_product_id(), "--secret", "short")
    assert short.returncode == 2


def test_no_secret_reaches_the_log_or_the_output(cloud):
    state = json.loads((cloud.state_dir / "state.json").read_text())
    secrets = {VECTOR_MQTT_PASSWORD.split(";")[0]}
    for product in state["products"].values():
        secrets.add(product["secret"])
        for device in product["devices"].values():
            for field in ("psk", "key_pem"):
                if field in device:
                    secrets.add(device[field])
                    if field == "key_pem":
                        secrets.add(device[field].splitlines()[1])  # any line of the key body
    assert len(secrets) > 20
    log_text = (cloud.state_dir / "requests.log").read_text()
    output = cloud.output()
    for secret in secrets:
        assert secret not in log_text
        assert secret not in output
    for record in map(json.loads, log_text.splitlines()):
        assert not {"secret", "psk", "password", "signature", "key_pem"} & set(record)
    assert stat.S_IMODE(os.stat(cloud.state_dir / "state.json").st_mode) == 0o600
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE(os.stat(cloud.state_dir / key).st_mode) == 0o600


def test_a_socket_that_timed_out_ends_its_connection_once_instead_of_spinning():
    # A socket that failed with ETIMEDOUT leaves its stream raising TimeoutError at every read,
    # and amqtt's reader loop takes that for a keepalive timeout each time: the emulator's
    # handler must end the loop on the second one (before the fix the bench's chip runs met
    # hundreds of thousands of "mqtt-keepalive" records and a broker too busy to answer).
    import asyncio

    from amqtt.adapters import StreamReaderAdapter
    from amqtt.plugins.manager import PluginManager
    from amqtt.session import Session

    from cloud_emulator.broker import _CloudConnackHandler

    class Counting(_CloudConnackHandler):
        calls = 0

        def handle_read_timeout(self):
            self.calls += 1
            if self.calls > 100:  # the loop would never end: stop it so that the assert tells
                self.reader = None
                return
            super().handle_read_timeout()

    async def run_reader_loop():
        stream = asyncio.StreamReader()
        stream.set_exception(TimeoutError(110, "Connection timed out"))
        session = Session()
        session.keep_alive = 90
        handler = Counting(PluginManager("amqtt.broker.plugins", context=None))
        handler.attach(session, StreamReaderAdapter(stream), None)
        handler._reader_ready = asyncio.Event()
        await asyncio.wait_for(handler._reader_loop(), 30)
        return handler.calls

    assert asyncio.run(run_reader_loop()) == 2

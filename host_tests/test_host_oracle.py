# CPython only: every vector file is checked against independent implementations (stdlib
# hmac/hashlib, `cryptography` AES) before the library is trusted to reproduce it, so a
# wrong vector fails here rather than agreeing with a wrong library.
import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from support import vectors

HASHES = {"hmacsha256": "sha256", "hmacsha1": "sha1"}
TENCENT = [vectors("tencent_public"), vectors("tencent_edge")]


def _cases(section):
    return [case for doc in TENCENT for case in doc.get(section, [])]


def _aes_cbc_decrypt(data, secret):
    dec = Cipher(algorithms.AES(secret[:16].encode()), modes.CBC(b"0" * 16)).decryptor()
    return dec.update(data) + dec.finalize()


@pytest.mark.parametrize("case", vectors("hmac_rfc")["cases"], ids=lambda c: c["source"])
def test_rfc_vector_against_stdlib(case):
    got = hmac.new(bytes.fromhex(case["key"]), bytes.fromhex(case["data"]), case["hash"]).digest()
    assert got[:case.get("truncate_bytes", len(got))].hex() == case["digest"]


def test_rfc_set_is_complete():
    sources = [c["source"] for c in vectors("hmac_rfc")["cases"]]
    for family in ("RFC 2202 HMAC-MD5", "RFC 2202 HMAC-SHA1", "RFC 4231 HMAC-SHA256"):
        assert sorted(s for s in sources if s.startswith(family)) == ["%s test case %d" % (family, n) for n in range(1, 8)]


@pytest.mark.parametrize("case", _cases("signature"), ids=lambda c: c["source"])
def test_signature_vector_against_stdlib(case):
    name = HASHES[case["algorithm"]]
    body = case["body"].encode()
    assert hashlib.new(name, body).hexdigest() == case["body_hash"]
    text = "\n".join(["POST", case["host"], "/device/register", "", case["algorithm"],
                      str(case["timestamp"]), str(case["nonce"]), case["body_hash"]])
    expected = base64.b64encode(hmac.new(case["product_secret"].encode(), text.encode(), name).digest()).decode()
    assert expected == case["signature"]
    assert json.loads(case["body"]) == {"ProductId": case["product_id"], "DeviceName": case["device_name"]}


@pytest.mark.parametrize("case", _cases("legacy_signature"), ids=lambda c: c["source"])
def test_legacy_vector_against_stdlib(case):
    text = "deviceName=%s&nonce=%d&productId=%s&timestamp=%d" % (
        case["device_name"], case["nonce"], case["product_id"], case["timestamp"])
    hex_sig = hmac.new(case["product_secret"].encode(), text.encode(), "sha1").hexdigest()
    assert base64.b64encode(hex_sig.encode()).decode() == case["signature"]


@pytest.mark.parametrize("case", _cases("mqtt_login"), ids=lambda c: c["source"])
def test_login_vector_against_stdlib(case):
    name = HASHES[case["algorithm"]]
    username = "%s%s;12010126;%s;%d" % (case["product_id"], case["device_name"], case["connid"], case["expiry"])
    assert username == case["username"]
    password = hmac.new(base64.b64decode(case["psk"]), username.encode(), name).hexdigest() + ";" + case["algorithm"]
    assert password == case["password"]


@pytest.mark.parametrize("case", _cases("payload"), ids=lambda c: c["source"])
def test_payload_vector_against_cryptography(case):
    plain = _aes_cbc_decrypt(base64.b64decode(case["payload"]), case["product_secret"])
    if case["len"] is None:
        plain = plain.rstrip(b"\0")
    else:
        assert set(plain[case["len"]:]) <= {0}  # zero padding only
        plain = plain[:case["len"]]
    assert plain.decode() == case["plaintext"]


@pytest.mark.parametrize("case", vectors("tencent_edge")["bad_payload"], ids=lambda c: c["source"])
def test_bad_payload_really_is_bad(case):
    # Each malformed case must fail for the reason it names, judged without the library.
    try:
        data = base64.b64decode(case["payload"], validate=True)
    except ValueError:
        return
    if not data or len(data) % 16:
        return
    length = case["len"]
    plain = _aes_cbc_decrypt(data, case["product_secret"])
    if not 0 <= length <= len(plain):
        return
    try:
        doc = json.loads(plain[:length].decode())
    except ValueError:
        return
    assert not (isinstance(doc, dict) and (
        (type(doc.get("encryptionType")) is int and doc["encryptionType"] == 2 and isinstance(doc.get("psk"), str) and doc["psk"])
        or (type(doc.get("encryptionType")) is int and doc["encryptionType"] == 1
            and str(doc.get("clientCert", "")).startswith("-----BEGIN")
            and str(doc.get("clientKey", "")).startswith("-----BEGIN"))))


ALIYUN = [vectors("aliyun_public"), vectors("aliyun_edge")]
_ALIYUN_HASH = {"hmacmd5": "md5", "hmacsha1": "sha1", "hmacsha256": "sha256"}


def _aliyun(section):
    return [case for doc in ALIYUN for case in doc.get(section, [])]


@pytest.mark.parametrize("case", _aliyun("sign"), ids=lambda c: c["source"])
def test_aliyun_sign_vector_against_stdlib(case):
    text = "deviceName%sproductKey%srandom%s" % (case["device_name"], case["product_key"], case["random"])
    assert hmac.new(case["product_secret"].encode(), text.encode(), _ALIYUN_HASH[case["method"]]).hexdigest() == case["sign"]


@pytest.mark.parametrize("case", _aliyun("mqtt_login"), ids=lambda c: c["source"])
def test_aliyun_login_vector_against_stdlib(case):
    text = "clientId%sdeviceName%sproductKey%stimestamp%s" % (
        case["client_id"], case["device_name"], case["product_key"], case["timestamp"])
    assert hmac.new(case["device_secret"].encode(), text.encode(), _ALIYUN_HASH[case["method"]]).hexdigest() == case["password"]


@pytest.mark.parametrize("case", _aliyun("topo_sign"), ids=lambda c: c["source"])
def test_aliyun_topo_vector_against_stdlib(case):
    text = "clientId%s.%sdeviceName%sproductKey%stimestamp%s" % (
        case["product_key"], case["device_name"], case["device_name"], case["product_key"], case["timestamp"])
    assert hmac.new(case["device_secret"].encode(), text.encode(), _ALIYUN_HASH[case["method"]]).hexdigest() == case["sign"]


# -- Azure DPS: derived keys and SAS tokens, by stdlib hmac, base64 and urllib ------------------

AZURE = vectors("azure_public")


@pytest.mark.parametrize("case", AZURE["derive"], ids=lambda c: c["source"] + " " + c["registration_id"])
def test_azure_derived_key_vector_against_stdlib(case):
    digest = hmac.new(base64.b64decode(case["group_key"]), case["registration_id"].encode(), hashlib.sha256).digest()
    assert base64.b64encode(digest).decode() == case["device_key"]


@pytest.mark.parametrize("case", AZURE["sas"], ids=lambda c: c["resource"])
def test_azure_sas_token_vector_against_stdlib(case):
    from urllib.parse import quote

    resource = quote(case["resource"], safe="")
    message = ("%s\n%d" % (resource, case["expiry"])).encode()
    signature = base64.b64encode(hmac.new(base64.b64decode(case["key"]), message, hashlib.sha256).digest()).decode()
    token = "SharedAccessSignature sr=%s&sig=%s&se=%d" % (resource, quote(signature, safe=""), case["expiry"])
    if case["key_name"]:
        token += "&skn=" + case["key_name"]
    assert token == case["token"]

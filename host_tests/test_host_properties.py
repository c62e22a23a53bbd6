# CPython only: property tests with hypothesis. The library (with the strict cryptolib shim)
# against stdlib hmac and `cryptography` on random inputs.
import base64
import hmac as std_hmac
import json

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings, strategies as st

import dynreg
from dynreg import hmac, tencent

secrets = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=16, max_size=40)


def _encrypt_like_cloud(plaintext, secret):
    data = plaintext + b"\0" * (-len(plaintext) % 16)
    enc = Cipher(algorithms.AES(secret[:16].encode()), modes.CBC(b"0" * 16)).encryptor()
    return base64.b64encode(enc.update(data) + enc.finalize()).decode()


@settings(max_examples=300)
@given(key=st.binary(max_size=200), msg=st.binary(max_size=600), name=st.sampled_from(["md5", "sha1", "sha256"]))
def test_hmac_matches_stdlib(key, msg, name):
    assert hmac.digest(key, msg, name) == std_hmac.new(key, msg, name).digest()
    assert hmac.hexdigest(key, msg, name) == std_hmac.new(key, msg, name).hexdigest()


@settings(max_examples=200)
@given(a=st.binary(max_size=40), b=st.binary(max_size=40))
def test_compare_digest_matches_stdlib(a, b):
    assert hmac.compare_digest(a, b) == std_hmac.compare_digest(a, b)


@settings(max_examples=200)
@given(secret=secrets, psk_bytes=st.binary(min_size=1, max_size=48), extra=st.text(max_size=60),
       with_len=st.booleans())
def test_payload_encrypted_by_cloud_decrypts(secret, psk_bytes, extra, with_len):
    psk = base64.b64encode(psk_bytes).decode()
    plaintext = json.dumps({"encryptionType": 2, "psk": psk, "note": extra}).encode()
    payload = _encrypt_like_cloud(plaintext, secret)
    length = len(plaintext) if with_len else None
    assert tencent.decrypt_payload(payload, secret, length) == json.loads(plaintext)
    body = json.dumps({"Response": {"Len": len(plaintext), "Payload": payload, "RequestId": "r"}}).encode()
    assert tencent.parse_response(body, secret) == {"psk": psk}


@settings(max_examples=500)
@given(body=st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda children: st.lists(children, max_size=4) | st.dictionaries(
                     st.sampled_from(["Response", "Error", "Len", "Payload", "code", "len", "payload", "message",
                                      "Code", "Message"]), children, max_size=4),
                 max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_junk_into_parse_response_ends_in_error_or_credential(body):
    try:
        result = tencent.parse_response(body, "hzvf5LF9S0isvBhDSauWMaIk")
    except dynreg.Error:
        return
    assert set(result) in ({"psk"}, {"cert", "key"})


@settings(max_examples=300)
@given(secret=secrets, plaintext=st.binary(max_size=120), length=st.integers(min_value=-5, max_value=200))
def test_random_plaintexts_end_in_error_or_credential(secret, plaintext, length):
    payload = _encrypt_like_cloud(plaintext, secret) if plaintext else ""
    body = json.dumps({"Response": {"Len": length, "Payload": payload}}).encode()
    try:
        result = tencent.parse_response(body, secret)
    except dynreg.Error:
        return
    assert set(result) in ({"psk"}, {"cert", "key"})

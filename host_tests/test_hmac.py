# dynreg.hmac against every RFC 2202 and RFC 4231 case (runs on CPython and MicroPython).
from binascii import hexlify, unhexlify

from support import vectors, exact
from dynreg import hmac, ConfigError


def _cases():
    return vectors("hmac_rfc")["cases"]


def test_rfc_digests():
    checked = 0
    for case in _cases():
        key, data = unhexlify(case["key"]), unhexlify(case["data"])
        got = hmac.digest(key, data, case["hash"])
        cut = case.get("truncate_bytes")
        if cut:
            got = got[:cut]
        assert hexlify(got).decode() == case["digest"], case["source"]
        checked += 1
    assert checked == 21


def test_rfc_hexdigest_is_lowercase_hex():
    for case in _cases():
        if case.get("truncate_bytes"):
            continue
        got = hmac.hexdigest(unhexlify(case["key"]), unhexlify(case["data"]), case["hash"])
        assert got == case["digest"], case["source"]  # a str: bytes never equal one


def test_alternating_keys_do_not_mix():
    # The pad cache must follow the key: alternate two RFC cases of each hash many times.
    cases = _cases()
    pairs = [(cases[i], cases[i + 1]) for i in (0, 7, 14)]
    for _ in range(3):
        for a, b in pairs:
            for case in (a, b, a):
                got = hmac.hexdigest(unhexlify(case["key"]), unhexlify(case["data"]), case["hash"])
                assert got == case["digest"], case["source"]


def test_same_key_other_hash():
    # RFC 4231 and RFC 2202 test case 1 share key and data: SHA-256, SHA-1, SHA-256 again.
    key, data = unhexlify("0b" * 20), b"Hi There"
    sha256 = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    assert hmac.hexdigest(key, data, "sha256") == sha256
    assert hmac.hexdigest(key, data, "sha1") == "b617318655057264e28bc0b6fb378c8ef146be00"
    assert hmac.hexdigest(key, data, "sha256") == sha256


def test_bytearray_key_and_message():
    case = _cases()[15]  # RFC 4231 case 2
    got = hmac.hexdigest(bytearray(unhexlify(case["key"])), bytearray(unhexlify(case["data"])), "sha256")
    assert got == case["digest"]


def test_empty_key_and_message():
    # RFC-independent property: an empty key is a block of zeros; HMAC of empty input is
    # still 32 bytes and differs from the hash of nothing.
    got = hmac.digest(b"", b"", "sha256")
    assert len(got) == 32
    assert got == hmac.digest(bytes(64), b"", "sha256")
    assert got != hmac.digest(bytes(65), b"", "sha256")


def test_unknown_hash_is_config_error():
    exact(ConfigError, hmac.digest, b"k", b"m", "sha512")
    exact(ConfigError, hmac.digest, b"k", b"m", "hmacsha256")


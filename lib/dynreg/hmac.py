# HMAC (RFC 2104) on top of hashlib, for firmware that ships no hmac module.
# The key pads are derived with one big-integer XOR instead of a byte loop, and the pads of
# the last key are kept, so a call with the same key costs little more than the two hash
# passes themselves (signing uses one key many times; see bench/hmac_bench.py).
import hashlib
from binascii import hexlify
from micropython import const
from dynreg import ConfigError

_BLOCK = const(64)  # block size of md5, sha1 and sha256
_IPAD = int("36" * _BLOCK, 16)
_OPAD = int("5c" * _BLOCK, 16)

# The last key: its hash name, the key, the hash constructor and both padded keys.
_name = None
_key = None
_new = None
_inner_pad = None
_outer_pad = None


def hash_name(method, allowed):
    # A cloud's name of a signing method ("hmacsha256") -> hashlib's ("sha256").
    if method not in allowed:
        raise ConfigError("sign method must be " + " or ".join(allowed))
    return method[4:]


def _use_key(key, name):
    global _name, _key, _new, _inner_pad, _outer_pad
    new = getattr(hashlib, name, None) if name in ("sha256", "sha1", "md5") else None
    if new is None:
        raise ConfigError("hash not available: %s" % name)
    k = new(key).digest() if len(key) > _BLOCK else key
    k = int.from_bytes(k + bytes(_BLOCK - len(k)), "big")
    _inner_pad = (k ^ _IPAD).to_bytes(_BLOCK, "big")
    _outer_pad = (k ^ _OPAD).to_bytes(_BLOCK, "big")
    _name, _key, _new = name, bytes(key), new


def digest(key, msg, name="sha256"):
    # The pads are made apart, in _use_key: inline, they grow this function's frame past the
    # 11 words MicroPython keeps on the C stack (py/objfun.c), and every call, the cached key's
    # too, allocates its frame on the heap (bench/hmac_bench.py: 11x the two hash passes, not 1.1x).
    if name != _name or key != _key:  # a new key: its pads
        _use_key(key, name)
    h = _new(_inner_pad)
    h.update(msg)
    inner = h.digest()
    h = _new(_outer_pad)
    h.update(inner)
    return h.digest()


def hexdigest(key, msg, name="sha256"):
    return hexlify(digest(key, msg, name)).decode()


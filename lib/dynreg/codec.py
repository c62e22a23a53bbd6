# Values on the wire: identities checked before they are signed, and what the clouds send
# decoded (size limit, base64, AES-CBC with zero padding, JSON). Every decoding failure
# becomes a ProtocolError, the same on CPython and on MicroPython.
import json
import os
from binascii import a2b_base64, b2a_base64
from cryptolib import aes
from micropython import const
from dynreg import ConfigError, ProtocolError

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

MAX_RESPONSE = const(8192)  # largest response body accepted, in bytes
MAX_CONTAINERS = const(128)  # JSON objects and arrays in one response; deeper is hostile


def random_int(bits=31):
    return int.from_bytes(os.urandom(4), "big") & ((1 << bits) - 1)


def split_url(url):
    # "https://host[:port]/path" -> (scheme, host, port, path). Default ports: the schemes'
    # own (RFC 9110 for http/https; 1883 and 8883 are IANA's MQTT ports, the ones both clouds
    # document).
    scheme, sep, rest = url.partition("://") if isinstance(url, str) else ("", "", "")
    if not sep or scheme not in ("http", "https", "mqtt", "mqtts"):
        raise ConfigError("URL must be http(s):// or mqtt(s)://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    default = {"http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}[scheme]
    try:
        port = int(port) if port else default
    except ValueError:
        raise ConfigError("bad URL port")
    if not host:
        raise ConfigError("URL has no host")
    return scheme, host, port, "/" + path


def base_url(url, api_paths):
    # A register_url is a base URL, "scheme://host[:port]"; one written with the API's own
    # path (as the clouds' docs print the endpoint) is taken as its base. Any other path is
    # refused: the request would go somewhere the device does not expect.
    path = split_url(url)[3].rstrip("/")
    base = url.rstrip("/")
    if not path:
        return base
    if path in api_paths:
        return base[:-len(path)]
    raise ConfigError("register_url must be a base URL: drop " + path)


def check_name(value, shortest, longest, extra, what):
    # An identity (ProductId, ProductKey, DeviceName): `shortest` to `longest` characters of
    # letters, digits and `extra`; ConfigError with the rule otherwise, never the value.
    if isinstance(value, str) and shortest <= len(value) <= longest:
        for c in value:
            if c not in ALNUM and c not in extra:
                break
        else:
            return
    raise ConfigError(("%s: %d to %d of A-Z a-z 0-9 %s" % (what, shortest, longest, " ".join(extra))).rstrip())


def quote(text):
    # Percent-encoding of everything but the unreserved characters (RFC 3986 2.3).
    out = []
    for b in text.encode():
        c = chr(b)
        out.append(c if c in ALNUM or c in "-_.~" else "%%%02X" % b)
    return "".join(out)


def check_size(data, limit=MAX_RESPONSE):
    if len(data) > limit:
        raise ProtocolError("response over %d bytes" % limit)


def b64encode(data):
    return b2a_base64(data)[:-1].decode()


def b64decode(text):
    if not isinstance(text, (str, bytes)):
        raise ProtocolError("bad base64")
    try:
        data = a2b_base64(text)
    except (ValueError, TypeError):
        raise ProtocolError("bad base64")
    # a2b_base64 skips characters outside the alphabet; in padded text (what both clouds send)
    # a short result gives them away.
    if len(text) % 4 or len(data) != len(text.rstrip(b"=" if isinstance(text, bytes) else "=")) * 3 // 4:
        raise ProtocolError("bad base64")
    return data


def decrypt_cbc(ciphertext, key, iv, length=None):
    # AES-CBC with zero padding, as both clouds use it. With `length` the plaintext is cut to
    # it (it must fit in the data); without, trailing NUL bytes are stripped.
    if not ciphertext or len(ciphertext) % 16:
        raise ProtocolError("payload not in whole AES blocks")
    if length is not None:
        if type(length) is not int or length < 0 or length > len(ciphertext):
            raise ProtocolError("bad payload length")
    plain = aes(key, 2, iv).decrypt(ciphertext)
    if length is not None:
        return plain[:length]
    end = len(plain)
    while end and plain[end - 1] == 0:
        end -= 1
    return plain[:end]


def json_object(data):
    # Parses a JSON object from bytes. Over MAX_RESPONSE, non-UTF-8, invalid JSON, nesting too
    # deep for the parser, or a top level that is not an object all raise ProtocolError.
    if isinstance(data, str):
        data = data.encode()
    check_size(data)
    # Counting openers is C-speed and bounds the parser's nesting stack before it grows.
    if data.count(b"{") + data.count(b"[") > MAX_CONTAINERS:
        raise ProtocolError("over %d JSON containers" % MAX_CONTAINERS)
    try:
        value = json.loads(data.decode())
    except (ValueError, RuntimeError, TypeError):
        # UnicodeError and JSONDecodeError are ValueErrors; RecursionError is a RuntimeError.
        value = None
    if not isinstance(value, dict):
        raise ProtocolError("response is not a JSON object")
    return value


def field(obj, name, kind):
    # The value of a required field, of the given type. bool is refused where int is wanted.
    value = obj.get(name)
    if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError("%s missing or of the wrong type" % name)
    return value


def pem_blocks(data):
    # The DER of each PEM block in `data` (a certificate, a key or a CA bundle; text between
    # blocks, such as a bundle's comments, is skipped), or [data] for DER.
    if isinstance(data, str):
        data = data.encode()
    if b"-----BEGIN" not in data:
        return [data]
    blocks = []
    at = data.find(b"-----BEGIN")
    while at >= 0:
        start = data.find(b"\n", at) + 1
        end = data.find(b"-----END", start)
        if start <= 0 or end < 0:
            raise ProtocolError("PEM block has no END line")
        blocks.append(b64decode(data[start:end].replace(b"\r", b"").replace(b"\n", b"")))
        at = data.find(b"-----BEGIN", end)
    return blocks

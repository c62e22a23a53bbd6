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
_MAX_CONTAINERS = const(128)  # JSON objects and arrays in one response; deeper is hostile


def random_int(bits=31):
    return int.from_bytes(os.urandom(4), "big") & ((1 << bits) - 1)


def split_url(url):
    # "https://host[:port]/path" -> (scheme, host, port, path). Default ports: the schemes'
    # own (RFC 9110 for http/https; 1883 and 8883 are IANA's MQTT ports, the ones both clouds
    # document).
    scheme, sep, rest = str(url).partition("://")  # what is no text fails the scheme check
    default = {"http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}.get(scheme)
    if not sep or not default:
        raise ConfigError("URL must be http(s):// or mqtt(s)://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
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
    try:
        if isinstance(text, bytes):
            text = text.decode()  # UnicodeError, a ValueError, for what is no base64
        if isinstance(text, str):
            data = a2b_base64(text)
            # a2b_base64 skips characters outside the alphabet; in padded text (what the clouds
            # send) a short result gives them away.
            if not len(text) % 4 and len(data) == len(text.rstrip("=")) * 3 // 4:
                return data
    except (ValueError, TypeError):
        pass
    raise ProtocolError("bad base64")


def decrypt_cbc(ciphertext, key, iv, length=None):
    # AES-CBC with zero padding, as both clouds use it. With `length` the plaintext is cut to
    # it (it must fit in the data); without, trailing NUL bytes are stripped.
    if not ciphertext or len(ciphertext) % 16:
        raise ProtocolError("payload not in whole AES blocks")
    if length is not None and (type(length) is not int or length < 0 or length > len(ciphertext)):
        raise ProtocolError("bad payload length")
    plain = aes(key, 2, iv).decrypt(ciphertext)
    return plain.rstrip(b"\0") if length is None else plain[:length]


def json_object(data):
    # Parses a JSON object from bytes. Over MAX_RESPONSE, non-UTF-8, invalid JSON, nesting too
    # deep for the parser, or a top level that is not an object all raise ProtocolError.
    if isinstance(data, str):
        data = data.encode()
    check_size(data)
    # Counting openers is C-speed and bounds the parser's nesting stack before it grows.
    if data.count(b"{") + data.count(b"[") > _MAX_CONTAINERS:
        raise ProtocolError("over %d JSON containers" % _MAX_CONTAINERS)
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


def der(doc, name):
    # A PEM field of an answer -> the DER of its first block; ProtocolError when it is no PEM.
    # DER is what mbedTLS takes: v1.28.0's on unix and rp2 parses no PEM.
    pem = field(doc, name, str)
    data = pem.startswith("-----BEGIN") and pem_blocks(pem)[0]
    if not data:
        raise ProtocolError(name + " is not PEM")
    return data


def pem_blocks(data):
    # The DER of each PEM block in `data` (a certificate, a key or a CA bundle; text between
    # blocks, such as a bundle's comments, is skipped), or [data] for DER.
    if isinstance(data, str):
        data = data.encode()
    at = data.find(b"-----BEGIN")
    if at < 0:
        return [data]
    blocks = []
    while at >= 0:
        start = data.find(b"\n", at) + 1
        end = data.find(b"-----END", start)
        if start <= 0 or end < 0:
            raise ProtocolError("PEM block has no END line")
        blocks.append(b64decode(b"".join(data[start:end].split())))  # its lines joined
        at = data.find(b"-----BEGIN", end)
    return blocks

# Tencent Cloud IoT Hub / IoT Explorer: dynamic registration (current and legacy API), the
# encrypted answer, and the MQTT logins. Pure functions, then the device's side of them: one
# registration attempt over HTTP(S) and the login with the stored credential.
import hashlib
from binascii import hexlify
from os import urandom
from micropython import const
from dynreg import hmac, codec, clock, ConfigError, ProtocolError, RejectedError, busy

DEFAULT_HOST = "ap-guangzhou.gateway.tencentdevices.com"
REGISTER_PATH = "/device/register"
LEGACY_HOST = "gateway.tencentdevices.com"
LEGACY_PATH = "/register/dev"
_SDK_VERSION = "12010126"
_LOGIN_LIFETIME = const(86400)  # seconds a login stays valid
_JSON = "application/json; charset=utf-8"
# Response.Error codes of a busy or failing cloud (PROTOCOLS.md 2.6), retried like a 5xx; a
# name ending in "." covers its sub-codes too. Every other code, an unknown one included, is final.
_TRANSIENT = ("InternalError.", "RequestLimitExceeded.", "ResourceInsufficient.", "ServiceUnavailable",
              "ResourceUnavailable")


def check_device_name(name):
    codec.check_name(name, 1, 48, ":_-", "DeviceName")


def check_product_id(product_id):
    codec.check_name(product_id, 1, 32, "", "ProductId")


def check_product_secret(secret):
    if not isinstance(secret, str) or len(secret) < 16:
        raise ConfigError("ProductSecret under 16 characters")


def _hash_name(algorithm):
    return hmac.hash_name(algorithm, ("hmacsha256", "hmacsha1"))


def sign(secret, timestamp, nonce, body, host=DEFAULT_HOST, path=REGISTER_PATH, algorithm="hmacsha256"):
    name = _hash_name(algorithm)
    body_hash = hexlify(getattr(hashlib, name)(body).digest()).decode()
    text = "POST\n%s\n%s\n\n%s\n%d\n%d\n%s" % (host, path, algorithm, timestamp, nonce, body_hash)
    return codec.b64encode(hmac.digest(secret.encode(), text.encode(), name))


def _split_endpoint(endpoint, default_host):
    # "http(s)://host[:port]" -> (base url, host name as signed). Without an endpoint, the
    # cloud's own host over https (port 443).
    if not endpoint:
        return "https://" + default_host, default_host
    return codec.base_url(endpoint, (REGISTER_PATH, LEGACY_PATH)), codec.split_url(endpoint)[1]


def _check_identity(product_id, device_name, product_secret):
    check_product_id(product_id)
    check_device_name(device_name)
    check_product_secret(product_secret)


def register_request(product_id, device_name, product_secret, timestamp, nonce,
                     host=DEFAULT_HOST, algorithm="hmacsha256", endpoint=None):
    _check_identity(product_id, device_name, product_secret)
    base, signed_host = _split_endpoint(endpoint, host)
    body = ('{"ProductId":"%s","DeviceName":"%s"}' % (product_id, device_name)).encode()
    headers = {
        "Content-Type": _JSON,
        "X-TC-Algorithm": algorithm,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Nonce": str(nonce),
        "X-TC-Signature": sign(product_secret, timestamp, nonce, body, signed_host, REGISTER_PATH, algorithm),
    }
    return base + REGISTER_PATH, headers, body


def legacy_signature(product_id, device_name, product_secret, timestamp, nonce):
    # base64 of the 40 hex characters of HMAC-SHA1, not of the raw digest.
    text = "deviceName=%s&nonce=%d&productId=%s&timestamp=%d" % (device_name, nonce, product_id, timestamp)
    return codec.b64encode(hmac.hexdigest(product_secret.encode(), text.encode(), "sha1").encode())


def legacy_request(product_id, device_name, product_secret, timestamp, nonce, host=LEGACY_HOST, endpoint=None):
    _check_identity(product_id, device_name, product_secret)
    base, _ = _split_endpoint(endpoint, host)
    signature = legacy_signature(product_id, device_name, product_secret, timestamp, nonce)
    body = ('{"deviceName":"%s","nonce":%d,"productId":"%s","timestamp":%d,"signature":"%s"}'
            % (device_name, nonce, product_id, timestamp, signature)).encode()
    return base + LEGACY_PATH, {"Content-Type": _JSON}, body


def decrypt_payload(payload_b64, product_secret, length=None):
    check_product_secret(product_secret)
    data = codec.b64decode(payload_b64)
    return codec.json_object(codec.decrypt_cbc(data, product_secret[:16].encode(), b"0" * 16, length))


def _credential(plain):
    kind = plain.get("encryptionType")
    if kind == 2 and type(kind) is int:
        psk = codec.field(plain, "psk", str)
        if not psk or len(codec.b64decode(psk)) == 0:
            raise ProtocolError("bad psk")
        return {"psk": psk}
    if kind == 1 and type(kind) is int:
        cert = codec.field(plain, "clientCert", str)
        key = codec.field(plain, "clientKey", str)
        for pem in (cert, key):
            if not pem.startswith("-----BEGIN") or not codec.pem_blocks(pem)[0]:
                raise ProtocolError("clientCert or clientKey not PEM")
        return {"cert": cert, "key": key}
    raise ProtocolError("unknown encryptionType")


def _length(doc, name):
    # The plaintext's length; when the answer leaves it out, decrypt_cbc strips the zero
    # padding instead (PROTOCOLS.md 2.3).
    if name not in doc:
        return None
    return codec.field(doc, name, int)


def parse_response(body, product_secret):
    # Both API shapes: {"Response": {...}} (current) and {"code": ..} (legacy).
    doc = codec.json_object(body)
    response = doc.get("Response")
    if response is not None:
        if not isinstance(response, dict):
            raise ProtocolError("Response is not an object")
        error = response.get("Error")
        if error is not None:
            if not isinstance(error, dict):
                raise ProtocolError("Error is not an object")
            code, message = str(error.get("Code")), str(error.get("Message"))
            for name in _TRANSIENT:
                if (code + ".").startswith(name) if name[-1] == "." else code == name:
                    raise busy("server answered " + code, None, name == "RequestLimitExceeded.")
            raise RejectedError(code, message, "tencent")
        payload, length = codec.field(response, "Payload", str), _length(response, "Len")
    elif "code" in doc:
        code = codec.field(doc, "code", int)
        if code != 0:
            message = str(doc.get("message"))
            raise RejectedError(code, message, "tencent")
        payload, length = codec.field(doc, "payload", str), _length(doc, "len")
    else:
        raise ProtocolError("neither Response nor code in the answer")
    return _credential(decrypt_payload(payload, product_secret, length))


def mqtt_login(product_id, device_name, psk, connid, expiry, algorithm="hmacsha256"):
    name = _hash_name(algorithm)
    client_id = product_id + device_name
    username = "%s;%s;%s;%d" % (client_id, _SDK_VERSION, connid, expiry)
    try:
        key = codec.b64decode(psk)
    except ProtocolError:
        key = b""
    if not key:
        raise ConfigError("stored psk is not base64")
    password = hmac.hexdigest(key, username.encode(), name) + ";" + algorithm
    return client_id, username, password


# -- the device's side ------------------------------------------------------------------------

def register(info, ca, timeout_ms):
    # One attempt: a fresh timestamp and nonce, the request of the API the info selects, the
    # parsed credential. Plain HTTP only when the info opts in: the answer is encrypted but
    # neither authenticated nor bound to the device, so whoever is on the line can hand the
    # board another device's answer (dynreg.connect then registers once more).
    from dynreg import http

    if info.register_url and codec.split_url(info.register_url)[0] == "http" and not info.plain_http:
        raise ConfigError("http:// register_url needs plain_http: true")
    timestamp, nonce = clock.unix_time(), codec.random_int()
    if info.api == "legacy":
        url, headers, body = legacy_request(info.product, info.device_name, info.product_secret, timestamp, nonce,
                                            endpoint=info.register_url)
    else:
        url, headers, body = register_request(info.product, info.device_name, info.product_secret, timestamp,
                                              nonce, algorithm=info.algorithm, endpoint=info.register_url)
    return http.post_parsed(url, headers, body, ca or roots(info), timeout_ms, parse_response, info.product_secret)


def roots(info, port=None):
    # The built-in roots of the registration gateway (port None) or of the broker.
    from dynreg import roots_tencent as r

    return r.MQTT if port else r.LEGACY if info.api == "legacy" else r.GATEWAY


def broker(info):
    # "<ProductId>.iotcloud.tencentdevices.com", 8883 with TLS (PROTOCOLS.md 2.4).
    return info.product + ".iotcloud.tencentdevices.com"


def login(info, tls):
    # (client id, username, password) for the credential the device holds.
    connid = "".join(codec.ALNUM[b % 62] for b in urandom(5))
    expiry = clock.unix_time() + _LOGIN_LIFETIME
    if info.auth == "cert":
        # The client certificate authenticates, which it can do over TLS only.
        if not tls:
            raise ConfigError("Tencent cert auth needs TLS: an mqtts:// mqtt_url")
        client_id = info.product + info.device_name
        return client_id, "%s;%s;%s;%d" % (client_id, _SDK_VERSION, connid, expiry), ""
    return mqtt_login(info.product, info.device_name, info.credential["psk"], connid, expiry)

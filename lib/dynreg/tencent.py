# Tencent Cloud IoT Hub / IoT Explorer: dynamic registration (current and legacy API), the
# encrypted answer, and the MQTT logins. Pure functions, then the device's side of them: one
# registration attempt over HTTP(S) and the login with the stored credential.
import hashlib
from binascii import hexlify
from os import urandom
from micropython import const
from dynreg import hmac, codec, clock, busy, need_tls, ConfigError, ProtocolError, RejectedError

REGISTER_PATH = "/device/register"
LEGACY_PATH = "/register/dev"
_LOGIN_LIFETIME = const(86400)  # seconds a login stays valid


def check_device_name(name):
    codec.check_name(name, 1, 48, ":_-", "DeviceName")


def check_product_secret(secret):
    if not isinstance(secret, str) or len(secret) < 16:
        raise ConfigError("ProductSecret under 16 characters")


def sign(secret, timestamp, nonce, body, host="ap-guangzhou.gateway.tencentdevices.com", algorithm="hmacsha256"):
    name = hmac.hash_name(algorithm, ("hmacsha256", "hmacsha1"))
    body_hash = hexlify(getattr(hashlib, name)(body).digest()).decode()
    text = "POST\n%s\n%s\n\n%s\n%d\n%d\n%s" % (host, REGISTER_PATH, algorithm, timestamp, nonce, body_hash)
    return codec.b64encode(hmac.digest(secret.encode(), text.encode(), name))


def _request_base(product_id, device_name, product_secret, endpoint, host):
    # A registration request's identity checked, and its endpoint, "http(s)://host[:port]" ->
    # (base url, host name as signed). Without an endpoint, `host`, the cloud's own, over https
    # (port 443).
    codec.check_name(product_id, 1, 32, "", "ProductId")
    check_device_name(device_name)
    check_product_secret(product_secret)
    if not endpoint:
        return "https://" + host, host
    return codec.base_url(endpoint, (REGISTER_PATH, LEGACY_PATH)), codec.split_url(endpoint)[1]


def register_request(product_id, device_name, product_secret, timestamp, nonce,
                     host="ap-guangzhou.gateway.tencentdevices.com", algorithm="hmacsha256", endpoint=None):
    base, signed_host = _request_base(product_id, device_name, product_secret, endpoint, host)
    body = ('{"ProductId":"%s","DeviceName":"%s"}' % (product_id, device_name)).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-TC-Algorithm": algorithm,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Nonce": str(nonce),
        "X-TC-Signature": sign(product_secret, timestamp, nonce, body, signed_host, algorithm),
    }
    return base + REGISTER_PATH, headers, body


def legacy_signature(product_id, device_name, product_secret, timestamp, nonce):
    # base64 of the 40 hex characters of HMAC-SHA1, not of the raw digest.
    text = "deviceName=%s&nonce=%d&productId=%s&timestamp=%d" % (device_name, nonce, product_id, timestamp)
    return codec.b64encode(hmac.hexdigest(product_secret.encode(), text.encode(), "sha1").encode())


def legacy_request(product_id, device_name, product_secret, timestamp, nonce, endpoint=None):
    base, _ = _request_base(product_id, device_name, product_secret, endpoint, "gateway.tencentdevices.com")
    signature = legacy_signature(product_id, device_name, product_secret, timestamp, nonce)
    body = ('{"deviceName":"%s","nonce":%d,"productId":"%s","timestamp":%d,"signature":"%s"}'
            % (device_name, nonce, product_id, timestamp, signature)).encode()
    return base + LEGACY_PATH, {"Content-Type": "application/json; charset=utf-8"}, body


def decrypt_payload(payload_b64, product_secret, length=None):
    check_product_secret(product_secret)
    data = codec.b64decode(payload_b64)
    iv = ("0" * 16).encode()  # sixteen ASCII zeros
    return codec.json_object(codec.decrypt_cbc(data, product_secret[:16].encode(), iv, length))


def parse_response(body, product_secret):
    # Both API shapes: {"Response": {...}} (current) and {"code": ..} (legacy).
    doc = codec.json_object(body)
    if doc.get("Response") is not None:
        doc = codec.field(doc, "Response", dict)
        if doc.get("Error") is not None:
            error = codec.field(doc, "Error", dict)
            code = str(error.get("Code"))
            # The codes of a busy or failing cloud (PROTOCOLS.md 2.6), retried like a 5xx; a name
            # ending in "." covers its sub-codes too. Every other code, an unknown one included, is final.
            for name in ("InternalError.", "RequestLimitExceeded.", "ResourceInsufficient.", "ServiceUnavailable",
                         "ResourceUnavailable"):
                if (code + ".").startswith(name) if name[-1] == "." else code == name:
                    raise busy("server answered " + code, None, name == "RequestLimitExceeded.")
            raise RejectedError(code, str(error.get("Message")), "tencent")
        payload = "Payload"
        length = "Len"
    elif "code" in doc:
        code = codec.field(doc, "code", int)
        if code != 0:
            raise RejectedError(code, str(doc.get("message")), "tencent")
        payload = "payload"
        length = "len"
    else:
        raise ProtocolError("neither Response nor code in the answer")
    # The plaintext's length; when the answer leaves it out, decrypt_cbc strips the zero
    # padding instead (PROTOCOLS.md 2.3).
    plain = decrypt_payload(codec.field(doc, payload, str), product_secret,
                            codec.field(doc, length, int) if length in doc else None)
    # The credential: a psk, or a certificate and key (stored as PEM, as they came, once both
    # are checked to be).
    kind = plain.get("encryptionType")
    kind = kind if type(kind) is int else None
    if kind == 2:
        psk = codec.field(plain, "psk", str)
        if not codec.b64decode(psk):
            raise ProtocolError("bad psk")
        return {"psk": psk}
    if kind == 1:
        codec.der(plain, "clientCert")
        codec.der(plain, "clientKey")
        return {"cert": plain["clientCert"], "key": plain["clientKey"]}
    raise ProtocolError("unknown encryptionType")


def mqtt_login(product_id, device_name, psk, connid, expiry, algorithm="hmacsha256"):
    # (client id, username, password); without a psk (certificate auth) no password.
    client_id = product_id + device_name
    username = "%s;12010126;%s;%d" % (client_id, connid, expiry)  # 12010126: the C SDK's version
    if psk is None:
        return client_id, username, ""
    name = hmac.hash_name(algorithm, ("hmacsha256", "hmacsha1"))
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
    if info.auth == "cert":
        need_tls(tls, "Tencent cert auth")  # the client certificate authenticates, over TLS only
    return mqtt_login(info.product, info.device_name, info.credential.get("psk"),
                      "".join(codec.ALNUM[b % 62] for b in urandom(5)), clock.unix_time() + _LOGIN_LIFETIME)

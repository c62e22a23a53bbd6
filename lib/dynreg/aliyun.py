# Alibaba Cloud IoT Platform: dynamic registration over HTTPS and MQTT (pre-registered and
# pre-registration-free), the MQTT logins that follow, and gateway sub-device registration.
# Pure functions, then the device's side of them: one registration attempt (over HTTPS, or
# over MQTT with TLS where the result arrives as a PUBLISH on /ext/register or /ext/regnwl),
# and the login with the stored credential.
import json
from dynreg import hmac, codec, clock, busy, need_tls, ConfigError, NetworkError, ProtocolError, RejectedError

DEFAULT_REGION = "cn-shanghai"
REGISTER_PATH = "/auth/register/device"


def _hash(method):
    return hmac.hash_name(method, ("hmacmd5", "hmacsha1", "hmacsha256"))


def _random(value):
    # Any string the cloud accepts (the C SDK sends a fixed alphanumeric one), or an int; it
    # travels in the MQTT client id too, so none of that id's separators.
    text = str(value) if type(value) is int else value
    if isinstance(text, str) and 1 <= len(text) <= 64:
        for c in text:
            if not " " < c <= "~" or c in ",|=&":
                break
        else:
            return text
    raise ConfigError("random: 1 to 64 printable ASCII, no , | = &")


def _digits(value, what):
    # Random values and timestamps come as int or as a string of digits.
    text = str(value) if type(value) is int else value
    if not isinstance(text, str) or not text.isdigit():
        raise ConfigError("%s must be a number" % what)
    return text


def check_product_key(product_key):
    codec.check_name(product_key, 1, 32, "", "ProductKey")


def check_device_name(name):
    codec.check_name(name, 4, 32, "-_@.:", "DeviceName")


def _check(product_key, device_name, secret, what):
    check_product_key(product_key)
    check_device_name(device_name)
    if not isinstance(secret, str) or not secret:
        raise ConfigError("%s is missing" % what)


def sign(product_key, device_name, product_secret, random, method="hmacsha256"):
    _check(product_key, device_name, product_secret, "ProductSecret")
    # Alibaba signs "name1value1name2value2..." with the names in sorted order.
    text = "deviceName%sproductKey%srandom%s" % (device_name, product_key, _random(random))
    return hmac.hexdigest(product_secret.encode(), text.encode(), _hash(method))


def register_request(product_key, device_name, product_secret, random, method="hmacsha256",
                     region=DEFAULT_REGION, endpoint=None):
    quote = codec.quote
    body = ("productKey=%s&deviceName=%s&random=%s&sign=%s&signMethod=%s" % (
        quote(product_key), quote(device_name), quote(_random(random)),
        quote(sign(product_key, device_name, product_secret, random, method)), quote(method))).encode()
    if endpoint:  # the answer carries the DeviceSecret in clear: HTTPS only
        need_tls(codec.split_url(endpoint)[0] == "https", "Alibaba", "https:// register_url")
    base = codec.base_url(endpoint, (REGISTER_PATH,)) if endpoint else "https://iot-auth.%s.aliyuncs.com" % region
    return base + REGISTER_PATH, {"Content-Type": "application/x-www-form-urlencoded"}, body


def _text(doc, name):
    # A text field that may be absent or of another type: "" then.
    value = doc.get(name)
    return value if isinstance(value, str) else ""


def _cloud_error(doc):
    # {"code": 200, ...} is success; any other code is the cloud's refusal.
    code = codec.field(doc, "code", int)
    if code != 200:
        raise RejectedError(code, _text(doc, "message"), "aliyun")


def _secret(data, name):
    value = codec.field(data, name, str)
    if not value:
        raise ProtocolError("%s is empty" % name)
    return value


def parse_register_response(body):
    doc = codec.json_object(body)
    code = codec.field(doc, "code", int)
    if code == 429 or code == 500 or code == 503:
        # Throttled, or failing inside (Alibaba's codes for devices): retried like a 5xx.
        raise busy("server answered code %d" % code, None, code == 429)
    _cloud_error(doc)
    return {"deviceSecret": _secret(codec.field(doc, "data", dict), "deviceSecret")}


def parse_register_message(payload, mode="register"):
    # The PUBLISH on /ext/register ({"deviceSecret"}) or /ext/regnwl ({"clientId", "deviceToken"}).
    doc = codec.json_object(payload)
    if "code" in doc:
        _cloud_error(doc)
    if mode == "regnwl":
        return {"clientId": _secret(doc, "clientId"), "deviceToken": _secret(doc, "deviceToken")}
    return {"deviceSecret": _secret(doc, "deviceSecret")}


def mqtt_register_login(product_key, device_name, product_secret, random, method="hmacsha256",
                        mode="register", instance_id=None):
    if mode != "register" and mode != "regnwl":
        raise ConfigError("mode must be register or regnwl")
    if mode == "regnwl" and not instance_id:
        # Pre-registration-free registration exists only on the new (Enterprise) instances.
        raise ConfigError("regnwl needs an instance_id")
    password = sign(product_key, device_name, product_secret, random, method)
    # Pre-registered devices use securemode 2, pre-registration-free ones and newer
    # instances -2.
    secure = "-2" if mode == "regnwl" or instance_id else "2"
    client_id = "%s|securemode=%s,authType=%s,random=%s,signmethod=%s" % (
        device_name, secure, mode, _random(random), method)
    if instance_id:
        client_id += ",instanceId=" + instance_id
    return client_id + "|", device_name + "&" + product_key, password


def mqtt_login(product_key, device_name, device_secret, client_id, timestamp, method="hmacsha256"):
    # securemode=2, over TLS. Never 3 (plain TCP): the cloud does not check the timestamp
    # (PROTOCOLS.md 3.4), so a password seen on the line would log in for good. The password
    # signs what a gateway's topo.add signs for a sub-device, with this client id.
    password = topo_sign(product_key, device_name, device_secret, timestamp, method, client_id)
    full_id = "%s|securemode=2,signmethod=%s,timestamp=%s|" % (client_id, method, _digits(timestamp, "timestamp"))
    return full_id, device_name + "&" + product_key, password


def regnwl_login(client_id, product_key, device_name, device_token):
    _check(product_key, device_name, device_token, "deviceToken")
    return client_id + "|securemode=-2,authType=connwl|", device_name + "&" + product_key, device_token


def topo_sign(product_key, device_name, device_secret, timestamp, method="hmacsha256", client_id=None):
    _check(product_key, device_name, device_secret, "DeviceSecret")
    # The client id: the sub-device's own, or the one a login (mqtt_login) gives.
    text = "clientId%sdeviceName%sproductKey%stimestamp%s" % (
        client_id or product_key + "." + device_name, device_name, product_key, _digits(timestamp, "timestamp"))
    return hmac.hexdigest(device_secret.encode(), text.encode(), _hash(method))  # as sign()


# -- gateway sub-devices: thing.sub.register, then thing.topo.add ---------------------------

def _message(gateway_key, gateway_name, method, params, message_id):
    # A gateway's request: its method ("sub/register": thing.sub.register) -> (topic, reply topic, payload)
    check_product_key(gateway_key)
    check_device_name(gateway_name)
    topic = "/sys/%s/%s/thing/%s" % (gateway_key, gateway_name, method)
    payload = json.dumps({"id": str(message_id), "version": "1.0", "params": params,
                          "method": "thing." + method.replace("/", ".")})
    return topic, topic + "_reply", payload.encode()


def sub_register_message(gateway_key, gateway_name, subdevices, message_id):
    # subdevices: [(product_key, device_name), ...] -> (topic, reply topic, payload)
    params = []
    for product_key, device_name in subdevices:
        check_product_key(product_key)
        check_device_name(device_name)
        params.append({"deviceName": device_name, "productKey": product_key})
    return _message(gateway_key, gateway_name, "sub/register", params, message_id)


def _reply(payload, message_id):
    doc = codec.json_object(payload)
    if str(doc.get("id")) != str(message_id):
        raise ProtocolError("reply to another request")
    codec.field(doc, "code", int)
    return doc


def parse_sub_register_reply(payload, message_id, requested):
    # -> (secrets, errors): secrets {(pk, dn): {"deviceSecret", "iotId"}} for every
    # sub-device the cloud answered for, errors {(pk, dn): (code, message)} for the rest.
    doc = _reply(payload, message_id)
    code = doc["code"]
    message = _text(doc, "message")
    secrets = {}
    data = doc.get("data")
    if isinstance(data, list):
        for entry in data:
            if not isinstance(entry, dict):
                raise ProtocolError("sub-device not an object")
            key = (codec.field(entry, "productKey", str), codec.field(entry, "deviceName", str))
            if key in requested:
                secrets[key] = {"deviceSecret": _secret(entry, "deviceSecret"), "iotId": _text(entry, "iotId")}
    elif data is not None and code == 200:
        raise ProtocolError("data is not a list")
    errors = {}
    failed = doc.get("failures")
    if isinstance(failed, list):
        for entry in failed:
            if isinstance(entry, dict):
                key = (entry.get("productKey"), entry.get("deviceName"))
                entry_code = entry.get("code")
                if key in requested and key not in secrets and type(entry_code) is int:
                    errors[key] = (entry_code, _text(entry, "message"))
    if code == 200:  # the request went through, and still no secret came for the rest
        code = -1
        message = "no secret in the reply"
    for key in requested:
        if key not in secrets and key not in errors:
            errors[key] = (code, message)
    return secrets, errors


def topo_add_message(gateway_key, gateway_name, subdevices, timestamp, message_id, method="hmacsha256"):
    # subdevices: [(product_key, device_name, device_secret), ...] -> (topic, reply topic, payload)
    _hash(method)
    signmethod = "hmac" + method[4].upper() + method[5:]  # hmacsha256 -> hmacSha256
    params = []
    for product_key, device_name, device_secret in subdevices:
        client_id = product_key + "." + device_name
        params.append({"productKey": product_key, "deviceName": device_name, "clientId": client_id,
                       "timestamp": _digits(timestamp, "timestamp"), "signmethod": signmethod,
                       "sign": topo_sign(product_key, device_name, device_secret, timestamp, method, client_id)})
    return _message(gateway_key, gateway_name, "topo/add", params, message_id)


def parse_topo_add_reply(payload, message_id):
    doc = _reply(payload, message_id)
    _cloud_error(doc)
    return doc.get("data")


# -- the device's side ------------------------------------------------------------------------

def register(info, ca, timeout_ms):
    if info.api == "https":
        from dynreg import http

        url, headers, body = register_request(info.product, info.device_name, info.product_secret,
                                              codec.random_int(), info.algorithm, info.region or DEFAULT_REGION,
                                              info.register_url)
        return {"device_secret": http.post_parsed(url, headers, body, ca or roots(info), timeout_ms,
                                                  parse_register_response)["deviceSecret"]}
    from dynreg import mqtt, net

    host, port, tls = mqtt.endpoint(info, broker(info))
    need_tls(tls, "Alibaba")  # every Alibaba CONNECT carries a reusable secret
    mode = "regnwl" if info.api == "regnwl" else "register"
    client_id, user, password = mqtt_register_login(info.product, info.device_name, info.product_secret,
                                                    codec.random_int(), info.algorithm, mode, info.instance_id)
    received = []
    # The connect and the result together within timeout_ms (open_client's deadline).
    c = mqtt.open_client(client_id, host, port, user, password, net.tls_context(ca or roots(info, port)), 60,
                         timeout_ms, lambda topic, message: received.append((topic, message)))
    try:
        if not mqtt.wait_for(c, lambda: received, timeout_ms):
            raise NetworkError("no result on /ext/%s within %d ms" % (mode, timeout_ms))
    finally:
        mqtt.close(c)  # the device leaves by itself; one TLS connection at a time
    topic, message = received[0]
    if topic != ("/ext/" + mode).encode():
        raise ProtocolError("result on an unexpected topic")
    result = parse_register_message(message, mode)
    if mode == "regnwl":
        return {"client_id": result["clientId"], "device_token": result["deviceToken"]}
    return {"device_secret": result["deviceSecret"]}


def roots(info, port=None):
    # The built-in roots: Alibaba's own (S1) on its brokers' 8883; GlobalSign's on iot-auth
    # (port None) and on the brokers' older TLS ports, 1883 and 443.
    from dynreg import roots_aliyun as r

    return r.MQTT_8883 if port == 8883 else r.GLOBALSIGN


def broker(info):
    # A new instance's "<instance id>.mqtt.iothub.aliyuncs.com", else
    # "<ProductKey>.iot-as-mqtt.<region>.aliyuncs.com"; 8883 with TLS (PROTOCOLS.md 3.2).
    if info.instance_id:
        return info.instance_id + ".mqtt.iothub.aliyuncs.com"
    return "%s.iot-as-mqtt.%s.aliyuncs.com" % (info.product, info.region or DEFAULT_REGION)


def login(info, tls):
    # (client id, username, password) for the credential the device holds. Over TLS only: a
    # registration signature, a deviceToken or a password the cloud never expires.
    need_tls(tls, "Alibaba")
    credential = info.credential
    if "device_token" in credential:
        return regnwl_login(credential["client_id"], info.product, info.device_name, credential["device_token"])
    return mqtt_login(info.product, info.device_name, credential["device_secret"],
                      info.product + "." + info.device_name, clock.unix_time() * 1000, info.algorithm)

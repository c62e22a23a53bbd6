# Azure IoT Hub Device Provisioning Service (DPS), symmetric-key group enrollment: the
# device key derived from the group key, the SAS tokens, the DPS MQTT messages and the IoT
# Hub login. Pure functions, then the device's side of them: one registration attempt and the
# hub login with the stored credential. Facts and sources: cloud_emulator/README.md "Azure".
from micropython import const
from dynreg import hmac, codec, clock, busy, need_tls, ConfigError, NetworkError, ProtocolError, RejectedError

_TOKEN_LIFETIME = const(3600)  # seconds a DPS token stays valid: the vendor SDK's default
_LOGIN_LIFETIME = const(86400)  # seconds a hub token stays valid
_POLL_MS = const(2000)  # between polls when DPS sends no retry-after (the vendor SDK's wait)
_MIN_POLL_MS = const(200)  # a retry-after of 0 is no reason to ask again at once
_ID_CHARS = "-._:"


def check_registration_id(registration_id):
    # DPS: up to 128 of letters, digits and - . _ :, ending in a letter, digit or -.
    codec.check_name(registration_id, 1, 128, _ID_CHARS, "registration id")
    if registration_id[-1] in "._:":
        raise ConfigError("registration id must not end in . _ :")


def _key(key_b64, what):
    try:
        key = codec.b64decode(key_b64)
    except ProtocolError:
        key = b""
    if len(key) < 16:
        raise ConfigError(what + ": base64 of 16 bytes or more")
    return key


def derive_device_key(group_key, registration_id):
    # The device's own key: HMAC-SHA256 of its registration id under the group's key.
    check_registration_id(registration_id)
    return codec.b64encode(hmac.digest(_key(group_key, "group key"), registration_id.encode()))


def sas_token(resource, key, expiry, key_name=None):
    resource = codec.quote(resource)
    signature = codec.b64encode(hmac.digest(_key(key, "device key"), ("%s\n%d" % (resource, expiry)).encode()))
    token = "SharedAccessSignature sr=%s&sig=%s&se=%d" % (resource, codec.quote(signature), expiry)
    return token + "&skn=" + key_name if key_name else token


def dps_login(id_scope, registration_id, device_key, expiry):
    # (client id, username, password) of the DPS MQTT connection.
    codec.check_name(id_scope, 4, 32, "", "ID scope")
    check_registration_id(registration_id)
    resource = "%s/registrations/%s" % (id_scope, registration_id)
    return (registration_id, resource + "/api-version=2019-03-31",
            sas_token(resource, device_key, expiry, "registration"))


def register_message(registration_id, rid):
    return ("$dps/registrations/PUT/iotdps-register/?$rid=%d" % rid,
            ('{"registrationId":"%s"}' % registration_id).encode())


def status_message(operation_id, rid):
    return "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%d&operationId=%s" % (rid, codec.quote(operation_id)), b""


def response_topic(topic):
    # b"$dps/registrations/res/<status>/?$rid=<rid>[&retry-after=<s>]" -> (status, rid, retry
    # after in seconds or None); None for any other topic.
    prefix = "$dps/registrations/res/"
    try:
        topic = topic.decode()
    except UnicodeError:
        return None
    if not topic.startswith(prefix):
        return None
    status, _, query = topic[len(prefix):].partition("/?")
    if not status.isdigit():
        raise ProtocolError("DPS topic has no status")
    rid = retry_after = None
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "$rid":
            rid = value
        elif name == "retry-after" and value.isdigit() and len(value) < 6:
            retry_after = int(value)
    return int(status), rid, retry_after


def _refused(doc, status):
    # DPS errors: {"errorCode": 401002, "message": ...}; a failed assignment carries them in
    # its registrationState.
    code = doc.get("errorCode", status)
    return RejectedError(code, str(doc.get("message") or doc.get("errorMessage") or status), "azure")


def parse_answer(status, payload):
    # A DPS answer (below 429; 429 and 5xx are the caller's to retry) -> ("assigning",
    # operationId) or ("assigned", {"hub": .., "device_id": ..}); a refusal, a failed or
    # disabled registration is a RejectedError.
    doc = codec.json_object(payload) if payload.strip() else {}
    if status >= 300:
        raise _refused(doc, status)
    state = doc.get("status")
    operation = codec.field(doc, "operationId", str)
    if state == "assigning":
        return state, operation
    registration = codec.field(doc, "registrationState", dict)
    if state != "assigned":
        raise _refused(registration, state)
    hub = codec.field(registration, "assignedHub", str)
    device_id = codec.field(registration, "deviceId", str)
    try:
        codec.check_name(hub, 1, 253, "-.", "")
        codec.check_name(device_id, 1, 128, _ID_CHARS, "")
    except ConfigError:
        raise ProtocolError("DPS assigned a bad hub or device id")
    return state, {"hub": hub, "device_id": device_id}


def hub_login(hub, device_id, device_key, expiry):
    # (client id, username, password) of the IoT Hub MQTT login.
    return (device_id, "%s/%s/?api-version=2021-04-12" % (hub, device_id),
            sas_token("%s/devices/%s" % (hub, device_id), device_key, expiry))


# -- the device's side ------------------------------------------------------------------------

def register(info, ca, timeout_ms):
    # Over MQTT with TLS (DPS has no plain port): log in as the registration id with a SAS
    # token of the device's key, publish the registration, then poll its operation (after the
    # retry-after DPS gives) until DPS names the hub, all within the attempt's time. A
    # throttled or failing DPS is a NetworkError the flow retries.
    from dynreg import mqtt, net

    host = "global.azure-devices-provisioning.net"
    port = 8883
    if info.register_url:
        scheme, host, port, _ = codec.split_url(info.register_url)
        need_tls(scheme == "mqtts", "DPS", "mqtts:// register_url")  # DPS has no plain port
    # A device provisioned before asks again with its stored key (the group key is gone by
    # then); a new one with the key derived from the group key.
    key = info.credential["device_key"] if info.credential else derive_device_key(info.product_secret,
                                                                                 info.device_name)
    client_id, user, password = dps_login(info.product, info.device_name, key, clock.unix_time() + _TOKEN_LIFETIME)
    deadline = net.deadline_in(timeout_ms)  # the connect and every poll together
    c = mqtt.open_client(client_id, host, port, user, password, net.tls_context(ca or roots(info)), 60,
                         timeout_ms)
    rid = codec.random_int(16)

    def take(topic, message):  # the answer to request `rid`: (status, rid, retry-after, message)
        parsed = response_topic(topic)
        if parsed and parsed[1] == str(rid):
            return parsed + (message,)
        return None

    try:
        topic, payload = register_message(info.device_name, rid)
        subscribe = "$dps/registrations/res/#".encode()  # a frozen str costs less flash than bytes
        while True:
            # Each request by the deadline too (open_client's, the same).
            status, _, retry_after, body = mqtt.request(c, topic.encode(), payload, take, timeout_ms, subscribe)
            if status == 429 or status >= 500:
                raise busy("DPS answered %d" % status, retry_after, status == 429)
            state, value = parse_answer(status, body)
            if state == "assigned":
                value["device_key"] = key
                return value
            wait = max(_MIN_POLL_MS, retry_after * 1000) if retry_after is not None else _POLL_MS
            if net.left(deadline) <= wait:
                raise NetworkError("DPS still assigning after %d ms" % timeout_ms)
            clock.sleep_ms(wait)
            rid += 1
            topic, payload = status_message(value, rid)
            subscribe = None
    finally:
        mqtt.close(c)


def roots(info, port=None):
    # The built-in roots, the same for DPS and the hubs.
    from dynreg import roots_azure as r

    return r.DPS_AND_HUBS


def broker(info):
    return info.credential["hub"]  # the hub DPS assigned; 8883 with TLS


def login(info, tls):
    # The SAS token names the assigned hub even where mqtt_url points the connection elsewhere.
    # It is good for a day: never over plain TCP (the hub has no plain port either).
    need_tls(tls, "Azure")
    credential = info.credential
    return hub_login(credential["hub"], credential["device_id"], credential["device_key"],
                     clock.unix_time() + _LOGIN_LIFETIME)

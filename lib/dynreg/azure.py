# Azure IoT Hub Device Provisioning Service (DPS), symmetric-key group enrollment: the
# device key derived from the group key, the SAS tokens, the DPS MQTT messages and the IoT
# Hub login. Pure functions: no I/O. Facts and sources: cloud_emulator/README.md "Azure".
from dynreg import hmac, codec, ConfigError, ProtocolError, RejectedError

DPS_HOST = "global.azure-devices-provisioning.net"
DPS_API = "2019-03-31"
HUB_API = "2021-04-12"
RESPONSES = "$dps/registrations/res/#"
_RESPONSE = b"$dps/registrations/res/"
_ID_CHARS = "-._:"
_HOST_CHARS = "-."


def check_registration_id(registration_id):
    # DPS: up to 128 of letters, digits and - . _ :, ending in a letter, digit or -.
    codec.check_name(registration_id, 1, 128, _ID_CHARS,
                     "registration id must be 1 to 128 of A-Z a-z 0-9 - . _ : ending in a letter, digit or -")
    if registration_id[-1] in "._:":
        raise ConfigError("registration id must end in a letter, digit or -")


def check_id_scope(id_scope):
    codec.check_name(id_scope, 4, 32, "", "ID scope must be 4 to 32 letters and digits (0ne...)")


def _key(key_b64, what):
    try:
        key = codec.b64decode(key_b64)
    except ProtocolError:
        key = b""
    if len(key) < 16:
        raise ConfigError(what + " must be the base64 of at least 16 bytes")
    return key


def derive_device_key(group_key, registration_id):
    # The device's own key: HMAC-SHA256 of its registration id under the group's key.
    check_registration_id(registration_id)
    return codec.b64encode(hmac.digest(_key(group_key, "group key"), registration_id.encode()))


def quote(text):
    # Percent-encoding of everything but the unreserved characters (RFC 3986 2.3).
    out = []
    for b in text.encode():
        c = chr(b)
        out.append(c if c in codec.ALNUM or c in "-_.~" else "%%%02X" % b)
    return "".join(out)


def sas_token(resource, key, expiry, key_name=None):
    resource = quote(resource)
    signature = codec.b64encode(hmac.digest(_key(key, "device key"), ("%s\n%d" % (resource, expiry)).encode()))
    token = "SharedAccessSignature sr=%s&sig=%s&se=%d" % (resource, quote(signature), expiry)
    return token + "&skn=" + key_name if key_name else token


def dps_login(id_scope, registration_id, device_key, expiry):
    # (client id, username, password) of the DPS MQTT connection.
    check_id_scope(id_scope)
    check_registration_id(registration_id)
    resource = "%s/registrations/%s" % (id_scope, registration_id)
    return (registration_id, "%s/api-version=%s" % (resource, DPS_API),
            sas_token(resource, device_key, expiry, "registration"))


def register_message(registration_id, rid):
    return ("$dps/registrations/PUT/iotdps-register/?$rid=%d" % rid,
            ('{"registrationId":"%s"}' % registration_id).encode())


def status_message(operation_id, rid):
    return "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%d&operationId=%s" % (rid, quote(operation_id)), b""


def response_topic(topic):
    # b"$dps/registrations/res/<status>/?$rid=<rid>[&retry-after=<s>]" -> (status, rid, retry
    # after in seconds or None); None for any other topic.
    if not topic.startswith(_RESPONSE):
        return None
    status, _, query = topic[len(_RESPONSE):].partition(b"/?")
    if not status.isdigit():
        raise ProtocolError("DPS response topic has no status")
    rid = retry_after = None
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"$rid":
            rid = value.decode()
        elif name == b"retry-after" and value.isdigit() and len(value) < 6:
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
    codec.check_size(payload)
    doc = codec.json_object(payload) if payload.strip() else {}
    if status >= 300:
        raise _refused(doc, status)
    state = doc.get("status")
    operation = codec.field(doc, "operationId", str)
    if state == "assigning":
        return state, operation
    registration = doc.get("registrationState")
    if not isinstance(registration, dict):
        raise ProtocolError("DPS answer has no registrationState")
    if state != "assigned":
        raise _refused(registration, state)
    hub = codec.field(registration, "assignedHub", str)
    device_id = codec.field(registration, "deviceId", str)
    try:
        codec.check_name(hub, 1, 253, _HOST_CHARS, "")
        codec.check_name(device_id, 1, 128, _ID_CHARS, "")
    except ConfigError:
        raise ProtocolError("DPS assigned a hub or device id that is not a valid name")
    return state, {"hub": hub, "device_id": device_id}


def hub_login(hub, device_id, device_key, expiry):
    # (client id, username, password) of the IoT Hub MQTT login.
    return (device_id, "%s/%s/?api-version=%s" % (hub, device_id, HUB_API),
            sas_token("%s/devices/%s" % (hub, device_id), device_key, expiry))

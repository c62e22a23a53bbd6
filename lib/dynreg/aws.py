# AWS IoT Core fleet provisioning by claim (PROTOCOLS.md 6): over one MQTT connection with
# mutual TLS, the batch's claim certificate and key buy the board a certificate and key of its
# own (CreateKeysAndCertificate) and a thing (RegisterThing, with the ownership token); the
# board then logs in with its own certificate as its thing name. Pure functions, then the
# device's side of them.
import json
from micropython import const
from dynreg import codec, busy, mqtt, need_tls, net, store, ConfigError, ProtocolError, RejectedError
from dynreg.codec import der  # a PEM field of the answer as DER

CREATE = b"$aws/certificates/create/json"
_MAX_THING = const(2048)  # bytes of RegisterThing's answer, which the info keeps


def provision_topic(template):
    codec.check_name(template, 1, 36, "_-", "template")
    return ("$aws/provisioning-templates/%s/provision/json" % template).encode()


def parameters(info):
    # The template's parameters: the info's own, strings only, and SerialNumber, the DeviceName
    # (the chip's, by device_name_from, or the info's), also the claim connection's client id.
    codec.check_name(info.device_name, 1, 128, ":_-", "device_name")
    given = info.doc.get("parameters") or {}
    if type(given) is not dict or [v for v in given.values() if type(v) is not str]:
        raise ConfigError("parameters must map names to strings")
    return dict(given, SerialNumber=info.device_name)


def answer(accepted, payload, limit=codec.MAX_RESPONSE):
    # The JSON object of an answer on .../accepted. One on .../rejected is a RejectedError of its
    # statusCode and errorCode, or a NetworkError to retry: throttled, 5xx, or an ownership token
    # that did not hold (the next attempt starts over with a new certificate).
    codec.check_size(payload, limit)
    doc = codec.json_object(payload)
    if accepted:
        return doc
    status, code = doc.get("statusCode"), doc.get("errorCode")
    throttled = status == 429 or code == "ThrottlingException"
    if throttled or code == "InvalidCertificateOwnershipToken" or type(status) is int and status >= 500:
        raise busy("AWS answered %s %s" % (status, code), None, throttled)
    raise RejectedError(status, "%s: %s" % (code, doc.get("errorMessage")), "aws")


def thing(doc, device_name):
    # RegisterThing's answer -> (thingName, deviceConfiguration); a template that makes no
    # thing leaves the client id to log in with.
    name = doc.get("thingName") or device_name
    config = doc.get("deviceConfiguration") or {}
    if type(name) is not str or type(config) is not dict:
        raise ProtocolError("bad RegisterThing answer")
    return name, config


# -- the device's side ------------------------------------------------------------------------

def register(info, ca, timeout_ms):
    # Subscribes to both operations' answers, then asks for keys and registers the thing, all
    # within the attempt's time. The credential is whole only once the flow has saved it: a cut
    # before leaves the board unregistered, and its next attempt mints another certificate.
    provision = provision_topic(info.product)
    values = parameters(info)
    host, port, tls = mqtt.endpoint(info, broker(info))
    need_tls(tls, "AWS")
    ctx = net.tls_context(ca or roots(info), _claim(info, "claim_cert"), _claim(info, "claim_key"))
    c = mqtt.open_client(info.device_name, host, port, None, None, ctx, 60, timeout_ms, dropped=_too_big)
    try:  # all by open_client's deadline
        doc = _ask(c, CREATE, b"{}", timeout_ms, (CREATE + b"/accepted", CREATE + b"/rejected",
                                                  provision + b"/accepted", provision + b"/rejected"))
        cert, key = der(doc, "certificatePem"), der(doc, "privateKey")
        request = {"certificateOwnershipToken": codec.field(doc, "certificateOwnershipToken", str),
                   "parameters": values}
        name, config = thing(_ask(c, provision, json.dumps(request).encode(), timeout_ms, None, _MAX_THING),
                             info.device_name)
    finally:
        mqtt.close(c)
    return {"cert": cert, "key": key, "thing_name": name, "device_configuration": config}


def _ask(c, topic, payload, timeout_ms, subscribe, limit=codec.MAX_RESPONSE):
    def take(t, message):  # accepted or rejected: only those are subscribed
        return (t == topic + b"/accepted", message) if t.startswith(topic) else None

    accepted, message = mqtt.request(c, topic, payload, take, timeout_ms, subscribe)
    return answer(accepted, message, limit)


def _too_big(note):
    # A message over max_packet: on this connection it was the answer, and no retry makes it
    # smaller (each mints another certificate).
    raise ProtocolError(note)


def _claim(info, field):
    name = info.doc.get(field)
    if type(name) is not str or not name:
        raise ConfigError(field + " missing: the claim's file beside the info")
    return store.read_file(info.file(name), store.MAX_INFO)


def roots(info, port=None):
    # The built-in roots, the same for the claim's connection and the board's own.
    from dynreg import roots_aws as r

    return r.ATS


def broker(info):
    # No default endpoint: each account has its own, <prefix>-ats.iot.<region>.amazonaws.com.
    if not info.mqtt_url:
        raise ConfigError("mqtt_url missing: the account's data endpoint")


def login(info, tls):
    # The board's own certificate (mqtt.connect loads it: auth "cert") as its thing name; AWS
    # ignores a username and password.
    need_tls(tls, "AWS")
    return info.credential["thing_name"], None, None

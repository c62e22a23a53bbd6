"""What both MQTT brokers (amqtt for MQTT 3.1.1, mosquitto for MQTT 3.1) ask of the emulator:
the clouds' verdicts on logins, topics and publishes, and the request log."""

import json
from typing import Any

from . import cbor
from .cloud import API_MQTT_CONNECT, CONNACK_BAD_USERNAME_OR_PASSWORD, Cloud, Delivery, LoginVerdict, MqttLogin
from .state import StateStore

API_MQTT_KEEPALIVE = "mqtt-keepalive"  # a connection closed after 1.5 keepalive intervals of silence

LOGGED_PAYLOAD_CHARS = 200
# JSON members whose values never reach the request log (signatures, issued secrets, tokens).
_REDACTED_MEMBERS = frozenset({"sign", "password", "secret", "devicesecret", "device_secret", "devicetoken",
                               "device_token", "token", "psk", "productsecret", "certificateownershiptoken",
                               "privatekey"})


class DeviceGate:
    """Everything the broker plugins need from the emulator: the clouds and the request log."""

    def __init__(self, clouds: list[Cloud], store: StateStore) -> None:
        self.clouds = clouds
        self.store = store

    def judge_login(self, login: MqttLogin) -> LoginVerdict:
        for cloud in self.clouds:
            verdict = cloud.mqtt_login(login)  # the cloud logs its own verdicts
            if verdict is not None:
                return verdict
        verdict = LoginVerdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "unrecognised-login")
        self.store.append_log(API_MQTT_CONNECT, transport=login.listener, result=verdict.reason,
                              connack=verdict.connack_code)
        return verdict

    def topic_allowed(self, identity: LoginVerdict | None, topic: str, action: str) -> bool:
        if identity is None or identity.cloud is None or not identity.accepted:
            return False
        return identity.cloud.topic_allowed(identity, topic, action)

    def handle_publish(self, identity: LoginVerdict | None, topic: str, payload: bytes) -> list[Delivery]:
        """Let the identity's cloud answer an accepted PUBLISH (e.g. an Alibaba gateway request)."""
        if identity is None or identity.cloud is None or not identity.accepted:
            return []
        handler = getattr(identity.cloud, "handle_publish", None)
        return handler(identity, topic, payload) if handler else []

    def record(self, api: str, identity: LoginVerdict | None, topic: str, allowed: bool, **extra: Any) -> None:
        self.store.append_log(
            api,
            product=identity.product if identity else None,
            device=identity.device if identity else None,
            topic=topic,
            result="ok" if allowed else "acl-denied",
            **extra,
        )


def loggable_payload(data: bytes) -> str:
    """The payload as text for the log: JSON members named like secrets hidden, then truncated.
    A CBOR map or array (AWS's other payload format) is logged as JSON after "cbor:", redacted alike."""
    text = data.decode("utf-8", "replace")
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = cbor.decode(data)
        except cbor.CborError:
            value = None
        if not isinstance(value, (dict, list)):  # text never starts with a CBOR map's or array's byte
            return text[:LOGGED_PAYLOAD_CHARS]
        shown = json.dumps(_redact(value), separators=(",", ":"), ensure_ascii=False, default=bytes.hex)
        return ("cbor:" + shown)[:LOGGED_PAYLOAD_CHARS]
    redacted = _redact(value)
    if redacted == value:
        return text[:LOGGED_PAYLOAD_CHARS]
    return json.dumps(redacted, separators=(",", ":"), ensure_ascii=False)[:LOGGED_PAYLOAD_CHARS]


def _redact(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: "<hidden>" if str(key).lower() in _REDACTED_MEMBERS else _redact(item)
                for key, item in node.items()}
    if isinstance(node, list):
        return [_redact(item) for item in node]
    return node

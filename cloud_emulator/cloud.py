"""What a cloud (Tencent, Alibaba, Azure) plugs into the emulator.

A cloud contributes HTTP routes to the shared HTTP/HTTPS listeners and judges MQTT logins
and topic access on the shared broker. The listeners own sockets, limits and fault
injection; the cloud owns protocol rules, response shapes and request-log entries.

Two optional parts serve clouds that talk back over MQTT (Alibaba):
* a LoginVerdict may carry `deliveries`: PUBLISH packets the broker sends to that client
  right after its CONNACK, whether or not it subscribed (MQTT dynamic registration);
* a cloud may define `handle_publish(identity, topic, payload) -> list[Delivery]`: called
  for every PUBLISH the ACL let through; the returned messages are published by the broker
  to whoever subscribed to their topics (request/reply topics such as thing/sub/register).
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

CONNACK_ACCEPTED = 0
CONNACK_IDENTIFIER_REJECTED = 2
CONNACK_BAD_USERNAME_OR_PASSWORD = 4
CONNACK_NOT_AUTHORIZED = 5
# A refusal without any CONNACK: the connection is closed once the CONNECT was read (AWS IoT Core).
CONNACK_NONE = -1

# Request-log names of the broker's events (HTTP APIs are named by their cloud).
API_MQTT_CONNECT = "mqtt-connect"
API_MQTT_PUBLISH = "mqtt-publish"
API_MQTT_SUBSCRIBE = "mqtt-subscribe"
API_MQTT_DELIVER = "mqtt-deliver"  # a cloud-originated PUBLISH sent to one client after its CONNACK

LISTENER_AWS_MQTTS = "aws-mqtts"  # the AWS IoT Core endpoint's listener (aws.py)

ACTION_PUBLISH = "publish"
ACTION_SUBSCRIBE = "subscribe"


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: str
    version: str  # "HTTP/1.0" or "HTTP/1.1"
    headers: dict[str, str]  # names lower-cased
    body: bytes
    transport: str  # "http" or "https"

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()  # beside Content-Type and Content-Length (Retry-After)


@dataclass(frozen=True)
class HttpError:
    """A refusal by the HTTP layer itself (size limits, bad framing) or an injected status."""

    status: int
    code: str
    message: str


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    api: str  # name used in the request log, e.g. "tencent-v2"
    handle: Callable[[HttpRequest], HttpResponse]
    # Shape an HTTP-layer error the way this API reports errors; returns (body, logged result).
    render_error: Callable[[HttpError], tuple[dict[str, Any], str]]
    # For an API whose cloud reports every failure inside a 200 answer (Tencent's current API,
    # Alibaba's HTTPS registration): the body of an injected error so reported (faults.py).
    render_error_in_body: Callable[[HttpError], dict[str, Any]] | None = None


@dataclass(frozen=True)
class MqttLogin:
    client_id: str
    username: str | None
    password: str | None = field(repr=False)
    peer_certificate_der: bytes | None  # verified against the emulator CA by the TLS listener
    listener: str  # "mqtt", "mqtts", or LISTENER_AWS_MQTTS (client certificate required)
    keep_alive: int | None = None  # seconds, as sent in CONNECT
    protocol: str = "MQTT/4"  # the CONNECT's protocol name/level: MQTT 3.1.1, or "MQIsdp/3" (MQTT 3.1)


@dataclass(frozen=True)
class Delivery:
    """A PUBLISH originated by the cloud (its payload may hold a secret: never logged)."""

    topic: str
    payload: bytes = field(repr=False)
    # A reply for the connection that asked only (Azure DPS answers), not for every subscriber.
    to_sender: bool = False


@dataclass(frozen=True)
class LoginVerdict:
    connack_code: int
    reason: str  # "ok" or a short stable reason, logged as the result
    product: str | None = None
    device: str | None = None
    algorithm: str | None = None
    cloud: "Cloud | None" = field(default=None, compare=False, repr=False)
    kind: str = "device"  # "device": a normal login; "registration": a dynamic-registration connection
    # Sent to this client right after CONNACK 0; then, with close_after_delivery, the broker
    # closes the connection once the client had its grace period to read them.
    deliveries: tuple[Delivery, ...] = field(default=(), compare=False, repr=False)
    close_after_delivery: bool = False
    # What the cloud keeps of the login for the session's later requests (Azure: the DPS
    # token's verdict, the hub device id).
    context: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def accepted(self) -> bool:
        return self.connack_code == CONNACK_ACCEPTED


class Cloud(Protocol):
    name: str

    def http_routes(self) -> list[Route]: ...

    def mqtt_login(self, login: MqttLogin) -> LoginVerdict | None:
        """Judge a CONNECT; None means "not one of my devices" so another cloud may try."""

    def topic_allowed(self, identity: LoginVerdict, topic: str, action: str) -> bool: ...

    # Optional: def handle_publish(self, identity, topic, payload) -> list[Delivery]
    # Optional: disconnect_on_denial = True: a PUBLISH or SUBSCRIBE that topic_allowed refuses
    # closes the connection (AWS), instead of a dropped PUBLISH or a SUBACK 0x80.


def topic_filter_within(levels: list[str], pattern: list[str]) -> bool:
    """True when every topic a filter (or plain topic) can match lies inside `pattern`.

    Pattern levels: a literal; "*" any one level (a "+" there is fine); "**" one or more
    further levels, wildcards included. A "#" elsewhere, or a "+" on a literal, could reach
    other devices' topics, so it is refused.
    """
    for index, expected in enumerate(pattern):
        if expected == "**":
            return len(levels) > index
        if index >= len(levels):
            return False
        level = levels[index]
        if expected == "*":
            if level == "#":
                return False
        elif level != expected:
            return False
    return len(levels) == len(pattern)

"""Azure IoT Hub Device Provisioning Service (DPS) with symmetric-key enrollment groups, and
the IoT hubs it assigns devices to, as a device meets them over MQTT 3.1.1 with TLS.

DPS (README "Azure" gives the sources of each fact, and which are the emulator's choice):
* CONNECT: client id = registration id, username `{idScope}/registrations/{registrationId}/
  api-version=...`, password a SAS token over the URL-encoded `{idScope}/registrations/
  {registrationId}`, signed with the device key: base64(HMAC-SHA256(group key, registration
  id)). The connection is accepted whatever the token says; the registration request is what
  DPS answers with 401.
* The device subscribes to `$dps/registrations/res/#`, publishes `{"registrationId": ...}` on
  `$dps/registrations/PUT/iotdps-register/?$rid={rid}` and is answered 202 `assigning` with a
  `retry-after` and an operationId; it polls `$dps/registrations/GET/iotdps-get-operationstatus/
  ?$rid={rid}&operationId={id}` until `assigned` (the hub and the device id). Answers go to the
  asking connection only (`Delivery.to_sender`).
* The assignment creates the device in the group's hub with the derived key (again, after an
  operator deleted it there).
IoT Hub: client id = device id, username `{hub}/{deviceId}/?api-version=...`, password a SAS
token over `{hub}/devices/{deviceId}` signed with the device key; CONNACK 5 for anything wrong.
"""

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
from typing import Any, Callable
from urllib.parse import quote, unquote

from . import registry
from .cloud import (
    ACTION_PUBLISH,
    ACTION_SUBSCRIBE,
    CONNACK_ACCEPTED,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    Delivery,
    LoginVerdict,
    MqttLogin,
    Route,
    topic_filter_within,
)
from .state import StateStore
from .throttle import RegistrationThrottle

API_DPS_CONNECT = "azure-dps-connect"
API_DPS_REGISTER = "azure-dps-register"
API_DPS_STATUS = "azure-dps-status"
API_HUB_CONNECT = "mqtt-connect"
KIND_DPS = "dps"

RESPONSE_PREFIX = "$dps/registrations/res/"
RESPONSES = "$dps/registrations/res/#"
REGISTER_PREFIX = "$dps/registrations/PUT/iotdps-register/?"
STATUS_PREFIX = "$dps/registrations/GET/iotdps-get-operationstatus/?"
TOKEN_PREFIX = "SharedAccessSignature "
DPS_KEY_NAME = "registration"
MAX_REQUEST_BYTES = 4096

# Error bodies as DPS sends them on the response topic (shape: a published log,
# MicrosoftDocs/azure-docs#43157); the codes other than 401000 are the emulator's choice.
UNAUTHORIZED = (401, 401000, "Unauthorized")
UNKNOWN_SCOPE = (404, 404000, "The ID scope is not known to this service.")  # unconfirmed
UNKNOWN_OPERATION = (404, 404001, "The operation is not known.")  # unconfirmed
BAD_REQUEST = (400, 400000, "The request body is not valid.")  # unconfirmed
THROTTLED = (429, 429001, "Too many requests")  # unconfirmed; DPS documents 429 with retry-after


def derive_device_key(group_key: str, registration_id: str) -> str:
    raw = base64.b64decode(group_key)
    return base64.b64encode(hmac.new(raw, registration_id.encode(), hashlib.sha256).digest()).decode()


def token_signature(key: str, encoded_resource: str, expiry: str) -> str:
    message = f"{encoded_resource}\n{expiry}".encode()
    return base64.b64encode(hmac.new(base64.b64decode(key), message, hashlib.sha256).digest()).decode()


def parse_token(password: str | None) -> dict[str, str] | None:
    """The fields of `SharedAccessSignature sr=..&sig=..&se=..[&skn=..]` (values still
    URL-encoded), or None when it is not one."""
    if not password or not password.startswith(TOKEN_PREFIX):
        return None
    fields: dict[str, str] = {}
    for pair in password[len(TOKEN_PREFIX):].split("&"):
        name, equals, value = pair.partition("=")
        if not equals or name in fields or name not in ("sr", "sig", "se", "skn"):
            return None
        fields[name] = value
    if not {"sr", "sig", "se"} <= set(fields) or not fields["se"].isascii() or not fields["se"].isdigit():
        return None
    return fields


def token_problem(fields: dict[str, str] | None, resource: str, key: str, now: float) -> str | None:
    """None when the token is good for `resource`, signed with `key` and not expired."""
    if fields is None:
        return "bad-token"
    if unquote(fields["sr"]).lower() != resource.lower():
        return "wrong-resource"
    if int(fields["se"]) <= now:
        return "token-expired"
    expected = token_signature(key, fields["sr"], fields["se"])
    if not hmac.compare_digest(expected.encode(), unquote(fields["sig"]).encode()):
        return "bad-signature"
    return None


def _query(text: str) -> dict[str, str]:
    values = {}
    for pair in text.split("&"):
        name, _, value = pair.partition("=")
        values[unquote(name)] = unquote(value)
    return values


def parse_dps_username(username: str) -> tuple[str, str, dict[str, str]] | None:
    parts = username.split("/")
    if len(parts) != 4 or parts[1] != "registrations" or "api-version=" not in parts[3]:
        return None
    return parts[0], parts[2], _query(parts[3])


def parse_hub_username(username: str) -> tuple[str, str, dict[str, str]] | None:
    parts = username.split("/")
    if len(parts) != 3 or not parts[2].startswith("?") or "api-version=" not in parts[2]:
        return None
    return parts[0], parts[1], _query(parts[2][1:])


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".0000000Z"


def _groups_in_scope(state: dict[str, Any], scope: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, product) for name, product in sorted(state["products"].items())
            if registry.product_cloud(product) == registry.CLOUD_AZURE and product.get("id_scope") == scope]


class AzureCloud:
    name = "azure"

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.throttle = RegistrationThrottle()

    def http_routes(self) -> list[Route]:
        return []  # DPS over HTTPS is not emulated: devices here provision over MQTT

    # -- logins ------------------------------------------------------------------------------

    def mqtt_login(self, login: MqttLogin) -> LoginVerdict | None:
        username = login.username or ""
        dps = parse_dps_username(username)
        if dps is not None:
            return self._judge_dps(login, *dps)
        hub = parse_hub_username(username)
        if hub is not None and registry.HUB_RULE.match(hub[0]):
            return self._judge_hub(login, hub[0], hub[1])
        return None

    def _judge_dps(self, login: MqttLogin, scope: str, registration_id: str, params: dict[str, str]) -> LoginVerdict:
        group = None
        error: tuple[int, int, str] | None = None
        if login.listener != "mqtts":
            code, reason = CONNACK_NOT_AUTHORIZED, "tls-required"  # DPS has no plain MQTT port
        elif login.client_id != registration_id or not registry.AZURE_ID_RULE.match(registration_id):
            code, reason = CONNACK_IDENTIFIER_REJECTED, "bad-client-id"
        else:
            code, reason = CONNACK_ACCEPTED, "ok"
            group, error, reason = self._dps_authority(scope, registration_id, parse_token(login.password))
        verdict = LoginVerdict(code, reason, group, registration_id, cloud=self, kind=KIND_DPS,
                               context={"scope": scope, "error": error})
        self.store.append_log(API_DPS_CONNECT, cloud=self.name, transport=login.listener, scope=scope,
                              product=group, device=registration_id, result=reason, connack=code,
                              api_version=params.get("api-version"))
        return verdict

    def _dps_authority(self, scope: str, registration_id: str,
                       token: dict[str, str] | None) -> tuple[str | None, tuple[int, int, str] | None, str]:
        """(group, error, reason): the enrollment group whose derived key signed the token, or the
        error every request of this connection is answered with."""
        if token is not None and token.get("skn", DPS_KEY_NAME) != DPS_KEY_NAME:
            return None, UNAUTHORIZED, "bad-key-name"
        resource = f"{scope}/registrations/{registration_id}"
        now = self.clock()
        with self.store.transaction() as state:
            groups = _groups_in_scope(state, scope)
        if not groups:
            return None, UNKNOWN_SCOPE, "unknown-scope"
        problem = "bad-token"
        for name, product in groups:
            problem = token_problem(token, resource, derive_device_key(product["secret"], registration_id), now) or ""
            if not problem:
                return name, None, "ok"
        return None, UNAUTHORIZED, problem

    def _judge_hub(self, login: MqttLogin, hub: str, device_id: str) -> LoginVerdict:
        group = registration_id = None
        if login.listener != "mqtts":
            code, reason = CONNACK_NOT_AUTHORIZED, "tls-required"
        elif login.client_id != device_id:
            code, reason = CONNACK_IDENTIFIER_REJECTED, "bad-client-id"
        else:
            with self.store.transaction() as state:
                found = self._hub_device(state, hub, device_id)
                if found is None:
                    code, reason = CONNACK_NOT_AUTHORIZED, "unknown-device"
                else:
                    group, registration_id, device = found
                    problem = token_problem(parse_token(login.password), f"{hub}/devices/{device_id}",
                                            device["device_key"], self.clock())
                    if not device.get("hub_enabled", True):
                        code, reason = CONNACK_NOT_AUTHORIZED, "device-disabled"
                    elif problem:
                        code, reason = CONNACK_NOT_AUTHORIZED, problem
                    else:
                        code, reason = CONNACK_ACCEPTED, "ok"
                        registry.mark_activated(device)
        self.store.append_log(API_HUB_CONNECT, cloud=self.name, transport=login.listener, protocol=login.protocol,
                              hub=hub, product=group, device=registration_id or device_id, result=reason,
                              connack=code)
        return LoginVerdict(code, reason, group, registration_id, cloud=self, context={"device_id": device_id})

    @staticmethod
    def _hub_device(state: dict[str, Any], hub: str, device_id: str) -> tuple[str, str, dict[str, Any]] | None:
        for name, product in sorted(state["products"].items()):
            if registry.product_cloud(product) != registry.CLOUD_AZURE:
                continue
            for registration_id, device in product["devices"].items():
                if device.get("hub") == hub and device.get("device_id") == device_id and device.get("in_hub"):
                    return name, registration_id, device
        return None

    # -- topics ------------------------------------------------------------------------------

    def topic_allowed(self, identity: LoginVerdict, topic: str, action: str) -> bool:
        if identity.kind == KIND_DPS:
            if action == ACTION_SUBSCRIBE:
                return topic == RESPONSES or topic.startswith(RESPONSE_PREFIX)
            return action == ACTION_PUBLISH and topic.startswith((REGISTER_PREFIX, STATUS_PREFIX))
        device_id = (identity.context or {}).get("device_id", "")
        levels = topic.split("/")
        return (topic_filter_within(levels, ["devices", device_id, "**"])
                or topic_filter_within(levels, ["$iothub", "**"]))

    # -- DPS requests --------------------------------------------------------------------------

    def handle_publish(self, identity: LoginVerdict, topic: str, payload: bytes) -> list[Delivery]:
        if identity.cloud is not self or identity.kind != KIND_DPS or not identity.accepted:
            return []
        if topic.startswith(REGISTER_PREFIX):
            query, api = _query(topic[len(REGISTER_PREFIX):]), API_DPS_REGISTER
        elif topic.startswith(STATUS_PREFIX):
            query, api = _query(topic[len(STATUS_PREFIX):]), API_DPS_STATUS
        else:
            return []
        rid = query.get("$rid", "")
        status, body, retry_after, result = self._answer(identity, api, query, payload)
        self.store.append_log(api, cloud=self.name, product=identity.product, device=identity.device,
                              result=result, status=status, retry_after=retry_after)
        reply = f"{RESPONSE_PREFIX}{status}/?$rid={quote(rid, safe='')}"
        if retry_after is not None:
            reply += f"&retry-after={retry_after}"
        return [Delivery(reply, _compact(body), to_sender=True)]

    def _answer(self, identity: LoginVerdict, api: str, query: dict[str, str],
                payload: bytes) -> tuple[int, dict[str, Any], int | None, str]:
        registration_id, group = identity.device or "", identity.product
        error = (identity.context or {}).get("error")
        if error is not None:
            return self._error(error, "unauthorized" if error[0] == 401 else "unknown-scope")
        if api == API_DPS_REGISTER and not self._valid_registration(payload, registration_id):
            return self._error(BAD_REQUEST, "bad-request")
        now = self.clock()
        with self.store.transaction() as state:
            product = registry.get_product(state, group or "")
            if product is None:  # deleted since the CONNECT
                return self._error(UNAUTHORIZED, "unauthorized")
            if api == API_DPS_REGISTER:
                throttled = self.throttle.check(state, group or "", now, registration_id)
                if throttled is not None:
                    status, body, _, _ = self._error(THROTTLED, "throttled")
                    return status, body, throttled.seconds, "throttled"
                if not product.get("dynreg", True):
                    return 200, {"operationId": _operation_id(), "status": "disabled",
                                 "registrationState": {"registrationId": registration_id, "status": "disabled"}}, \
                        None, "disabled"
                device = product["devices"].get(registration_id) or registry.new_device(
                    product, registration_id, origin="dps")
                operation = {"id": _operation_id(), "ready_at": now + product.get("assign_seconds", 1)}
                device["operation"] = operation
                return 202, {"operationId": operation["id"], "status": "assigning"}, \
                    product.get("assign_seconds", 1), "assigning"
            device = product["devices"].get(registration_id)
            operation = (device or {}).get("operation")
            if operation is None or operation["id"] != query.get("operationId"):
                return self._error(UNKNOWN_OPERATION, "unknown-operation")
            if now < operation["ready_at"]:
                return 202, {"operationId": operation["id"], "status": "assigning",
                             "registrationState": {"registrationId": registration_id, "status": "assigning"}}, \
                    max(1, math.ceil(operation["ready_at"] - now)), "assigning"
            first = "device_id" not in device
            self._assign(product, registration_id, device)
            state_view = {"registrationId": registration_id, "createdDateTimeUtc": _iso(device["created_at"]),
                          "assignedHub": device["hub"], "deviceId": device["device_id"], "status": "assigned",
                          "substatus": "initialAssignment" if first else "reprovisionedToInitialAssignment",
                          "lastUpdatedDateTimeUtc": _iso(now), "etag": base64.b64encode(secrets.token_bytes(6)).decode()}
            return 200, {"operationId": operation["id"], "status": "assigned", "registrationState": state_view}, \
                None, "ok"

    @staticmethod
    def _assign(product: dict[str, Any], registration_id: str, device: dict[str, Any]) -> None:
        # The device id is the registration id; the hub is the group's now (it may have moved).
        device.pop("operation", None)
        if device.get("hub") != product["hub"] or not device.get("in_hub"):
            device["hub_enabled"] = True
        registry.record_issued_secret(device, {"device_key": derive_device_key(product["secret"], registration_id)})
        device.update({"device_id": registration_id, "hub": product["hub"], "in_hub": True})

    @staticmethod
    def _valid_registration(payload: bytes, registration_id: str) -> bool:
        if len(payload) > MAX_REQUEST_BYTES:
            return False
        try:
            doc = json.loads(payload.decode())
        except ValueError:
            return False
        return isinstance(doc, dict) and doc.get("registrationId") == registration_id

    @staticmethod
    def _error(error: tuple[int, int, str], result: str) -> tuple[int, dict[str, Any], int | None, str]:
        status, code, message = error
        return status, {"errorCode": code, "trackingId": str(uuid.uuid4()), "message": message,
                        "timestampUtc": _iso(time.time())}, None, result


def _operation_id() -> str:
    # The shape of the operationIds DPS was seen to send: "5.<16 hex>.<uuid>".
    return f"5.{secrets.token_hex(8)}.{uuid.uuid4()}"

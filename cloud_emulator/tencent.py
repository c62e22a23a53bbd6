"""Tencent Cloud IoT Hub: dynamic registration (current and legacy API) and MQTT login.

Protocol facts are those of /work/shared/spec/PROTOCOLS.md sections 2.1-2.4. Verification
here is independent of the device library: CPython hmac/hashlib only.
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from . import registry
from .cloud import (
    ACTION_PUBLISH,
    API_MQTT_CONNECT,
    CONNACK_ACCEPTED,
    CONNACK_BAD_USERNAME_OR_PASSWORD,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    HttpError,
    HttpRequest,
    HttpResponse,
    LoginVerdict,
    MqttLogin,
    Route,
    topic_filter_within,
)
from .crypto import CertificateAuthority, encrypt_registration_payload
from .state import StateStore
from .throttle import RegistrationThrottle, Throttled, retry_later

API_V2 = "tencent-v2"
API_LEGACY = "tencent-legacy"
V2_PATH = "/device/register"
LEGACY_PATH = "/register/dev"

TIMESTAMP_WINDOW_SECONDS = 300
# A replay of a signed request stays inside the window for at most twice its width.
NONCE_MEMORY_SECONDS = 2 * TIMESTAMP_WINDOW_SECONDS
SDK_APPID = "12010126"  # what the docs and the C SDK send; what dynreg sends
# Every sdkappid a vendor SDK sends (PROTOCOLS.md 2.4): the docs and the C SDK 12010126; the
# Python SDK (tencent-iot-device 1.0.0) and Tencent's own signing sample (tencentyun/
# qcloud_iot_mqtt_sign, readme.md: "...;21010406;5AiF2;92233720368547758") 21010406.
SDK_APPIDS = frozenset((SDK_APPID, "21010406"))
PRODUCT_ID_LENGTH = 10

ALGORITHMS: dict[str, Callable[..., Any]] = {"hmacsha256": hashlib.sha256, "hmacsha1": hashlib.sha1}
LEGACY_ALGORITHM = "hmacsha1"
ENCRYPTION_TYPE_CERT = 1
ENCRYPTION_TYPE_KEY = 2

_V2_TIMESTAMP_RULE = re.compile(r"[0-9]{1,12}\Z")
_V2_NONCE_RULE = re.compile(r"[0-9]{1,10}\Z")
_MQTT_USERNAME_RULE = re.compile(
    r"(?P<client>[^;]+);(?P<appid>[0-9]+);(?P<connid>[A-Za-z0-9]{1,32});(?P<expiry>[0-9]{1,19})\Z"
)
_MQTT_PASSWORD_RULE = re.compile(r"(?P<digest>[0-9a-f]+);(?P<algorithm>hmacsha256|hmacsha1)\Z")


# -- signatures ---------------------------------------------------------------------------


def host_without_port(host: str) -> str:
    """The Host header value with any ":port" removed ("[::1]:80" -> "[::1]")."""
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.split(":", 1)[0]


def v2_string_to_sign(
    *, host: str, path: str, query: str, algorithm: str, timestamp: str, nonce: str, body: bytes
) -> str:
    body_hash = ALGORITHMS[algorithm](body).hexdigest()
    return "\n".join(["POST", host, path, query, algorithm, timestamp, nonce, body_hash])


def v2_signature(product_secret: str, string_to_sign: str, algorithm: str) -> str:
    digest = hmac.new(product_secret.encode("utf-8"), string_to_sign.encode("utf-8"), ALGORITHMS[algorithm])
    return base64.b64encode(digest.digest()).decode("ascii")


def legacy_signature(product_secret: str, device_name: str, nonce: int, product_id: str, timestamp: int) -> str:
    message = f"deviceName={device_name}&nonce={nonce}&productId={product_id}&timestamp={timestamp}"
    hex_digest = hmac.new(product_secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha1).hexdigest()
    return base64.b64encode(hex_digest.encode("ascii")).decode("ascii")  # base64 of the hex text


def mqtt_password(psk: str, username: str, algorithm: str) -> str:
    key = base64.b64decode(psk)
    digest = hmac.new(key, username.encode("utf-8"), ALGORITHMS[algorithm]).hexdigest()
    return f"{digest};{algorithm}"


def _same_text(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))


# -- refusals -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    reason: str  # stable name, logged for both APIs
    code: str  # current API: Response.Error.Code
    legacy_code: int  # legacy API: "code"
    message: str


INVALID_REQUEST = Refusal("invalid-request", "InvalidParameter", 1001, "Invalid request")
MISSING_PARAMETER = Refusal("missing-parameter", "MissingParameter", 1001, "Missing parameter")
INVALID_PARAMETER_VALUE = Refusal("invalid-parameter-value", "InvalidParameterValue", 1001, "Invalid parameter value")
INVALID_DEVICE_NAME = Refusal(
    "invalid-device-name", "InvalidParameterValue", 1001, "DeviceName must match [A-Za-z0-9:_-]{1,48}"
)
TIMESTAMP_EXPIRED = Refusal(
    "timestamp-expired", "AuthFailure.SignatureExpire", 1002,
    "Signature expired: timestamp and server time differ by more than five minutes",
)
BAD_SIGNATURE = Refusal(
    "bad-signature", "AuthFailure.SignatureFailure", 1010,
    "The provided credentials could not be validated. Please check your signature is correct.",
)
NONCE_REPLAYED = Refusal("nonce-replayed", "AuthFailure.NonceReplay", 1003, "Nonce already used, request replayed")
PRODUCT_NOT_FOUND = Refusal("product-not-found", "ResourceNotFound.ProductNotExist", 1004, "Product not exists")
DYNREG_DISABLED = Refusal(
    "dynreg-disabled", "UnauthorizedOperation.DynamicRegisterDisabled", 1005,
    "Not support dynamic device register, please check setting first",
)
DEVICE_NOT_PRECREATED = Refusal(
    "device-not-precreated", "ResourceNotFound.DeviceNotExist", 1006, "Pre create mode: device not exists"
)
DEVICE_LIMIT_REACHED = Refusal(
    "device-limit-reached", "LimitExceeded.DeviceExceedLimit", 1007, "Device count exceeds the product limit"
)
DEVICE_ACTIVATED = Refusal(
    "device-already-activated", "FailedOperation.DeviceAlreadyActivated", 1008,
    "Device already activated, dynamic register refused",
)
# The legacy API's signature message is the one real devices log.
LEGACY_BAD_SIGNATURE_MESSAGE = "Check signature failed"


class Refused(Exception):
    def __init__(self, refusal: Refusal, detail: str | None = None) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal
        self.detail = detail

    @property
    def message(self) -> str:
        return f"{self.refusal.message}: {self.detail}" if self.detail else self.refusal.message

    @property
    def legacy_message(self) -> str:
        return LEGACY_BAD_SIGNATURE_MESSAGE if self.refusal is BAD_SIGNATURE else self.message


# Over a product's registration rate (throttle.py). Current API, by default: HTTP 200 and
# RequestLimitExceeded in Response.Error, no Retry-After, as Tencent Cloud API 3.0 reports
# every failure (its "Error Codes" pages list RequestLimitExceeded, "the number of requests
# exceeds the frequency limit"; PROTOCOLS.md 2.6); the throttle's answer "http" makes it HTTP
# 429 with Retry-After, the emulator's choice. The legacy API: no source gives its shape, so
# HTTP 429, Retry-After and code 429, the emulator's choice.
THROTTLED_CODE = "RequestLimitExceeded"
THROTTLED_LEGACY_CODE = 429
THROTTLED_MESSAGE = "Request limit exceeded"


class OverLimit(Exception):
    def __init__(self, throttled: Throttled) -> None:
        super().__init__("throttled")
        self.throttled = throttled


def _throttled_message(throttled: Throttled) -> str:
    if throttled.seconds is None:
        return THROTTLED_MESSAGE
    return THROTTLED_MESSAGE + ": retry after %d s" % throttled.seconds


# -- registration ---------------------------------------------------------------------------


@dataclass
class RegistrationRequest:
    product_id: str
    device_name: str
    nonce: str
    timestamp: int
    signature_matches: Callable[[str], bool]  # given the ProductSecret


@dataclass(frozen=True)
class Registration:
    payload: str
    length: int
    state: int  # 0: device created by this registration, 1: device existed before


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refused(INVALID_REQUEST, "body is not JSON") from None
    if not isinstance(value, dict):
        raise Refused(INVALID_REQUEST, "body is not a JSON object")
    return value


def _require_json_content_type(request: HttpRequest, also: tuple[str, ...] = ()) -> None:
    content_type = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/json" and content_type not in also:
        raise Refused(INVALID_REQUEST, "Content-Type must be application/json")


def _is_json_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class TencentCloud:
    name = "tencent"

    def __init__(self, store: StateStore, ca: CertificateAuthority, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ca = ca
        self.clock = clock
        self.throttle = RegistrationThrottle()

    # -- routes -----------------------------------------------------------------------------

    def http_routes(self) -> list[Route]:
        return [
            Route("POST", V2_PATH, API_V2, self.handle_v2, _render_v2_error, _render_v2_error_in_body),
            Route("POST", LEGACY_PATH, API_LEGACY, self.handle_legacy, _render_legacy_error),
        ]

    def handle_v2(self, request: HttpRequest) -> HttpResponse:
        request_id = str(uuid.uuid4())
        seen: dict[str, Any] = {}
        try:
            registration = self._register(self._parse_v2(request, seen), body_answer=True)
        except Refused as refused:
            self._log(API_V2, request, seen, refused.refusal.code, refused.refusal.reason, request_id=request_id)
            return HttpResponse(200, _v2_error_body(refused.refusal.code, refused.message, request_id))
        except OverLimit as over:
            self._log(API_V2, request, seen, THROTTLED_CODE, "throttled", request_id=request_id,
                      retry_after=over.throttled.seconds)
            return retry_later(over.throttled, _v2_error_body(THROTTLED_CODE, _throttled_message(over.throttled),
                                                              request_id))
        self._log(API_V2, request, seen, "ok", None, request_id=request_id, state=registration.state)
        return HttpResponse(
            200,
            {
                "Response": {
                    "Len": registration.length,
                    "Payload": registration.payload,
                    "RequestId": request_id,
                    "State": registration.state,
                }
            },
        )

    def handle_legacy(self, request: HttpRequest) -> HttpResponse:
        seen: dict[str, Any] = {"algorithm": LEGACY_ALGORITHM}
        try:
            registration = self._register(self._parse_legacy(request, seen))
        except Refused as refused:
            self._log(API_LEGACY, request, seen, str(refused.refusal.legacy_code), refused.refusal.reason)
            return HttpResponse(200, {"code": refused.refusal.legacy_code, "message": refused.legacy_message})
        except OverLimit as over:
            self._log(API_LEGACY, request, seen, str(THROTTLED_LEGACY_CODE), "throttled",
                      retry_after=over.throttled.seconds)
            return retry_later(over.throttled, {"code": THROTTLED_LEGACY_CODE,
                                                "message": _throttled_message(over.throttled)})
        self._log(API_LEGACY, request, seen, "ok", None, state=registration.state)
        return HttpResponse(
            200, {"code": 0, "message": "", "len": registration.length, "payload": registration.payload}
        )

    def _log(
        self, api: str, request: HttpRequest, seen: dict[str, Any], result: str, reason: str | None, **extra: Any
    ) -> None:
        self.store.append_log(
            api,
            transport=request.transport,
            product=seen.get("product"),
            device=seen.get("device"),
            algorithm=seen.get("algorithm"),
            result=result,
            reason=reason,
            **extra,
        )

    # -- request parsing --------------------------------------------------------------------

    def _parse_v2(self, request: HttpRequest, seen: dict[str, Any]) -> RegistrationRequest:
        _require_json_content_type(request)
        body = _json_object(request.body)
        product_id, device_name = body.get("ProductId"), body.get("DeviceName")
        if isinstance(product_id, str):
            seen["product"] = product_id
        if isinstance(device_name, str):
            seen["device"] = device_name
        headers = {}
        for name in ("Host", "X-TC-Algorithm", "X-TC-Timestamp", "X-TC-Nonce", "X-TC-Signature"):
            value = request.header(name)
            if not value:
                raise Refused(MISSING_PARAMETER, name)
            headers[name] = value
        algorithm = headers["X-TC-Algorithm"]
        if algorithm not in ALGORITHMS:
            raise Refused(INVALID_PARAMETER_VALUE, "X-TC-Algorithm must be hmacsha256 or hmacsha1")
        seen["algorithm"] = algorithm
        timestamp, nonce = headers["X-TC-Timestamp"], headers["X-TC-Nonce"]
        if not _V2_TIMESTAMP_RULE.match(timestamp):
            raise Refused(INVALID_PARAMETER_VALUE, "X-TC-Timestamp must be Unix seconds")
        if not _V2_NONCE_RULE.match(nonce) or int(nonce) < 1:
            raise Refused(INVALID_PARAMETER_VALUE, "X-TC-Nonce must be a positive integer")
        if product_id is None or device_name is None:
            raise Refused(MISSING_PARAMETER, "ProductId and DeviceName")
        if not isinstance(product_id, str) or not isinstance(device_name, str):
            raise Refused(INVALID_REQUEST, "ProductId and DeviceName must be strings")
        if not registry.DEVICE_NAME_RULE.match(device_name):
            raise Refused(INVALID_DEVICE_NAME)
        string_to_sign = v2_string_to_sign(
            host=host_without_port(headers["Host"]),
            path=request.path,
            query=request.query,
            algorithm=algorithm,
            timestamp=timestamp,
            nonce=nonce,
            body=request.body,
        )
        given = headers["X-TC-Signature"]
        return RegistrationRequest(
            product_id=product_id,
            device_name=device_name,
            nonce=nonce,
            timestamp=int(timestamp),
            signature_matches=lambda secret: _same_text(v2_signature(secret, string_to_sign, algorithm), given),
        )

    def _parse_legacy(self, request: HttpRequest, seen: dict[str, Any]) -> RegistrationRequest:
        # The Tencent C SDKs post the JSON body as application/x-www-form-urlencoded, and the
        # cloud registers them (issue 13's trial of the SDKs): the body is parsed as JSON either way.
        _require_json_content_type(request, also=("application/x-www-form-urlencoded",))
        body = _json_object(request.body)
        fields = ("deviceName", "nonce", "productId", "timestamp", "signature")
        if isinstance(body.get("productId"), str):
            seen["product"] = body["productId"]
        if isinstance(body.get("deviceName"), str):
            seen["device"] = body["deviceName"]
        missing = [name for name in fields if name not in body]
        if missing:
            raise Refused(MISSING_PARAMETER, ", ".join(missing))
        device_name, nonce, product_id = body["deviceName"], body["nonce"], body["productId"]
        timestamp, given = body["timestamp"], body["signature"]
        if not (isinstance(device_name, str) and isinstance(product_id, str) and isinstance(given, str)):
            raise Refused(INVALID_REQUEST, "deviceName, productId and signature must be strings")
        if not (_is_json_int(nonce) and _is_json_int(timestamp)):
            raise Refused(INVALID_REQUEST, "nonce and timestamp must be JSON numbers")
        if nonce < 1 or timestamp < 0:
            raise Refused(INVALID_PARAMETER_VALUE, "nonce must be positive, timestamp not negative")
        if not registry.DEVICE_NAME_RULE.match(device_name):
            raise Refused(INVALID_DEVICE_NAME)
        return RegistrationRequest(
            product_id=product_id,
            device_name=device_name,
            nonce=str(nonce),
            timestamp=timestamp,
            signature_matches=lambda secret: _same_text(
                legacy_signature(secret, device_name, nonce, product_id, timestamp), given
            ),
        )

    # -- the registration itself --------------------------------------------------------

    def _register(self, request: RegistrationRequest, body_answer: bool = False) -> Registration:
        # Refusals are returned from inside the transaction, not raised, so that what was
        # already recorded (the nonce of a correctly signed request) is saved. `body_answer`:
        # the current API, which reports throttling in a 200 answer (throttle.py).
        with self.store.transaction() as state:
            throttled = self.throttle.check(state, request.product_id, self.clock(), request.device_name,
                                            body_answer)
            outcome = self._register_locked(state, request) if throttled is None else None
        if throttled is not None:
            raise OverLimit(throttled)
        if isinstance(outcome, Refusal):
            raise Refused(outcome)
        return outcome

    def _register_locked(self, state: dict[str, Any], request: RegistrationRequest) -> Registration | Refusal:
        now = self.clock()
        product = registry.get_product(state, request.product_id)
        if product is None or registry.product_cloud(product) != registry.CLOUD_TENCENT:
            return PRODUCT_NOT_FOUND
        if abs(now - request.timestamp) > TIMESTAMP_WINDOW_SECONDS:
            return TIMESTAMP_EXPIRED
        if not request.signature_matches(product["secret"]):
            return BAD_SIGNATURE
        if not self._remember_nonce(state, request.product_id, request.nonce, now):
            return NONCE_REPLAYED
        if not product["dynreg"]:
            return DYNREG_DISABLED
        device = registry.get_device(state, request.product_id, request.device_name)
        existed = device is not None
        if device is None:
            if product["mode"] == "precreate":
                return DEVICE_NOT_PRECREATED
            if len(product["devices"]) >= product["limit"]:
                return DEVICE_LIMIT_REACHED
            device = registry.new_device(product, request.device_name, origin="registration")
        elif device["status"] == registry.STATUS_ACTIVATED:
            return DEVICE_ACTIVATED
        secrets, plaintext = self._issue_credentials(product, request.product_id + request.device_name)
        registry.record_issued_secret(device, secrets)
        payload, length = encrypt_registration_payload(plaintext, product["secret"])
        return Registration(payload=payload, length=length, state=1 if existed else 0)

    def _remember_nonce(self, state: dict[str, Any], product_id: str, nonce: str, now: float) -> bool:
        seen = state.setdefault("nonces", {}).setdefault(product_id, {})
        for old_nonce, seen_at in list(seen.items()):
            if now - seen_at > NONCE_MEMORY_SECONDS:
                del seen[old_nonce]
        if nonce in seen:
            return False
        seen[nonce] = now
        return True

    def _issue_credentials(self, product: dict[str, Any], client_id: str) -> tuple[dict[str, str], bytes]:
        if product["auth"] == "cert":
            cert_pem, key_pem, fingerprint = self.ca.issue_device_certificate(client_id)
            plaintext = {"encryptionType": ENCRYPTION_TYPE_CERT, "clientCert": cert_pem, "clientKey": key_pem}
            secrets = {"cert_pem": cert_pem, "key_pem": key_pem, "cert_sha256": fingerprint}
        else:
            psk = base64.b64encode(os.urandom(16)).decode("ascii")
            plaintext = {"encryptionType": ENCRYPTION_TYPE_KEY, "psk": psk}
            secrets = {"psk": psk}
        return secrets, json.dumps(plaintext, separators=(",", ":")).encode("utf-8")

    # -- MQTT -------------------------------------------------------------------------------

    def mqtt_login(self, login: MqttLogin) -> LoginVerdict | None:
        username = login.username or ""
        if ";" not in username:
            return None  # not a Tencent-style login
        verdict = self._judge_login(login, username)
        self.store.append_log(
            API_MQTT_CONNECT,
            transport=login.listener,
            protocol=login.protocol,
            product=verdict.product,
            device=verdict.device,
            algorithm=verdict.algorithm,
            result="ok" if verdict.accepted else verdict.reason,
            connack=verdict.connack_code,
        )
        return verdict

    def _judge_login(self, login: MqttLogin, username: str) -> LoginVerdict:
        def verdict(code: int, reason: str, product: str | None = None, device: str | None = None,
                    algorithm: str | None = None) -> LoginVerdict:
            return LoginVerdict(code, reason, product, device, algorithm, cloud=self)

        match = _MQTT_USERNAME_RULE.match(username)
        # The expiry is compared in seconds, as the docs define it: the Python SDK's millisecond
        # timestamp and the C SDK's LONG_MAX (19 digits) are far futures, which the cloud takes.
        if match is None or match["appid"] not in SDK_APPIDS:
            return verdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-username")
        client = match["client"]
        product_id, device_name = client[:PRODUCT_ID_LENGTH], client[PRODUCT_ID_LENGTH:]
        if login.client_id != client:
            return verdict(CONNACK_IDENTIFIER_REJECTED, "clientid-mismatch", product_id, device_name)
        if int(match["expiry"]) <= self.clock():
            return verdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "expired", product_id, device_name)
        password = _MQTT_PASSWORD_RULE.match(login.password or "")
        with self.store.transaction() as state:
            product = registry.get_product(state, product_id)
            device = registry.get_device(state, product_id, device_name)
            if product is None or registry.product_cloud(product) != registry.CLOUD_TENCENT:
                return verdict(CONNACK_NOT_AUTHORIZED, "unknown-product", product_id, device_name)
            if device is None:
                return verdict(CONNACK_NOT_AUTHORIZED, "unknown-device", product_id, device_name)
            if product["auth"] == "cert":
                algorithm = "cert"
                if login.peer_certificate_der is None:
                    return verdict(CONNACK_NOT_AUTHORIZED, "certificate-required", product_id, device_name, algorithm)
                fingerprint = hashlib.sha256(login.peer_certificate_der).hexdigest()
                if not hmac.compare_digest(fingerprint, device.get("cert_sha256", "")):
                    return verdict(CONNACK_NOT_AUTHORIZED, "certificate-mismatch", product_id, device_name, algorithm)
            else:
                algorithm = password["algorithm"] if password else None
                if "psk" not in device:
                    return verdict(CONNACK_NOT_AUTHORIZED, "not-registered", product_id, device_name, algorithm)
                if password is None or not _psk_password_matches(device["psk"], username, login.password or ""):
                    return verdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-password", product_id, device_name, algorithm)
            registry.mark_activated(device)
        return verdict(CONNACK_ACCEPTED, "ok", product_id, device_name, algorithm)

    def topic_allowed(self, identity: LoginVerdict, topic: str, action: str) -> bool:
        product_id, device_name = identity.product or "", identity.device or ""
        own_prefix = [product_id, device_name, "**"]
        if action == ACTION_PUBLISH:
            patterns = [own_prefix, ["$thing", "up", "*", product_id, device_name]]
        else:
            patterns = [own_prefix, ["$thing", "down", "*", product_id, device_name]]
        levels = topic.split("/")
        return any(_filter_within(levels, pattern) for pattern in patterns)


def _psk_password_matches(psk: str, username: str, password: str) -> bool:
    algorithm = password.rsplit(";", 1)[1]
    try:
        expected = mqtt_password(psk, username, algorithm)
    except (binascii.Error, ValueError):
        return False
    return _same_text(expected, password)


_filter_within = topic_filter_within  # shared with the other clouds


def _v2_error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id}}


def _render_v2_error(error: HttpError) -> tuple[dict[str, Any], str]:
    return _v2_error_body(error.code, error.message, str(uuid.uuid4())), error.code


def _render_v2_error_in_body(error: HttpError) -> dict[str, Any]:
    # An injected server error as Tencent Cloud API 3.0 reports every failure: Response.Error in
    # a 200 answer (PROTOCOLS.md 2.6), the Code from the status (InternalError for a 500).
    return _v2_error_body(error.code, error.message, str(uuid.uuid4()))


def _render_legacy_error(error: HttpError) -> tuple[dict[str, Any], str]:
    # The legacy API has no published codes for transport-level errors: use the HTTP status.
    return {"code": error.status, "message": error.message}, str(error.status)

"""Alibaba Cloud IoT Platform: dynamic registration over HTTPS and MQTT, DeviceSecret and
deviceToken (connwl) logins, gateway sub-device registration and topology.

Protocol facts: /work/shared/spec/PROTOCOLS.md section 3; the README lists the public
sources for codes and messages, and which choices are the emulator's own. Verification here
is independent of the device library: CPython hmac/hashlib only.
"""

import hashlib
import hmac
import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

from . import registry
from .cloud import (
    ACTION_SUBSCRIBE,
    API_MQTT_CONNECT,
    CONNACK_ACCEPTED,
    CONNACK_BAD_USERNAME_OR_PASSWORD,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    Delivery,
    HttpError,
    HttpRequest,
    HttpResponse,
    LoginVerdict,
    MqttLogin,
    Route,
    topic_filter_within,
)
from .state import StateStore
from .throttle import RegistrationThrottle, retry_later

API_HTTPS_REGISTER = "aliyun-https-register"
# Over a product's registration rate (throttle.py). HTTPS, by default: HTTP 200 with code 429,
# no Retry-After. The code is Alibaba's ("Error codes for devices": 429, throttling triggered
# by frequent requests); the status is our choice, as for every other refusal on this path:
# both vendor SDKs read the code only from a 200 answer (aliyun-iot-linkkit's urlopen raises
# on any other; LinkSDK's dynreg component refuses a status other than 200). The throttle's
# answer "http" makes it HTTP 429 with Retry-After, the emulator's choice. MQTT: CONNACK 3
# (server unavailable), unconfirmed, what MQTT 3.1.1 section 3.2.2.3 gives "the service is
# unavailable".
THROTTLED_CODE = 429
THROTTLED_MESSAGE = "too many requests"
CONNACK_SERVER_UNAVAILABLE = 3
API_MQTT_REGISTER = "aliyun-mqtt-register"
API_MQTT_REGNWL = "aliyun-mqtt-regnwl"
API_SUB_REGISTER = "aliyun-sub-register"
API_TOPO_ADD = "aliyun-topo-add"

REGISTER_PATH = "/auth/register/device"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
REGISTER_TOPIC = "/ext/register"
REGNWL_TOPIC = "/ext/regnwl"

SIGN_METHODS: dict[str, Callable[..., Any]] = {
    "hmacmd5": hashlib.md5,
    "hmacsha1": hashlib.sha1,
    "hmacsha256": hashlib.sha256,
}
DEFAULT_LOGIN_SIGN_METHOD = "hmacmd5"  # documented default when a login's clientId has no signmethod
AUTH_REGISTER = "register"  # pre-registered device, result on /ext/register
AUTH_REGNWL = "regnwl"  # pre-registration-free, result on /ext/regnwl
AUTH_CONNWL = "connwl"  # login with the deviceToken from regnwl
SECUREMODE_TLS = ("2", "-2")
SECUREMODE_TCP = "3"
SECRET_LENGTH = 32  # deviceSecret and deviceToken
MAX_CLIENT_ID_LENGTH = 64
MAX_RANDOM_LENGTH = 64
KEEPALIVE_MIN, KEEPALIVE_MAX = 30, 1200  # logins outside it are refused (registration skips the check)
MAX_BATCH = 30  # sub-devices per thing.topo.add and per thing.sub.register (both documented: README)
ALINK_VERSION = "1.0"
METHOD_SUB_REGISTER = "thing.sub.register"
METHOD_TOPO_ADD = "thing.topo.add"
_MAX_MESSAGE_ID = 4294967295


# -- signatures ------------------------------------------------------------------------------


def signed_content(fields: dict[str, str]) -> str:
    """The fields sorted by name and concatenated as name+value, no separators."""
    return "".join(name + fields[name] for name in sorted(fields))


def hmac_hex(key: str, content: str, method: str) -> str:
    """Lower-case hex HMAC; `method` is hmacmd5, hmacsha1 or hmacsha256 in any case."""
    return hmac.new(key.encode("utf-8"), content.encode("utf-8"), SIGN_METHODS[method.lower()]).hexdigest()


def registration_sign(product_secret: str, product_key: str, device_name: str, random: str,
                      method: str = "hmacsha256") -> str:
    """HTTPS and MQTT dynamic registration: HMAC(ProductSecret, deviceName..productKey..random..)."""
    return hmac_hex(product_secret, signed_content({"deviceName": device_name, "productKey": product_key,
                                                    "random": random}), method)


def login_password(device_secret: str, client_id: str, product_key: str, device_name: str,
                   timestamp: str | None = None, method: str = "hmacsha256") -> str:
    """MQTT DeviceSecret login: timestamp is part of the signed string only when the clientId carries one."""
    fields = {"clientId": client_id, "deviceName": device_name, "productKey": product_key}
    if timestamp is not None:
        fields["timestamp"] = timestamp
    return hmac_hex(device_secret, signed_content(fields), method)


def topo_sign(device_secret: str, product_key: str, device_name: str, timestamp: str,
              client_id: str | None = None, method: str = "hmacsha256") -> str:
    """thing.topo.add: every submitted field except sign and signmethod (clientId only if sent)."""
    fields = {"deviceName": device_name, "productKey": product_key, "timestamp": timestamp}
    if client_id is not None:
        fields["clientId"] = client_id
    return hmac_hex(device_secret, signed_content(fields), method)


def hex_matches(expected_lower_hex: str, given: str) -> bool:
    """Constant-time comparison that accepts the given hex in either case."""
    candidate = given.lower() if given.isascii() else ""
    return hmac.compare_digest(expected_lower_hex.encode("ascii"), candidate.encode("ascii"))


def parse_mqtt_client_id(text: str) -> tuple[str, dict[str, str]] | None:
    """`<id>|key=value,key=value|` -> (id, {lower-case key: value}); None when malformed.

    The parameters are the part between the last two "|", so an id may itself contain "|".
    Key order does not matter; unknown keys (_v, _ss, ext, gw, lan, instanceId...) are kept.
    """
    if not text.endswith("|"):
        return None
    client_id, separator, params_text = text[:-1].rpartition("|")
    if not separator or not client_id:
        return None
    params: dict[str, str] = {}
    for item in params_text.split(","):
        if not item:
            continue
        key, equals, value = item.partition("=")
        key = key.strip().lower()
        if not equals or not key or key in params:
            return None
        params[key] = value.strip()
    return client_id, params


def split_username(username: str) -> tuple[str, str] | None:
    """`<deviceName>&<productKey>` -> (device name, product key), checked against the console rules."""
    device_name, separator, product_key = username.partition("&")
    if not separator or not registry.ALIYUN_PRODUCT_KEY_RULE.match(product_key):
        return None
    if not registry.ALIYUN_DEVICE_NAME_RULE.match(device_name):
        return None
    return device_name, product_key


# -- error codes -------------------------------------------------------------------------------

# Code -> message. 200/460/401/6100/6250/6280/6289/6402 and their messages are the cloud's
# (see README for sources and for where their use is inferred); 403 is the emulator's choice.
MESSAGES = {
    200: "success",
    401: "request auth error",
    403: "dynamic register is not enabled for this product",
    # 429, 500, 503: Alibaba's common codes (help.aliyun.com document 127995; README A10a)
    429: "too many requests",
    460: "request parameter error",
    500: "service error",
    503: "service not available",
    6100: "device not found",
    6250: "product not found",
    6280: "devicename not meet specs",
    6289: "device is already active",
    6402: "topo relation cannot add by self",
}


@dataclass(frozen=True)
class AliyunError:
    code: int
    reason: str  # stable name, logged

    @property
    def message(self) -> str:
        return MESSAGES[self.code]


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.error = AliyunError(code, reason)


def _render_http_error(error: HttpError) -> tuple[dict[str, Any], str]:
    # No published shape for transport-level errors: the API's {code, message} with the HTTP status.
    return {"code": error.status, "message": error.message}, str(error.status)


def _render_error_in_body(error: HttpError) -> dict[str, Any]:
    # An injected error in the code of a 200 answer, as Alibaba reports its refusals here: 429
    # throttled, 503 not available, any other 5xx 500 ("an unknown error occurred").
    code = error.status if error.status < 500 or error.status == 503 else 500
    return {"code": code, "message": MESSAGES.get(code, error.message)}


def _new_secret() -> str:
    return registry.random_alphanumeric(SECRET_LENGTH)


def _is_aliyun(product: dict[str, Any] | None) -> bool:
    return product is not None and registry.product_cloud(product) == registry.CLOUD_ALIYUN


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


class AliyunCloud:
    name = "aliyun"

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.throttle = RegistrationThrottle()

    # -- HTTPS registration --------------------------------------------------------------------

    def http_routes(self) -> list[Route]:
        return [Route("POST", REGISTER_PATH, API_HTTPS_REGISTER, self.handle_https_register, _render_http_error,
                      _render_error_in_body)]

    def handle_https_register(self, request: HttpRequest) -> HttpResponse:
        seen: dict[str, Any] = {}
        try:
            form = self._parse_form(request, seen)
            with self.store.transaction() as state:
                throttled = self.throttle.check(state, form["productKey"], self.clock(), form["deviceName"],
                                                body_answer=True)
                outcome = self._https_register_locked(state, form) if throttled is None else None
        except Refused as refused:
            outcome, throttled = refused.error, None
        if throttled is not None:
            self._log_https(request, seen, str(THROTTLED_CODE), "throttled", retry_after=throttled.seconds)
            return retry_later(throttled, {"code": THROTTLED_CODE, "message": THROTTLED_MESSAGE})
        if isinstance(outcome, AliyunError):
            self._log_https(request, seen, str(outcome.code), outcome.reason)
            return HttpResponse(200, {"code": outcome.code, "message": outcome.message})
        self._log_https(request, seen, "ok", None)
        return HttpResponse(200, {"code": 200, "data": outcome, "message": MESSAGES[200]})

    def _log_https(self, request: HttpRequest, seen: dict[str, Any], result: str, reason: str | None,
                   **extra: Any) -> None:
        self.store.append_log(API_HTTPS_REGISTER, cloud=self.name, transport=request.transport,
                              product=seen.get("product"), device=seen.get("device"),
                              algorithm=seen.get("algorithm"), result=result, reason=reason, **extra)

    def _parse_form(self, request: HttpRequest, seen: dict[str, Any]) -> dict[str, str]:
        try:
            pairs: list[tuple[str, str]] | None = urllib.parse.parse_qsl(
                request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict",
                max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            pairs = None
        names = dict(pairs or [])
        seen["product"], seen["device"] = names.get("productKey"), names.get("deviceName")  # for the log
        content_type = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
        if content_type != FORM_CONTENT_TYPE:
            raise Refused(460, "invalid-content-type")
        if pairs is None:
            raise Refused(460, "invalid-form")
        form: dict[str, str] = {}
        for name, value in pairs:
            if name in form:
                raise Refused(460, "duplicate-parameter")
            form[name] = value
        for name in ("productKey", "deviceName", "random", "sign", "signMethod"):
            if not form.get(name):
                raise Refused(460, "missing-parameter")
        method = form["signMethod"].lower()
        if method not in SIGN_METHODS:
            raise Refused(460, "invalid-sign-method")
        seen["algorithm"] = method
        if len(form["random"]) > MAX_RANDOM_LENGTH:
            raise Refused(460, "invalid-random")
        if not registry.ALIYUN_DEVICE_NAME_RULE.match(form["deviceName"]):
            raise Refused(6280, "invalid-device-name")
        return form

    def _https_register_locked(self, state: dict[str, Any], form: dict[str, str]) -> dict[str, str] | AliyunError:
        product_key, device_name = form["productKey"], form["deviceName"]
        product = registry.get_product(state, product_key)
        if not _is_aliyun(product):
            return AliyunError(6250, "product-not-found")
        # Every submitted field except sign and signMethod is signed, sorted by name.
        signed = {name: value for name, value in form.items() if name not in ("sign", "signMethod")}
        if not hex_matches(hmac_hex(product["secret"], signed_content(signed), form["signMethod"]), form["sign"]):
            return AliyunError(401, "bad-signature")
        if not product["dynreg"]:
            return AliyunError(403, "dynreg-disabled")
        device = registry.get_device(state, product_key, device_name)
        if device is None:
            return AliyunError(6100, "device-not-found")  # HTTPS registration needs a pre-registered device
        if device["status"] == registry.STATUS_ACTIVATED:
            return AliyunError(6289, "device-already-active")
        device_secret = _new_secret()
        registry.record_issued_secret(device, {"device_secret": device_secret})
        return {"productKey": product_key, "deviceName": device_name, "deviceSecret": device_secret}

    # -- MQTT logins ---------------------------------------------------------------------------

    def mqtt_login(self, login: MqttLogin) -> LoginVerdict | None:
        username = login.username or ""
        if ";" in username or ("&" not in username and not login.client_id.endswith("|")):
            return None  # not an Alibaba-style login
        parsed = parse_mqtt_client_id(login.client_id)
        params = parsed[1] if parsed else {}
        auth_type = params.get("authtype")
        api = {AUTH_REGISTER: API_MQTT_REGISTER, AUTH_REGNWL: API_MQTT_REGNWL}.get(auth_type or "", API_MQTT_CONNECT)
        verdict = self._judge_login(login, username, parsed)
        self.store.append_log(
            api, cloud=self.name, transport=login.listener, protocol=login.protocol, product=verdict.product,
            device=verdict.device, algorithm=verdict.algorithm, result="ok" if verdict.accepted else verdict.reason,
            connack=verdict.connack_code, securemode=params.get("securemode"), auth_type=auth_type,
        )
        return verdict

    def _judge_login(self, login: MqttLogin, username: str,
                     parsed: tuple[str, dict[str, str]] | None) -> LoginVerdict:
        if parsed is None or len(parsed[0]) > MAX_CLIENT_ID_LENGTH:
            return LoginVerdict(CONNACK_IDENTIFIER_REJECTED, "bad-client-id", cloud=self)
        client_id, params = parsed
        auth_type = params.get("authtype")
        if auth_type in (AUTH_REGISTER, AUTH_REGNWL):
            return self._judge_registration(login, username, params, auth_type)
        if auth_type == AUTH_CONNWL:
            return self._judge_connwl(login, username, client_id, params)
        if auth_type is not None:
            return LoginVerdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "unsupported-auth-type", cloud=self)
        return self._judge_secret_login(login, username, client_id, params)

    def _verdict(self, code: int, reason: str, names: tuple[str, str] | None = None, algorithm: str | None = None,
                 **extra: Any) -> LoginVerdict:
        device_name, product_key = names if names else (None, None)
        return LoginVerdict(code, reason, product_key, device_name, algorithm, cloud=self, **extra)

    def _judge_registration(self, login: MqttLogin, username: str, params: dict[str, str],
                            auth_type: str) -> LoginVerdict:
        names = split_username(username)
        method = params.get("signmethod", "").lower()
        algorithm = method or None

        def refuse(code: int, reason: str) -> LoginVerdict:
            return self._verdict(code, reason, names, algorithm, kind="registration")

        if login.listener != "mqtts":
            return refuse(CONNACK_NOT_AUTHORIZED, "tls-required")  # MQTT registration is TLS only
        if params.get("securemode") not in SECUREMODE_TLS:
            return refuse(CONNACK_NOT_AUTHORIZED, "bad-securemode")
        if method not in SIGN_METHODS:
            return refuse(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-sign-method")
        random = params.get("random", "")
        if not random or len(random) > MAX_RANDOM_LENGTH:
            return refuse(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-random")
        if names is None:
            return refuse(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-username")
        device_name, product_key = names
        with self.store.transaction() as state:
            product = registry.get_product(state, product_key)
            if not _is_aliyun(product):
                return refuse(CONNACK_NOT_AUTHORIZED, "unknown-product")
            if self.throttle.check(state, product_key, self.clock()) is not None:  # no way to say when
                return refuse(CONNACK_SERVER_UNAVAILABLE, "throttled")
            expected = registration_sign(product["secret"], product_key, device_name, random, method)
            if not hex_matches(expected, login.password or ""):
                return refuse(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-signature")
            if not product["dynreg"]:
                return refuse(CONNACK_NOT_AUTHORIZED, "dynreg-disabled")
            device = registry.get_device(state, product_key, device_name)
            if auth_type == AUTH_REGISTER:
                if device is None:
                    return refuse(CONNACK_NOT_AUTHORIZED, "device-not-found")
            else:
                if not product.get("regnwl"):
                    return refuse(CONNACK_NOT_AUTHORIZED, "regnwl-disabled")
                if device is None:
                    if len(product["devices"]) >= product["limit"]:
                        return refuse(CONNACK_NOT_AUTHORIZED, "device-limit-reached")
                    device = registry.new_device(product, device_name, origin="regnwl")
            if device["status"] == registry.STATUS_ACTIVATED:
                return refuse(CONNACK_NOT_AUTHORIZED, "device-already-active")
            if auth_type == AUTH_REGISTER:
                device_secret = _new_secret()
                registry.record_issued_secret(device, {"device_secret": device_secret})
                delivery = Delivery(REGISTER_TOPIC, _compact(
                    {"productKey": product_key, "deviceName": device_name, "deviceSecret": device_secret}))
            else:
                token, issued_client_id = _new_secret(), f"{product_key}.{device_name}.{registry.random_alphanumeric(8)}"
                registry.record_issued_secret(device, {"device_token": token, "client_id": issued_client_id})
                delivery = Delivery(REGNWL_TOPIC, _compact({"clientId": issued_client_id, "productKey": product_key,
                                                            "deviceName": device_name, "deviceToken": token}))
        return self._verdict(CONNACK_ACCEPTED, "ok", names, algorithm, kind="registration",
                             deliveries=(delivery,), close_after_delivery=True)

    def _keepalive_refusal(self, login: MqttLogin) -> bool:
        return login.keep_alive is not None and not KEEPALIVE_MIN <= login.keep_alive <= KEEPALIVE_MAX

    def _judge_connwl(self, login: MqttLogin, username: str, client_id: str, params: dict[str, str]) -> LoginVerdict:
        names = split_username(username)
        algorithm = AUTH_CONNWL
        if login.listener != "mqtts":
            return self._verdict(CONNACK_NOT_AUTHORIZED, "tls-required", names, algorithm)
        if params.get("securemode") != "-2":
            return self._verdict(CONNACK_NOT_AUTHORIZED, "bad-securemode", names, algorithm)
        if self._keepalive_refusal(login):
            return self._verdict(CONNACK_IDENTIFIER_REJECTED, "keepalive-out-of-range", names, algorithm)
        if names is None:
            return self._verdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-username", None, algorithm)
        device_name, product_key = names
        with self.store.transaction() as state:
            product = registry.get_product(state, product_key)
            device = registry.get_device(state, product_key, device_name)
            if not _is_aliyun(product):
                return self._verdict(CONNACK_NOT_AUTHORIZED, "unknown-product", names, algorithm)
            if device is None:
                return self._verdict(CONNACK_NOT_AUTHORIZED, "unknown-device", names, algorithm)
            if "device_token" not in device:
                return self._verdict(CONNACK_NOT_AUTHORIZED, "not-registered", names, algorithm)
            if not hmac.compare_digest(client_id.encode("utf-8"), device.get("client_id", "").encode("utf-8")):
                return self._verdict(CONNACK_IDENTIFIER_REJECTED, "clientid-mismatch", names, algorithm)
            given = (login.password or "").encode("utf-8")
            if not hmac.compare_digest(device["device_token"].encode("utf-8"), given):
                return self._verdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-password", names, algorithm)
            registry.mark_activated(device)
        return self._verdict(CONNACK_ACCEPTED, "ok", names, algorithm)

    def _judge_secret_login(self, login: MqttLogin, username: str, client_id: str,
                            params: dict[str, str]) -> LoginVerdict:
        names = split_username(username)
        method = params.get("signmethod", DEFAULT_LOGIN_SIGN_METHOD).lower()
        algorithm = method
        securemode = params.get("securemode")
        if securemode in SECUREMODE_TLS:
            if login.listener != "mqtts":
                return self._verdict(CONNACK_NOT_AUTHORIZED, "tls-required", names, algorithm)
        elif securemode == SECUREMODE_TCP:
            if login.listener != "mqtt":
                return self._verdict(CONNACK_NOT_AUTHORIZED, "securemode-mismatch", names, algorithm)
        else:
            return self._verdict(CONNACK_NOT_AUTHORIZED, "bad-securemode", names, algorithm)
        if method not in SIGN_METHODS:
            return self._verdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-sign-method", names, None)
        timestamp = params.get("timestamp")
        if timestamp is not None and not (timestamp.isascii() and timestamp.isdigit()):
            return self._verdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-timestamp", names, algorithm)
        if self._keepalive_refusal(login):
            return self._verdict(CONNACK_IDENTIFIER_REJECTED, "keepalive-out-of-range", names, algorithm)
        if names is None:
            return self._verdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-username", None, algorithm)
        device_name, product_key = names
        with self.store.transaction() as state:
            product = registry.get_product(state, product_key)
            device = registry.get_device(state, product_key, device_name)
            if not _is_aliyun(product):
                return self._verdict(CONNACK_NOT_AUTHORIZED, "unknown-product", names, algorithm)
            if securemode == SECUREMODE_TCP and not product.get("securemode3"):
                return self._verdict(CONNACK_NOT_AUTHORIZED, "tcp-not-allowed", names, algorithm)
            if device is None:
                return self._verdict(CONNACK_NOT_AUTHORIZED, "unknown-device", names, algorithm)
            if "device_secret" not in device:
                return self._verdict(CONNACK_NOT_AUTHORIZED, "not-registered", names, algorithm)
            expected = login_password(device["device_secret"], client_id, product_key, device_name, timestamp, method)
            if not hex_matches(expected, login.password or ""):
                return self._verdict(CONNACK_BAD_USERNAME_OR_PASSWORD, "bad-password", names, algorithm)
            registry.mark_activated(device)
        return self._verdict(CONNACK_ACCEPTED, "ok", names, algorithm)

    # -- topics ----------------------------------------------------------------------------------

    def topic_allowed(self, identity: LoginVerdict, topic: str, action: str) -> bool:
        if identity.kind == "registration":
            # A registration connection only receives its result; subscribing to it is harmless.
            return action == ACTION_SUBSCRIBE and topic in (REGISTER_TOPIC, REGNWL_TOPIC)
        product_key, device_name = identity.product or "", identity.device or ""
        levels = topic.split("/")
        patterns = [["", product_key, device_name, "**"], ["", "sys", product_key, device_name, "**"]]
        return any(topic_filter_within(levels, pattern) for pattern in patterns)

    # -- gateway requests (Alink JSON over the gateway's own session) ---------------------------

    def handle_publish(self, identity: LoginVerdict, topic: str, payload: bytes) -> list[Delivery]:
        if identity.cloud is not self or identity.kind != "device" or not identity.accepted:
            return []
        prefix = f"/sys/{identity.product}/{identity.device}/thing/"
        if topic == prefix + "sub/register":
            api, method, handler = API_SUB_REGISTER, METHOD_SUB_REGISTER, self._sub_register_locked
        elif topic == prefix + "topo/add":
            api, method, handler = API_TOPO_ADD, METHOD_TOPO_ADD, self._topo_add_locked
        else:
            return []
        message_id, wants_reply, params = _parse_alink_request(payload, method)
        requested = [f"{entry.get('productKey')}/{entry.get('deviceName')}" for entry in params
                     if isinstance(entry, dict)] if isinstance(params, list) else []
        if isinstance(params, AliyunError):
            outcome: list[dict[str, str]] | AliyunError = params
        else:
            try:
                # A refusal raised inside the transaction leaves the state unsaved: all or nothing.
                with self.store.transaction() as state:
                    outcome = handler(state, identity, params)
            except Refused as refused:
                outcome = refused.error
        if isinstance(outcome, AliyunError):
            code, data, reason = outcome.code, {}, outcome.reason
        else:
            code, data, reason = 200, outcome, None
        self.store.append_log(api, cloud=self.name, product=identity.product, device=identity.device,
                              result="ok" if code == 200 else str(code), reason=reason, topic=topic,
                              sub_devices=",".join(requested) or None, reply=wants_reply)
        if not wants_reply:
            return []
        reply = {"id": message_id, "code": code, "data": data, "message": MESSAGES[code], "method": method,
                 "version": ALINK_VERSION}
        return [Delivery(topic + "_reply", _compact(reply))]

    def _gateway_check(self, state: dict[str, Any], identity: LoginVerdict) -> dict[str, Any]:
        product = registry.get_product(state, identity.product or "")
        device = registry.get_device(state, identity.product or "", identity.device or "")
        if not _is_aliyun(product) or not product.get("gateway") or device is None:
            raise Refused(460, "not-a-gateway")
        return device

    def _sub_device(self, state: dict[str, Any], identity: LoginVerdict, entry: Any, seen: set[tuple[str, str]],
                    fields: tuple[str, ...]) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        """Checks common to both requests for one params entry; raises Refused with the entry's code."""
        if not isinstance(entry, dict) or not all(isinstance(entry.get(name), str) and entry[name]
                                                  for name in fields):
            raise Refused(460, "invalid-params-entry")
        product_key, device_name = entry["productKey"], entry["deviceName"]
        if (product_key, device_name) == (identity.product, identity.device):
            raise Refused(6402, "topo-self")
        if (product_key, device_name) in seen:
            raise Refused(460, "duplicate-sub-device")
        seen.add((product_key, device_name))
        product = registry.get_product(state, product_key)
        if not _is_aliyun(product):
            raise Refused(6250, "product-not-found")
        device = registry.get_device(state, product_key, device_name)
        if device is None:
            raise Refused(6100, "device-not-found")
        if not product.get("subdevice"):
            raise Refused(401, "not-a-sub-device-product")
        return product_key, device_name, product, device

    def _sub_register_locked(self, state: dict[str, Any], identity: LoginVerdict,
                             params: list[Any]) -> list[dict[str, str]]:
        self._gateway_check(state, identity)
        seen: set[tuple[str, str]] = set()
        checked = []
        for entry in params:  # all or nothing: the first failing entry decides the reply
            product_key, device_name, product, device = self._sub_device(
                state, identity, entry, seen, ("productKey", "deviceName"))
            if not product["dynreg"]:
                raise Refused(401, "dynreg-disabled")
            checked.append((product_key, device_name, device))
        data = []
        for product_key, device_name, device in checked:
            device_secret = _new_secret()  # every call issues a new secret; the old one stops working
            registry.record_issued_secret(device, {"device_secret": device_secret})
            iot_id = device.setdefault("iot_id", registry.random_alphanumeric(20) + "000100")
            data.append({"iotId": iot_id, "productKey": product_key, "deviceName": device_name,
                         "deviceSecret": device_secret})
        return data

    def _topo_add_locked(self, state: dict[str, Any], identity: LoginVerdict,
                         params: list[Any]) -> list[dict[str, str]]:
        gateway = self._gateway_check(state, identity)
        seen: set[tuple[str, str]] = set()
        checked = []
        for entry in params:
            product_key, device_name, _, device = self._sub_device(
                state, identity, entry, seen, ("productKey", "deviceName", "sign", "signmethod", "timestamp"))
            method = entry["signmethod"].lower()
            client_id = entry.get("clientId")
            if method not in SIGN_METHODS or (client_id is not None and not isinstance(client_id, str)):
                raise Refused(460, "invalid-params-entry")
            if "device_secret" not in device:
                raise Refused(401, "not-registered")
            expected = topo_sign(device["device_secret"], product_key, device_name, entry["timestamp"],
                                 client_id, method)
            if not hex_matches(expected, entry["sign"]):
                raise Refused(401, "bad-signature")
            checked.append((product_key, device_name, device))
        gateway_key = f"{identity.product}/{identity.device}"
        for product_key, device_name, device in checked:
            previous = device.get("gateway")
            if previous and previous != gateway_key:  # a sub-device has one gateway: move it
                old_product, _, old_name = previous.partition("/")
                old_gateway = registry.get_device(state, old_product, old_name)
                if old_gateway is not None and "sub_devices" in old_gateway:
                    old_gateway["sub_devices"] = [key for key in old_gateway["sub_devices"]
                                                  if key != f"{product_key}/{device_name}"]
            device["gateway"] = gateway_key
            gateway["sub_devices"] = sorted(set(gateway.get("sub_devices", [])) | {f"{product_key}/{device_name}"})
        return [{"productKey": product_key, "deviceName": device_name} for product_key, device_name, _ in checked]


def _parse_alink_request(payload: bytes, method: str) -> tuple[Any, bool, list[Any] | AliyunError]:
    """(id, whether a reply is wanted, params or the 460 error) of an Alink request.

    The reply echoes the request's id; it is null when the payload has no usable id.
    """
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = None
    if not isinstance(body, dict):
        return None, True, AliyunError(460, "invalid-json")
    message_id = body.get("id")
    system = body.get("sys")
    wants_reply = not (isinstance(system, dict) and system.get("ack") == 0)
    if not (isinstance(message_id, str) and message_id.isascii() and message_id.isdigit()
            and len(message_id) <= 10 and int(message_id) <= _MAX_MESSAGE_ID):
        return message_id if isinstance(message_id, (str, int)) else None, wants_reply, AliyunError(460, "invalid-id")
    if "version" in body and body["version"] != ALINK_VERSION:
        return message_id, wants_reply, AliyunError(460, "invalid-version")
    if "method" in body and body["method"] != method:
        return message_id, wants_reply, AliyunError(460, "invalid-method")
    params = body.get("params")
    if not isinstance(params, list) or not params or len(params) > MAX_BATCH:
        return message_id, wants_reply, AliyunError(460, "invalid-params")
    return message_id, wants_reply, params

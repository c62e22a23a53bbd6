"""AWS IoT Core fleet provisioning by claim, as a device meets it over MQTT 3.1.1 with mutual TLS
on the emulator's AWS listener (a client certificate is required there). PROTOCOLS.md section 6
has the wire facts; README "AWS IoT Core" gives each rule its source or marks it our choice.

* Identity is the client certificate: its certificateId is the SHA-256 of its DER. The CONNECT's
  username and password are not looked at.
* A claim certificate (the batch's shared one, minted by the operator for a template) may publish
  CreateKeysAndCertificate and its template's RegisterThing, and subscribe to their answers.
* CreateKeysAndCertificate mints an RSA-2048 key and a certificate signed by the emulator's CA,
  PENDING_ACTIVATION, with an ownership token bound to it and to the claim that asked.
* RegisterThing checks the token, the template's parameters and its allow-list (the stand-in for
  a pre-provisioning hook), creates the thing and activates the certificate.
* A request is JSON or CBOR as its topic says (`.../json`, `.../cbor`; cbor.py decodes the part of
  CBOR requests hold), checked alike, and answered in the same format.
* Answers reach only the connection that asked, and only on a topic it subscribed to
  (`Delivery.to_sender`). A device certificate logs in only when ACTIVE and with its thing's name
  as client id; every refused login is closed without a CONNACK, and a topic outside a
  connection's rights closes it (`disconnect_on_denial`).

State, under state["aws"]: templates, claims and certificates (by certificateId), things, and the
ownership tokens by their SHA-256 (the token itself and the private keys are never stored).
"""

import base64
import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from . import cbor
from .cloud import (
    ACTION_PUBLISH,
    CONNACK_ACCEPTED,
    CONNACK_NONE,
    LISTENER_AWS_MQTTS,
    Delivery,
    LoginVerdict,
    MqttLogin,
    Route,
)
from .crypto import CertificateAuthority
from .faults import TARGET_AWS, take_fault
from .registry import RegistryError
from .state import StateStore

CLOUD_AWS = "aws"
API_CREATE_KEYS = "aws-create-keys"
API_REGISTER_THING = "aws-register-thing"
API_LOGIN = "aws-login"
KIND_CLAIM = "claim"
KIND_THING = "thing"

ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"
PENDING_ACTIVATION = "PENDING_ACTIVATION"

TEMPLATE_NAME_RULE = re.compile(r"[0-9A-Za-z_-]{1,36}\Z")
THING_NAME_RULE = re.compile(r"[a-zA-Z0-9:_-]{1,128}\Z")
PARAMETER_NAME_RULE = re.compile(r"[A-Za-z0-9:_.-]{1,64}\Z")  # our choice
CERTIFICATE_ID_RULE = re.compile(r"[0-9a-f]{64}\Z")

CREATE_PREFIX = "$aws/certificates/create/"
TEMPLATES_PREFIX = "$aws/provisioning-templates/"
FORMATS = ("json", "cbor")
RSA_BITS = 2048
CERTIFICATE_DAYS = 9000  # AWS-issued device certificates run to 2049
TOKEN_BYTES = 600  # opaque; 800 base64 characters bring the accepted answer near AWS's ~4 KB
MAX_REQUEST_BYTES = 8192  # our choice

# (statusCode, errorCode): the statuses are those AWS's SDKs list for these APIs (400, 403, 404,
# 429, 500); InvalidCertificateOwnershipToken and its "cannot be empty" message are AWS's own;
# the other codes and messages are our choice (README "AWS IoT Core").
INVALID_TOKEN = (400, "InvalidCertificateOwnershipToken")
INVALID_PAYLOAD = (400, "InvalidPayload")
INVALID_PARAMETERS = (400, "InvalidParameters")
ACCESS_DENIED = (403, "AccessDenied")
NOT_FOUND = (404, "ResourceNotFound")
INJECTED_CODES = {429: "ThrottlingException", 503: "ServiceUnavailable"}
INJECTED_DEFAULT_CODE = "InternalFailure"


class Rejected(Exception):
    def __init__(self, error: tuple[int, str], message: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.code = error
        self.message = message
        self.reason = reason  # the request log's short reason


def certificate_id(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def aws_state(state: dict[str, Any]) -> dict[str, Any]:
    aws = state.setdefault("aws", {})
    for part in ("templates", "claims", "certificates", "things", "tokens"):
        aws.setdefault(part, {})
    return aws


def request_topic(topic: str) -> tuple[str, str | None, str] | None:
    """(API, template name or None, payload format) of a provisioning request topic, else None."""
    if topic.startswith(CREATE_PREFIX) and topic[len(CREATE_PREFIX):] in FORMATS:
        return API_CREATE_KEYS, None, topic[len(CREATE_PREFIX):]
    if topic.startswith(TEMPLATES_PREFIX):
        parts = topic[len(TEMPLATES_PREFIX):].split("/")
        if len(parts) == 3 and parts[1] == "provision" and parts[2] in FORMATS:
            return API_REGISTER_THING, parts[0], parts[2]
    return None


class AwsCloud:
    name = CLOUD_AWS
    disconnect_on_denial = True  # AWS closes a connection its policy refuses (README)

    def __init__(self, store: StateStore, ca: CertificateAuthority) -> None:
        self.store = store
        self.ca = ca  # the root devices trust: it issues the claim and device certificates

    def http_routes(self) -> list[Route]:
        return []

    # -- logins ------------------------------------------------------------------------------

    def mqtt_login(self, login: MqttLogin) -> LoginVerdict | None:
        if login.listener != LISTENER_AWS_MQTTS:
            return None
        der = login.peer_certificate_der
        presented = certificate_id(der) if der else None
        kind, template, device, context = KIND_THING, None, login.client_id, None
        with self.store.transaction() as state:
            aws = aws_state(state)
            claim = aws["claims"].get(presented or "")
            certificate = aws["certificates"].get(presented or "")
            if claim is not None:
                kind, template = KIND_CLAIM, claim["template"]
                reason = "ok" if claim["status"] == ACTIVE else "claim-disabled"
                context = {"claim": presented, "template": template}
            elif certificate is not None:
                template, thing = certificate.get("template"), certificate.get("thing")
                if certificate["status"] != ACTIVE:
                    reason = "certificate-" + certificate["status"].lower().replace("_", "-")
                elif login.client_id != thing:
                    reason = "client-id-not-thing-name"  # our choice: the policies AWS's docs show
                else:
                    reason, device, context = "ok", thing, {"thing": thing}
                    certificate["logins"] = certificate.get("logins", 0) + 1
                    certificate["last_login_at"] = int(time.time())
            else:
                reason = "unknown-certificate"
        code = CONNACK_ACCEPTED if reason == "ok" else CONNACK_NONE
        self.store.append_log(API_LOGIN, cloud=self.name, transport=login.listener, kind=kind, product=template,
                              device=device, client_id=login.client_id, certificate=presented, result=reason,
                              connack=code if code == CONNACK_ACCEPTED else None)
        return LoginVerdict(code, reason, template, device, cloud=self, kind=kind, context=context)

    # -- topics ------------------------------------------------------------------------------

    def topic_allowed(self, identity: LoginVerdict, topic: str, action: str) -> bool:
        context = identity.context or {}
        if identity.kind == KIND_CLAIM:
            own = (CREATE_PREFIX, f"{TEMPLATES_PREFIX}{context.get('template')}/provision/")
            if action == ACTION_PUBLISH:  # the requests only: a claim cannot forge an answer
                return request_topic(topic) is not None and topic.startswith(own)
            # The answer topics, "+" allowed; no filter that also matches a request (".../json/#"
            # does), as the broker would hand it other devices' requests, tokens included.
            prefix = next((p for p in own if topic.startswith(p)), None)
            levels = topic[len(prefix):].split("/") if prefix else []
            return (len(levels) == 2 and levels[0] in (*FORMATS, "+")
                    and levels[1] in ("accepted", "rejected", "+"))
        thing = context.get("thing", "")
        return not topic.startswith("$") or topic.startswith(f"$aws/things/{thing}/")

    # -- provisioning requests -------------------------------------------------------------------

    def handle_publish(self, identity: LoginVerdict, topic: str, payload: bytes) -> list[Delivery]:
        request = request_topic(topic)
        if identity.cloud is not self or identity.kind != KIND_CLAIM or not identity.accepted or request is None:
            return []
        api, template, fmt = request
        context = identity.context or {}
        logged: dict[str, Any] = {}
        try:
            fault = take_fault(self.store, TARGET_AWS)
            if fault is not None:
                status = int(fault["status"])
                logged["fault"] = fault["kind"]
                raise Rejected((status, INJECTED_CODES.get(status, INJECTED_DEFAULT_CODE)),
                               "Injected failure", "injected")
            doc = _request_document(payload, fmt)
            if api == API_CREATE_KEYS:
                body = self._create_keys(context["claim"], context["template"], logged)
            else:
                body = self._register_thing(context["claim"], template or "", doc, logged)
            answer, result, status = _encode_answer(body, fmt), "ok", None
            suffix = "accepted"
        except Rejected as rejected:
            error = {"statusCode": rejected.status, "errorCode": rejected.code, "errorMessage": rejected.message}
            answer = _encode_answer(error, fmt)
            result, status, suffix = rejected.code, rejected.status, "rejected"
            logged["reason"] = rejected.reason
        self.store.append_log(api, cloud=self.name, product=context.get("template"), device=identity.device,
                              result=result, status=status, answer_bytes=len(answer), **logged)
        return [Delivery(f"{topic}/{suffix}", answer, to_sender=True)]

    def _create_keys(self, claim: str, template: str, logged: dict[str, Any]) -> dict[str, str]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)  # outside the state lock
        certificate = self.ca.issue("AWS IoT Certificate", key.public_key(), usage=ExtendedKeyUsageOID.CLIENT_AUTH,
                                    days=CERTIFICATE_DAYS)
        new_id = certificate_id(certificate.public_bytes(serialization.Encoding.DER))
        token = base64.b64encode(secrets.token_bytes(TOKEN_BYTES)).decode()
        with self.store.transaction() as state:
            aws = aws_state(state)
            aws["certificates"][new_id] = {"status": PENDING_ACTIVATION, "claim": claim, "template": template,
                                           "created_at": int(time.time())}
            aws["tokens"][_token_key(token)] = {"certificate": new_id, "claim": claim}
        logged["certificate"] = new_id
        return {
            "certificateId": new_id,
            "certificatePem": certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "privateKey": _pkcs1(key, serialization.Encoding.PEM).decode(),
            "certificateOwnershipToken": token,
        }

    def _register_thing(self, claim: str, name: str, doc: dict[str, Any], logged: dict[str, Any]) -> dict[str, Any]:
        token = doc.get("certificateOwnershipToken")
        parameters = doc.get("parameters", {})
        with self.store.transaction() as state:
            aws = aws_state(state)
            template = aws["templates"].get(name)
            if template is None:
                raise Rejected(NOT_FOUND, f"Template {name} not found", "unknown-template")
            if not isinstance(token, str) or not token:
                raise Rejected(INVALID_TOKEN, "Certificate ownership token cannot be empty.", "empty-token")
            issued = aws["tokens"].get(_token_key(token))
            if issued is None or issued["claim"] != claim or issued.get("used"):
                raise Rejected(INVALID_TOKEN, "Certificate ownership token is not valid.",
                               "used-token" if issued is not None and issued.get("used") else "unknown-token")
            logged["certificate"] = issued["certificate"]
            thing = _thing_name(template, parameters)
            logged["thing"] = thing
            serial = parameters[template["parameters"][0]]
            if not re.fullmatch(template["allow"], serial):
                raise Rejected(ACCESS_DENIED, "Provisioning denied by the pre-provisioning hook", "hook-denied")
            certificate = aws["certificates"][issued["certificate"]]
            certificate.update({"status": ACTIVE, "thing": thing, "activated_at": int(time.time())})
            issued["used"] = True
            record = aws["things"].setdefault(thing, {"template": name, "created_at": int(time.time()),
                                                      "certificates": []})
            record["certificates"].append(issued["certificate"])
            record["parameters"] = dict(parameters)
            return {"deviceConfiguration": dict(template["device_configuration"]), "thingName": thing}


def _request_document(payload: bytes, fmt: str) -> dict[str, Any]:
    """A request's map, from JSON or CBOR as its topic says; the same limits for both."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise Rejected(INVALID_PAYLOAD, "Payload too large", "payload-too-large")
    if not payload:
        return {}
    try:
        doc = cbor.decode(payload) if fmt == "cbor" else json.loads(payload.decode("utf-8"))
    except ValueError as error:  # cbor.CborError, json's, UTF-8's: the message, never the payload
        detail = error.reason if isinstance(error, UnicodeDecodeError) else error  # (its str quotes a byte)
        raise Rejected(INVALID_PAYLOAD, f"Payload is not valid {fmt.upper()}: {detail}", f"bad-{fmt}") from None
    if not isinstance(doc, dict):
        kind = "a CBOR map" if fmt == "cbor" else "a JSON object"
        raise Rejected(INVALID_PAYLOAD, f"Payload is not {kind}", f"bad-{fmt}")
    return doc


def _encode_answer(body: dict[str, Any], fmt: str) -> bytes:
    """An answer (accepted or rejected) in the format of the request's topic."""
    return cbor.encode(body) if fmt == "cbor" else json.dumps(body, separators=(",", ":")).encode()


def _thing_name(template: dict[str, Any], parameters: Any) -> str:
    if not isinstance(parameters, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in parameters.items()):
        raise Rejected(INVALID_PARAMETERS, "Parameters must map strings to strings", "bad-parameters")
    for wanted in template["parameters"]:
        if wanted not in parameters:
            raise Rejected(INVALID_PARAMETERS, f"Missing parameter: {wanted}", "missing-parameter")
    for given in sorted(parameters):
        if given not in template["parameters"]:
            raise Rejected(INVALID_PARAMETERS, f"Parameter not in the template: {given}", "extra-parameter")
    thing = template["thing_name_prefix"] + parameters[template["parameters"][0]]
    if not THING_NAME_RULE.match(thing):
        raise Rejected(INVALID_PARAMETERS, "Thing name must be 1 to 128 of a-z A-Z 0-9 : _ -", "bad-thing-name")
    return thing


def _pkcs1(key: rsa.RSAPrivateKey, encoding: serialization.Encoding) -> bytes:
    # PKCS#1 ("BEGIN RSA PRIVATE KEY"), the form of AWS's answers; mbedTLS parses its DER too.
    return key.private_bytes(encoding, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())


# -- the operator's console (CLI and harness) ---------------------------------------------------


def add_template(store: StateStore, name: str, parameters: list[str], *, thing_name_prefix: str = "",
                 allow: str = ".*", device_configuration: dict[str, str] | None = None,
                 update: bool = False) -> dict[str, Any]:
    """A provisioning template: the parameters RegisterThing requires (the first names the thing:
    <prefix><its value>), the allow-list standing in for a pre-provisioning hook (a regular
    expression the first parameter's value must match in full), the deviceConfiguration answered."""
    if not TEMPLATE_NAME_RULE.match(name):
        raise RegistryError(f"template name {name!r} must be 1 to 36 of 0-9 A-Z a-z _ -")
    if not parameters or len(set(parameters)) != len(parameters) or not all(
            PARAMETER_NAME_RULE.match(p) for p in parameters):
        raise RegistryError("a template needs one or more distinct parameters of A-Z a-z 0-9 : _ . -")
    if thing_name_prefix and not THING_NAME_RULE.match(thing_name_prefix):
        raise RegistryError("the thing name prefix must be of a-z A-Z 0-9 : _ -")
    try:
        re.compile(allow)
    except re.error as error:
        raise RegistryError(f"--allow is not a regular expression: {error}") from None
    configuration = device_configuration or {}
    if not isinstance(configuration, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in configuration.items()):
        raise RegistryError("the device configuration must be a JSON object of strings to strings")
    template = {"parameters": list(parameters), "thing_name_prefix": thing_name_prefix, "allow": allow,
                "device_configuration": dict(configuration)}
    with store.transaction() as state:
        templates = aws_state(state)["templates"]
        if name in templates and not update:
            raise RegistryError(f"template {name} already exists: pass --update to replace it")
        templates[name] = template
    return template


@dataclass(frozen=True)
class ClaimFiles:
    certificate_id: str
    cert_pem: Path
    cert_der: Path
    key_pem: Path  # PKCS#1, mode 0600
    key_der: Path


def der_path(pem_path: str | os.PathLike[str]) -> Path:
    """Where the DER twin of a PEM file goes: the same name with the suffix .der."""
    path = Path(pem_path)
    if path.suffix == ".der":
        raise RegistryError(f"{path}: give the PEM file's name; the DER file is written beside it as .der")
    return path.with_suffix(".der")


def add_claim(store: StateStore, ca: CertificateAuthority, template: str, cert_out: str | os.PathLike[str],
              key_out: str | os.PathLike[str]) -> ClaimFiles:
    """Mint a claim certificate and RSA-2048 key (issued by the emulator's CA, so the AWS listener
    accepts it), register it ACTIVE with `template` (which may be defined later: a claim's policy
    only names it), and write both as PEM at the paths given and as DER beside them (.der), the
    key files with mode 0600. Existing files are never overwritten; the key is not kept."""
    if not TEMPLATE_NAME_RULE.match(template):
        raise RegistryError(f"template name {template!r} must be 1 to 36 of 0-9 A-Z a-z _ -")
    paths = [Path(cert_out), der_path(cert_out), Path(key_out), der_path(key_out)]
    if len({path.resolve() for path in paths}) != len(paths):
        raise RegistryError("the certificate and the key need different file names")
    for path in paths:
        if path.exists():
            raise RegistryError(f"{path} exists: not overwritten")
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    certificate = ca.issue(f"claim {template}", key.public_key(), usage=ExtendedKeyUsageOID.CLIENT_AUTH,
                           days=CERTIFICATE_DAYS)
    der = certificate.public_bytes(serialization.Encoding.DER)
    contents = [(certificate.public_bytes(serialization.Encoding.PEM), 0o644), (der, 0o644),
                (_pkcs1(key, serialization.Encoding.PEM), 0o600), (_pkcs1(key, serialization.Encoding.DER), 0o600)]
    for path, (data, mode) in zip(paths, contents):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # O_CREAT honours the umask
            handle.write(data)
    claim_id = certificate_id(der)
    with store.transaction() as state:
        aws_state(state)["claims"][claim_id] = {"template": template, "status": ACTIVE, "created_at": int(time.time())}
    return ClaimFiles(claim_id, *paths)


def _find_claim(claims: dict[str, Any], wanted: str) -> str:
    """A claim by its certificateId or a unique prefix of it (8 characters or more)."""
    wanted = wanted.lower()
    matches = [claim_id for claim_id in claims
               if claim_id == wanted or (len(wanted) >= 8 and claim_id.startswith(wanted))]
    if len(matches) != 1:
        raise RegistryError(f"no claim certificate {wanted}" if not matches else f"{wanted} names several claims")
    return matches[0]


def set_claim_enabled(store: StateStore, claim: str, enabled: bool) -> str:
    """The console's "deactivate" / "activate" of a claim certificate; returns its certificateId."""
    with store.transaction() as state:
        claims = aws_state(state)["claims"]
        claim_id = _find_claim(claims, claim)
        claims[claim_id]["status"] = ACTIVE if enabled else INACTIVE
    return claim_id


def templates(store: StateStore) -> list[dict[str, Any]]:
    return [{"name": name, **template} for name, template in sorted(aws_state(store.snapshot())["templates"].items())]


def certificates(store: StateStore) -> list[dict[str, Any]]:
    """Claims (kind claim) and device certificates (kind device), by certificateId."""
    aws = aws_state(store.snapshot())
    rows = [{"certificate_id": cid, "kind": "claim", **claim} for cid, claim in sorted(aws["claims"].items())]
    rows += [{"certificate_id": cid, "kind": "device", **certificate}
             for cid, certificate in sorted(aws["certificates"].items(), key=lambda item: item[1]["created_at"])]
    return rows


def things(store: StateStore) -> list[dict[str, Any]]:
    return [{"thing_name": name, **thing} for name, thing in sorted(aws_state(store.snapshot())["things"].items())]

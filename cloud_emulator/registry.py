"""Products and devices as an operator sees them: the console side of the emulated cloud.

These functions work on the dict yielded by `StateStore.transaction()`; the CLI, the test
harness and the cloud protocol modules all go through them so the rules live in one place.

Device status:
    created     exists (added by an operator), no secret issued yet
    registered  a secret was issued by dynamic registration; the device never logged in
    activated   the device logged in over MQTT; registration is refused from now on

Products belong to one cloud ("tencent", the default for products stored without the
field, "aliyun" or "azure"); their id formats differ, so all live in one table. An Azure
"product" is a DPS enrollment group (symmetric key): its id is the group's name, its secret the
group's primary key (base64), and it names the ID scope it belongs to and the IoT hub it
assigns devices to. Its devices are keyed by registration id; each holds, once assigned, its
device id, its hub and its derived key (`device_key`), and `in_hub` (false once an operator
deleted it from the hub; a new provisioning creates it there again) and `hub_enabled`.
"""

import base64
import binascii
import re
import secrets
import string
import time
from typing import Any

CLOUD_TENCENT = "tencent"
CLOUD_ALIYUN = "aliyun"
CLOUD_AZURE = "azure"
CLOUDS = (CLOUD_TENCENT, CLOUD_ALIYUN, CLOUD_AZURE)

PRODUCT_ID_RULE = re.compile(r"[A-Z0-9]{10}\Z")  # Tencent ProductIds: 10 upper-case alphanumerics
DEVICE_NAME_RULE = re.compile(r"[A-Za-z0-9:_-]{1,48}\Z")
# Alibaba: ProductKeys are 11 alphanumerics (e.g. a1IoK3f7xyz); DeviceNames 4-32 characters of
# letters, digits and - _ @ . : (the console rule, error 6280 "devicename not meet specs").
ALIYUN_PRODUCT_KEY_RULE = re.compile(r"[A-Za-z0-9]{11}\Z")
ALIYUN_DEVICE_NAME_RULE = re.compile(r"[A-Za-z0-9_.@:-]{4,32}\Z")
MIN_PRODUCT_SECRET_LENGTH = 16  # the payload key is the first 16 bytes of the ProductSecret
# Azure DPS: registration ids (and enrollment group names) of up to 128 letters, digits and
# - . _ :, ending in a letter, digit or - (the DPS docs' rule); ID scopes such as 0ne00000A0A;
# group keys of 16 to 64 bytes, base64 (the portal makes 64).
AZURE_ID_RULE = re.compile(r"[A-Za-z0-9._:-]{0,127}[A-Za-z0-9-]\Z")
AZURE_ID_SCOPE_RULE = re.compile(r"[A-Za-z0-9]{4,32}\Z")
HUB_RULE = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\Z")
AZURE_KEY_BYTES = 64
DEFAULT_ASSIGN_SECONDS = 1  # retry-after of the first answer; real DPS was seen to send 3
AZURE_SETTINGS = ("id_scope", "hub", "assign_seconds")

AUTH_MODES = ("key", "cert")
REGISTRATION_MODES = ("precreate", "autocreate")
DEFAULT_DEVICE_LIMIT = 1000

STATUS_CREATED = "created"
STATUS_REGISTERED = "registered"
STATUS_ACTIVATED = "activated"

# Everything one registration issues; a newer registration (or a reset) replaces all of it.
_ISSUED_SECRET_FIELDS = ("psk", "cert_pem", "key_pem", "cert_sha256", "device_secret", "device_token", "client_id",
                         "device_key")
_SHOWN_SECRET_FIELDS = ("psk", "cert_pem", "key_pem", "device_secret", "device_token", "device_key")
ALIYUN_FLAGS = ("regnwl", "gateway", "subdevice", "securemode3")


class RegistryError(ValueError):
    """An operator request that the console would refuse (bad id, unknown product, ...)."""


def product_cloud(product: dict[str, Any]) -> str:
    return product.get("cloud", CLOUD_TENCENT)


def put_product(
    state: dict[str, Any],
    product_id: str,
    secret: str,
    *,
    cloud: str = CLOUD_TENCENT,
    auth: str = "key",
    dynreg: bool = True,
    mode: str | None = None,
    limit: int = DEFAULT_DEVICE_LIMIT,
    regnwl: bool = False,
    gateway: bool = False,
    subdevice: bool = False,
    securemode3: bool = False,
    id_scope: str | None = None,
    hub: str | None = None,
    assign_seconds: int | None = None,
) -> bool:
    """Create or update a product; returns True when it was created.

    Tencent: `mode` precreate|autocreate (default autocreate). Alibaba: devices must be
    pre-registered (mode is always precreate) except through pre-registration-free MQTT
    registration (`regnwl`), which creates devices up to `limit`; `gateway` and `subdevice`
    mark the node type; `securemode3` allows DeviceSecret logins over plain TCP.
    """
    if cloud not in CLOUDS:
        raise RegistryError(f"cloud must be one of {CLOUDS}")
    if cloud != CLOUD_AZURE and (id_scope or hub or assign_seconds is not None):
        raise RegistryError("id_scope, hub and assign_seconds are Azure enrollment group settings")
    if cloud == CLOUD_AZURE:
        _check_enrollment_group(product_id, secret, auth, mode, id_scope, hub, assign_seconds,
                                regnwl or gateway or subdevice or securemode3)
        mode = "autocreate"
    elif cloud == CLOUD_TENCENT:
        if not PRODUCT_ID_RULE.match(product_id):
            raise RegistryError(f"product id {product_id!r} must be 10 characters A-Z 0-9")
        if regnwl or gateway or subdevice or securemode3:
            raise RegistryError("regnwl, gateway, subdevice and securemode3 are Alibaba product settings")
        mode = "autocreate" if mode is None else mode
    else:
        if not ALIYUN_PRODUCT_KEY_RULE.match(product_id):
            raise RegistryError(f"product key {product_id!r} must be 11 characters A-Z a-z 0-9")
        if auth != "key":
            raise RegistryError("Alibaba products use key authentication (auth key)")
        if mode not in (None, "precreate"):
            raise RegistryError("Alibaba devices are pre-registered (use --regnwl on for registration-free)")
        if gateway and subdevice:
            raise RegistryError("a product is either a gateway or a sub-device product")
        mode = "precreate"
    if cloud != CLOUD_AZURE and (len(secret) < MIN_PRODUCT_SECRET_LENGTH or not secret.isascii()):
        raise RegistryError(f"product secret must be at least {MIN_PRODUCT_SECRET_LENGTH} ASCII characters")
    if auth not in AUTH_MODES:
        raise RegistryError(f"auth must be one of {AUTH_MODES}")
    if mode not in REGISTRATION_MODES:
        raise RegistryError(f"mode must be one of {REGISTRATION_MODES}")
    if limit < 0:
        raise RegistryError("limit must not be negative")
    products = state["products"]
    existing = products.get(product_id)
    if existing is not None and product_cloud(existing) != cloud:
        raise RegistryError(f"product {product_id} belongs to {product_cloud(existing)}")
    created = existing is None
    product = products.setdefault(product_id, {"devices": {}})
    product.update({"cloud": cloud, "secret": secret, "auth": auth, "dynreg": bool(dynreg), "mode": mode,
                    "limit": int(limit)})
    if cloud == CLOUD_ALIYUN:
        product.update({"regnwl": bool(regnwl), "gateway": bool(gateway), "subdevice": bool(subdevice),
                        "securemode3": bool(securemode3)})
    if cloud == CLOUD_AZURE:
        product.update({"id_scope": id_scope, "hub": hub,
                        "assign_seconds": DEFAULT_ASSIGN_SECONDS if assign_seconds is None else int(assign_seconds)})
    return created


def _check_enrollment_group(group: str, key: str, auth: str, mode: str | None, id_scope: str | None,
                            hub: str | None, assign_seconds: int | None, other_flags: bool) -> None:
    if not AZURE_ID_RULE.match(group):
        raise RegistryError(f"enrollment group {group!r} must be 1 to 128 of A-Z a-z 0-9 - . _ :")
    if group_key_bytes(key) is None:
        raise RegistryError("group key must be the base64 of 16 to 64 bytes")
    if auth != "key" or mode not in (None, "autocreate") or other_flags:
        raise RegistryError("an Azure enrollment group takes id_scope, hub, assign_seconds and dynreg (enabled)")
    if not id_scope or not AZURE_ID_SCOPE_RULE.match(id_scope):
        raise RegistryError("an enrollment group needs an ID scope of 4 to 32 letters and digits (0ne...)")
    if not hub or not HUB_RULE.match(hub) or len(hub) > 253:
        raise RegistryError("an enrollment group needs the host name of its IoT hub (name.azure-devices.net)")
    if assign_seconds is not None and not 0 <= int(assign_seconds) <= 60:
        raise RegistryError("assign_seconds must be 0 to 60")


def group_key_bytes(key: str) -> bytes | None:
    try:
        raw = base64.b64decode(key, validate=True)
    except (ValueError, binascii.Error):
        return None
    return raw if 16 <= len(raw) <= AZURE_KEY_BYTES else None


def new_group_key() -> str:
    return base64.b64encode(secrets.token_bytes(AZURE_KEY_BYTES)).decode()


def get_product(state: dict[str, Any], product_id: str) -> dict[str, Any] | None:
    return state["products"].get(product_id)


def get_device(state: dict[str, Any], product_id: str, device_name: str) -> dict[str, Any] | None:
    product = get_product(state, product_id)
    return None if product is None else product["devices"].get(device_name)


def _require_product(state: dict[str, Any], product_id: str) -> dict[str, Any]:
    product = get_product(state, product_id)
    if product is None:
        raise RegistryError(f"unknown product {product_id}")
    return product


def random_alphanumeric(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_device(product: dict[str, Any], device_name: str, origin: str) -> dict[str, Any]:
    device = {"status": STATUS_CREATED, "origin": origin, "created_at": int(time.time()), "registrations": 0}
    if product_cloud(product) == CLOUD_ALIYUN:
        device["iot_id"] = random_alphanumeric(20) + "000100"  # the shape of Alibaba iotIds
    product["devices"][device_name] = device
    return device


def add_device(state: dict[str, Any], product_id: str, device_name: str) -> dict[str, Any]:
    """Operator pre-creates a device (needed for products in pre-create mode)."""
    product = _require_product(state, product_id)
    if product_cloud(product) == CLOUD_ALIYUN:
        if not ALIYUN_DEVICE_NAME_RULE.match(device_name):
            raise RegistryError(f"device name {device_name!r} must match [A-Za-z0-9_.@:-]{{4,32}}")
    elif not DEVICE_NAME_RULE.match(device_name):
        raise RegistryError(f"device name {device_name!r} must match [A-Za-z0-9:_-]{{1,48}}")
    if device_name in product["devices"]:
        raise RegistryError(f"device {product_id}/{device_name} already exists")
    return new_device(product, device_name, origin="operator")


def record_issued_secret(device: dict[str, Any], secrets: dict[str, str]) -> None:
    """Replace whatever was issued before: the old secret stops working at once."""
    for field in _ISSUED_SECRET_FIELDS:
        device.pop(field, None)
    device.update(secrets)
    device["status"] = STATUS_REGISTERED
    device["registered_at"] = int(time.time())
    device["registrations"] = device.get("registrations", 0) + 1


def mark_activated(device: dict[str, Any]) -> None:
    if device["status"] != STATUS_ACTIVATED:
        device["status"] = STATUS_ACTIVATED
        device["activated_at"] = int(time.time())


def reset_device(state: dict[str, Any], product_id: str, device_name: str) -> None:
    """Console "reset": forget the issued secret and the activation, keep the device."""
    device = get_device(state, product_id, device_name)
    if device is None:
        raise RegistryError(f"unknown device {product_id}/{device_name}")
    for field in (*_ISSUED_SECRET_FIELDS, "registered_at", "activated_at"):
        device.pop(field, None)
    device["status"] = STATUS_CREATED


HUB_ACTIONS = ("delete", "disable", "enable")


def set_hub_device(state: dict[str, Any], group: str, registration_id: str, action: str) -> None:
    """The IoT hub console: delete an assigned device from its hub (DPS keeps its registration;
    its next provisioning creates it there again), or disable or enable it there."""
    device = get_device(state, group, registration_id)
    product = get_product(state, group)
    if product is None or product_cloud(product) != CLOUD_AZURE or device is None or "device_id" not in device:
        raise RegistryError(f"no device assigned to a hub as {group}/{registration_id}")
    if action not in HUB_ACTIONS:
        raise RegistryError(f"action must be one of {HUB_ACTIONS}")
    if action == "delete":
        device["in_hub"] = False
    else:
        device["hub_enabled"] = action == "enable"


def describe_device(
    product_id: str, device_name: str, product: dict[str, Any], device: dict[str, Any], *, with_secrets: bool
) -> dict[str, Any]:
    view = {
        "product_id": product_id,
        "device_name": device_name,
        "cloud": product_cloud(product),
        "auth": product["auth"],
        "status": device["status"],
        "origin": device.get("origin"),
        "registrations": device.get("registrations", 0),
        "registered_at": device.get("registered_at"),
        "activated_at": device.get("activated_at"),
        "has_secret": any(field in device for field in _ISSUED_SECRET_FIELDS),
    }
    if "cert_sha256" in device:
        view["cert_sha256"] = device["cert_sha256"]  # a fingerprint, not a secret
    for field in ("iot_id", "client_id", "gateway", "device_id", "hub", "in_hub", "hub_enabled"):
        # identifiers, topology and hub state, not secrets
        if field in device:
            view[field] = device[field]
    if "sub_devices" in device:
        view["sub_devices"] = list(device["sub_devices"])
    if with_secrets:
        for field in _SHOWN_SECRET_FIELDS:
            if field in device:
                view[field] = device[field]
    return view


def list_devices(state: dict[str, Any], *, with_secrets: bool = False) -> list[dict[str, Any]]:
    return [
        describe_device(product_id, device_name, product, device, with_secrets=with_secrets)
        for product_id, product in sorted(state["products"].items())
        for device_name, device in sorted(product["devices"].items())
    ]

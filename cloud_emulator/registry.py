"""Products and devices as an operator sees them: the console side of the emulated cloud.

These functions work on the dict yielded by `StateStore.transaction()`; the CLI, the test
harness and the cloud protocol modules all go through them so the rules live in one place.

Device status:
    created     exists (added by an operator), no secret issued yet
    registered  a secret was issued by dynamic registration; the device never logged in
    activated   the device logged in over MQTT; registration is refused from now on
"""

import re
import time
from typing import Any

PRODUCT_ID_RULE = re.compile(r"[A-Z0-9]{10}\Z")  # Tencent ProductIds: 10 upper-case alphanumerics
DEVICE_NAME_RULE = re.compile(r"[A-Za-z0-9:_-]{1,48}\Z")
MIN_PRODUCT_SECRET_LENGTH = 16  # the payload key is the first 16 bytes of the ProductSecret

AUTH_MODES = ("key", "cert")
REGISTRATION_MODES = ("precreate", "autocreate")
DEFAULT_DEVICE_LIMIT = 1000

STATUS_CREATED = "created"
STATUS_REGISTERED = "registered"
STATUS_ACTIVATED = "activated"

_ISSUED_SECRET_FIELDS = ("psk", "cert_pem", "key_pem", "cert_sha256")


class RegistryError(ValueError):
    """An operator request that the console would refuse (bad id, unknown product, ...)."""


def put_product(
    state: dict[str, Any],
    product_id: str,
    secret: str,
    *,
    auth: str = "key",
    dynreg: bool = True,
    mode: str = "autocreate",
    limit: int = DEFAULT_DEVICE_LIMIT,
) -> bool:
    """Create or update a product; returns True when it was created."""
    if not PRODUCT_ID_RULE.match(product_id):
        raise RegistryError(f"product id {product_id!r} must be 10 characters A-Z 0-9")
    if len(secret) < MIN_PRODUCT_SECRET_LENGTH or not secret.isascii():
        raise RegistryError(f"product secret must be at least {MIN_PRODUCT_SECRET_LENGTH} ASCII characters")
    if auth not in AUTH_MODES:
        raise RegistryError(f"auth must be one of {AUTH_MODES}")
    if mode not in REGISTRATION_MODES:
        raise RegistryError(f"mode must be one of {REGISTRATION_MODES}")
    if limit < 0:
        raise RegistryError("limit must not be negative")
    products = state["products"]
    created = product_id not in products
    product = products.setdefault(product_id, {"devices": {}})
    product.update({"secret": secret, "auth": auth, "dynreg": bool(dynreg), "mode": mode, "limit": int(limit)})
    return created


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


def new_device(product: dict[str, Any], device_name: str, origin: str) -> dict[str, Any]:
    device = {"status": STATUS_CREATED, "origin": origin, "created_at": int(time.time()), "registrations": 0}
    product["devices"][device_name] = device
    return device


def add_device(state: dict[str, Any], product_id: str, device_name: str) -> dict[str, Any]:
    """Operator pre-creates a device (needed for products in pre-create mode)."""
    product = _require_product(state, product_id)
    if not DEVICE_NAME_RULE.match(device_name):
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


def describe_device(
    product_id: str, device_name: str, product: dict[str, Any], device: dict[str, Any], *, with_secrets: bool
) -> dict[str, Any]:
    view = {
        "product_id": product_id,
        "device_name": device_name,
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
    if with_secrets:
        for field in ("psk", "cert_pem", "key_pem"):
            if field in device:
                view[field] = device[field]
    return view


def list_devices(state: dict[str, Any], *, with_secrets: bool = False) -> list[dict[str, Any]]:
    return [
        describe_device(product_id, device_name, product, device, with_secrets=with_secrets)
        for product_id, product in sorted(state["products"].items())
        for device_name, device in sorted(product["devices"].items())
    ]

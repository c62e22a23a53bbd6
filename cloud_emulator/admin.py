"""Operator actions on a state folder, shared by the CLI and the test harness.

They work whether or not a server is running: the server re-reads the state on every request.
"""

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import registry, throttle
from .crypto import CA_PEM_FILE
from .state import STATE_FILE, StateStore

# A folder holds emulator state once it has products (state.json) or `serve` made its CA.
STATE_MARKERS = (STATE_FILE, CA_PEM_FILE)
PRODUCT_SETTINGS = ("cloud", "auth", "dynreg", "mode", "limit", *registry.ALIYUN_FLAGS, *registry.AZURE_SETTINGS)


class NoStateError(registry.RegistryError):
    """A state folder that does not exist or holds no emulator state."""


class ProductExistsError(registry.RegistryError):
    """A product id that is taken, given to add-product without asking for an update."""


@dataclass(frozen=True)
class ProductChange:
    created: bool
    changed: tuple[str, ...]  # settings (and "secret") that differ from before; () when created
    settings: dict[str, Any]  # the product as stored now, without its secret


def has_state(folder: str | Path) -> bool:
    return any((Path(folder) / name).is_file() for name in STATE_MARKERS)


def open_state(folder: str | Path, *, create: bool = False) -> StateStore:
    """The store of `folder`; unless `create`, a folder without emulator state is refused and
    left as it is (a mistyped path must not quietly become a new, empty state)."""
    if not create and not has_state(folder):
        raise NoStateError(f"no emulator state at {folder}: `serve --state {folder}` creates one")
    return StateStore(folder)


def add_product(
    store: StateStore,
    product_id: str,
    secret: str,
    *,
    cloud: str = registry.CLOUD_TENCENT,
    auth: str = "key",
    dynreg: bool = True,
    mode: str | None = None,
    limit: int = registry.DEFAULT_DEVICE_LIMIT,
    regnwl: bool = False,
    gateway: bool = False,
    subdevice: bool = False,
    securemode3: bool = False,
    **azure: Any,
) -> bool:
    """`azure`: an enrollment group's id_scope, hub and assign_seconds (registry.put_product)."""
    with store.transaction() as state:
        return registry.put_product(
            state, product_id, secret, cloud=cloud, auth=auth, dynreg=dynreg, mode=mode, limit=limit,
            regnwl=regnwl, gateway=gateway, subdevice=subdevice, securemode3=securemode3, **azure,
        )


def define_product(
    store: StateStore, product_id: str, secret: str | None = None, *, update: bool = False, **given: Any
) -> ProductChange:
    """The console's add-product. A new product gets `given` over the defaults and needs a secret.
    An existing one is refused unless `update`: then only the settings in `given` (and the secret,
    when one is given) change, everything else is kept. Settings: PRODUCT_SETTINGS."""
    unknown = set(given) - set(PRODUCT_SETTINGS)
    if unknown:
        raise TypeError(f"unknown product settings {sorted(unknown)}")
    with store.transaction() as state:
        existing = registry.get_product(state, product_id)
        if existing is None:
            if secret is None:
                raise registry.RegistryError(
                    f"product {product_id} is new: it needs a secret (--secret-file or --generate-secret)")
            registry.put_product(state, product_id, secret, **given)
            return ProductChange(True, (), _product_settings(registry.get_product(state, product_id)))
        if not update:
            raise ProductExistsError(f"product {product_id} already exists: pass --update to change it")
        before, old_secret = _product_settings(existing), existing["secret"]
        registry.put_product(state, product_id, old_secret if secret is None else secret, **{**before, **given})
        after = _product_settings(existing)
        changed = [name for name in after if after[name] != before.get(name)]
        if existing["secret"] != old_secret:
            changed.append("secret")
        return ProductChange(False, tuple(changed), after)


def _product_settings(product: dict[str, Any]) -> dict[str, Any]:
    settings = {name: product[name] for name in PRODUCT_SETTINGS if name in product}
    settings["cloud"] = registry.product_cloud(product)
    return settings


def add_device(store: StateStore, product_id: str, device_name: str) -> None:
    with store.transaction() as state:
        registry.add_device(state, product_id, device_name)


def reset_device(store: StateStore, product_id: str, device_name: str) -> None:
    with store.transaction() as state:
        registry.reset_device(state, product_id, device_name)


def set_hub_device(store: StateStore, group: str, registration_id: str, action: str) -> None:
    with store.transaction() as state:
        registry.set_hub_device(state, group, registration_id, action)


def set_clock_offset(store: StateStore, seconds: float) -> None:
    """Run the emulator's clock `seconds` ahead of the host's (negative: behind; 0: the host's).
    The clouds check registration timestamps and Tencent login expiries against it."""
    store.set_clock_offset(float(seconds))


def set_throttle(store: StateStore, product_id: str, rate: float | None, burst: int | None = None,
                 retry_after: str | None = None, answer: str | None = None) -> dict[str, Any] | None:
    """Limit the product's registrations to `rate` a second, `burst` at once (None: no limit);
    `answer` is the over-limit answers' shape and `retry_after` what their Retry-After says
    (throttle.py: the defaults). Returns the limit as stored. Takes effect at the running
    emulator's next registration request."""
    with store.transaction() as state:
        if registry.get_product(state, product_id) is None:
            raise registry.RegistryError(f"no product {product_id}")
        try:
            return throttle.set_throttle(state, product_id, rate, burst, retry_after, answer)
        except ValueError as error:
            raise registry.RegistryError(str(error)) from None


DROP_HOW = ("reset", "silence")


def drop_connection(store: StateStore, product_id: str, device_name: str, how: str = "reset") -> str:
    """Ask the running broker to drop the device's MQTT connections: "reset" closes them with a
    TCP RST, "silence" leaves them open but never reads or answers again (a broker or a path
    that went away without a word). Returns the request id its `mqtt-drop` log record carries."""
    if how not in DROP_HOW:
        raise registry.RegistryError(f"how must be one of {', '.join(DROP_HOW)}")
    request_id = uuid.uuid4().hex
    store.push_drop({"request_id": request_id, "product": product_id, "device": device_name, "how": how})
    return request_id


def list_devices(store: StateStore, *, with_secrets: bool = False) -> list[dict[str, Any]]:
    return registry.list_devices(store.snapshot(), with_secrets=with_secrets)


def describe_device(
    store: StateStore, product_id: str, device_name: str, *, with_secrets: bool = False
) -> dict[str, Any] | None:
    state = store.snapshot()
    product = registry.get_product(state, product_id)
    device = registry.get_device(state, product_id, device_name)
    if product is None or device is None:
        return None
    return registry.describe_device(product_id, device_name, product, device, with_secrets=with_secrets)


def list_products(store: StateStore) -> list[dict[str, Any]]:
    """Product settings without the ProductSecret (Alibaba products add their flags)."""
    rows = []
    for product_id, product in sorted(store.snapshot()["products"].items()):
        row = {"product_id": product_id, "cloud": registry.product_cloud(product),
               **{key: product[key] for key in ("auth", "dynreg", "mode", "limit")}}
        row.update({key: product[key] for key in registry.ALIYUN_FLAGS if key in product})
        row["devices"] = len(product["devices"])
        rows.append(row)
    return rows

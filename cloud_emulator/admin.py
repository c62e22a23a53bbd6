"""Operator actions on a state folder, shared by the CLI and the test harness.

They work whether or not a server is running: the server re-reads the state on every request.
"""

import uuid
from typing import Any

from . import registry
from .state import StateStore


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
) -> bool:
    with store.transaction() as state:
        return registry.put_product(
            state, product_id, secret, cloud=cloud, auth=auth, dynreg=dynreg, mode=mode, limit=limit,
            regnwl=regnwl, gateway=gateway, subdevice=subdevice, securemode3=securemode3,
        )


def add_device(store: StateStore, product_id: str, device_name: str) -> None:
    with store.transaction() as state:
        registry.add_device(state, product_id, device_name)


def reset_device(store: StateStore, product_id: str, device_name: str) -> None:
    with store.transaction() as state:
        registry.reset_device(state, product_id, device_name)


def set_clock_offset(store: StateStore, seconds: float) -> None:
    """Run the emulator's clock `seconds` ahead of the host's (negative: behind; 0: the host's).
    The clouds check registration timestamps and Tencent login expiries against it."""
    store.set_clock_offset(float(seconds))


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

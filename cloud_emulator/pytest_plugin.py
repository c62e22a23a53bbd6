"""The local cloud as a pytest fixture, for tests of your own firmware (docs/EMULATOR.md).

    def test_my_board_registers(dynreg_cloud):
        info = dynreg_cloud.info("board-001")   # a ready device_info.json for the board
        ...                                     # run the firmware on it
        assert dynreg_cloud.device("board-001")["status"] == "activated"

`dynreg_cloud` starts the emulator (a subprocess on free ports, its state in the test's
tmp_path) with one product of Tencent, the default, and stops it after the test. Another
cloud: `@pytest.mark.dynreg_cloud("aliyun")` or `("azure")` on the test; another shape of the
server's certificate chain than the default: `chain="rsa4096-intermediate"` (crypto.CHAIN_SHAPES)
in the marker. Loaded by the
`pytest11` entry point of the dynreg-tools package, or with `pytest_plugins = ["cloud_emulator.pytest_plugin"]`
(the entry point has this module's name: both ways together load it once).
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

try:  # the emulator's dependencies, the package's `cloud` extra
    from .crypto import DEFAULT_CHAIN
    from .testing import RunningEmulator, device_info, registrations, running_emulator, write_device_info
except ModuleNotFoundError as e:  # installed without them: pytest still runs; the fixture says why
    MISSING = e.name
else:
    MISSING = None

CLOUDS = ("tencent", "aliyun", "azure")
# The product each cloud gets: ids in each cloud's own shape (Tencent's ProductId 10
# characters, Alibaba's ProductKey 11, an Azure ID scope and enrollment group).
PRODUCT = {"tencent": "DYNREGTEST", "aliyun": "a1DynregTst", "azure": "0ne00DYNTST"}
AZURE_GROUP, AZURE_HUB = "dynreg-test", "dynreg-test.azure-devices.net"


@dataclass
class EmulatedProduct:
    """One product on a running emulator: what a device needs (`info`), what the cloud holds
    (`device`), and the emulator itself for faults, throttling and its log."""

    emulator: RunningEmulator
    cloud: str
    product: str  # ProductId, ProductKey, or the Azure ID scope
    secret: str  # ProductSecret, or the Azure group key
    folder: Path

    @property
    def register_url(self) -> str:
        return str(device_info(self.emulator, self.cloud, self.product, self.secret, "-")["register_url"])

    @property
    def mqtt_url(self) -> str:
        return str(device_info(self.emulator, self.cloud, self.product, self.secret, "-")["mqtt_url"])

    @property
    def ca_der(self) -> str:
        return self.emulator.ca_der_path

    @property
    def ca_pem(self) -> str:
        return self.emulator.ca_pem_path

    def info(self, device_name: str, path: str | os.PathLike[str] | None = None, **fields: Any) -> str:
        """Writes a fresh device's info (device_info.json in its own folder unless `path` names
        one) and returns its path. Alibaba: the DeviceName is created in the product first, as its
        console does for pre-registered devices."""
        if self.cloud == "aliyun" and self.device(device_name) is None:
            self.emulator.add_device(self.product, device_name)
        if path is None:
            folder = self.folder / device_name
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "device_info.json"
        return write_device_info(path, device_info(self.emulator, self.cloud, self.product, self.secret, device_name,
                                                   **fields))

    def device(self, device_name: str) -> dict[str, Any] | None:
        """What the cloud holds for the device (status, its secret); None if it has none."""
        product = AZURE_GROUP if self.cloud == "azure" else self.product
        return self.emulator.device(product, device_name)

    def registrations(self, device_name: str | None = None) -> list[dict[str, Any]]:
        """The registration requests on the emulator's log, of one device or all."""
        return registrations(self.emulator, device_name)


def start_product(emulator: RunningEmulator, cloud: str, folder: Path) -> EmulatedProduct:
    if cloud not in CLOUDS:
        raise ValueError("dynreg_cloud: the cloud is one of %s" % ", ".join(CLOUDS))
    if cloud == "azure":
        secret = base64.b64encode(secrets.token_bytes(64)).decode()
        emulator.add_product(AZURE_GROUP, secret, cloud="azure", id_scope=PRODUCT["azure"], hub=AZURE_HUB,
                             assign_seconds=1)
    else:
        secret = secrets.token_urlsafe(18)[:24]
        emulator.add_product(PRODUCT[cloud], secret, cloud=cloud, **({"mode": "autocreate"} if cloud == "tencent" else {}))
    return EmulatedProduct(emulator, cloud, PRODUCT[cloud], secret, folder)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dynreg_cloud(cloud, chain='rsa2048-intermediate'): the cloud of the "
                            "dynreg_cloud fixture's product, and the shape of its server's certificate chain")


@pytest.fixture
def dynreg_cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmulatedProduct]:
    if MISSING:
        pytest.fail("dynreg_cloud: the emulator needs %s, which is not installed: pip install 'dynreg-tools[cloud]'"
                    % MISSING, pytrace=False)
    marker = request.node.get_closest_marker("dynreg_cloud")
    cloud = marker.args[0] if marker and marker.args else "tencent"
    chain = marker.kwargs.get("chain", DEFAULT_CHAIN) if marker else DEFAULT_CHAIN
    with running_emulator(tmp_path / "cloud", chain=chain) as emulator:
        yield start_product(emulator, cloud, tmp_path / "devices")

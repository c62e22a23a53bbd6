"""Harness for host tests: run the emulator in a subprocess and drive it.

    from cloud_emulator.testing import running_emulator

    with running_emulator(tmp_path / "cloud") as cloud:
        cloud.add_product("ABCDEFGHIJ", "a-product-secret-16+", auth="key", mode="autocreate")
        cloud.add_product("a1IoK3f7xyz", "6vEu5Qlj5S0abcd1", cloud="aliyun", regnwl=True)
        ...  # point the device code at 127.0.0.1:cloud.http_port / cloud.https_port / cloud.mqtt_port
        assert cloud.device("ABCDEFGHIJ", "dev1")["status"] == "activated"

Operator actions write the state folder directly (under its lock); the running server reads
it on every request, so products and faults added after start take effect at once.
"""

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import admin, aws
from .crypto import (CA_DER_FILE, CA_KEY_FILE, CA_PEM_FILE, DEFAULT_CHAIN, FAULT_CERTIFICATES, TLS_FILES,
                     ensure_fault_certificate, ensure_tls_material)
from .faults import Blackhole, queue_fault
from .state import READY_FILE, StateStore

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding cloud_emulator/
OUTPUT_FILE = "emulator-output.log"


class EmulatorError(RuntimeError):
    pass


@dataclass
class RunningEmulator:
    state_dir: Path
    process: subprocess.Popen[bytes]
    host: str
    http_port: int
    https_port: int
    mqtt_port: int
    mqtts_port: int
    aws_mqtts_port: int  # AWS IoT Core's endpoint: a client certificate is required
    store: StateStore = field(repr=False)
    chain: str = DEFAULT_CHAIN  # the shape of the server's certificate chain (crypto.CHAIN_SHAPES)
    client_timeout: float | None = None
    startup_timeout: float = 30.0
    stop_timeout: float = 10.0

    # File paths are plain strings so they can go straight into JSON device-info files.
    @property
    def ca_der_path(self) -> str:
        return str(self.state_dir / CA_DER_FILE)

    @property
    def ca_pem_path(self) -> str:
        return str(self.state_dir / CA_PEM_FILE)

    @property
    def output_path(self) -> str:
        """Everything the server printed (stdout and stderr)."""
        return str(self.state_dir / OUTPUT_FILE)

    # -- operator actions -----------------------------------------------------------------

    def add_product(
        self,
        product_id: str,
        secret: str,
        auth: str = "key",
        dynreg: bool = True,
        mode: str | None = None,
        limit: int = 100,
        *,
        cloud: str = "tencent",
        regnwl: bool = False,
        gateway: bool = False,
        subdevice: bool = False,
        securemode3: bool = False,
        **azure: Any,
    ) -> None:
        """Tencent (default; mode defaults to autocreate) or, with cloud="aliyun", an Alibaba
        product: ProductKey of 11 alphanumerics, devices pre-registered, `regnwl` for
        pre-registration-free MQTT registration, `gateway` / `subdevice` node types,
        `securemode3` to accept DeviceSecret logins over plain TCP. With cloud="azure", an
        enrollment group: `product_id` its name, `secret` its key (base64), and `azure` its
        id_scope, hub and assign_seconds; dynreg=False disables it."""
        admin.add_product(self.store, product_id, secret, cloud=cloud, auth=auth, dynreg=dynreg, mode=mode,
                          limit=limit, regnwl=regnwl, gateway=gateway, subdevice=subdevice, securemode3=securemode3,
                          **azure)

    def add_aws_template(self, name: str, parameters: list[str] | tuple[str, ...] = ("SerialNumber",), *,
                         thing_name_prefix: str = "", allow: str = ".*",
                         device_configuration: dict[str, str] | None = None, update: bool = False) -> dict[str, Any]:
        """An AWS fleet-provisioning template: RegisterThing must send exactly `parameters`; the first
        names the thing (`thing_name_prefix` + its value) and must match `allow` in full (the
        pre-provisioning hook); `device_configuration` is answered on success."""
        return aws.add_template(self.store, name, list(parameters), thing_name_prefix=thing_name_prefix, allow=allow,
                                device_configuration=device_configuration, update=update)

    def add_aws_claim(self, template: str, folder: str | os.PathLike[str] | None = None,
                      name: str = "claim") -> aws.ClaimFiles:
        """A claim certificate and RSA-2048 key for `template`, ACTIVE: `folder`/`name`.cert.pem and
        .key.pem (PKCS#1), each with its .der twin (default folder: the state folder's aws-claims/).
        The result has the four paths and the claim's certificate_id."""
        folder = Path(folder) if folder is not None else self.state_dir / "aws-claims"
        folder.mkdir(parents=True, exist_ok=True)
        ca = ensure_tls_material(self.state_dir).ca
        return aws.add_claim(self.store, ca, template, folder / f"{name}.cert.pem", folder / f"{name}.key.pem")

    def disable_aws_claim(self, certificate_id: str) -> None:
        aws.set_claim_enabled(self.store, certificate_id, False)

    def enable_aws_claim(self, certificate_id: str) -> None:
        aws.set_claim_enabled(self.store, certificate_id, True)

    def aws_certificate(self, certificate_id: str) -> dict[str, Any] | None:
        """A claim or device certificate: kind, status (ACTIVE, INACTIVE, PENDING_ACTIVATION), template,
        thing, logins; None if unknown."""
        return next((row for row in aws.certificates(self.store) if row["certificate_id"] == certificate_id), None)

    def aws_certificates(self) -> list[dict[str, Any]]:
        return aws.certificates(self.store)

    def aws_things(self) -> list[dict[str, Any]]:
        return aws.things(self.store)

    def aws_thing(self, name: str) -> dict[str, Any] | None:
        """A thing RegisterThing created: template, certificates (ids), parameters; None if none."""
        return next((row for row in aws.things(self.store) if row["thing_name"] == name), None)

    def set_hub_device(self, group: str, registration_id: str, action: str) -> None:
        """"delete" the device from its IoT hub, or "disable" / "enable" it there."""
        admin.set_hub_device(self.store, group, registration_id, action)

    def add_device(self, product_id: str, device_name: str) -> None:
        admin.add_device(self.store, product_id, device_name)

    def reset_device(self, product_id: str, device_name: str) -> None:
        admin.reset_device(self.store, product_id, device_name)

    def device(self, product_id: str, device_name: str) -> dict[str, Any] | None:
        """Status and issued secret of a device; None if unknown. Tencent: psk, or cert_pem and
        key_pem. Alibaba: device_secret, or device_token and client_id (regnwl); iot_id; and
        the topology: gateway ("<pk>/<dn>") on a sub-device, sub_devices on a gateway."""
        return admin.describe_device(self.store, product_id, device_name, with_secrets=True)

    def devices(self) -> list[dict[str, Any]]:
        return admin.list_devices(self.store, with_secrets=True)

    def fault(
        self,
        kind: str,
        count: int = 1,
        status: int | None = None,
        seconds: float | None = None,
        *,
        retry_after: int | None = None,
        interval: float | None = None,
        body_bytes: int | None = None,
        answer: str | None = None,
    ) -> dict[str, Any]:
        """Queue `count` uses of a fault (kinds and parameters: faults.FAULT_KINDS)."""
        return queue_fault(self.store, kind, count=count, status=status, seconds=seconds, retry_after=retry_after,
                           interval=interval, body_bytes=body_bytes, answer=answer)

    def faults(self) -> list[dict[str, Any]]:
        """The fault queue as it stands (uses left in `count`)."""
        return self.store.list_faults()

    @contextlib.contextmanager
    def blackhole(self) -> Iterator[int]:
        """A port on the emulator's host where connect() never completes (a connect timeout);
        see faults.Blackhole. Yields the port."""
        with Blackhole(self.host) as hole:
            yield hole.port

    def clear_faults(self) -> None:
        self.store.clear_faults()

    def throttle(self, product_id: str, rate: float | None, burst: int | None = None, retry_after: str | None = None,
                 answer: str | None = None) -> None:
        """Limit the product's registrations to `rate` a second, `burst` at once (None: no limit);
        `answer` "http" (implied by a `retry_after`): over the limit, HTTP 429 with Retry-After
        instead of the cloud's own shape (throttle.py)."""
        admin.set_throttle(self.store, product_id, rate, burst, retry_after, answer)

    def set_clock_offset(self, seconds: float) -> None:
        """Run the emulator's clock `seconds` ahead of the host's (0: the host's again). The clouds
        check registration timestamps and Tencent login expiries against it, at once."""
        admin.set_clock_offset(self.store, seconds)

    def drop_connection(self, product_id: str, device_name: str, how: str = "reset",
                        timeout: float = 10.0) -> dict[str, Any]:
        """Have the broker drop the device's MQTT connections ("reset": TCP RST; "silence": never
        read or answer again) and wait until it did; returns its `mqtt-drop` log record, whose
        `connections` says how many it dropped (0, result "not-connected": none was open)."""
        request_id = admin.drop_connection(self.store, product_id, device_name, how=how)
        return self.wait_for_log(lambda e: e.get("api") == "mqtt-drop" and e.get("request_id") == request_id,
                                 timeout=timeout)

    # -- the server process -----------------------------------------------------------------

    def stop(self) -> None:
        """Stop the server (SIGTERM, then kill); the state folder stays. `start()` serves it again."""
        _stop(self.process, self.stop_timeout)

    def start(self, chain: str | None = None) -> None:
        """Serve the same state folder again on the same ports (after `stop()`); another `chain`
        makes a new root (a new ca.der: devices that trusted the old one no longer connect)."""
        if self.process.poll() is None:
            raise EmulatorError("the emulator is still running")
        self.process, ready = _start(self.state_dir, self.host, self.client_timeout, self.startup_timeout,
                                     chain or self.chain,
                                     ports=(self.http_port, self.https_port, self.mqtt_port, self.mqtts_port,
                                            self.aws_mqtts_port))
        self.chain = ready["chain"]

    def restart(self) -> None:
        """A broker restart as devices see it: every connection closed, then the same ports and state."""
        self.stop()
        self.start()

    # -- observation ------------------------------------------------------------------------

    def log(self) -> list[dict[str, Any]]:
        return self.store.read_log()

    def wait_for_log(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """First log record matching `predicate`, waiting for it (broker events are logged asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.log():
                if predicate(record):
                    return record
            if time.monotonic() > deadline:
                raise EmulatorError("no matching request-log record appeared")
            time.sleep(0.02)

    def output(self) -> str:
        return Path(self.output_path).read_text(encoding="utf-8", errors="replace")

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only the emulator's root CA (hostname checked: use localhost or 127.0.0.1)."""
        return ssl.create_default_context(cafile=self.ca_pem_path)


# The registration requests' `api` in the emulator's log, one per cloud's way to register.
REGISTRATION_APIS = ("tencent-v2", "tencent-legacy", "aliyun-https-register", "aliyun-mqtt-register",
                     "aliyun-mqtt-regnwl", "azure-dps-register", "aws-create-keys", "aws-register-thing")


def registrations(log: RunningEmulator | list[dict[str, Any]], device_name: str | None = None) -> list[dict[str, Any]]:
    """The registration requests on the emulator's log (a running emulator, or records already
    read), of one device or all."""
    records = log.log() if hasattr(log, "log") else log
    return [e for e in records if e.get("api") in REGISTRATION_APIS
            and (device_name is None or e.get("device") == device_name)]


def device_info(emulator: RunningEmulator, cloud: str, product: str, secret: str, device_name: str,
                **fields: Any) -> dict[str, Any]:
    """A fresh device's info in dynreg's format (docs: "Device info"), pointed at the running
    emulator and trusting its CA: Tencent (`product` its ProductId, over HTTPS, logging in on
    plain MQTT), Alibaba (ProductKey, registration over HTTPS, MQTTS) or Azure (`product` the
    enrollment group's ID scope, `secret` its group key; DPS and hub on MQTTS). `fields` add to
    it or replace what it says."""
    host = "localhost"  # the name in the emulator's server certificates
    mqtts = "mqtts://%s:%d" % (host, emulator.mqtts_port)
    doc: dict[str, Any] = {"dynreg": 1, "cloud": cloud, "device_name": device_name, "ca": emulator.ca_der_path}
    if cloud == "tencent":
        doc.update(product_id=product, product_secret=secret, register_url="https://%s:%d" % (host, emulator.https_port),
                   mqtt_url="mqtt://%s:%d" % (host, emulator.mqtt_port), credential={"psk": ""})
    elif cloud == "aliyun":
        doc.update(product_key=product, product_secret=secret, api="https",
                   register_url="https://%s:%d" % (host, emulator.https_port), mqtt_url=mqtts, credential={})
    elif cloud == "azure":
        doc.update(id_scope=product, group_key=secret, register_url=mqtts, mqtt_url=mqtts, credential={})
    else:
        raise ValueError("cloud must be tencent, aliyun or azure")
    doc.update(fields)
    return doc


def write_device_info(path: str | os.PathLike[str], doc: dict[str, Any]) -> str:
    """Writes an info (device_info) as JSON; returns the path as a string."""
    Path(path).write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def _read_ready(path: Path, pid: int) -> dict[str, Any] | None:
    try:
        ready = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return ready if ready.get("pid") == pid else None  # ignore a stale file from an earlier run


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# Each chain shape's TLS material, made once in this process and copied into every new state
# folder, where the emulator finds it valid and keeps it: a suite starts hundreds of emulators,
# and RSA keys take a while to make (an RSA-4096 one up to seconds).
_seed_folders: dict[str, Path] = {}
_seed_lock = threading.Lock()
_seed_parent: list[tempfile.TemporaryDirectory[str]] = []  # made on first use, removed when the process ends


def _seed_tls_material(state_path: Path, chain: str) -> None:
    if (state_path / CA_KEY_FILE).exists():
        return  # the state's own material, which the emulator remakes if it is of another shape
    with _seed_lock:
        seed = _seed_folders.get(chain)
        if seed is None:
            if not _seed_parent:
                _seed_parent.append(tempfile.TemporaryDirectory(prefix="dynreg-tls-seeds-"))
            seed = Path(_seed_parent[0].name) / chain
            seed.mkdir(exist_ok=True)
            ensure_tls_material(seed, chain)
            for kind in FAULT_CERTIFICATES:
                ensure_fault_certificate(seed, kind)
            _seed_folders[chain] = seed
    for name in TLS_FILES:
        if (seed / name).exists():
            shutil.copy2(seed / name, state_path / name)  # with its mode: the keys stay 0600


def _start(state_path: Path, host: str, client_timeout: float | None, startup_timeout: float, chain: str,
           ports: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start `serve` on `ports` (0: a free one) and wait for its ready.json."""
    http_port, https_port, mqtt_port, mqtts_port, aws_mqtts_port = ports
    _seed_tls_material(state_path, chain)
    command = [
        sys.executable, "-m", "cloud_emulator", "serve", "--state", str(state_path), "--host", host,
        "--http-port", str(http_port), "--https-port", str(https_port), "--mqtt-port", str(mqtt_port),
        "--mqtts-port", str(mqtts_port), "--aws-mqtts-port", str(aws_mqtts_port), "--chain", chain,
    ]
    if client_timeout is not None:
        command += ["--client-timeout", str(client_timeout)]
    with open(state_path / OUTPUT_FILE, "ab") as output:
        process = subprocess.Popen(command, cwd=PACKAGE_ROOT, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + startup_timeout
        while (ready := _read_ready(state_path / READY_FILE, process.pid)) is None:
            if process.poll() is not None:
                tail = (state_path / OUTPUT_FILE).read_text(errors="replace")[-2000:]
                raise EmulatorError(f"emulator exited with {process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise EmulatorError(f"emulator not ready after {startup_timeout} s")
            time.sleep(0.05)
    except BaseException:
        _stop(process, 10.0)
        raise
    return process, ready


@contextlib.contextmanager
def running_emulator(
    state_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    chain: str = DEFAULT_CHAIN,
    client_timeout: float | None = None,
    startup_timeout: float = 30.0,
    stop_timeout: float = 10.0,
) -> Iterator[RunningEmulator]:
    """Start `python -m cloud_emulator serve` on free ports with the server chain of shape `chain`
    (crypto.CHAIN_SHAPES); stop it (SIGTERM, then kill) on exit."""
    state_path = Path(state_dir).resolve()
    state_path.mkdir(parents=True, exist_ok=True)
    process, ready = _start(state_path, host, client_timeout, startup_timeout, chain)
    emulator = RunningEmulator(
        state_dir=state_path,
        process=process,
        host=host,
        http_port=ready["http_port"],
        https_port=ready["https_port"],
        mqtt_port=ready["mqtt_port"],
        mqtts_port=ready["mqtts_port"],
        aws_mqtts_port=ready["aws_mqtts_port"],
        store=StateStore(state_path),
        chain=ready["chain"],
        client_timeout=client_timeout,
        startup_timeout=startup_timeout,
        stop_timeout=stop_timeout,
    )
    try:
        yield emulator
    finally:
        _stop(emulator.process, stop_timeout)

"""`serve`: run every listener of every cloud until SIGTERM or SIGINT."""

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .aliyun import AliyunCloud
from .aws import AwsCloud
from .azure import AzureCloud
from .broker import AWS_LISTENER, PLAIN_LISTENER, TLS_LISTENER, EmulatorBroker, broker_config
from .gate import DeviceGate
from .crypto import TlsMaterial, ensure_tls_material
from .http_server import HttpLimits, HttpListener
from .state import READY_FILE, StateStore, write_file_atomically
from .tencent import TencentCloud

SERVE_LOCK_FILE = "serve.lock"
# listen() backlog of the MQTT listeners (asyncio's default is 100); a
# fleet connecting at once overflows it, and each dropped SYN costs a device a 1 s retransmission.
MQTT_LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class ServeOptions:
    state_dir: Path
    host: str = "127.0.0.1"
    http_port: int = 8080
    https_port: int = 8443
    mqtt_port: int = 1883
    mqtts_port: int = 8883
    aws_mqtts_port: int = 8884  # AWS IoT Core: TLS with a client certificate required
    client_timeout: float = 10.0
    chain: str | None = None  # a shape of crypto.CHAIN_SHAPES; None: the state's, or the default in a new one


class ServeError(RuntimeError):
    pass


class _DropSecretsFilter(logging.Filter):
    """Third-party log lines may print CONNECT packets; never let a password through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "password" not in record.getMessage().lower()


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    handler.addFilter(_DropSecretsFilter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("transitions").setLevel(logging.ERROR)


@contextlib.contextmanager
def _only_server_for(store: StateStore) -> Iterator[None]:
    fd = os.open(store.path(SERVE_LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServeError(f"another emulator is already serving {store.folder}") from None
        yield
    finally:
        os.close(fd)


def _server_ssl_context(tls: TlsMaterial) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.server_cert_path, tls.server_key_path)
    return context


def run(options: ServeOptions) -> int:
    _configure_logging()
    try:
        asyncio.run(_serve(options))
    except ServeError as error:
        print(f"cloud emulator: {error}", file=sys.stderr)
        return 1
    return 0


async def _serve(options: ServeOptions) -> None:
    store = StateStore(options.state_dir)
    ready_path = store.path(READY_FILE)
    with _only_server_for(store):
        ready_path.unlink(missing_ok=True)
        tls = ensure_tls_material(store.folder, options.chain)
        # Azure first: it claims only usernames of its two "/"-separated shapes; then Tencent,
        # which claims those with ";", then Alibaba the "<dn>&<pk>" ones (an Azure username may
        # hold a "&"). Their clock is the state folder's: the host's plus the operator's offset.
        # AWS claims the logins of its own listener only.
        clouds = [AwsCloud(store, tls.ca), AzureCloud(store, clock=store.now),
                  TencentCloud(store, tls.ca, clock=store.now), AliyunCloud(store, clock=store.now)]
        routes = [route for cloud in clouds for route in cloud.http_routes()]
        limits = HttpLimits(client_timeout=options.client_timeout)
        listeners: list[HttpListener] = []
        broker: EmulatorBroker | None = None
        try:
            try:
                listeners.append(HttpListener(options.host, options.http_port, routes, store, limits=limits))
                listeners.append(HttpListener(options.host, options.https_port, routes, store, limits=limits,
                                              ssl_context=_server_ssl_context(tls)))
                gate = DeviceGate(clouds, store)
                broker = EmulatorBroker(
                    broker_config(gate, options.host, options.mqtt_port, options.mqtts_port,
                                  tls.server_cert_path, tls.server_key_path, tls.client_ca_pem_path,
                                  aws_mqtts_port=options.aws_mqtts_port),
                    connect_timeout=options.client_timeout,
                    store=store,
                    gate=gate,
                    backlog=MQTT_LISTEN_BACKLOG,
                )
                await broker.start()
            except OSError as error:
                raise ServeError(f"cannot listen: {error}") from error
            except Exception as error:  # amqtt wraps bind failures in BrokerError
                raise ServeError(f"cannot start the MQTT broker: {error}") from error
            for listener in listeners:
                listener.start()
            ready = {
                "pid": os.getpid(),
                "host": options.host,
                "http_port": listeners[0].port,
                "https_port": listeners[1].port,
                "mqtt_port": broker.bound_port(PLAIN_LISTENER),
                "mqtts_port": broker.bound_port(TLS_LISTENER),
                "aws_mqtts_port": broker.bound_port(AWS_LISTENER),
                "chain": tls.chain,
            }
            write_file_atomically(ready_path, json.dumps(ready).encode("utf-8"), mode=0o644)
            print(
                f"cloud emulator ready: http {ready['http_port']}, https {ready['https_port']}, "
                f"mqtt {ready['mqtt_port']}, mqtts {ready['mqtts_port']}, aws mqtts {ready['aws_mqtts_port']} "
                f"(state {store.folder}, chain {tls.chain})",
                flush=True,
            )
            await _until_stopped()
        finally:
            ready_path.unlink(missing_ok=True)
            for listener in listeners:
                listener.stop()
            if broker is not None and broker.transitions.is_started():
                await broker.shutdown()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    await stop.wait()

"""MQTT 3.1 clients: served by a real broker that speaks it, mosquitto 2.0 (Debian's), with the
plugin `mosquitto_judge.c`, which asks this process to judge every login, subscription and
publish through the same DeviceGate as the amqtt broker.

The broker's front (broker.EmulatorBroker) reads the protocol name of a connection's CONNECT
and hands MQTT 3.1 ("MQIsdp") connections here: each is relayed, byte for byte and after its
TLS is ended by the front (the same certificate and faults as for MQTT 3.1.1), to mosquitto on
loopback from a loopback address of its own (127.a.b.c), which is how a plugin request names
the connection: mosquitto tells the plugin the client's address, and this side knows that
address's listener, client certificate and, once judged, identity.

What differs from the MQTT 3.1.1 side: mosquitto answers every refused login with its own
CONNACK code (5, not authorised), whatever code the cloud chose (the log keeps the cloud's);
`mqtt` faults (no CONNACK, close after CONNACK) are taken by MQTT 3.1.1 connections only; and
the two brokers do not route messages to each other's clients (every cloud-originated message
goes to the client that asked, so no path of the emulator needs that).
"""

import asyncio
import binascii
import getpass
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path

from .cloud import (ACTION_PUBLISH, ACTION_SUBSCRIBE, API_MQTT_CONNECT, API_MQTT_DELIVER, API_MQTT_PUBLISH,
                    API_MQTT_SUBSCRIBE, LoginVerdict, MqttLogin)
from .gate import API_MQTT_KEEPALIVE, DeviceGate, loggable_payload
from .state import StateStore

PROTOCOL_NAME = "MQIsdp"
PROTOCOL = "MQIsdp/3"
PLUGIN_ENV = "DYNREG_MOSQUITTO_PLUGIN"
PLUGIN_DEFAULT = Path(__file__).resolve().parent.parent / "build" / "mosquitto" / "dynreg_judge.so"
CONFIG_FILE = "mosquitto.conf"
MOSQUITTO_KEEPALIVE_REASON = 19  # MOSQ_ERR_KEEPALIVE: mosquitto closed a client silent for 1.5 keepalives
START_SECONDS = 10.0
JUDGE_LINE_LIMIT = 1 << 20
RELAY_CHUNK = 65536
_PR_SET_PDEATHSIG = 1


def plugin_path() -> Path:
    return Path(os.environ.get(PLUGIN_ENV) or PLUGIN_DEFAULT)


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)


def _die_with_parent() -> None:
    # The broker must not outlive the emulator, even a killed one (tests kill it).
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _hex(text: str | None) -> bytes:
    if text is None:
        return b"-"
    return binascii.hexlify(text.encode("utf-8")) or b"="


def _unhex(field: str) -> bytes | None:
    if field == "-":
        return None
    return b"" if field == "=" else binascii.unhexlify(field)


def _text(field: str) -> str | None:
    data = _unhex(field)
    return None if data is None else data.decode("utf-8", "replace")


@dataclass
class _Relay:
    """One MQTT 3.1 client connection, from the front to mosquitto."""

    listener: str  # "mqtt" or "mqtts"
    peer_certificate_der: bytes | None
    writer: asyncio.StreamWriter  # the device's side
    identity: LoginVerdict | None = None
    judged: bool = False  # mosquitto asked for a verdict on its login
    connack: int | None = None  # the return code of the CONNACK mosquitto sent, once it did
    silenced: bool = False


class Mqtt31Broker:
    def __init__(self, gate: DeviceGate, store: StateStore, connect_timeout: float) -> None:
        self.gate = gate
        self.store = store
        self.connect_timeout = connect_timeout
        self.available = False
        self.port = 0
        self._process: asyncio.subprocess.Process | None = None
        self._judge: asyncio.AbstractServer | None = None
        self._relays: dict[str, _Relay] = {}
        self._identities: dict[str, LoginVerdict] = {}  # by address: outlives the relay until mosquitto's BYE
        self._next = 0

    async def start(self) -> None:
        binary, plugin = mosquitto_binary(), plugin_path()
        if binary is None or not plugin.exists():
            print(f"cloud emulator: MQTT 3.1 not served: {'no mosquitto' if binary is None else f'no {plugin}'} "
                  "(tools/bootstrap.sh installs mosquitto and builds the plugin)", flush=True)
            return
        name = "dynreg-judge-%d-%s" % (os.getpid(), secrets.token_hex(4))
        self._judge = await asyncio.start_unix_server(self._answer, path="\0" + name, limit=JUDGE_LINE_LIMIT)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = self.store.path(CONFIG_FILE)
        config.write_text("\n".join([
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false",
            f"plugin {plugin}",
            f"plugin_opt_judge @{name}",
            "persistence false",
            f"user {getpass.getuser()}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "",
        ]), encoding="utf-8")
        self._process = await asyncio.create_subprocess_exec(
            binary, "-c", str(config), stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = asyncio.get_running_loop().time() + START_SECONDS
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                break
            except OSError:
                if self._process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"mosquitto did not start on port {self.port}") from None
                await asyncio.sleep(0.05)
        self.available = True

    async def stop(self) -> None:
        for relay in list(self._relays.values()):
            relay.writer.transport.abort()
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except asyncio.TimeoutError:
                self._process.kill()
                await self._process.wait()
        if self._judge is not None:
            self._judge.close()

    def _address(self) -> str:
        self._next += 1
        n = self._next % (254 * 256 * 254)
        return "127.%d.%d.%d" % (1 + n // (256 * 254), (n // 254) % 256, 1 + n % 254)

    # -- the relay ------------------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                    listener: str) -> None:
        """Relay one MQTT 3.1 connection (`head`: what the front already read of it)."""
        ssl_object = writer.get_extra_info("ssl_object")
        address = self._address()
        relay = _Relay(listener, ssl_object.getpeercert(binary_form=True) if ssl_object else None, writer)
        self._relays[address] = relay
        upstream_writer = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.port, local_addr=(address, 0))
            upstream_writer.write(head)
            pumps = [asyncio.ensure_future(self._pump(reader, upstream_writer, relay)),
                     asyncio.ensure_future(self._pump(upstream_reader, writer, relay, to_device=True))]
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pending:
                pump.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        except (OSError, ssl.SSLError):
            pass
        finally:
            del self._relays[address]
            if not relay.judged:  # mosquitto refused it before asking (a malformed CONNECT), or it went away
                await asyncio.to_thread(
                    self.store.append_log, API_MQTT_CONNECT, transport=listener, protocol=PROTOCOL,
                    result="refused-by-mosquitto" if relay.connack else "closed-before-login", connack=relay.connack)
            asyncio.get_running_loop().call_later(5, self._identities.pop, address, None)
            if upstream_writer is not None:
                upstream_writer.transport.abort()
            if relay.silenced:
                writer.transport.abort()  # a silenced connection ends without a word, as on the other broker
            else:
                writer.close()

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, relay: _Relay,
                    to_device: bool = False) -> None:
        while data := await source.read(RELAY_CHUNK):
            if to_device and relay.connack is None and len(data) >= 4 and data[0] == 0x20:
                relay.connack = data[3]  # mosquitto's first packet is its CONNACK, 4 bytes in MQTT 3.1
            if relay.silenced:
                continue  # nothing more reaches the device, nor mosquitto: it times the session out
            sink.write(data)
            await sink.drain()

    def drop(self, product: str, device: str, how: str) -> int:
        dropped = 0
        for relay in list(self._relays.values()):
            identity = relay.identity
            if identity is None or (identity.product, identity.device) != (product, device) or relay.silenced:
                continue
            transport = relay.writer.transport
            if how == "silence":
                relay.silenced = True
                transport.pause_reading()
            else:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            dropped += 1
        return dropped

    # -- the plugin's requests ------------------------------------------------------------------

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), self.connect_timeout)).decode("ascii").split()
            reply = await self._judge_request(line) if line else [b"NO"]
        except (asyncio.TimeoutError, ValueError, binascii.Error, ConnectionError, UnicodeDecodeError):
            reply = [b"NO"]
        try:
            writer.write(b"\n".join(reply) + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _judge_request(self, fields: list[str]) -> list[bytes]:
        kind, address, client_id = fields[0], fields[1], _text(fields[2]) or ""
        if kind == "AUTH":
            return await self._login(address, client_id, _text(fields[3]), _text(fields[4]), int(fields[5]))
        identity = self._identities.get(address)
        if kind == "ACL":
            action = ACTION_SUBSCRIBE if fields[3] == "subscribe" else ACTION_PUBLISH
            topic = _text(fields[4]) or ""
            allowed = self.gate.topic_allowed(identity, topic, action)
            if action == ACTION_SUBSCRIBE or not allowed:  # allowed publishes are logged with their payload
                await asyncio.to_thread(self.gate.record, API_MQTT_SUBSCRIBE if action == ACTION_SUBSCRIBE
                                        else API_MQTT_PUBLISH, identity, topic, allowed)
            return [b"OK" if allowed else b"NO"]
        if kind == "MSG":
            topic, payload = _text(fields[4]) or "", _unhex(fields[5]) or b""
            await asyncio.to_thread(self.gate.record, API_MQTT_PUBLISH, identity, topic, True,
                                    payload=loggable_payload(payload), qos=int(fields[3]))
            replies = await asyncio.to_thread(self.gate.handle_publish, identity, topic, payload)
            return [b"OK"] + [b"PUB %s %s" % (_hex(r.topic), binascii.hexlify(r.payload) or b"=") for r in replies]
        if kind == "BYE":
            self._identities.pop(address, None)
            if int(fields[3]) == MOSQUITTO_KEEPALIVE_REASON and identity is not None:
                await asyncio.to_thread(self.store.append_log, API_MQTT_KEEPALIVE, product=identity.product,
                                        device=identity.device, protocol=PROTOCOL, result="closed")
            return [b"OK"]
        return [b"NO"]

    async def _login(self, address: str, client_id: str, username: str | None, password: str | None,
                     keep_alive: int) -> list[bytes]:
        relay = self._relays.get(address)
        if relay is None:
            return [b"NO"]  # not a connection the front relayed
        relay.judged = True
        login = MqttLogin(client_id=client_id, username=username, password=password,
                          peer_certificate_der=relay.peer_certificate_der, listener=relay.listener,
                          keep_alive=keep_alive, protocol=PROTOCOL)
        verdict = await asyncio.to_thread(self.gate.judge_login, login)  # the cloud logs it
        if not verdict.accepted:
            return [b"NO"]
        relay.identity = self._identities[address] = verdict
        reply = [b"OK"]
        for delivery in verdict.deliveries:  # mosquitto sends them once its CONNACK is out
            reply.append(b"PUB %s %s" % (_hex(delivery.topic), binascii.hexlify(delivery.payload) or b"="))
            await asyncio.to_thread(self.store.append_log, API_MQTT_DELIVER, product=verdict.product,
                                    device=verdict.device, topic=delivery.topic, result="ok", qos=0)
        if verdict.close_after_delivery:
            asyncio.get_running_loop().call_later(self.connect_timeout, relay.writer.close)
        return reply

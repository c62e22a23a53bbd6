"""The MQTT side: an amqtt 0.12.1 broker extended through its plugin API.

DeviceAuthPlugin asks the clouds to judge each CONNECT; DeviceTopicPlugin asks them whether
a session may publish or subscribe to a topic and records publishes in the request log.
A few overrides of amqtt internals are needed, all pinned to amqtt 0.12.1:

* amqtt always refuses a failed login with CONNACK 5; Tencent devices must be told 4 for
  bad credentials (and 2 for a wrong client id), so the protocol handler sends the code the
  cloud chose.
* amqtt drops the connection of any client that publishes to a topic starting with "$";
  Tencent devices publish on "$thing/up/...", so such publishes go through the same ACL
  and delivery steps as any other topic.
* amqtt waits for a CONNECT forever; the emulator closes connections that send none in time.
* amqtt never closes a client that went silent (its read timeout does nothing); the emulator
  closes a connection that sent nothing for 1.5 times its CONNECT keepalive, as MQTT 3.1.1
  section 3.1.2.10 tells a server to (and the clouds do), and logs it as `mqtt-keepalive`.
* A cloud may answer a CONNECT with messages for that client alone (Alibaba MQTT dynamic
  registration publishes the result on /ext/register to a client that never subscribed).
  amqtt publishes a session's queued messages right after CONNACK, in
  `_publish_session_retained_messages`; the override sends the verdict's deliveries there
  first (QoS 0, retain 0), then closes a registration connection after the grace period.

Replies to device requests (Alibaba gateway topics) are published through amqtt's internal
broadcast, so they reach whoever subscribed to the reply topic, as on the real cloud.

Dropped connections (admin.drop_connection, for tests of devices that stay online): the broker
polls the state folder's drop queue and resets the named device's connections (TCP RST), or
silences them: nothing is read or sent on them again, and the keepalive check aborts them 1.5
keepalive intervals later.

The AWS listener (when configured) requires a client certificate; its logins reach the clouds
with the listener LISTENER_AWS_MQTTS, MQTT 3.1 included (no mosquitto), and a refusal without a
CONNACK (CONNACK_NONE) closes the connection. A cloud with `disconnect_on_denial` has a connection
closed when it publishes or subscribes outside its rights.

Faults (faults.py): the MQTTS listener's context gets an SNI callback (called for every
handshake, with or without SNI) that takes a "tls" fault and swaps in the fault's certificate;
an "mqtt" fault is taken once a connection's CONNECT was read: `mqtt_no_connack` holds the
connection without answering, `mqtt_close_after_connack` lets the login be judged, then
closes an accepted connection right after CONNACK 0, before any delivery.
"""

import asyncio
from functools import partial
import math
import os
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import NoDataError
from amqtt.events import BrokerEvents
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.connect import ConnectPacket
from amqtt.mqtt.constants import QOS_0
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from .cloud import (
    ACTION_PUBLISH,
    ACTION_SUBSCRIBE,
    API_MQTT_CONNECT,
    API_MQTT_DELIVER,
    API_MQTT_PUBLISH,
    API_MQTT_SUBSCRIBE,
    CONNACK_BAD_USERNAME_OR_PASSWORD,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NONE,
    LISTENER_AWS_MQTTS,
    Delivery,
    LoginVerdict,
    MqttLogin,
)
from .crypto import fault_server_context
from .faults import TARGET_MQTT, TARGET_TLS, take_fault
from .gate import API_MQTT_KEEPALIVE, DeviceGate, loggable_payload
from .mqtt31 import PROTOCOL_NAME as MQTT31_PROTOCOL_NAME
from .mqtt31 import Mqtt31Broker
from .state import DROPS_FILE, StateStore

PLAIN_LISTENER = "default"  # amqtt requires a listener named "default"
TLS_LISTENER = "tls"
AWS_LISTENER = "aws"  # AWS IoT Core's endpoint: TLS with a client certificate required

# Session.attributes keys. A session may be shared by several connections (clean_session=0),
# so a refused attempt must not overwrite the identity of an accepted one.
_IDENTITY = "cloud_emulator.identity"  # LoginVerdict of the last accepted login
_LAST_VERDICT = "cloud_emulator.last_verdict"  # LoginVerdict of the login being answered
_FAULT = "cloud_emulator.fault"  # kind of the "mqtt" fault this connection took, if any
_KEEPALIVE = "cloud_emulator.keepalive"  # the keepalive the client sent in CONNECT, in seconds
_LISTENER = "cloud_emulator.listener"  # the name of the listener the connection came in on

API_TLS = "tls"  # request-log name for TLS faults, as the HTTPS listener logs them
API_MQTT_DROP = "mqtt-drop"  # a connection dropped on the operator's request (admin.drop_connection)
DROP_POLL_SECONDS = 0.05
SUPPORTED_PROTOCOL = ("MQTT", 4)  # amqtt 0.12.1 speaks MQTT 3.1.1 only
CONNACK_UNACCEPTABLE_PROTOCOL = 1
LOGGED_CLIENT_ID_CHARS = 120


def refused_before_login(connect: ConnectPacket) -> tuple[str, int | None] | None:
    """Why amqtt 0.12.1 refuses this CONNECT before any plugin judges the login, and the CONNACK
    it sends then (None: it closes the connection without one); None if it lets it through.
    The checks in amqtt's order (BrokerProtocolHandler.init_from_connect)."""
    header = connect.variable_header
    if header is None or connect.payload is None:
        return "malformed-connect", None
    if header.will_flag and (connect.payload.will_topic is None or connect.payload.will_message is None):
        return "will-without-topic", None
    if header.reserved_flag:
        return "reserved-flag-set", None
    if connect.proto_name != SUPPORTED_PROTOCOL[0]:
        return "unsupported-protocol", None  # MQTT 3.1 ("MQIsdp") lands here
    if connect.proto_level != SUPPORTED_PROTOCOL[1]:
        return "unsupported-protocol-level", CONNACK_UNACCEPTABLE_PROTOCOL
    if not connect.username_flag and connect.password_flag:
        return "password-without-username", CONNACK_BAD_USERNAME_OR_PASSWORD
    if not connect.clean_session_flag and connect.payload.client_id_is_random:
        return "persistent-session-without-client-id", CONNACK_IDENTIFIER_REJECTED
    return None


def _peer_certificate(session: Session) -> bytes | None:
    if session.ssl_object is None:
        return None
    return session.ssl_object.getpeercert(binary_form=True)


class DeviceAuthPlugin(BaseAuthPlugin):
    @dataclass
    class Config:
        gate: Any = None  # DeviceGate; passed as an object, amqtt hands the config over as is

    async def on_mqtt_packet_received(self, *, packet: Any, session: Session | None = None) -> None:
        """Log the CONNECTs amqtt refuses before `authenticate` runs, with the reason (amqtt fires
        this event for a CONNECT before its own checks, and logs nothing of them itself)."""
        if session is not None or not isinstance(packet, ConnectPacket):
            return  # a packet of an open session, or a CONNECT whose login a cloud will judge
        refusal = refused_before_login(packet)
        if refusal is None:
            return
        reason, connack = refusal
        header = packet.variable_header
        protocol = "%s/%s" % (header.proto_name, header.proto_level) if header is not None else None
        client_id = packet.payload.client_id if packet.payload is not None else None
        gate: DeviceGate = self.config.gate
        await asyncio.to_thread(gate.store.append_log, API_MQTT_CONNECT, result=reason, protocol=protocol,
                                client_id=(client_id or "")[:LOGGED_CLIENT_ID_CHARS], connack=connack)

    async def authenticate(self, *, session: Session) -> bool:
        gate: DeviceGate = self.config.gate
        login = MqttLogin(
            client_id=session.client_id or "",
            username=session.username,
            password=session.password,
            peer_certificate_der=_peer_certificate(session),
            listener=(LISTENER_AWS_MQTTS if session.attributes.get(_LISTENER) == AWS_LISTENER
                      else "mqtts" if session.ssl_object is not None else "mqtt"),
            keep_alive=session.keep_alive,
        )
        verdict = await asyncio.to_thread(gate.judge_login, login)  # file locks and I/O: off the loop
        session.attributes[_LAST_VERDICT] = verdict
        if verdict.accepted:
            session.attributes[_IDENTITY] = verdict
            if session.keep_alive and session.keep_alive > 0:
                # Here keep_alive is the CONNECT's (amqtt has just set it, on a take-over too).
                # amqtt's reader times out after keep_alive seconds without a packet (it reads
                # it when the handler starts, right after this): make that 1.5 intervals.
                session.attributes[_KEEPALIVE] = session.keep_alive
                session.keep_alive = math.ceil(session.keep_alive * 1.5)
        return verdict.accepted


class DeviceTopicPlugin(BaseTopicPlugin):
    @dataclass
    class Config:
        gate: Any = None

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        # amqtt fires plugin events as separate tasks; requests are answered in arrival order.
        self._requests = asyncio.Lock()

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        gate: DeviceGate = self.config.gate
        identity = session.attributes.get(_IDENTITY) if session else None
        if action == Action.RECEIVE:
            return True  # subscriptions were checked when they were made
        if topic is None or action not in (Action.PUBLISH, Action.SUBSCRIBE):
            return False
        allowed = gate.topic_allowed(identity, topic, ACTION_PUBLISH if action == Action.PUBLISH else ACTION_SUBSCRIBE)
        closing = not allowed and session is not None and getattr(getattr(identity, "cloud", None),
                                                                   "disconnect_on_denial", False)
        if closing:
            self._close(session)
        if action == Action.SUBSCRIBE:
            await asyncio.to_thread(gate.record, API_MQTT_SUBSCRIBE, identity, topic, allowed,
                                    disconnected=closing or None)
        return allowed

    def _close(self, session: Session) -> None:
        """Abort the session's connection at once: nothing more (no SUBACK) is sent on it."""
        _, handler = self.context._broker_instance.sessions.get(session.client_id, (None, None))
        stream = getattr(getattr(handler, "writer", None), "_writer", None)
        if stream is not None:
            stream.transport.abort()

    async def on_broker_message_received(self, *, client_id: str, message: Any) -> None:
        """Log every PUBLISH a device sends, with the ACL verdict (fired before delivery)."""
        gate: DeviceGate = self.config.gate
        if message is None or not message.topic:
            return
        session = self.context.get_session(client_id)
        identity = session.attributes.get(_IDENTITY) if session else None
        allowed = gate.topic_allowed(identity, message.topic, ACTION_PUBLISH)
        payload = loggable_payload(bytes(message.data or b""))
        await asyncio.to_thread(gate.record, API_MQTT_PUBLISH, identity, message.topic, allowed, payload=payload,
                                qos=message.qos)

    async def on_broker_message_broadcast(self, *, client_id: str, message: Any) -> None:
        """A PUBLISH passed the ACL: the device's cloud may answer it on a reply topic."""
        gate: DeviceGate = self.config.gate
        if message is None or not message.topic:
            return
        session = self.context.get_session(client_id)
        identity = session.attributes.get(_IDENTITY) if session else None
        async with self._requests:
            replies = await asyncio.to_thread(gate.handle_publish, identity, message.topic,
                                              bytes(message.data or b""))
            for reply in replies:
                if reply.to_sender:
                    await self._send_to(client_id, reply)
                else:
                    await self.context.broadcast_message(reply.topic, reply.payload)

    async def _send_to(self, client_id: str, reply: Delivery) -> None:
        """A reply to the asking connection alone, when it subscribed to a filter that matches
        (a DPS answer). amqtt 0.12.1's broker keeps (session, handler) by client id."""
        session, handler = self.context._broker_instance.sessions.get(client_id, (None, None))
        if session is None or handler is None:
            return
        subscribed = any(_filter_matches(pattern, reply.topic) and any(s is session for s, _ in subscribers)
                         for pattern, subscribers in self.context.subscriptions.items())
        if not subscribed:
            return
        try:
            await handler.mqtt_publish(reply.topic, reply.payload, QOS_0, retain=False)
        except (ConnectionError, OSError, ssl.SSLError):
            pass  # the client went away; it never got its answer


def _filter_matches(pattern: str, topic: str) -> bool:
    """MQTT 3.1.1 4.7: does the subscription filter `pattern` match `topic`?"""
    wanted, levels = pattern.split("/"), topic.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(levels) or (level != "+" and level != levels[index]):
            return False
    return len(wanted) == len(levels)


class _CloudConnackHandler(BrokerProtocolHandler):
    emulator_store: StateStore | None = None

    _idle_closed = False

    def handle_read_timeout(self) -> None:
        # amqtt's reader waited session.keep_alive seconds (1.5 keepalive intervals, see
        # DeviceAuthPlugin) for a packet: the client is gone as far as MQTT is concerned.
        # A socket that failed with ETIMEDOUT lands here too (asyncio.TimeoutError is OSError's
        # TimeoutError), and its stream raises it again at every read: amqtt's loop would call
        # this without end. The second call ends the loop (it stops at a missing reader).
        if self._idle_closed:
            self.reader = None
            return
        self._idle_closed = True
        if self.session is None or self.writer is None or _IDENTITY not in self.session.attributes:
            return
        asyncio.ensure_future(self._close_idle(self.session, self.writer))

    async def _close_idle(self, session: Session, writer: Any) -> None:
        identity = session.attributes.get(_IDENTITY)
        if self.emulator_store is not None and identity is not None:
            await asyncio.to_thread(self.emulator_store.append_log, API_MQTT_KEEPALIVE, product=identity.product,
                                    device=identity.device, keepalive=session.attributes.get(_KEEPALIVE),
                                    result="closed")
        stream = getattr(writer, "_writer", None)
        try:
            if writer.is_closed and stream is not None:
                stream.transport.abort()  # silenced (admin drop "silence"): the adapter would not close it
            else:
                await writer.close()
        except (ConnectionError, OSError, ssl.SSLError):
            pass

    async def mqtt_connack_authorize(self, authorize: bool) -> None:
        if authorize or self.session is None:
            await super().mqtt_connack_authorize(authorize)
            return
        verdict = self.session.attributes.get(_LAST_VERDICT)
        code = verdict.connack_code if isinstance(verdict, LoginVerdict) else NOT_AUTHORIZED
        if code == CONNACK_NONE:
            return  # amqtt closes the connection next
        await self._send_packet(ConnackPacket.build(0, code))  # session present = 0 on refusal


class _PeekedReader(ReaderAdapter):
    """amqtt's reader for a connection whose first bytes the front has already read."""

    def __init__(self, reader: asyncio.StreamReader, head: bytes) -> None:
        self._reader = reader
        self._head = head

    async def read(self, n: int = -1) -> bytes:
        head, self._head = (self._head, b"") if n < 0 or n >= len(self._head) else (self._head[:n], self._head[n:])
        if n < 0:
            return head + await self._reader.read(-1)
        return head + (await self._reader.readexactly(n - len(head)) if n > len(head) else b"")

    def feed_eof(self) -> None:
        self._reader.feed_eof()


async def read_protocol_name(reader: asyncio.StreamReader) -> tuple[bytes, str | None]:
    """The bytes of a CONNECT up to its protocol name, and the name (None: not a CONNECT).
    Only this much is read: the brokers parse the packet themselves."""
    head = await reader.readexactly(1)
    if head[0] >> 4 != 1:
        return head, None
    for _ in range(4):  # the remaining length: at most four bytes, the last without bit 7
        head += await reader.readexactly(1)
        if not head[-1] & 0x80:
            break
    head += await reader.readexactly(2)
    size = struct.unpack("!H", head[-2:])[0]
    if size > len(MQTT31_PROTOCOL_NAME):
        return head, None
    head += await reader.readexactly(size)
    return head, head[-size:].decode("utf-8", "replace")


class EmulatorBroker(Broker):
    """amqtt behind the emulator's own listeners (amqtt's "external" listener type): each
    connection's CONNECT names its protocol, MQTT 3.1.1 ("MQTT") goes to amqtt, MQTT 3.1
    ("MQIsdp") to mosquitto (mqtt31.py)."""

    def __init__(self, config: dict[str, Any], *, connect_timeout: float, store: StateStore | None = None,
                 gate: DeviceGate | None = None, backlog: int = 100) -> None:
        super().__init__(config)
        # Also the grace period a registration connection gets to read its result before it is closed.
        self.connect_timeout = connect_timeout
        self.store = store
        self.backlog = backlog
        self.mqtt31 = Mqtt31Broker(gate, store, connect_timeout) if gate is not None and store is not None else None
        self._fronts: dict[str, asyncio.AbstractServer] = {}

    async def start(self) -> None:
        await super().start()
        self._drop_watcher = asyncio.ensure_future(self._watch_drops()) if self.store is not None else None
        if self.mqtt31 is not None:
            await self.mqtt31.start()
        for name in (PLAIN_LISTENER, TLS_LISTENER, AWS_LISTENER):
            listener = self.listeners_config.get(name)
            if listener is None:
                continue
            host, port = listener["bind"].rsplit(":", 1)
            context = self._create_ssl_context(listener) if listener.get("ssl", False) else None
            if name == AWS_LISTENER and context is not None:
                context.verify_mode = ssl.CERT_REQUIRED  # no client certificate: the handshake fails
                context.sni_callback = None  # TLS faults are for the MQTTS listener
            self._fronts[name] = await asyncio.start_server(
                partial(self._route, listener_name=name), host, int(port), ssl=context, backlog=self.backlog,
                reuse_address=True)

    async def shutdown(self) -> None:
        for front in self._fronts.values():
            front.close()
        watcher = getattr(self, "_drop_watcher", None)
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if self.mqtt31 is not None:
            await self.mqtt31.stop()
        await super().shutdown()

    async def _route(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str) -> None:
        try:
            head, protocol = await asyncio.wait_for(read_protocol_name(reader), self.connect_timeout)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            writer.transport.abort()  # no CONNECT in time, or the client went away
            return
        try:
            if (protocol == MQTT31_PROTOCOL_NAME and self.mqtt31 is not None and self.mqtt31.available
                    and listener_name != AWS_LISTENER):
                await self.mqtt31.serve(reader, writer, head, "mqtts" if listener_name == TLS_LISTENER else "mqtt")
            else:  # amqtt judges the rest, MQTT 3.1 too when no mosquitto runs (and logs why it refused)
                await self.external_connected(_PeekedReader(reader, head), StreamWriterAdapter(writer), listener_name)
        except (ssl.SSLError, ConnectionError):
            pass  # the client closed while amqtt was closing (e.g. after a refused CONNACK over TLS)

    async def _watch_drops(self) -> None:
        assert self.store is not None
        path = self.store.path(DROPS_FILE)
        while True:
            await asyncio.sleep(DROP_POLL_SECONDS)
            try:
                if os.stat(path).st_size <= len("[]"):
                    continue
            except FileNotFoundError:
                continue
            for request in await asyncio.to_thread(self.store.take_drops):
                how = request.get("how", "reset")
                dropped = self._drop(request["product"], request["device"], how)
                if self.mqtt31 is not None:
                    dropped += self.mqtt31.drop(request["product"], request["device"], how)
                await asyncio.to_thread(
                    self.store.append_log, API_MQTT_DROP, product=request["product"], device=request["device"],
                    request_id=request.get("request_id"), how=request.get("how", "reset"), connections=dropped,
                    result="ok" if dropped else "not-connected")

    def _drop(self, product: str, device: str, how: str) -> int:
        """Reset or silence the connected sessions logged in as product/device; returns how many."""
        dropped = 0
        for session, handler in list(self._sessions.values()):
            identity = session.attributes.get(_IDENTITY)
            writer = getattr(handler, "writer", None)
            stream = getattr(writer, "_writer", None)  # amqtt's StreamWriterAdapter over asyncio's
            if (identity is None or (identity.product, identity.device) != (product, device)
                    or session.transitions.state != "connected" or stream is None or writer.is_closed):
                continue
            transport = stream.transport
            if how == "silence":
                # The PINGREQs are never read, so never answered, and the adapter writes nothing
                # more. 1.5 keepalive intervals later the keepalive check aborts the connection
                # (session.keep_alive is that already); a take-over may stop that check first.
                transport.pause_reading()
                writer.is_closed = True
                asyncio.get_running_loop().call_later((session.keep_alive or 90) + 1, transport.abort)
            else:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()  # with SO_LINGER 0: an RST, no FIN and no TLS close_notify
            dropped += 1
        return dropped

    def _create_ssl_context(self, listener: Any) -> ssl.SSLContext:  # a staticmethod in amqtt
        context = Broker._create_ssl_context(listener)
        context.sni_callback = self._tls_fault
        return context

    def _tls_fault(self, ssl_object: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        """SNI callback of the MQTTS listener: a queued TLS fault picks the certificate presented.
        Runs on the event loop during the handshake (one short locked read of the fault queue)."""
        if self.store is None:
            return
        fault = take_fault(self.store, TARGET_TLS)
        if fault is None:
            return
        kind = fault["kind"]
        self.store.append_log(API_TLS, transport="mqtts", result=f"fault:{kind}", fault=kind)
        ssl_object.context = fault_server_context(self.store.folder, kind, client_certificates=True)

    async def _initialize_client_session(self, reader: Any, writer: Any, *args: Any) -> Any:
        try:
            # amqtt waits for the CONNECT packet without any time limit.
            handler, session = await asyncio.wait_for(
                super()._initialize_client_session(reader, writer, *args), self.connect_timeout
            )
        except asyncio.TimeoutError:
            await writer.close()
            raise NoDataError("no CONNECT received in time") from None
        handler.__class__ = _CloudConnackHandler  # same state, two overridden methods
        handler.emulator_store = self.store
        fault = await asyncio.to_thread(take_fault, self.store, TARGET_MQTT) if self.store is not None else None
        if fault is not None:
            kind = fault["kind"]
            transport = "mqtts" if session.ssl_object is not None else "mqtt"
            await asyncio.to_thread(self.store.append_log, API_MQTT_CONNECT, transport=transport,
                                    result=f"fault:{kind}", fault=kind, seconds=fault.get("seconds"))
            if kind == "mqtt_no_connack":
                await self._hold_unanswered(reader, writer, fault.get("seconds", self.connect_timeout))
                raise NoDataError("CONNECT left unanswered (injected fault)")
            session.attributes[_FAULT] = kind
        return handler, session

    @staticmethod
    async def _hold_unanswered(reader: Any, writer: Any, seconds: float) -> None:
        """Never answer: wait until the client closes (or `seconds` pass), then close."""
        try:
            await asyncio.wait_for(reader.read(-1), seconds)  # returns at EOF; anything sent is ignored
        except (asyncio.TimeoutError, ConnectionError, OSError, ssl.SSLError):
            pass
        try:
            await writer.close()
        except (ConnectionError, OSError, ssl.SSLError):
            pass

    async def _handle_client_session(self, reader: Any, writer: Any, client_session: Session, *args: Any) -> None:
        client_session.attributes[_LISTENER] = args[-1]  # amqtt 0.12.1: (handler, server, listener_name)
        try:
            await super()._handle_client_session(reader, writer, client_session, *args)
        finally:
            client_session.attributes.pop(_FAULT, None)  # a refused login never used it
        if _IDENTITY not in client_session.attributes:
            # amqtt keeps a refused session registered (as connected); a later clean_session=0
            # login would resume it and be told "session present".
            entry = self._sessions.get(client_session.client_id or "")
            if entry is not None and entry[0] is client_session:
                del self._sessions[client_session.client_id or ""]

    async def _handle_message_delivery(self, client_session: Session, handler: Any, wait_deliver: Any) -> bool:
        message = wait_deliver.result()
        topic = getattr(message, "topic", None) or ""
        if not topic.startswith("$") or "#" in topic or "+" in topic:
            return await super()._handle_message_delivery(client_session, handler, wait_deliver)
        # amqtt 0.12.1 would close the connection here; deliver like any other topic instead.
        await self.plugins_manager.fire_event(
            BrokerEvents.MESSAGE_RECEIVED, client_id=client_session.client_id, message=message
        )
        if await self._topic_filtering(client_session, topic=topic, action=Action.PUBLISH):
            await self.plugins_manager.fire_event(
                BrokerEvents.MESSAGE_BROADCAST, client_id=client_session.client_id, message=message
            )
            await self._broadcast_message(client_session, topic, message.data)
            if message.publish_packet and message.publish_packet.retain_flag:
                await self.retain_message(client_session, topic, message.data, message.qos)
        return True

    async def _publish_session_retained_messages(self, session: Session) -> None:
        # Called by amqtt 0.12.1 right after CONNACK 0 and handler.start(), before the message loop.
        verdict = session.attributes.get(_LAST_VERDICT)
        handler = self._get_handler(session)
        if session.attributes.pop(_FAULT, None) == "mqtt_close_after_connack" and handler is not None:
            await self._close_connection(handler)  # nothing delivered: a registration result is lost
            return
        if isinstance(verdict, LoginVerdict) and verdict.accepted and verdict.deliveries and handler is not None:
            for delivery in verdict.deliveries:
                try:
                    await handler.mqtt_publish(delivery.topic, delivery.payload, QOS_0, retain=False)
                except (ConnectionError, OSError, ssl.SSLError):
                    break  # the client already went away; it never got the result and may register again
                await asyncio.to_thread(self._log_delivery, verdict, delivery)
            if verdict.close_after_delivery:
                asyncio.get_running_loop().call_later(
                    self.connect_timeout, lambda: asyncio.ensure_future(self._close_connection(handler)))
        await super()._publish_session_retained_messages(session)

    def _log_delivery(self, verdict: LoginVerdict, delivery: Delivery) -> None:
        if self.store is not None:
            self.store.append_log(API_MQTT_DELIVER, product=verdict.product, device=verdict.device,
                                  topic=delivery.topic, result="ok", qos=QOS_0)

    @staticmethod
    async def _close_connection(handler: Any) -> None:
        """Close a registration connection the client left open (its result was sent long ago)."""
        writer = handler.writer
        if writer is not None:
            try:
                await writer.close()
            except (ConnectionError, ssl.SSLError, OSError):
                pass

    def bound_port(self, listener_name: str) -> int:
        """The port a listener actually bound (the configuration may say 0)."""
        return self._fronts[listener_name].sockets[0].getsockname()[1]


def broker_config(
    gate: DeviceGate, host: str, mqtt_port: int, mqtts_port: int, server_cert: Path, server_key: Path, ca_pem: Path,
    aws_mqtts_port: int | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listeners": {
            # "external": the emulator accepts the connections (EmulatorBroker._route).
            PLAIN_LISTENER: {"type": "external", "bind": f"{host}:{mqtt_port}"},
            TLS_LISTENER: {
                "type": "external",
                "bind": f"{host}:{mqtts_port}",
                "ssl": True,
                "certfile": str(server_cert),
                "keyfile": str(server_key),
                "cafile": str(ca_pem),  # client certificates are optional and verified against it
            },
        },
        "plugins": {
            f"{__name__}.DeviceAuthPlugin": {"gate": gate},
            f"{__name__}.DeviceTopicPlugin": {"gate": gate},
        },
    }
    if aws_mqtts_port is not None:
        config["listeners"][AWS_LISTENER] = {**config["listeners"][TLS_LISTENER], "bind": f"{host}:{aws_mqtts_port}"}
    return config

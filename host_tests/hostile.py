# Hostile peers for the bounded-wait tests: a scripted MQTT broker (plain or TLS, with a
# certificate from a test CA) that answers CONNECT and then misbehaves at a chosen byte, and a
# TCP proxy that trickles a real server's bytes to the device one at a time.
import socket
import ssl
import struct
import threading
import time

CONNACK_OK = b"\x20\x02\x00\x00"


def remaining_length(n: int) -> bytes:
    out = b""
    while True:
        n, digit = divmod(n, 128)
        out += bytes([digit | (0x80 if n else 0)])
        if not n:
            return out


def publish(topic: str, payload: bytes) -> bytes:
    body = struct.pack("!H", len(topic)) + topic.encode() + payload
    return b"\x30" + remaining_length(len(body)) + body


def read_packet(conn) -> tuple[int, bytes]:
    first = _exactly(conn, 1)[0]
    length, shift = 0, 0
    while True:
        byte = _exactly(conn, 1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, _exactly(conn, length)


def _exactly(conn, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def hold(conn, stop: threading.Event) -> None:
    # Says nothing more; returns when the device closes or the test ends. Records nothing it reads.
    conn.settimeout(0.2)
    while not stop.is_set():
        try:
            if not conn.recv(4096):
                return
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except OSError:
            return


class _Listener:
    """Accepts on 127.0.0.1 in a thread until the test ends; each connection goes to
    `_accepted`. A context manager: leaving it stops the accepting and every script."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._accepted(conn)

    def _accepted(self, conn) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.listener.close()


class HostileBroker(_Listener):
    """Accepts on 127.0.0.1; each connection runs `script(conn, stop)` in a thread, over TLS with
    the server certificate of `material` (cloud_emulator.crypto.TlsMaterial) when given.
    `connections` counts the connections accepted."""

    def __init__(self, script, material=None):
        self.script = script
        self.context = None
        if material is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(material.server_cert_path, material.server_key_path)
        self.connections = 0
        self.threads: list[threading.Thread] = []
        super().__init__()

    def _accepted(self, conn) -> None:
        self.connections += 1
        thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _serve(self, conn) -> None:
        try:
            conn.settimeout(30)
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            self.script(conn, self.stop)
        except (OSError, ConnectionError):
            pass
        finally:
            conn.close()

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        for thread in self.threads:
            thread.join(5)


class TrickleProxy(_Listener):
    """Listens on 127.0.0.1 and relays each connection to 127.0.0.1:`upstream`: what the device
    sends at once, what the server sends one byte every `interval` seconds (a TLS handshake, an
    HTTP answer), so that no single read waits long but the whole takes minutes."""

    def __init__(self, upstream: int, interval: float):
        self.upstream = upstream
        self.interval = interval
        self.relayed_to_device = 0
        super().__init__()

    def _accepted(self, device) -> None:
        server = socket.create_connection(("127.0.0.1", self.upstream))
        threading.Thread(target=self._pump, args=(device, server, 0), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, device, self.interval), daemon=True).start()

    def _pump(self, source, sink, interval: float) -> None:
        source.settimeout(0.2)
        try:
            while not self.stop.is_set():
                try:
                    data = source.recv(4096 if not interval else 1)
                except socket.timeout:
                    continue
                if not data:
                    break
                sink.sendall(data)
                if interval:
                    self.relayed_to_device += 1
                    time.sleep(interval)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def publish_qos1(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = struct.pack("!H", len(topic)) + topic.encode() + struct.pack("!H", packet_id) + payload
    return b"\x32" + remaining_length(len(body)) + body


class ScriptedBroker(HostileBroker):
    """A broker over TLS (`material`) that accepts any login and answers pings; each connection
    plays the next of `sessions` (the last one again once they run out): {"suback": the SUBACK's
    return code, "cut": the SUBACK cut short after its packet id's first byte and the connection
    closed, "send": packets sent after the SUBACK}. The packet ids of the PUBACKs it got are kept."""
    def __init__(self, material, *sessions):
        self.sessions, self.played, self.pubacks, self.material = list(sessions), 0, [], material
        super().__init__(self.play, material)

    def play(self, conn, stop):
        session = self.sessions[min(self.played, len(self.sessions) - 1)]
        self.played += 1
        kind, _ = read_packet(conn)
        assert kind >> 4 == 1  # CONNECT
        conn.sendall(CONNACK_OK)
        while not stop.is_set():
            kind, body = read_packet(conn)
            if kind >> 4 == 8:  # SUBSCRIBE
                if session.get("cut"):
                    conn.sendall(b"\x90\x03" + body[:1])
                    return  # closed
                conn.sendall(b"\x90\x03" + body[:2] + bytes([session.get("suback", 0)]))
                for packet in session.get("send", ()):
                    conn.sendall(packet)
            elif kind >> 4 == 12:  # PINGREQ
                conn.sendall(b"\xd0\x00")
            elif kind >> 4 == 4:  # PUBACK
                self.pubacks.append(struct.unpack("!H", body)[0])
            elif kind >> 4 == 14:  # DISCONNECT
                return

# A raw-socket MQTT 3.1.1 client for the emulator's tests: what a device sends, byte for byte,
# so the tests see exactly how the broker (amqtt) answers.
import socket
import struct


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    length, encoded = len(body), b""
    while True:
        length, digit = divmod(length, 128)
        encoded += bytes([digit | (0x80 if length else 0)])
        if not length:
            return bytes([first]) + encoded + body


class RawMqtt:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.packet_id = 0

    @classmethod
    def connect(cls, port: int, client_id: str, username: str | None = None, password: str | None = None, *,
                tls=None, keepalive: int = 60, protocol: tuple[str, int] = ("MQTT", 4),
                password_only: bool = False) -> tuple["RawMqtt", int | None]:
        # -> (client, CONNACK return code, or None when the broker closed without one); `tls` is
        # an ssl.SSLContext for the TLS listener; `protocol` the CONNECT's name and level
        # (MQTT 3.1: ("MQIsdp", 3)); `password_only` sends the password without the username flag.
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        flags = 0x02 | (0x80 if username is not None and not password_only else 0) | (0x40 if password is not None else 0)
        if password_only:
            username = None
        body = (_string(protocol[0]) + bytes([protocol[1], flags]) + struct.pack("!H", keepalive)
                + _string(client_id))
        body += _string(username) if username is not None else b""
        body += _string(password) if password is not None else b""
        client = cls(sock)
        sock.sendall(_packet(0x10, body))
        try:
            kind, payload = client.read_packet()
        except ConnectionError:
            return client, None
        assert kind >> 4 == 2, kind  # CONNACK
        return client, payload[1]

    def _read_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by broker")
            data += chunk
        return data

    def read_packet(self) -> tuple[int, bytes]:
        first = self._read_exact(1)[0]
        length, shift = 0, 0
        while True:
            digit = self._read_exact(1)[0]
            length |= (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                return first, self._read_exact(length)

    def subscribe(self, topic_filter: str, qos: int = 0) -> int:
        # -> the granted QoS, or 0x80 for a refusal
        self.packet_id += 1
        self.sock.sendall(_packet(0x82, struct.pack("!H", self.packet_id) + _string(topic_filter) + bytes([qos])))
        kind, payload = self.read_packet()
        assert kind >> 4 == 9  # SUBACK
        return payload[2]

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.packet_id += 1
        body = _string(topic) + (struct.pack("!H", self.packet_id) if qos else b"") + payload
        self.sock.sendall(_packet(0x30 | (qos << 1), body))
        if qos:
            kind, _ = self.read_packet()
            assert kind >> 4 == 4  # PUBACK

    def next_publish(self, timeout: float = 5.0) -> tuple[str, bytes, int]:
        # -> (topic, payload, fixed-header flags) of the next PUBLISH
        self.sock.settimeout(timeout)
        while True:
            kind, body = self.read_packet()
            if kind >> 4 == 3:
                (topic_length,) = struct.unpack("!H", body[:2])
                skip = 2 if (kind >> 1) & 3 else 0
                return body[2 : 2 + topic_length].decode(), body[2 + topic_length + skip :], kind & 0x0F

    def ping(self) -> bool:
        self.sock.sendall(b"\xc0\x00")
        return self.read_packet()[0] == 0xD0  # PINGRESP

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()

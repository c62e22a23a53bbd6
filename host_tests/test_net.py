# dynreg.net's port-independent parts (runs on CPython and MicroPython): TCP_NODELAY by the
# port's own constants, errno words by the errno module's names, PEM bundles, and an HTTPS
# answer read by TLS record.
import errno

from support import exact
from dynreg import NetworkError, ProtocolError, codec, http, net


class _Recorder:
    def __init__(self):
        self.calls = []

    def setsockopt(self, level, option, value):
        self.calls.append((level, option, value))


class _Names:
    # Stands in for a port's socket or errno module: only the names given.
    def __init__(self, **names):
        for name in names:
            setattr(self, name, names[name])


def test_nodelay_uses_the_ports_own_numbers():
    real = net.socket
    try:
        net.socket = _Names(IPPROTO_TCP=6, TCP_NODELAY=0x40)  # lwIP (rp2): TF_NODELAY
        sock = _Recorder()
        net.nodelay(sock)
        assert sock.calls == [(6, 0x40, 1)]
        net.socket = _Names()  # a port that names neither: Linux's numbers
        sock = _Recorder()
        net.nodelay(sock)
        assert sock.calls == [(6, 1, 1)]
    finally:
        net.socket = real


def test_errno_words_follow_the_ports_errno_module():
    real = net.errno
    # ESP32's newlib numbers: ETIMEDOUT 116, ECONNRESET 104, ECONNREFUSED 111 (not Linux's 110).
    net.errno = _Names(EAGAIN=11, ETIMEDOUT=116, ECONNRESET=104, ECONNREFUSED=111,
                       ECONNABORTED=113, EHOSTUNREACH=118, ENOTCONN=128)
    try:
        assert net.reason(OSError(116)) == "timed out"
        assert net.reason(OSError(-116)) == "timed out"  # as mbedTLS hands it up
        assert net.reason(OSError(104)) == "connection reset"
        assert net.reason(OSError(110)) == "110"  # Linux's ETIMEDOUT means nothing on this port
        assert net.reason(OSError("wifi down")) == "wifi down"
        assert net.reason(OSError(-1)) == "connection closed"  # umqtt.simple's end of stream
        assert net.reason(OSError()) == "OSError"
    finally:
        net.errno = real


class _NoSockets:
    # A port's socket module whose stack has no connection left: lwIP's socket() raises
    # ENOMEM once its TCP control blocks are all taken; at="settimeout", the socket is made
    # and the first call on it fails. Resolving works. The sockets made are kept.
    SOCK_STREAM = 1

    def __init__(self, at):
        self.at = at
        self.made = []

    def getaddrinfo(self, host, port, family=0, kind=0):
        return [(2, 1, 6, "", ("127.0.0.1", port))]

    def socket(self, family, kind, proto):
        if self.at == "socket":
            raise OSError(errno.ENOMEM)
        self.made.append(self)
        return self

    def settimeout(self, seconds):
        raise OSError(errno.ENOMEM)

    def close(self):
        self.made.remove(self)


def test_no_socket_left_is_a_network_error():
    # socket() or its first call failing (lwIP out of connections) is a NetworkError that the
    # retry policies take like any failed connect, and a socket made is closed again.
    real = net.socket
    try:
        for at in ("socket", "settimeout"):
            net.socket = _NoSockets(at)
            e = exact(NetworkError, net.connect, "broker.example", 8883, net.deadline_in(1000))
            assert str(e) == "cannot connect to broker.example:8883 (out of memory)", e
            assert net.socket.made == []
    finally:
        net.socket = real


_BODY_A = b"MIIBszCCAVmgAwIBAgIU"  # base64 of 15 bytes
_BODY_B = b"AQIDBAUGBwgJCgsMDQ4P"  # bytes 1..15


def test_pem_blocks_returns_every_block_of_a_bundle():
    bundle = (b"# root one\n-----BEGIN CERTIFICATE-----\n" + _BODY_A + b"\n-----END CERTIFICATE-----\n"
              b"\n# root two\r\n-----BEGIN CERTIFICATE-----\r\n" + _BODY_B[:10] + b"\r\n" + _BODY_B[10:]
              + b"\r\n-----END CERTIFICATE-----\r\n")
    blocks = codec.pem_blocks(bundle)
    assert blocks == [bytes([0x30, 0x82, 0x01, 0xb3, 0x30, 0x82, 0x01, 0x59, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x14]),
                      bytes(range(1, 16))]
    assert codec.pem_blocks(bundle.decode()) == blocks  # text as well as bytes
    der = bytes([0x30, 0x03, 0x02, 0x01, 0x05])
    assert codec.pem_blocks(der) == [der]  # DER passes through
    exact(ProtocolError, codec.pem_blocks, b"-----BEGIN CERTIFICATE-----\n" + _BODY_A)  # no END line


def test_base64_with_a_character_outside_the_alphabet_is_refused():
    # a2b_base64 skips such characters on both runtimes; "QUJD" is b"ABC".
    assert codec.b64decode("QUJDQUJD") == b"ABCABC"
    for bad in ("QUJD!QUJD", "QUJD QUJD", "QUJ!", "QUJDQUJ", "QUJD\nQUJD", b"QUJD!QUJD"):
        exact(ProtocolError, codec.b64decode, bad)


class _Records:
    # A TLS socket as v1.28's SSLSocket: recv(n) gives what one mbedTLS read returns, at most
    # the rest of the current record; read(n) is there too, and counted.
    def __init__(self, records, has_recv=True):
        self.records = [bytearray(r) for r in records]
        self.calls = []
        if has_recv:
            self.recv = self._recv

    def _recv(self, n):
        self.calls.append(("recv", n))
        return self._take(n)

    def read(self, n):
        self.calls.append(("read", n))
        return self._take(n)

    def _take(self, n):
        while self.records and not self.records[0]:
            self.records.pop(0)
        if not self.records:
            return b""
        data = bytes(self.records[0][:n])
        self.records[0] = self.records[0][n:]
        return data


_ANSWER = [b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\nRetry-After: 3\r\n\r\n", b'{"Response":{"Payload":"abc"}}']


def test_an_https_answer_is_read_a_record_at_a_time():
    # Two records, read in a few receives rather than one call per byte (81 ms of a registration
    # answer on the chip, issue 28).
    tls = _Records(_ANSWER)
    status, body, retry_after = http._read_response(http._Reader(tls, None), 8192)
    assert (status, body, retry_after) == (200, b'{"Response":{"Payload":"abc"}}', 3)
    assert all(kind == "recv" for kind, _ in tls.calls) and len(tls.calls) <= 6, tls.calls


def test_without_recv_the_answer_is_read_a_byte_at_a_time():
    # An older firmware's SSLSocket: read(n) would wait for all n bytes, so only read(1) is safe.
    tls = _Records(_ANSWER, has_recv=False)
    assert http._read_response(http._Reader(tls, None), 8192)[1] == b'{"Response":{"Payload":"abc"}}'
    assert set(tls.calls) == {("read", 1)} and len(tls.calls) > 80, len(tls.calls)

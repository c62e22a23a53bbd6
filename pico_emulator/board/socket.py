# The `socket` module of the emulated Pico W, copied to its flash root (a file there takes the
# place of the built-in one). The CYW43 radio is the one part that cannot exist in emulation:
# this stands in for it, and nothing else. TCP streams and SNTP queries travel as frames over
# UART0 to the emulator's runner (pico_emulator/tunnel.mjs), which relays them to loopback.
# mbedTLS (`tls` wraps any stream), dynreg and umqtt.simple above it run as on a board.
# A connection holds no more unread data than lwIP's receive window on a Pico W, and the relay
# sends no more until the board has read some (window updates, as TCP's): the stand-in's
# buffers come out of the board's heap, where a real board's come out of lwIP's own memory.
import errno
import io
import struct
import time

import machine

AF_INET = 2
SOCK_STREAM = 1
SOCK_DGRAM = 2
IPPROTO_TCP = 6
TCP_NODELAY = 1
SOL_SOCKET = 1
SO_REUSEADDR = 4
_POLL = 3  # MP_STREAM_POLL
_CLOSE = 4  # MP_STREAM_CLOSE
_POLLIN = 1
_POLLOUT = 4
_MAX_PAYLOAD = 1024
# TCP_WND of the Pico W's lwIP: 8 * TCP_MSS of 800 (extmod/lwip-include/lwipopts_common.h).
_WINDOW = 6400  # tunnel.mjs holds the same number
# lwIP's TCP_WND_UPDATE_THRESHOLD (a quarter of the window): read this much, and the window opens.
_UPDATE = 1600

_uart = None
_head = bytearray(4)  # the frame coming in: its head, then its payload
_body = None
_have = 0  # bytes of the head, then of the payload, in
_links = {}
_next_link = [0]


def _port():
    global _uart
    if _uart is None:
        _uart = machine.UART(0, 115200, rxbuf=4096)
    return _uart


def _send(kind, link, payload=b""):
    _port().write(struct.pack(">BBH", ord(kind), link, len(payload)) + payload)


def _pump():
    # Whatever the relay has sent, a frame at a time, each payload read straight into its own
    # buffer (_MAX_PAYLOAD bytes at most) and handed to the socket it belongs to.
    global _body, _have
    uart = _port()
    while True:
        buf = _head if _body is None else _body
        if _have < len(buf):
            n = uart.readinto(memoryview(buf)[_have:])
            if not n:
                return
            _have += n
            continue
        if _body is None:
            _body, _have = bytearray(_head[2] << 8 | _head[3]), 0
            continue
        s = _links.get(_head[1])
        if s:
            s._frame(chr(_head[0]), _body)
        _body, _have = None, 0


def getaddrinfo(host, port, af=0, kind=0, proto=0, flags=0):
    # Names are resolved by the relay, on the host.
    return [(AF_INET, kind or SOCK_STREAM, 0, "", (host, port))]


class socket(io.IOBase):
    def __init__(self, af=AF_INET, kind=SOCK_STREAM, proto=0):
        self.kind = kind
        self.timeout = None
        self.state = "new"  # opening, open, closed (by the peer), error, shut (by us)
        self.error = None
        self.chunks = []  # the payloads in, not read yet: a window's worth at most
        self.at = 0  # how much of the first one is read
        self.unannounced = 0  # bytes read since the last window update
        self.link = None

    def _frame(self, kind, payload):
        if kind == "K":
            self.state = "open"
        elif kind == "E":
            self.state, self.error = "error", bytes(payload).decode()
        elif kind == "D":
            self.chunks.append(payload)
        elif kind == "C":
            self.state = "closed"

    def _wait(self, ready):
        # True once ready(); False at once when non-blocking; OSError ETIMEDOUT past the timeout.
        deadline = None if self.timeout is None else time.ticks_add(time.ticks_ms(), int(self.timeout * 1000))
        while True:
            _pump()
            if ready():
                return True
            if self.timeout == 0:
                return False
            if deadline is not None and time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise OSError(errno.ETIMEDOUT)
            time.sleep_ms(1)

    def settimeout(self, seconds):
        self.timeout = seconds

    def setblocking(self, flag):
        self.timeout = None if flag else 0

    def setsockopt(self, level, option, value):
        pass

    def connect(self, addr):
        host, port = addr
        # Link ids go round, not lowest first: the relay's frames for a link closed a moment
        # ago (its peer's close, late data) must not reach the next connection.
        self.link = next((_next_link[0] + i) % 256 for i in range(256) if (_next_link[0] + i) % 256 not in _links)
        _next_link[0] = (self.link + 1) % 256
        _links[self.link] = self
        self.state = "opening"
        _send("O" if self.kind == SOCK_STREAM else "U", self.link, ("%s:%d" % (host, port)).encode())
        try:
            self._wait(lambda: self.state != "opening")
        except OSError:
            self.close()
            raise
        if self.state == "error":
            _links.pop(self.link, None)
            raise OSError(getattr(errno, self.error, errno.EIO))

    def write(self, data, n=None):
        if self.state not in ("open", "closed"):
            raise OSError(errno.ENOTCONN)
        if self.state == "closed":
            raise OSError(errno.ECONNRESET)
        data = memoryview(data)[:len(data) if n is None else n]
        for off in range(0, len(data), _MAX_PAYLOAD):
            _send("D", self.link, bytes(data[off:off + _MAX_PAYLOAD]))
        return len(data)

    send = write

    def sendall(self, data):
        self.write(data)

    def sendto(self, data, addr):
        if self.state == "new":
            self.connect(addr)
        return self.write(data)

    def readinto(self, buf, n=None):
        n = len(buf) if n is None else min(n, len(buf))
        if not self._wait(lambda: self.chunks or self.state != "open"):
            return None  # non-blocking, nothing yet
        k = 0
        while k < n and self.chunks:
            chunk = self.chunks[0]
            m = min(n - k, len(chunk) - self.at)
            buf[k:k + m] = memoryview(chunk)[self.at:self.at + m]
            k += m
            self.at += m
            if self.at == len(chunk):
                self.chunks.pop(0)
                self.at = 0
        self.unannounced += k
        if self.kind == SOCK_STREAM and self.state == "open" and self.unannounced >= _UPDATE:
            _send("W", self.link, struct.pack(">H", self.unannounced))  # the window opens again
            self.unannounced = 0
        return k  # 0: the peer closed

    def read(self, n=-1):
        if n is None or n < 0:  # to the end of the stream
            data = b""
            while True:
                part = self.read(_MAX_PAYLOAD)
                if not part:
                    return data
                data += part
        buf = bytearray(n)
        k = self.readinto(buf)
        return None if k is None else bytes(buf[:k])

    def recv(self, n):
        data = self.read(n)
        if data is None:
            raise OSError(errno.EAGAIN)
        return data

    def readline(self):
        line = b""
        while not line.endswith(b"\n"):
            c = self.read(1)
            if not c:
                break
            line += c
        return line

    def ioctl(self, request, arg):
        if request == _POLL:
            _pump()
            ready = _POLLOUT if self.state == "open" else 0
            if self.chunks or self.state != "open":
                ready |= _POLLIN
            return ready & arg
        if request == _CLOSE:
            self.close()
        return 0

    def close(self):
        if self.state in ("opening", "open"):
            _send("C", self.link)
        self.state = "shut"
        _links.pop(self.link, None)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()

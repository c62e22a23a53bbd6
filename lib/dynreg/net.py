# TCP and TLS under one deadline, on every port. A socket timeout bounds one receive: a peer
# that trickles a byte at a time, during the TLS handshake or inside a packet, stretches it
# without end, and `setblocking(True)` means forever on ESP32 and rp2. Here the TCP socket is
# non-blocking under a stream (`Bounded`) that waits with select.poll for at most what is left
# of its deadline, so mbedTLS above it, HTTP and umqtt.simple inherit the bound.
# DNS is the one wait left to the port: getaddrinfo takes no timeout on any of them.
import errno
import io
import select
import socket
from micropython import const
from dynreg import ConfigError, NetworkError, ProtocolError, TLSError, clock

_POLL = const(3)  # MP_STREAM_POLL, as the ports' stream protocol numbers it
_CLOSE = const(4)  # MP_STREAM_CLOSE

# Name, then words: by the errno module's names, as the numbers differ between ports (ESP32's
# newlib is not Linux). One flat tuple: a frozen tuple of pairs costs a tuple per pair.
_ERRNO_WORDS = ("EAGAIN", "timed out", "ETIMEDOUT", "timed out", "ECONNABORTED", "connection aborted",
                "ECONNRESET", "connection reset", "ECONNREFUSED", "connection refused",
                "EHOSTUNREACH", "no route to host", "ENOTCONN", "not connected", "ENOMEM", "out of memory")


def reason(e):
    if not e.args:
        return type(e).__name__
    code = e.args[0]
    if code == -1:
        return "connection closed"  # umqtt.simple's OSError(-1): the broker ended the stream
    if type(code) is int:
        code = abs(code)  # mbedTLS hands a socket's error up negated on some paths
        for i in range(0, len(_ERRNO_WORDS), 2):
            if code == getattr(errno, _ERRNO_WORDS[i], None):
                return _ERRNO_WORDS[i + 1]
    return str(e.args[0]).strip()


def _errno(e):
    code = e.args[0] if e.args else None
    return abs(code) if type(code) is int else 5  # EIO


def nodelay(sock):
    # TCP_NODELAY by the port's own numbers: lwIP (rp2, ESP32) names it; Linux's are 6 and 1.
    try:
        sock.setsockopt(getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1), 1)
    except (OSError, AttributeError):
        pass


def deadline_in(ms):
    return clock.ticks_add(clock.ticks_ms(), ms)


def left(deadline):
    return clock.ticks_diff(deadline, clock.ticks_ms())


class Bounded(io.IOBase):
    # A connected TCP socket as a stream whose every wait ends by `deadline` (ticks_ms), with
    # ETIMEDOUT past it (None: no bound, which only umqtt with keepalive 0 asks for). `wait = False` makes a read with nothing there return None at once
    # (what umqtt's check_msg asks for). mbedTLS reads and writes it through readinto/write.
    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline
        self.wait = True
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        sock.setblocking(False)

    def _ready(self, event):
        if self.deadline is None:
            remaining = -1  # no bound
        else:
            remaining = left(self.deadline)
            if remaining <= 0:
                return False
        self._poller.modify(self.sock, event)
        return bool(self._poller.poll(remaining))  # also true on an error or a hang-up

    def readinto(self, buf):
        while True:
            try:
                n = self.sock.readinto(buf)
            except OSError as e:
                return -_errno(e)  # a negative errno is how a Python stream reports one
            if n is not None:
                return n
            if not self.wait:
                return None
            if not self._ready(select.POLLIN):
                return -errno.ETIMEDOUT

    def write(self, buf):
        while True:
            try:
                n = self.sock.write(buf)
            except OSError as e:
                return -_errno(e)
            if n:
                return n
            if not self._ready(select.POLLOUT):
                return -errno.ETIMEDOUT

    def ioctl(self, request, arg):
        if request == _CLOSE:
            self.close()
            return 0
        if request == _POLL:
            self._poller.modify(self.sock, arg)
            events = self._poller.poll(0)
            return events[0][1] & (arg | select.POLLHUP | select.POLLERR) if events else 0
        return -22  # EINVAL

    # For plain TCP, where nothing wraps the stream: the calls umqtt and http make.
    def read(self, n):
        buf = bytearray(n)
        got = 0
        while got < n:
            k = self._check(self.readinto(memoryview(buf)[got:]))
            if k is None:
                if not got:
                    return None
                break
            if not k:
                break
            got += k
        return bytes(buf) if got == n else bytes(buf[:got])

    def recv(self, n):
        buf = bytearray(n)
        k = self._check(self.readinto(buf))
        return bytes(buf[:k or 0])

    def send_all(self, data):
        view = memoryview(data)
        while view:
            view = view[self._check(self.write(view)):]
        return len(data)

    def _check(self, n):
        if n is not None and n < 0:
            raise OSError(-n)
        return n

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect(host, port, deadline):
    # A TCP connection by the deadline, as a Bounded stream. DNS is outside it (see above),
    # but an answer that came after it ends here.
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except (OSError, IndexError):
        raise NetworkError("cannot resolve %s" % host)
    sock = None
    try:  # socket() too: lwIP raises ENOMEM when its connections are all taken
        remaining = left(deadline)
        if remaining <= 0:
            raise OSError("DNS timed out")  # the answer came after the deadline
        sock = socket.socket(family, kind, proto)
        sock.settimeout(remaining / 1000)
        sock.connect(addr)
    except OSError as e:
        if sock:
            sock.close()
        raise NetworkError("cannot connect to %s:%d (%s)" % (host, port, reason(e)))
    nodelay(sock)
    return Bounded(sock, deadline)


def tls_context(ca, cert=None, key=None):
    # A client context that verifies the server against `ca`: DER, PEM holding one certificate
    # or a bundle, or a tuple of DER (a cloud's built-in roots). v1.28's unix and rp2 builds
    # leave PEM parsing out of mbedTLS (ESP-IDF's keeps it), so each PEM block goes in as DER;
    # every one of a bundle is trusted, and one valid root is enough where others have expired.
    import tls
    from dynreg.codec import pem_blocks

    if not ca:
        raise ConfigError("TLS needs a CA: set ca in the info")
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED by default
    try:
        for der in ca if type(ca) is tuple else pem_blocks(ca):
            ctx.load_verify_locations(der)
        if cert:
            ctx.load_cert_chain(pem_blocks(cert)[0], pem_blocks(key)[0])
    except (ValueError, OSError, ProtocolError) as e:
        raise ConfigError("bad CA or client certificate (%s)" % reason(e))
    return ctx


def wrap(stream, ctx, host):
    # The TLS handshake, bounded by the stream's deadline like every read after it.
    try:
        return ctx.wrap_socket(stream, server_hostname=host)
    except ValueError as e:
        # mbedTLS reports certificate and host name failures as ValueError.
        why = reason(e)
        if "validity" in why:  # "... starts in the future" or "... has expired": first suspect the clock
            why += ": is the device's clock right?"
        raise TLSError("TLS: certificate of %s failed the check: %s" % (host, why))
    except OSError as e:
        raise NetworkError("TLS handshake with %s failed (%s)" % (host, reason(e)))

# A minimal HTTP/1.0 client for the registration request: one request per connection,
# certificates and host name verified (mbedTLS through `tls`), hard limits and timeouts on
# everything it reads. micropython-lib `requests` does not verify certificates, hence this.
import socket
from micropython import const
from dynreg import ConfigError, NetworkError, TLSError, ProtocolError, clock
from dynreg.codec import MAX_RESPONSE

_MAX_LINE = const(1024)
_MAX_HEADERS = const(40)


def split_url(url):
    # "https://host[:port]/path" -> (scheme, host, port, path)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https", "mqtt", "mqtts"):
        raise ConfigError("URL must start with http://, https://, mqtt:// or mqtts://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    default = {"http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}[scheme]
    try:
        port = int(port) if port else default
    except ValueError:
        raise ConfigError("URL port is not a number")
    if not host:
        raise ConfigError("URL has no host")
    return scheme, host, port, "/" + path


def tls_context(ca, cert=None, key=None):
    # A client context that verifies the server against `ca`. Certificates and keys may be
    # DER or PEM; PEM is turned into DER, which every mbedTLS build parses.
    import tls
    from dynreg.codec import pem_to_der

    if not ca:
        raise ConfigError("TLS needs the server's CA certificate: set 'ca' in the info or pass ca=")
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED by default
    try:
        ctx.load_verify_locations(pem_to_der(ca))
        if cert:
            ctx.load_cert_chain(pem_to_der(cert), pem_to_der(key))
    except (ValueError, OSError, ProtocolError) as e:
        raise ConfigError("CA or client certificate is not valid DER/PEM (%s)" % reason(e))
    return ctx


# By the errno module's names: the numbers differ between ports (ESP32's newlib is not Linux).
_ERRNO_WORDS = (("EAGAIN", "timed out"), ("ETIMEDOUT", "timed out"), ("ECONNABORTED", "connection aborted"),
                ("ECONNRESET", "connection reset"), ("ECONNREFUSED", "connection refused"),
                ("EHOSTUNREACH", "no route to host"))


def reason(e):
    if not e.args:
        return type(e).__name__
    import errno

    for name, words in _ERRNO_WORDS:
        if e.args[0] == getattr(errno, name, None):
            return words
    return str(e.args[0]).strip()


def nodelay(sock):
    # TCP_NODELAY by the port's own numbers: lwIP (rp2, ESP32) names it; Linux's are 6 and 1.
    try:
        sock.setsockopt(getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1), 1)
    except (OSError, AttributeError):
        pass


def wrap(sock, ctx, host):
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except ValueError as e:
        # mbedTLS reports certificate and host name failures as ValueError.
        raise TLSError("TLS: %s refused: %s" % (host, reason(e)))
    except OSError as e:
        raise NetworkError("TLS handshake with %s failed (%s)" % (host, reason(e)))


def connect(host, port, timeout_ms):
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except (OSError, IndexError):
        raise NetworkError("cannot resolve %s" % host)
    sock = socket.socket(family, kind, proto)
    sock.settimeout(timeout_ms / 1000)
    try:
        sock.connect(addr)
    except OSError as e:
        sock.close()
        raise NetworkError("cannot connect to %s:%d (%s)" % (host, port, reason(e)))
    return sock


def post(url, headers, body, ca=None, timeout_ms=10000, limit=MAX_RESPONSE):
    # Returns (status, body, retry_after): retry_after is the Retry-After header in seconds,
    # or None. Network trouble, a timeout or a body cut short is a NetworkError; a body over
    # `limit` or a garbled answer is a ProtocolError.
    scheme, host, port, path = split_url(url)
    ctx = tls_context(ca) if scheme == "https" else None
    sock = raw = connect(host, port, timeout_ms)
    deadline = clock.ticks_add(clock.ticks_ms(), timeout_ms)  # bounds a server that trickles bytes
    try:
        if ctx:
            sock = wrap(sock, ctx, host)
        default_port = port == (443 if ctx else 80)
        lines = ["POST %s HTTP/1.0" % path, "Host: " + (host if default_port else "%s:%d" % (host, port))]
        for name in headers:
            lines.append("%s: %s" % (name, headers[name]))
        lines.append("Content-Length: %d" % len(body))
        lines.append("Connection: close\r\n\r\n")
        try:
            # One write: a second small one would wait for the ACK of the first (Nagle and
            # delayed ACK, 40 ms a request).
            sock.write("\r\n".join(lines).encode() + body)
            return _read_response(_Reader(sock, raw, deadline), limit)
        except OSError as e:
            raise NetworkError("%s:%d: %s" % (host, port, reason(e)))
    finally:
        sock.close()


class _Reader:
    # The response through one deadline: every receive waits at most what is left of it, so
    # a server that trickles bytes cannot stretch a line or the body past timeout_ms.
    def __init__(self, sock, raw, deadline):
        self.raw = raw  # the TCP socket under TLS, which holds the timeout
        # recv returns what has arrived; a TLS socket without it is read a byte at a time,
        # since a read(n) that times out part way loses what it had.
        self.recv = getattr(sock, "recv", None) or (lambda n: sock.read(1))
        self.deadline = deadline
        self.buf = b""

    def _fill(self):
        remaining = clock.ticks_diff(self.deadline, clock.ticks_ms())
        if remaining <= 0:
            raise NetworkError("response too slow")
        self.raw.settimeout(remaining / 1000)
        data = self.recv(512)
        self.buf += data
        return bool(data)

    def readline(self, limit):
        while self.buf.find(b"\n", 0, limit) < 0 and len(self.buf) < limit and self._fill():
            pass
        end = self.buf.find(b"\n", 0, limit) + 1 or min(len(self.buf), limit)
        line, self.buf = self.buf[:end], self.buf[end:]
        return line

    def read(self, n):
        if not self.buf:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def _readline(reader):
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise ProtocolError("HTTP header line too long")
    return line


def _read_response(reader, limit):
    status_line = _readline(reader)
    if not status_line:
        raise NetworkError("connection closed before the status line")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ProtocolError("not an HTTP response")
    status = int(parts[1])
    length = retry_after = None
    for _ in range(_MAX_HEADERS):
        line = _readline(reader)
        if not line:
            raise NetworkError("connection closed in the headers")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit():
                raise ProtocolError("bad Content-Length")
            length = int(value)
            if length > limit:
                raise ProtocolError("response larger than %d bytes" % limit)
        elif name == b"retry-after" and value.strip().isdigit():
            retry_after = int(value.strip())  # seconds; an HTTP-date is ignored
        elif name == b"transfer-encoding" and value.strip().lower() != b"identity":
            raise ProtocolError("transfer encodings are not supported")
    else:
        raise ProtocolError("too many HTTP headers")
    want = limit + 1 if length is None else length
    body = bytearray()
    while len(body) < want:
        chunk = reader.read(min(want - len(body), 1024))
        if not chunk:
            break
        body.extend(chunk)
    if length is None and len(body) > limit:
        raise ProtocolError("response larger than %d bytes" % limit)
    if length is not None and len(body) < length:
        raise NetworkError("response body cut short (%d of %d bytes)" % (len(body), length))
    return status, bytes(body), retry_after

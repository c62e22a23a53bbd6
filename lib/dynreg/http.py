# A minimal HTTP/1.0 client for the registration request: one request per connection,
# certificates and host name verified (mbedTLS through `tls`), hard limits on everything it
# reads, and one deadline (dynreg.net) over the connect, the TLS handshake and the whole
# response. micropython-lib `requests` does not verify certificates, hence this.
from micropython import const
from dynreg import NetworkError, ProtocolError, busy, net
from dynreg.codec import MAX_RESPONSE, check_size, split_url  # noqa: F401 (split_url: part of this API)

_MAX_LINE = const(1024)
_MAX_HEADERS = const(40)


def check_status(status, retry_after):
    # 5xx and 429 are the server's trouble: a NetworkError, retried (after Retry-After when
    # given). Any other status goes on to the cloud's answer, which says what went wrong.
    if status >= 500 or status == 429:
        raise busy("server answered HTTP %d" % status, retry_after, status == 429)


def parsed(status, parse, *args):
    # The cloud's answer, parsed. One that makes no sense names the status it came with: a 404
    # from a wrong register_url reads as such, not as a garbled answer.
    try:
        return parse(*args)
    except ProtocolError as e:
        if status == 200:
            raise
        raise ProtocolError("HTTP %d, and %s" % (status, e))


def post_parsed(url, headers, body, ca, timeout_ms, parse, *args):
    # One registration exchange: the POST, a 429 or 5xx as a retryable NetworkError, and the
    # answer through parse(answer, *args).
    status, answer, retry_after = post(url, headers, body, ca, timeout_ms)
    check_status(status, retry_after)
    return parsed(status, parse, answer, *args)


def post(url, headers, body, ca=None, timeout_ms=10000, limit=MAX_RESPONSE):
    # Returns (status, body, retry_after): retry_after is the Retry-After header in seconds,
    # or None. Network trouble, a timeout or a body cut short is a NetworkError; a body over
    # `limit` or a garbled answer is a ProtocolError.
    scheme, host, port, path = split_url(url)
    ctx = net.tls_context(ca) if scheme == "https" else None
    sock = stream = net.connect(host, port, net.deadline_in(timeout_ms))
    try:
        if ctx:
            sock = net.wrap(stream, ctx, host)
        request = "POST %s HTTP/1.0\r\nHost: %s\r\n" % (path, host if port == (443 if ctx else 80) else
                                                         "%s:%d" % (host, port))
        for name in headers:
            request += "%s: %s\r\n" % (name, headers[name])
        try:
            # One write: a second small one would wait for the ACK of the first (Nagle and
            # delayed ACK, 40 ms a request).
            request = ("%sContent-Length: %d\r\nConnection: close\r\n\r\n" % (request, len(body))).encode() + body
            if ctx:
                sock.write(request)
            else:
                stream.send_all(request)
            return _read_response(_Reader(sock if ctx else None, stream), limit)
        except OSError as e:
            raise NetworkError("%s:%d: %s" % (host, port, net.reason(e)))
    finally:
        sock.close()


class _Reader:
    # What has arrived, never more: plain TCP a receive at a time; TLS what the current record
    # holds (SSLSocket.recv, one mbedTLS read), or a byte at a time where the firmware's SSLSocket
    # has no recv (its read(n) waits for all n). The deadline is the stream's.
    def __init__(self, tls, stream):
        if tls:
            self.recv = getattr(tls, "recv", None) or (lambda n: tls.read(1))
        else:
            self.recv = stream.recv
        self.buf = b""

    def _fill(self):
        data = self.recv(512)
        self.buf += data
        return bool(data)

    def readline(self):
        limit = _MAX_LINE + 1
        while self.buf.find(b"\n", 0, limit) < 0 and len(self.buf) < limit and self._fill():
            pass
        end = self.buf.find(b"\n", 0, limit) + 1 or min(len(self.buf), limit)
        line, self.buf = self.buf[:end], self.buf[end:]
        if len(line) > _MAX_LINE:
            raise ProtocolError("HTTP header line too long")
        return line

    def read(self, n):
        if not self.buf:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def _read_response(reader, limit):
    status_line = reader.readline()
    if not status_line:
        raise NetworkError("closed before the HTTP status line")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ProtocolError("not an HTTP response")
    status = int(parts[1])
    length = retry_after = None
    for _ in range(_MAX_HEADERS):
        line = reader.readline()
        if not line:
            raise NetworkError("closed in the HTTP headers")
        if not line.strip():
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            if not value.isdigit():
                raise ProtocolError("bad Content-Length")
            length = int(value)
            if length > limit:
                raise ProtocolError("response over %d bytes" % limit)
        elif name == b"retry-after" and value.isdigit():
            retry_after = int(value)  # seconds; an HTTP-date is ignored
        elif name == b"transfer-encoding" and value.lower() != b"identity":
            raise ProtocolError("Transfer-Encoding not supported")
    else:
        raise ProtocolError("too many HTTP headers")
    want = limit + 1 if length is None else length
    body = bytearray()
    while len(body) < want:
        chunk = reader.read(min(want - len(body), 1024))
        if not chunk:
            break
        body.extend(chunk)
    check_size(body, limit)
    if length is not None and len(body) < length:
        raise NetworkError("body cut short (%d of %d bytes)" % (len(body), length))
    return status, bytes(body), retry_after

"""A small HTTP/1.0 and HTTP/1.1 server (plain or TLS) for the clouds' registration routes.

Written on sockets rather than http.server because the emulator must own the details a
device's HTTP client trips over: hard limits on the request line, headers and body, one
deadline for the whole request (slow clients are cut off), exactly one response with
Content-Length and "Connection: close", and fault injection at the socket level.

Faults (faults.py): a "tls" fault is taken when a TLS connection arrives, before the
handshake, and picks the certificate the server presents; an "http" fault is taken once the
request was read in full, and decides what happens to the request and to its answer.
"""

import contextlib
import json
import logging
import socket
import socketserver
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Callable

from .cloud import HttpError, HttpRequest, HttpResponse, Route
from .crypto import fault_server_context
from .faults import TARGET_HTTP, TARGET_TLS, fault_answer, take_fault
from .state import StateStore

API_HTTP = "http"  # request-log name for requests that reach no route
API_TLS = "tls"  # request-log name for TLS faults (applied before any request is read)
RESET_PAUSE = 0.1  # seconds between the last bytes sent and the RST of a "reset" fault, so they arrive first
FAULT_HTML = (b"<!DOCTYPE html>\n<html><head><title>Service notice</title></head>\n"
              b"<body><h1>Service notice</h1><p>This page is not the API you called.</p></body></html>\n")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    max_request_line: int = 2048
    max_header_line: int = 2048
    max_headers: int = 50
    max_header_bytes: int = 8192
    max_body: int = 4096
    client_timeout: float = 10.0  # TLS handshake + whole request; slower clients get 408
    max_connections: int = 512  # served at once (a thread each); more are closed at once


# Error codes for HTTP-layer refusals, in the Tencent API vocabulary (common error codes).
_CODE_FOR_STATUS = {
    400: "InvalidParameter",
    404: "InvalidAction",
    405: "UnsupportedOperation",
    408: "RequestTimeout",
    411: "MissingParameter",
    413: "RequestSizeLimitExceeded",
    414: "RequestSizeLimitExceeded",
    429: "RequestLimitExceeded",
    431: "RequestSizeLimitExceeded",
    500: "InternalError",
    501: "UnsupportedOperation",
    503: "ServiceUnavailable",
    505: "UnsupportedProtocol",
}


def error_code_for_status(status: int) -> str:
    return _CODE_FOR_STATUS.get(status, "InternalError" if status >= 500 else "InvalidParameter")


class _ClientTimeout(Exception):
    pass


class _ClientGone(Exception):
    pass


class _Reject(Exception):
    """The request cannot be served; answer `error` (shaped by the route when the path is known)."""

    def __init__(self, status: int, message: str, path: str | None = None, version: str = "HTTP/1.1") -> None:
        super().__init__(message)
        self.error = HttpError(status, error_code_for_status(status), message)
        self.path = path
        self.version = version


class _SocketReader:
    """Buffered reads from a socket that all share one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._buffer = b""

    def _fill(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _ClientTimeout
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(4096)
        except (socket.timeout, TimeoutError):
            raise _ClientTimeout from None
        if not data:
            raise _ClientGone
        self._buffer += data

    def readline(self, limit: int) -> bytes | None:
        """One line including its newline, or None when it would exceed `limit` bytes."""
        while True:
            end = self._buffer.find(b"\n")
            if 0 <= end < limit:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                return line
            if end >= limit or len(self._buffer) >= limit:
                return None
            self._fill()

    def read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def read_request(reader: _SocketReader, limits: HttpLimits, transport: str) -> HttpRequest:
    line: bytes | None = b""
    for _ in range(3):  # RFC 9112 2.2: ignore stray empty lines before the request line
        line = reader.readline(limits.max_request_line)
        if line is None:
            raise _Reject(414, "Request line too long")
        if line.strip():
            break
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not all(parts):
        raise _Reject(400, "Malformed request line")
    method, target, version = parts
    path, _, query = target.partition("?")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _Reject(505 if version.startswith("HTTP/") else 400, "Only HTTP/1.0 and HTTP/1.1", path)

    def reject(status: int, message: str) -> _Reject:
        return _Reject(status, message, path, version)

    headers: dict[str, str] = {}
    header_bytes = header_lines = 0
    while True:
        raw = reader.readline(limits.max_header_line)
        if raw is None:
            raise reject(431, "Header line too long")
        header_bytes += len(raw)
        if header_bytes > limits.max_header_bytes:
            raise reject(431, "Headers too large")
        text = raw.decode("latin-1").rstrip("\r\n")
        if not text:
            break
        header_lines += 1
        if header_lines > limits.max_headers:
            raise reject(431, "Too many headers")
        name, separator, value = text.partition(":")
        if not separator or not name or name != name.strip() or text[0] in " \t":
            raise reject(400, "Malformed header line")
        key, value = name.lower(), value.strip()
        if key in headers:
            if key in ("host", "content-length") and headers[key] != value:
                raise reject(400, f"Conflicting {name} headers")
            if key not in ("host", "content-length"):
                headers[key] += ", " + value
        else:
            headers[key] = value
    if version == "HTTP/1.1" and "host" not in headers:
        raise reject(400, "Host header required")
    if "transfer-encoding" in headers:
        raise reject(501, "Transfer-Encoding is not supported; send Content-Length")
    length = headers.get("content-length")
    if length is None:
        if method in ("POST", "PUT"):
            raise reject(411, "Content-Length required")
        body = b""
    else:
        if not length.isdigit():
            raise reject(400, "Invalid Content-Length")
        if int(length) > limits.max_body:
            raise reject(413, f"Request body larger than {limits.max_body} bytes")
        body = reader.read_exact(int(length))
    return HttpRequest(method, path, query, version, headers, body, transport)


def _neutral_error_body(error: HttpError) -> tuple[dict[str, Any], str]:
    return {"error": {"status": error.status, "code": error.code, "message": error.message}}, str(error.status)


class _ThreadingTcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    # listen() backlog; socketserver's default of 5 drops the SYNs of a fleet connecting at
    # once, and each dropped SYN costs the device a 1 s (then 3 s) retransmission.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], listener: "HttpListener") -> None:
        self.listener = listener
        super().__init__(address, _ConnectionHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.listener.connection_slots.acquire(blocking=False):
            self.shutdown_request(request)  # over capacity: refuse at once
            return
        super().process_request(request, client_address)


class _ConnectionHandler(socketserver.BaseRequestHandler):
    server: _ThreadingTcpServer

    def handle(self) -> None:
        self.server.listener.serve_connection(self.request)


_Answer = tuple[bytes, bytes]  # (status line and headers, body)
_Sender = Callable[[socket.socket, _Answer], None]


class HttpListener:
    """One listening socket (plain HTTP or HTTPS) serving the routes of every cloud."""

    def __init__(
        self,
        host: str,
        port: int,
        routes: list[Route],
        store: StateStore,
        *,
        limits: HttpLimits = HttpLimits(),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.transport = "https" if ssl_context else "http"
        self._routes = {route.path: route for route in routes}
        self._store = store
        self._limits = limits
        self._ssl_context = ssl_context
        self.connection_slots = threading.BoundedSemaphore(limits.max_connections)
        self._server = _ThreadingTcpServer((host, port), self)
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.transport}-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which must have run
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    # -- one connection -------------------------------------------------------------------

    def serve_connection(self, sock: socket.socket) -> None:
        deadline = time.monotonic() + self._limits.client_timeout
        try:
            if self._ssl_context is not None:
                sock = self._handshake(sock, deadline, self._tls_context_for_connection())
            try:
                request = read_request(_SocketReader(sock, deadline), self._limits, self.transport)
            except _Reject as reject:
                self._answer_error(sock, reject.version, self._routes.get(reject.path or ""), reject.error)
            except _ClientTimeout:
                error = HttpError(408, error_code_for_status(408), "Request not received in time")
                self._answer_error(sock, "HTTP/1.1", None, error)
            else:
                self._dispatch(sock, request)
        except (_ClientGone, _ClientTimeout, OSError, ValueError):
            pass  # the client went away or never finished the TLS handshake
        except Exception:
            _log.exception("unexpected error while serving an HTTP request")
            with contextlib.suppress(Exception):
                error = HttpError(500, error_code_for_status(500), "Internal error")
                self._answer_error(sock, "HTTP/1.1", None, error)
        finally:
            self.connection_slots.release()
            self._close_gracefully(sock)

    def _tls_context_for_connection(self) -> ssl.SSLContext:
        """The listener's context, or the one of a queued TLS fault (another server certificate)."""
        assert self._ssl_context is not None
        fault = take_fault(self._store, TARGET_TLS)
        if fault is None:
            return self._ssl_context
        kind = fault["kind"]
        self._store.append_log(API_TLS, transport=self.transport, result=f"fault:{kind}", fault=kind)
        return fault_server_context(self._store.folder, kind)

    def _handshake(self, sock: socket.socket, deadline: float, context: ssl.SSLContext) -> ssl.SSLSocket:
        tls_sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        tls_sock.settimeout(max(0.001, deadline - time.monotonic()))
        tls_sock.do_handshake()
        return tls_sock

    def _dispatch(self, sock: socket.socket, request: HttpRequest) -> None:
        route = self._routes.get(request.path)
        send: _Sender = self._send
        fault = take_fault(self._store, TARGET_HTTP)
        if fault is not None:
            faulty_send = self._apply_fault(sock, request, route, fault)
            if faulty_send is None:
                return
            send = faulty_send
        if route is None:
            self._answer_error(sock, request.version, None, HttpError(404, error_code_for_status(404), "Not found"),
                               send)
            return
        if request.method != route.method:
            error = HttpError(405, error_code_for_status(405), f"Use {route.method}")
            self._answer_error(sock, request.version, route, error, send)
            return
        response = route.handle(request)
        send(sock, self._render(request.version, response, extra_headers=list(response.headers)))

    def _apply_fault(self, sock: socket.socket, request: HttpRequest, route: Route | None,
                     fault: dict[str, Any]) -> "_Sender | None":
        """Apply an injected fault. Returns None when the request was answered (or dropped) here,
        else the function that sends the answer once the request is processed."""
        kind = fault["kind"]
        # An http_status fault answered as the cloud reports errors (its code in a 200), or as the status.
        in_body = (kind == "http_status" and route is not None and route.render_error_in_body is not None
                   and fault_answer(fault) == "cloud")
        self._store.append_log(route.api if route else API_HTTP, transport=self.transport, result=f"fault:{kind}",
                               fault=kind, status=fault.get("status"), seconds=fault.get("seconds"),
                               retry_after=fault.get("retry_after"), interval=fault.get("interval"),
                               answer=("cloud" if in_body else "http") if kind == "http_status" else None,
                               body_bytes=fault.get("body_bytes"))
        if kind == "close":
            return None
        if kind == "http_status":
            status, code = fault["status"], error_code_for_status(fault["status"])
            if in_body:
                assert route is not None and route.render_error_in_body is not None
                error = HttpError(status, code, "Injected fault: " + code)
                self._send(sock, self._render(request.version, HttpResponse(200, route.render_error_in_body(error))))
                return None
            error = HttpError(status, code, f"Injected fault: HTTP {status}")
            render = route.render_error if route else _neutral_error_body
            body, _ = render(error)
            extra = [("Retry-After", str(fault["retry_after"]))] if "retry_after" in fault else []
            self._send(sock, self._render(request.version, HttpResponse(status, body), extra_headers=extra))
            return None
        if kind == "wrong_content_type":
            status = fault.get("status", 200)
            self._send(sock, self._render_bytes(request.version, status, FAULT_HTML, "text/html; charset=utf-8"))
            return None
        if kind == "delay":
            time.sleep(fault["seconds"])
            return self._send
        if kind == "trickle":
            return lambda sock, data: self._send_trickle(sock, data, fault["interval"])
        if kind in ("truncate", "reset"):
            return lambda sock, data: self._send_cut(sock, data, fault.get("body_bytes"), reset=kind == "reset")
        raise ValueError(f"fault kind {kind!r} has no HTTP behaviour")

    def _answer_error(self, sock: socket.socket, version: str, route: Route | None, error: HttpError,
                      send: "_Sender | None" = None) -> None:
        body, result = (route.render_error if route else _neutral_error_body)(error)
        self._store.append_log(route.api if route else API_HTTP, transport=self.transport, result=result,
                               reason="http-" + str(error.status))
        (send or self._send)(sock, self._render(version, HttpResponse(error.status, body)))

    # -- answers --------------------------------------------------------------------------

    def _render(self, version: str, response: HttpResponse,
                extra_headers: list[tuple[str, str]] | None = None) -> "_Answer":
        payload = json.dumps(response.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return self._render_bytes(version, response.status, payload, "application/json; charset=utf-8",
                                  extra_headers)

    @staticmethod
    def _render_bytes(version: str, status: int, payload: bytes, content_type: str,
                      extra_headers: list[tuple[str, str]] | None = None) -> "_Answer":
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        extra = "".join(f"{name}: {value}\r\n" for name, value in extra_headers or [])
        head = (
            f"{version} {status} {reason}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\n"
            f"{extra}"
            "Connection: close\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            "Server: dynreg-cloud-emulator\r\n"
            "\r\n"
        ).encode("latin-1")
        return head, payload

    def _send(self, sock: socket.socket, answer: "_Answer") -> None:
        head, payload = answer
        sock.settimeout(self._limits.client_timeout)
        sock.sendall(head + payload)

    def _send_trickle(self, sock: socket.socket, answer: "_Answer", interval: float) -> None:
        """One byte every `interval` seconds (each its own TLS record over HTTPS), until done or
        until the client leaves (a send then fails and ends the connection)."""
        head, payload = answer
        sock.settimeout(self._limits.client_timeout)
        data = head + payload
        for index in range(len(data)):
            sock.sendall(data[index:index + 1])
            if index + 1 < len(data):
                time.sleep(interval)

    def _send_cut(self, sock: socket.socket, answer: "_Answer", body_bytes: int | None, *, reset: bool) -> None:
        """The head (with the full Content-Length) and part of the body; then, for a reset, an RST
        (SO_LINGER 0, no TLS close_notify); otherwise the usual clean close follows."""
        head, payload = answer
        keep = len(payload) // 2 if body_bytes is None else min(body_bytes, max(len(payload) - 1, 0))
        sock.settimeout(self._limits.client_timeout)
        sock.sendall(head + payload[:keep])
        if reset:
            time.sleep(RESET_PAUSE)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # the finally of serve_connection sees a closed socket and leaves it

    @staticmethod
    def _close_gracefully(sock: socket.socket) -> None:
        """Half-close, then drain briefly, so unread request bytes do not turn into an RST
        that destroys the response before the client has read it."""
        if sock.fileno() < 0:
            return  # already closed (a "reset" fault)
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(0.2)
                sock = sock.unwrap()  # send close_notify
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0.5)
            drained = 0
            while drained < 65536:
                data = sock.recv(4096)
                if not data:
                    break
                drained += len(data)
        except (OSError, ValueError):
            pass
        finally:
            sock.close()

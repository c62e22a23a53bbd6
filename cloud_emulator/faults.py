"""Fault injection: a persistent FIFO queue in the state folder, consumed per request or connection.

A queued fault is a dict {"kind": ..., "count": N, <parameters>}. Each kind has a target, the
listener that consumes it:

* "http": every HTTP or HTTPS request read in full takes one use (http_server.py);
* "tls": every TLS handshake on the HTTPS or the MQTTS listener takes one use, before the
  server sends its certificate (http_server.py, broker.py);
* "mqtt": every MQTT connection (plain or TLS) whose CONNECT was read takes one use (broker.py);
* "aws": every AWS fleet-provisioning request (CreateKeysAndCertificate, RegisterThing) takes one
  use (aws.py).

A listener takes the first queued fault of its own target; the fault leaves the queue when
its count reaches zero. New kinds: add a FaultKind here and handle it in the listener.

A connect timeout cannot be injected per connection on a listener that accepts: the TCP
handshake completes in the kernel. `Blackhole` is a listening socket whose accept queue is
full, so the kernel drops every new SYN and a client's connect() never completes.
"""

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

from .state import FAULTS_FILE, StateStore

TARGET_HTTP = "http"
TARGET_TLS = "tls"
TARGET_MQTT = "mqtt"
TARGET_AWS = "aws"


@dataclass(frozen=True)
class FaultKind:
    name: str
    target: str  # which listener consumes it: "http" (HTTP and HTTPS), "tls" (HTTPS and MQTTS), "mqtt", "aws"
    parameters: tuple[str, ...]  # required
    description: str
    optional: tuple[str, ...] = ()


FAULT_KINDS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        FaultKind(
            "http_status", TARGET_HTTP, ("status",),
            "answer status N's error in the API's shape; request not processed. answer cloud (the "
            "default): where the cloud reports errors inside a 200 answer (Tencent's current API, "
            "Alibaba's HTTPS registration), HTTP 200 with the matching code (InternalError, "
            "RequestLimitExceeded; 500, 429); elsewhere, and with answer http, HTTP status N (with a "
            "Retry-After header when retry_after is given, which implies answer http)",
            optional=("retry_after", "answer"),
        ),
        FaultKind(
            "delay", TARGET_HTTP, ("seconds",),
            "sleep S seconds after reading the request, then process and answer it normally",
        ),
        FaultKind(
            "close", TARGET_HTTP, (),
            "close the connection after reading the request, without answering; request not processed",
        ),
        FaultKind(
            "wrong_content_type", TARGET_HTTP, (),
            "answer with an HTML page (Content-Type text/html), status 200 or the given status; "
            "request not processed",
            optional=("status",),
        ),
        FaultKind(
            "trickle", TARGET_HTTP, ("interval",),
            "process the request, then send the answer one byte every `interval` seconds",
        ),
        FaultKind(
            "truncate", TARGET_HTTP, (),
            "process the request, then send the headers (full Content-Length) and only body_bytes of "
            "the body (default half), then close cleanly",
            optional=("body_bytes",),
        ),
        FaultKind(
            "reset", TARGET_HTTP, (),
            "process the request, then send the headers and body_bytes of the body (default half), "
            "then reset the connection (RST)",
            optional=("body_bytes",),
        ),
        FaultKind(
            "tls_expired", TARGET_TLS, (),
            "serve the TLS handshake with an expired server certificate signed by the emulator CA",
        ),
        FaultKind(
            "tls_wrong_host", TARGET_TLS, (),
            "serve the TLS handshake with a certificate (signed by the emulator CA) for another host name",
        ),
        FaultKind(
            "mqtt_no_connack", TARGET_MQTT, (),
            "read the CONNECT and never answer it; the connection is closed when the client leaves "
            "(or after `seconds`, default the client timeout); the login is not judged",
            optional=("seconds",),
        ),
        FaultKind(
            "mqtt_close_after_connack", TARGET_MQTT, (),
            "judge the login as usual; if accepted, send CONNACK 0 and close the connection at once, "
            "without the cloud's messages (an Alibaba registration result is issued but never published)",
        ),
        FaultKind(
            "aws_rejected", TARGET_AWS, ("status",),
            "answer an AWS provisioning request (CreateKeysAndCertificate or RegisterThing) on its "
            "rejected topic with statusCode N (429 ThrottlingException, 503 ServiceUnavailable, any "
            "other InternalFailure); request not processed",
        ),
    )
}


class FaultError(ValueError):
    pass


def _number(name: str, minimum: float, maximum: float | None = None, integer: bool = False
            ) -> Callable[[str, Any], int | float]:
    def check(kind: str, value: Any) -> int | float:
        try:
            number = int(value) if integer else float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or number < minimum or (maximum is not None and number > maximum) or (
                integer and float(value) != number):
            bounds = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
            raise FaultError(f"fault {kind} needs --{name.replace('_', '-')} {bounds}")
        return number

    return check


ANSWERS = ("cloud", "http")


def _answer(kind: str, value: Any) -> str:
    if value not in ANSWERS:
        raise FaultError(f"fault {kind} needs --answer {' or '.join(ANSWERS)}")
    return value


_PARAMETERS: dict[str, Callable[[str, Any], Any]] = {
    "status": _number("status", 200, 599, integer=True),
    "seconds": _number("seconds", 0),
    "retry_after": _number("retry_after", 0, integer=True),
    "interval": _number("interval", 0.001, 60),
    "body_bytes": _number("body_bytes", 0, integer=True),
    "answer": _answer,
}


def make_fault(kind: str, *, count: int = 1, **values: Any) -> dict[str, Any]:
    """A fault for the queue; `values` are its parameters (None means not given)."""
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    if count < 1:
        raise FaultError("count must be at least 1")
    spec = FAULT_KINDS[kind]
    unknown = sorted(name for name, value in values.items()
                     if value is not None and (name not in _PARAMETERS or name not in spec.parameters + spec.optional))
    if unknown:
        raise FaultError(f"fault {kind} takes no {', '.join(unknown)}")
    fault: dict[str, Any] = {"kind": kind, "count": int(count)}
    for name in spec.parameters + spec.optional:
        value = values.get(name)
        if value is None:
            if name in spec.parameters:
                _PARAMETERS[name](kind, None)  # raises the "needs --name" error
            continue
        fault[name] = _PARAMETERS[name](kind, value)
    if fault.get("answer") == "cloud" and "retry_after" in fault:
        raise FaultError(f"fault {kind}: no cloud sends a Retry-After in a 200 answer; "
                         "--retry-after needs --answer http")
    return fault


def fault_answer(fault: dict[str, Any]) -> str:
    """An http_status fault's answer: as given, else http when it sends a Retry-After, else cloud."""
    return fault.get("answer") or ("http" if "retry_after" in fault else "cloud")


def queue_fault(store: StateStore, kind: str, **options: Any) -> dict[str, Any]:
    fault = make_fault(kind, **options)
    store.push_fault(fault)
    return fault


_KINDS_BY_TARGET = {target: frozenset(name for name, kind in FAULT_KINDS.items() if kind.target == target)
                    for target in (TARGET_HTTP, TARGET_TLS, TARGET_MQTT, TARGET_AWS)}


def take_fault(store: StateStore, target: str) -> dict[str, Any] | None:
    # Fast path, taken by every connection and request: an empty queue ("[]") or none at all
    # needs no lock. A fault queued just after this check counts as queued after the request.
    try:
        if os.stat(store.path(FAULTS_FILE)).st_size <= len("[]"):
            return None
    except FileNotFoundError:
        return None
    return store.take_fault(target, _KINDS_BY_TARGET[target])


class Blackhole:
    """A TCP port where connect() never completes: a listener that never accepts, its accept
    queue filled at once by connections of its own, so the kernel drops every further SYN
    (Linux: the accept queue of listen(0) holds one connection; more fillers are added until a
    probe connect times out). Close it to free the port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, probe_timeout: float = 0.2) -> None:
        self._fillers: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(0)
            self.host, self.port = self._listener.getsockname()[:2]
            for _ in range(16):
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probe.settimeout(probe_timeout)
                try:
                    probe.connect((self.host, self.port))
                except (TimeoutError, socket.timeout):
                    probe.close()  # the queue is full: SYNs are dropped
                    return
                self._fillers.append(probe)
            raise OSError("the accept queue of the blackhole listener never filled")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for sock in self._fillers:
            sock.close()
        self._fillers.clear()
        self._listener.close()

    def __enter__(self) -> "Blackhole":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

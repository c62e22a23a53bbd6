"""Fault injection: a persistent FIFO queue in the state folder, consumed per request.

A queued fault is a dict {"kind": ..., "count": N, <parameters>}. Each request handled by
a listener of the fault's target takes one use of the first matching fault; the fault
leaves the queue when its count reaches zero. The listener that owns the socket applies it
(see http_server.py). New kinds: add a FaultKind here and handle it in the listener.
"""

from dataclasses import dataclass
from typing import Any

from .state import StateStore


@dataclass(frozen=True)
class FaultKind:
    name: str
    target: str  # which listener consumes it: "http" (both HTTP and HTTPS)
    parameters: tuple[str, ...]
    description: str


FAULT_KINDS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        FaultKind(
            "http_status", "http", ("status",),
            "answer with HTTP status N and a JSON error body in the API's shape; request not processed",
        ),
        FaultKind(
            "delay", "http", ("seconds",),
            "sleep S seconds after reading the request, then process and answer it normally",
        ),
        FaultKind(
            "close", "http", (),
            "close the connection after reading the request, without answering; request not processed",
        ),
    )
}


class FaultError(ValueError):
    pass


def make_fault(kind: str, *, count: int = 1, status: int | None = None, seconds: float | None = None) -> dict[str, Any]:
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    if count < 1:
        raise FaultError("count must be at least 1")
    fault: dict[str, Any] = {"kind": kind, "count": int(count)}
    needed = FAULT_KINDS[kind].parameters
    if "status" in needed:
        if status is None or not 200 <= int(status) <= 599:
            raise FaultError(f"fault {kind} needs --status between 200 and 599")
        fault["status"] = int(status)
    if "seconds" in needed:
        if seconds is None or float(seconds) < 0:
            raise FaultError(f"fault {kind} needs --seconds >= 0")
        fault["seconds"] = float(seconds)
    return fault


def queue_fault(store: StateStore, kind: str, **options: Any) -> dict[str, Any]:
    fault = make_fault(kind, **options)
    store.push_fault(fault)
    return fault


def take_fault(store: StateStore, target: str) -> dict[str, Any] | None:
    kinds = frozenset(name for name, kind in FAULT_KINDS.items() if kind.target == target)
    return store.take_fault(target, kinds)

"""Persistent emulator state: one folder shared by the server, the CLI and the test harness.

Layout of the state folder:

    state.json     products, devices, issued secrets, recent nonces (mode 0600)
    faults.json    queue of injected faults, consumed per request
    clock.json     the emulator clock's offset from the host clock, in seconds (absent: none)
    drops.json     queue of MQTT connections to drop, taken by the running broker
    requests.log   request log, one JSON object per line, never a secret
    state.lock     flock() target serialising every read-modify-write
    ca.*, server.* TLS material (see crypto.py)
    ready.json     written by a running server once every listener is up

Every operation opens the lock file anew and takes an exclusive flock, which serialises
threads of one process as well as separate processes (a CLI call while the server runs).
The running server re-reads state.json inside each transaction, so products added by the
CLI or the harness after it started are seen at once.
"""

import contextlib
import fcntl
import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

STATE_FILE = "state.json"
FAULTS_FILE = "faults.json"
LOG_FILE = "requests.log"
LOCK_FILE = "state.lock"
READY_FILE = "ready.json"
CLOCK_FILE = "clock.json"
DROPS_FILE = "drops.json"

# Field names that must never reach the request log, whatever a caller passes in.
_SECRET_FIELDS = frozenset(
    {"secret", "product_secret", "psk", "signature", "password", "key_pem", "client_key", "private_key",
     "sign", "device_secret", "deviceSecret", "device_token", "deviceToken", "token"}
)


def _empty_state() -> dict[str, Any]:
    return {"version": 1, "products": {}, "nonces": {}}


def write_file_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write to a temporary sibling, fsync, then rename over `path` (readers never see half a file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT honours the umask; the mode must be exact for secrets
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StateStore:
    """Locked access to the files of one state folder."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._thread_lock = threading.RLock()

    def path(self, name: str) -> Path:
        return self.folder / name

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fd = os.open(self.path(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def _load_json(self, name: str, default: Any) -> Any:
        try:
            return json.loads(self.path(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return default

    def _save_json(self, name: str, value: Any) -> None:
        # Compact: json's C encoder runs only without indent (4x faster on a state of 200 devices,
        # and every registration and login rewrites the whole file under the lock).
        data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")
        write_file_atomically(self.path(name), data)

    # -- products, devices, nonces -------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Yield the current state for changing; it is saved when the block ends without error."""
        with self._locked():
            state = self._load_json(STATE_FILE, _empty_state())
            yield state
            self._save_json(STATE_FILE, state)

    def snapshot(self) -> dict[str, Any]:
        with self._locked():
            return self._load_json(STATE_FILE, _empty_state())

    # -- request log ----------------------------------------------------------------------

    def append_log(self, api: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"time": now_iso(), "ts": round(time.time(), 3), "api": api}
        record.update(
            {key: value for key, value in fields.items() if value is not None and key not in _SECRET_FIELDS}
        )
        line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
        with self._locked():
            fd = os.open(self.path(LOG_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(line)
        return record

    def read_log(self) -> list[dict[str, Any]]:
        with self._locked():
            try:
                text = self.path(LOG_FILE).read_text(encoding="utf-8")
            except FileNotFoundError:
                return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # -- fault queue ----------------------------------------------------------------------

    def push_fault(self, fault: dict[str, Any]) -> None:
        with self._locked():
            queue = self._load_json(FAULTS_FILE, [])
            queue.append(fault)
            self._save_json(FAULTS_FILE, queue)

    def take_fault(self, target: str, kinds_for_target: frozenset[str]) -> dict[str, Any] | None:
        """Consume one use of the first queued fault aimed at `target` (e.g. "http")."""
        with self._locked():
            queue = self._load_json(FAULTS_FILE, [])
            for index, fault in enumerate(queue):
                if fault.get("kind") in kinds_for_target:
                    fault["count"] = int(fault.get("count", 1)) - 1
                    if fault["count"] <= 0:
                        del queue[index]
                    self._save_json(FAULTS_FILE, queue)
                    return dict(fault)
            return None

    def list_faults(self) -> list[dict[str, Any]]:
        with self._locked():
            return self._load_json(FAULTS_FILE, [])

    def clear_faults(self) -> None:
        with self._locked():
            self._save_json(FAULTS_FILE, [])

    # -- the emulator's clock -------------------------------------------------------------

    def clock_offset(self) -> float:
        """Seconds the emulator's clock runs ahead of the host's (negative: behind)."""
        try:  # written atomically: no lock needed to read it
            return float(json.loads(self.path(CLOCK_FILE).read_text(encoding="utf-8"))["offset"])
        except FileNotFoundError:
            return 0.0

    def set_clock_offset(self, seconds: float) -> None:
        with self._locked():
            self._save_json(CLOCK_FILE, {"offset": seconds})

    def now(self) -> float:
        """The emulator's clock: what the clouds check timestamps and login expiries against."""
        return time.time() + self.clock_offset()

    # -- connections to drop (taken by the running broker) ---------------------------------

    def push_drop(self, request: dict[str, Any]) -> None:
        with self._locked():
            queue = self._load_json(DROPS_FILE, [])
            queue.append(request)
            self._save_json(DROPS_FILE, queue)

    def take_drops(self) -> list[dict[str, Any]]:
        with self._locked():
            queue = self._load_json(DROPS_FILE, [])
            if queue:
                self._save_json(DROPS_FILE, [])
            return queue

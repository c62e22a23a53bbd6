"""Registration rate limits: a token bucket per product (`rate` registrations a second, `burst`
at once), set by the operator (`throttle` command, admin.set_throttle) and kept in the state
folder; the buckets themselves live in the serving process. Every registration request of a
throttled product takes a token, answered or not, as a gateway in front of the API would.
What an over-limit answer looks like is each cloud's (tencent.py, aliyun.py, README).

What `Retry-After` says is the product's `retry_after` setting, the emulator's choice in every
case (no cloud documents one for these APIs):
- "slot" (the default): a limiter that reserves. The refused request is given the next free
  slot in the bucket's future, and told when that is; the bucket goes into debt for it, so
  requests that come later are given later slots, and the device that comes back at its slot
  (or after it) is let in. A fleet that does as it is told registers at the limit, each device
  on its second attempt.
- "next": the seconds until the bucket next has a token, the same for every device refused at
  that moment: a fleet told this comes back together.
- "none": no Retry-After at all; the device's own backoff decides.
Reservations are kept only for requests that name a device and get a Retry-After: the HTTP
APIs. MQTT registration (CONNACK 3) cannot say when, so it only ever takes a token."""

import math
import threading
from dataclasses import dataclass, field
from typing import Any

from .cloud import HttpResponse

THROTTLES_KEY = "throttles"  # in the state: {product id: {"rate": float, "burst": int, "retry_after": str}}
RETRY_AFTER_MODES = ("slot", "next", "none")
# A reservation is forgotten this long after its slot (the device gave up, or was told again).
RESERVATION_GRACE_SECONDS = 120.0
# A device back this little before its slot is let in: the clocks of client and server differ.
EARLY_TOLERANCE_SECONDS = 0.25


@dataclass
class Throttled:
    """Over the limit: Retry-After `seconds` (None: send none)."""

    seconds: int | None


@dataclass
class _Bucket:
    rate: float
    burst: int
    mode: str
    tokens: float
    at: float
    reserved: dict[str, float] = field(default_factory=dict)  # device -> its slot


class RegistrationThrottle:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # the HTTP listener serves requests from several threads

    def check(self, state: dict[str, Any], product_id: str, now: float, device: str | None = None) -> Throttled | None:
        """None: under the limit, or the device's reserved slot has come (a token is taken).
        Throttled otherwise. `device` names the requester for a reservation (HTTP APIs)."""
        limit = state.get(THROTTLES_KEY, {}).get(product_id)
        if limit is None:
            return None
        mode = limit.get("retry_after", "slot")
        with self._lock:
            bucket = self._buckets.get(product_id)
            if bucket is None or (bucket.rate, bucket.burst, bucket.mode) != (limit["rate"], limit["burst"], mode):
                bucket = self._buckets[product_id] = _Bucket(limit["rate"], limit["burst"], mode, limit["burst"], now)
            bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.at) * bucket.rate)
            bucket.at = now
            slot = bucket.reserved.get(device) if device is not None else None
            if slot is not None:
                if now >= slot - EARLY_TOLERANCE_SECONDS:
                    del bucket.reserved[device]  # its token was taken when the slot was given
                    return None
                return Throttled(_whole_seconds(slot - now))  # back too early: the same slot
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            wait = (1 - bucket.tokens) / bucket.rate  # until this request's token is there
            if mode == "none":
                return Throttled(None)
            if mode == "next" or device is None:
                return Throttled(_whole_seconds(wait))
            bucket.tokens -= 1  # into debt: the token is this device's, later requests queue behind it
            self._forget_stale(bucket, now)
            bucket.reserved[device] = now + wait
            return Throttled(_whole_seconds(wait))

    @staticmethod
    def _forget_stale(bucket: _Bucket, now: float) -> None:
        if len(bucket.reserved) % 256 == 0:  # now and then: a device that never came back
            for device, slot in list(bucket.reserved.items()):
                if slot + RESERVATION_GRACE_SECONDS < now:
                    del bucket.reserved[device]


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def retry_later(throttled: Throttled, body: dict[str, Any]) -> HttpResponse:
    """The over-limit answer of the HTTP APIs: 429, with Retry-After when the mode sends one."""
    headers = () if throttled.seconds is None else (("Retry-After", str(throttled.seconds)),)
    return HttpResponse(429, body, headers)


def set_throttle(state: dict[str, Any], product_id: str, rate: float | None, burst: int | None,
                 retry_after: str = "slot") -> None:
    throttles = state.setdefault(THROTTLES_KEY, {})
    if rate is None:
        throttles.pop(product_id, None)
        return
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError("rate must be a number of registrations a second above 0")
    burst = 1 if burst is None else burst
    if burst < 1:
        raise ValueError("burst must be at least 1")
    if retry_after not in RETRY_AFTER_MODES:
        raise ValueError("retry_after must be one of " + ", ".join(RETRY_AFTER_MODES))
    throttles[product_id] = {"rate": float(rate), "burst": int(burst), "retry_after": retry_after}

"""Registration rate limits: a token bucket per product (`rate` registrations a second, `burst`
at once), set by the operator (`throttle` command, admin.set_throttle) and kept in the state
folder; the buckets themselves live in the serving process. Every registration request of a
throttled product takes a token, answered or not, as a gateway in front of the API would.
What an over-limit answer looks like is each cloud's (tencent.py, aliyun.py, README)."""

import math
import threading
from dataclasses import dataclass
from typing import Any

from .cloud import HttpResponse

THROTTLES_KEY = "throttles"  # in the state: {product id: {"rate": float, "burst": int}}


@dataclass
class _Bucket:
    rate: float
    burst: int
    tokens: float
    at: float


class RegistrationThrottle:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # the HTTP listener serves requests from several threads

    def wait(self, state: dict[str, Any], product_id: str, now: float) -> int | None:
        """None: under the limit (a token is taken). Else the whole seconds until a token is
        there, for Retry-After (at least 1)."""
        limit = state.get(THROTTLES_KEY, {}).get(product_id)
        if limit is None:
            return None
        with self._lock:
            bucket = self._buckets.get(product_id)
            if bucket is None or (bucket.rate, bucket.burst) != (limit["rate"], limit["burst"]):
                bucket = self._buckets[product_id] = _Bucket(limit["rate"], limit["burst"], limit["burst"], now)
            bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.at) * bucket.rate)
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            return max(1, math.ceil((1 - bucket.tokens) / bucket.rate))


def retry_later(seconds: int, body: dict[str, Any]) -> HttpResponse:
    """The over-limit answer of the HTTP APIs: 429 with Retry-After, in the API's `body`."""
    return HttpResponse(429, body, (("Retry-After", str(seconds)),))


def set_throttle(state: dict[str, Any], product_id: str, rate: float | None, burst: int | None) -> None:
    throttles = state.setdefault(THROTTLES_KEY, {})
    if rate is None:
        throttles.pop(product_id, None)
        return
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError("rate must be a number of registrations a second above 0")
    burst = 1 if burst is None else burst
    if burst < 1:
        raise ValueError("burst must be at least 1")
    throttles[product_id] = {"rate": float(rate), "burst": int(burst)}

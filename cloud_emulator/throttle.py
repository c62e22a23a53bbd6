"""Registration rate limits: a token bucket per product (`rate` registrations a second, `burst`
at once), set by the operator (`throttle` command, admin.set_throttle) and kept in the state
folder; the buckets themselves live in the serving process. Every registration request of a
throttled product takes a token, answered or not, as a gateway in front of the API would.
What an over-limit answer looks like is each cloud's (tencent.py, aliyun.py, README).

The product's `answer` setting picks the shape on the HTTP APIs whose cloud reports errors
inside a 200 answer (Tencent's current API, Alibaba's HTTPS registration):
- "cloud" (the default): as the cloud documents it, HTTP 200 with its throttling code in the
  body and no Retry-After (Tencent Cloud API 3.0 `RequestLimitExceeded`; Alibaba's code 429);
  nothing is reserved, the device's own backoff decides;
- "http": HTTP 429 with a Retry-After as `retry_after` says, the emulator's choice; a
  `retry_after` given without an `answer` implies it (as before there was an `answer`).
The other APIs answer as before whatever `answer` says (Tencent's legacy API: 429 with
Retry-After; Alibaba MQTT: CONNACK 3; Azure DPS: its documented 429 with retry-after).

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

THROTTLES_KEY = "throttles"  # in the state: {product id: {"rate", "burst", "retry_after", "answer"}}
RETRY_AFTER_MODES = ("slot", "next", "none")
ANSWERS = ("cloud", "http")  # the over-limit answer's shape, above
# A reservation is forgotten this long after its slot (the device gave up, or was told again).
RESERVATION_GRACE_SECONDS = 120.0
# A device back this little before its slot is let in: the clocks of client and server differ.
EARLY_TOLERANCE_SECONDS = 0.25


@dataclass
class Throttled:
    """Over the limit: Retry-After `seconds` (None: send none); `in_body`: answer HTTP 200 with
    the cloud's throttling code (the product's answer "cloud" on an API that reports so)."""

    seconds: int | None
    in_body: bool = False


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

    def check(self, state: dict[str, Any], product_id: str, now: float, device: str | None = None,
              body_answer: bool = False) -> Throttled | None:
        """None: under the limit, or the device's reserved slot has come (a token is taken).
        Throttled otherwise. `device` names the requester for a reservation (HTTP APIs);
        `body_answer`: the caller's cloud reports throttling in a 200 answer's body, which the
        product's answer "cloud" picks (no Retry-After, nothing reserved)."""
        limit = state.get(THROTTLES_KEY, {}).get(product_id)
        if limit is None:
            return None
        mode = limit.get("retry_after", "slot")
        in_body = body_answer and limit.get("answer", "cloud") == "cloud"
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
                # back too early: the same slot (not said in a 200, where no Retry-After goes)
                return Throttled(None, True) if in_body else Throttled(_whole_seconds(slot - now))
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            wait = (1 - bucket.tokens) / bucket.rate  # until this request's token is there
            if mode == "none" or in_body:
                return Throttled(None, in_body)
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
    """The over-limit answer of the HTTP APIs: 200 when the cloud's code in the body says it,
    else 429, with Retry-After when the mode sends one."""
    if throttled.in_body:
        return HttpResponse(200, body)
    headers = () if throttled.seconds is None else (("Retry-After", str(throttled.seconds)),)
    return HttpResponse(429, body, headers)


def set_throttle(state: dict[str, Any], product_id: str, rate: float | None, burst: int | None,
                 retry_after: str | None = None, answer: str | None = None) -> dict[str, Any] | None:
    """Sets (rate None: lifts) the product's limit; returns it as stored. Defaults: Retry-After
    "slot", answer "cloud", or "http" when a `retry_after` is given."""
    throttles = state.setdefault(THROTTLES_KEY, {})
    if rate is None:
        throttles.pop(product_id, None)
        return None
    if answer is None:
        answer = "cloud" if retry_after is None else "http"
    if retry_after is None:
        retry_after = "slot"
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError("rate must be a number of registrations a second above 0")
    burst = 1 if burst is None else burst
    if burst < 1:
        raise ValueError("burst must be at least 1")
    if retry_after not in RETRY_AFTER_MODES:
        raise ValueError("retry_after must be one of " + ", ".join(RETRY_AFTER_MODES))
    if answer not in ANSWERS:
        raise ValueError("answer must be one of " + ", ".join(ANSWERS))
    limit = throttles[product_id] = {"rate": float(rate), "burst": int(burst), "retry_after": retry_after,
                                     "answer": answer}
    return limit

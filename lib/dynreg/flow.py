# The first-boot flow: load the info, return the stored credential if there is one (no
# network at all), otherwise register with retries and store the credential before
# returning it. A device that holds a credential never registers again.
from gc import collect  # before a registration and a login: see register()
from dynreg import ConfigError, NetworkError, RejectedError, TLSError, store, clock, codec
from dynreg import load_ca, options, say

DEFAULTS = {
    "attempts": 4,  # failed requests at most, on network errors and 5xx; a throttled one is not counted
    "backoff_ms": 1000,  # first wait; doubles each attempt, with jitter
    "max_backoff_ms": 16000,  # the longest own wait (bench/README.md: a longer one thins a line's tail); a Retry-After may be longer
    # All attempts and waits together: the only bound on a cloud that throttles. Five minutes: a
    # line of 1000 boards powered on at once against a cloud that registers 5 a second takes 200 s.
    "total_ms": 300000,
    "timeout_ms": 10000,  # one attempt: connect, TLS handshake and the whole answer together
    "ca": None,  # CA certificate(s): bytes or a file name; default: the info's "ca"
    "device_name": None,  # when the info names none
    "name_from_chip": None,  # rule -> DeviceName, for an info that gives device_name_from (the firmware's)
    "log": print,
}


def ensure(info, **given):
    opts = options(given, DEFAULTS)
    if isinstance(info, str):
        info = store.load(info)
    if not info.device_name:
        if opts["device_name"]:
            info.device_name = opts["device_name"]
        elif info.device_name_from and opts["name_from_chip"]:
            info.device_name = opts["name_from_chip"](info.device_name_from)
    if not info.needs_registration:
        say(opts, "%s holds a credential: no registration" % (info.device_name or "device"))
        return info
    info.check_can_register()
    if not info.device_name:
        raise ConfigError("no DeviceName: set device_name in the info")
    clock.unix_time()  # a clock that was never set fails here, before any request
    register(info, opts)
    return info


def cloud_of(info):
    # The module of the info's cloud (one of the names store.Info allows): only that cloud's
    # code is loaded. An image may freeze only some clouds (manifest.py's `clouds` option).
    try:
        return __import__("dynreg." + info.cloud, None, None, (info.cloud,))
    except ImportError:
        raise ConfigError("this firmware has no %s support (manifest.py clouds=)" % info.cloud)


def register(info, opts):
    # Registers with retries and stores the credential before returning. Loading the info left
    # garbage: collected first, what the attempt keeps (request, CA) packs into it instead of
    # scattering above it, and the TLS context's large blocks still find a run of free heap
    # (bench/ram.py: 3 to 6 KiB less heap needed; the same before a login).
    register = cloud_of(info).register
    ca = load_ca(info, opts["ca"])

    # Where it goes: an MQTT registration to the broker (Azure's DPS has its own URL).
    url = info.mqtt_url if info.api in ("mqtt", "regnwl") and info.cloud != "azure" else info.register_url

    def attempt_once(attempt, timeout_ms):
        say(opts, "registering %s/%s with %s, %s API, %s (attempt %d)"
            % (info.product, info.device_name, info.cloud, info.api, url or "default URL", attempt))
        return register(info, ca, timeout_ms)

    collect()
    credential = with_retries(opts, attempt_once)
    info.save_credential(credential)
    say(opts, "credential stored in %s" % info.path)


def with_retries(opts, attempt_once):
    # attempt_once(attempt, timeout_ms): network errors, 5xx and the clouds' busy codes (raised as
    # NetworkError) are retried, within `attempts` failures and `total_ms`; a TLS refusal, a cloud
    # rejection or a bad answer ends at once. A throttled answer spends no attempt: only total_ms
    # bounds the time given to a cloud that throttles. A Retry-After the cloud sent is waited
    # instead when it is longer, however long, as long as it fits in total_ms: a cloud that
    # spreads a fleet's retries knows better than each device. Each attempt gets timeout_ms, or
    # what is left of total_ms when that is less.
    delay = opts["backoff_ms"]
    failed = 0
    start = clock.ticks_ms()
    attempt = 0
    while True:
        attempt += 1
        budget = max(1, min(opts["timeout_ms"], opts["total_ms"] - clock.ticks_diff(clock.ticks_ms(), start)))
        try:
            return attempt_once(attempt, budget)
        except TLSError:
            raise
        except NetworkError as e:
            spent = clock.ticks_diff(clock.ticks_ms(), start)
            if e.throttled:
                wait = throttled_wait_ms(spent, opts)
            else:
                failed += 1
                wait = delay // 2 + codec.random_int(16) % (delay // 2 + 1)
                delay = min(delay * 2, opts["max_backoff_ms"])
            wait = max(wait, e.retry_after_ms or 0)
            if failed == opts["attempts"] or spent + wait > opts["total_ms"]:
                raise NetworkError("registration failed after %d attempt%s in %d ms: %s"
                                   % (attempt, "s" if attempt > 1 else "", spent, e))
            say(opts, "attempt %d failed (%s); retrying in %d ms" % (attempt, e, wait))
            clock.sleep_ms(wait)


def throttled_wait_ms(spent_ms, opts):
    # A cloud over its rate limit says only "not now". The time this device has been kept waiting
    # is what it learns: the queue ahead of it drains at the cloud's rate, so it is long when the
    # wait so far was. The next try comes after a random point in the upper half of a third of
    # the time spent (at least backoff_ms, at most max_backoff_ms): a device let in late
    # overshoots by a third of its wait at most, and a fleet's tries thin out as it waits. The
    # jitter, and the devices' different start times, spread the fleet. Measured against the
    # classic capped exponential backoffs in bench/line.py (bench/README.md, "A production line").
    top = min(opts["max_backoff_ms"], max(opts["backoff_ms"], spent_ms // 3))
    return top - codec.random_int(24) % (top // 2 + 1)


def connect(info, **given):
    # dynreg.connect: MQTT with the stored credential. A refused login (CONNACK 4 or 5) makes
    # the device register once more and log in once more where the cloud allows it; a second
    # refusal is the caller's. Never a loop. Azure: always (the hub deleted, disabled or moved
    # the device; its own key provisions, the group key may be gone). Tencent and Alibaba: a
    # credential that has never logged in, while the ProductSecret is there (both register a
    # device again until its first login): a stale or replayed answer must not end the board.
    # AWS refuses a login by closing the connection, without a CONNACK: a NetworkError, never this.
    from dynreg import mqtt

    if isinstance(info, str):
        info = store.load(info)
    cloud = cloud_of(info)
    collect()
    try:
        return mqtt.connect(info, cloud, **given)
    except RejectedError as e:
        if e.code != 4 and e.code != 5 or (info.cloud != "azure" and (info.logged_in or not info.product_secret)):
            raise
        opts = options({"log": given.get("log", print)}, DEFAULTS)
        say(opts, "%s refused: provisioning again" % info.device_name)
        register(info, opts)
    return mqtt.connect(info, cloud, **given)

# The first-boot flow: load the info, return the stored credential if there is one (no
# network at all), otherwise register with retries and store the credential before
# returning it. A device that holds a credential never registers again.
import os
from dynreg import ConfigError, NetworkError, TLSError, store, clock

DEFAULTS = {
    "attempts": 4,  # registration requests at most, on network errors and 5xx only
    "backoff_ms": 1000,  # first wait; doubles each attempt, with jitter
    "max_backoff_ms": 16000,  # also the longest Retry-After honoured; a longer one ends the tries
    "total_ms": 60000,  # all attempts and waits together
    "timeout_ms": 10000,  # connect, each read, and the whole response
    "ca": None,  # CA certificate bytes, or a file name; default: the info's "ca"
    "device_name": None,  # when the info names none (derived from the chip id by the firmware)
    "log": print,
}


def options(given, defaults=DEFAULTS):
    opts = dict(defaults)
    for name in given:
        if name not in defaults:
            raise ConfigError("unknown option %s" % name)
        opts[name] = given[name]
    return opts


def say(opts, text):
    if opts["log"]:
        opts["log"]("dynreg: " + text)


def random_int(bits=31):
    return int.from_bytes(os.urandom(4), "big") & ((1 << bits) - 1)


def load_ca(info, ca):
    # The CA certificate's bytes (DER or PEM): given directly, or a file named by the option
    # or by the info (relative to the info's folder).
    ca = ca or info.ca
    if isinstance(ca, str):
        ca = store.read_file(info.file(ca), store.MAX_INFO)
    return ca


def ensure(info_path, **given):
    opts = options(given)
    info = store.load(info_path)
    if opts["device_name"] and not info.device_name:
        info.device_name = opts["device_name"]
    if not info.needs_registration:
        say(opts, "%s holds a credential: no registration" % (info.device_name or "device"))
        return info
    if not info.device_name:
        raise ConfigError("no DeviceName: set device_name in the info or pass device_name=")
    clock.unix_time()  # a clock that was never set fails here, before any request
    if info.cloud == "tencent":
        from dynreg.tencent_register import register
    else:
        from dynreg.aliyun_register import register
    ca = load_ca(info, opts["ca"])
    credential = with_retries(opts, lambda attempt: register(info, ca, opts, attempt))
    info.save_credential(credential)
    say(opts, "credential stored in %s" % info.path)
    return info


def check_status(status, retry_after):
    # 5xx and 429 are the server's trouble: a NetworkError, retried (after Retry-After when
    # given). Any other status goes on to the cloud's answer, which says what went wrong.
    if status >= 500 or status == 429:
        e = NetworkError("server answered HTTP %d" % status)
        e.retry_after_ms = retry_after * 1000 if retry_after is not None else None
        raise e


def with_retries(opts, attempt_once):
    # Network errors, 5xx and 429 (raised as NetworkError) are retried with exponential
    # backoff and jitter, within `attempts` and `total_ms`; a TLS refusal, a cloud rejection
    # or a bad answer ends at once.
    attempts = opts["attempts"]
    delay = opts["backoff_ms"]
    timeout = opts["timeout_ms"]
    start = clock.ticks_ms()
    for attempt in range(1, attempts + 1):
        # An attempt gets at most what is left of the budget.
        opts["timeout_ms"] = max(1, min(timeout, opts["total_ms"] - clock.ticks_diff(clock.ticks_ms(), start)))
        try:
            return attempt_once(attempt)
        except TLSError:
            raise
        except NetworkError as e:
            wait = delay // 2 + random_int(16) % (delay // 2 + 1)
            asked = getattr(e, "retry_after_ms", None)
            if asked is not None:
                wait = max(wait, asked)
            spent = clock.ticks_diff(clock.ticks_ms(), start)
            if attempt == attempts or wait > opts["max_backoff_ms"] or spent + wait > opts["total_ms"]:
                raise NetworkError("registration failed after %d attempt%s in %d ms: %s"
                                   % (attempt, "s" if attempt > 1 else "", spent, e))
            say(opts, "attempt %d failed (%s); retrying in %d ms" % (attempt, e, wait))
            clock.sleep_ms(wait)
            delay = min(delay * 2, opts["max_backoff_ms"])


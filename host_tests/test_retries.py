# dynreg.flow's retry policy (runs on CPython and MicroPython): which errors are retried, how
# long it waits (exponential backoff with jitter, Retry-After honoured), and its bounds.
from support import exact
import dynreg
from dynreg import clock, codec, flow, http


class Attempts:
    # Fails with the given errors in turn, then returns "credential"; records the waits, which
    # advance its own clock.
    def __init__(self, *errors, spend_ms=0):
        self.errors = list(errors)
        self.spend_ms = spend_ms  # what each attempt takes on the fake clock
        self.budgets = []
        self.calls = 0
        self.waits = []
        self.now_ms = 0

    def sleep_ms(self, ms):
        self.waits.append(ms)
        self.now_ms += ms

    def __call__(self, attempt, timeout_ms):
        self.calls += 1
        assert attempt == self.calls
        self.budgets.append(timeout_ms)
        self.now_ms += self.spend_ms
        if self.errors:
            raise self.errors.pop(0)
        return "credential"


def _run(attempts_fn, **given):
    opts = dynreg.options(dict({"log": None}, **given), flow.DEFAULTS)
    real = clock.sleep_ms, clock.ticks_ms, clock.ticks_diff
    clock.sleep_ms = attempts_fn.sleep_ms
    clock.ticks_ms = lambda: attempts_fn.now_ms
    clock.ticks_diff = lambda end, start: end - start
    try:
        result = flow.with_retries(opts, attempts_fn)
        assert opts == dynreg.options(dict({"log": None}, **given), flow.DEFAULTS)  # options untouched
        return result
    finally:
        clock.sleep_ms, clock.ticks_ms, clock.ticks_diff = real


def _no_jitter(fn, *args, **kwargs):
    # codec.random_int fixed at 0: every wait is half its base, known to the millisecond.
    real = codec.random_int
    codec.random_int = lambda bits=31: 0
    try:
        return fn(*args, **kwargs)
    finally:
        codec.random_int = real


def _server_error(status, retry_after=None):
    try:
        http.check_status(status, retry_after)
    except dynreg.NetworkError as e:
        return e
    raise AssertionError("no error for HTTP %d" % status)


def test_network_errors_and_5xx_are_retried_with_growing_jittered_waits():
    attempts = Attempts(dynreg.NetworkError("reset"), _server_error(503), _server_error(500))
    assert _run(attempts, attempts=4, backoff_ms=1000, max_backoff_ms=16000) == "credential"
    assert attempts.calls == 4 and len(attempts.waits) == 3
    for wait, base in zip(attempts.waits, (1000, 2000, 4000)):
        assert base // 2 <= wait <= base, attempts.waits


def test_gives_up_after_the_last_attempt():
    attempts = Attempts(*[_server_error(502) for _ in range(5)])
    e = exact(dynreg.NetworkError, _run, attempts, attempts=3, backoff_ms=10)
    assert attempts.calls == 3 and len(attempts.waits) == 2
    assert "after 3 attempts" in str(e) and "502" in str(e)


def test_retry_after_is_honoured():
    attempts = Attempts(_server_error(429, retry_after=5), _server_error(503, retry_after=0))
    assert _run(attempts, backoff_ms=100, max_backoff_ms=16000) == "credential"
    # The 429 was throttling: it neither spent an attempt nor doubled the base, so the 503's own
    # wait is the first one, 50 to 100 ms, which a Retry-After of 0 leaves as it is.
    assert attempts.waits[0] == 5000 and 50 <= attempts.waits[1] <= 100, attempts.waits


def test_a_retry_after_beyond_the_longest_own_wait_is_honoured_within_the_total():
    # A fleet told to come back in 200 s by a cloud that spreads it: longer than any backoff.
    attempts = Attempts(_server_error(429, retry_after=200))
    assert _run(attempts, max_backoff_ms=16000, total_ms=300000) == "credential"
    assert attempts.waits == [200000]


def test_a_retry_after_beyond_the_total_ends_the_tries():
    attempts = Attempts(_server_error(429, retry_after=3600))
    e = exact(dynreg.NetworkError, _run, attempts, max_backoff_ms=16000, total_ms=300000)
    assert attempts.calls == 1 and attempts.waits == [] and "429" in str(e)


def test_total_time_bounds_the_tries():
    # Retry-After 4 s is above every jittered wait (1 s base): attempts at 0, 4000 and 8000 ms;
    # a third wait would end at 12000, past the 10000 ms total.
    attempts = Attempts(*[_server_error(503, retry_after=4) for _ in range(9)])
    e = exact(dynreg.NetworkError, _run, attempts, attempts=10, total_ms=10000)
    assert attempts.waits == [4000, 4000] and attempts.calls == 3
    assert "after 3 attempts in 8000 ms" in str(e), str(e)


def test_rejections_tls_and_bad_answers_are_never_retried():
    for error in (dynreg.RejectedError(1010, "Check signature failed"), dynreg.TLSError("wrong CA"),
                  dynreg.ProtocolError("garbage"), dynreg.ConfigError("bad"), dynreg.ClockError("unset")):
        attempts = Attempts(error)
        e = exact(type(error), _run, attempts)
        assert e is error and attempts.calls == 1 and attempts.waits == []


def test_4xx_goes_on_to_the_cloud_answer():
    for status in (200, 400, 401, 403, 404):
        http.check_status(status, None)  # no NetworkError: the body says what went wrong
    assert _server_error(429).retry_after_ms is None
    assert _server_error(503, 7).retry_after_ms == 7000
    assert _server_error(429).throttled and not _server_error(503).throttled


def test_throttling_spends_no_attempt():
    # attempts=1: one network error or 5xx would end it, yet nine refusals of a throttling cloud
    # are waited out. Each wait is between half the first wait and the larger of the first wait
    # and a third of the time spent so far (each attempt takes 3 s here): the waits grow with it.
    attempts = Attempts(*[_server_error(429) for _ in range(9)], spend_ms=3000)
    assert _run(attempts, attempts=1, backoff_ms=1000, max_backoff_ms=60000) == "credential"
    assert attempts.calls == 10 and len(attempts.waits) == 9
    spent = 0
    for wait in attempts.waits:
        spent += 3000
        top = max(1000, spent // 3)
        assert top // 2 <= wait <= top, attempts.waits
        spent += wait
    assert attempts.waits[-1] >= 5000, attempts.waits  # 30 s and more spent: a third of it, halved at least


def test_a_throttled_wait_is_capped():
    attempts = Attempts(*[_server_error(429) for _ in range(3)], spend_ms=100000)
    assert _run(attempts, attempts=1, max_backoff_ms=20000, total_ms=10 ** 6) == "credential"
    assert all(10000 <= wait <= 20000 for wait in attempts.waits), attempts.waits


def test_a_cloud_that_throttles_for_ever_is_left_at_total_ms():
    # Instant answers, 20 s in all: throttled waits of 500 ms to a third of the time spent, until
    # the next would end past the total. A wait is a third of the time spent at most, so the
    # tries end past 15 s (15 + 5 = 20), never before.
    attempts = Attempts(*[_server_error(429) for _ in range(60)])  # more than fit in 20 s
    e = exact(dynreg.NetworkError, _run, attempts, attempts=1, total_ms=20000)
    assert attempts.calls > 4 and 15000 < attempts.now_ms <= 20000, (attempts.calls, attempts.now_ms)
    assert ("after %d attempts" % attempts.calls) in str(e) and "429" in str(e), str(e)


def test_a_5xx_among_throttling_spends_an_attempt():
    attempts = Attempts(_server_error(429), _server_error(503), _server_error(429), _server_error(500))
    e = exact(dynreg.NetworkError, _run, attempts, attempts=2, backoff_ms=10)
    assert attempts.calls == 4 and "after 4 attempts" in str(e) and "500" in str(e), str(e)


def test_unknown_option_is_config_error():
    exact(dynreg.ConfigError, dynreg.options, {"attempt": 3}, flow.DEFAULTS)


def test_each_attempt_gets_its_timeout_or_what_is_left_of_the_total():
    # Attempts of 3000 ms each on the fake clock, waits of 500-1000 then 1000-2000 ms: the third
    # starts 7500 to 9000 ms into a 9500 ms total and gets what is left, 500 to 2000 ms.
    attempts = Attempts(*[dynreg.NetworkError("reset") for _ in range(2)], spend_ms=3000)
    assert _run(attempts, attempts=3, timeout_ms=4000, total_ms=9500, backoff_ms=1000) == "credential"
    first, second, third = attempts.budgets
    assert first == 4000 and second == 4000
    spent = 2 * 3000 + sum(attempts.waits)
    assert third == 9500 - spent and 500 <= third <= 2000, (attempts.budgets, attempts.waits)


def test_total_ms_bounds_all_attempts_on_a_fake_clock():
    # test_host_faults.py's test_total_ms_bounds_all_attempts with nothing left to the machine:
    # 503 after 30 ms each, 50 attempts allowed, bases 100, 200, 400, 400 ... ms halved (no
    # jitter), 1500 ms in all, 1000 ms an attempt. The attempts start at 0, 80, 210, 440, 670,
    # 900, 1130 and 1360 ms, each with its 1000 ms or what is left of the 1500; the eighth fails
    # at 1390 ms and a 200 ms wait would end past 1500: the budget ends the tries, not the count.
    attempts = Attempts(*[_server_error(503) for _ in range(50)], spend_ms=30)
    e = _no_jitter(exact, dynreg.NetworkError, _run, attempts, attempts=50, backoff_ms=100, max_backoff_ms=400,
                   total_ms=1500, timeout_ms=1000)
    assert attempts.calls == 8 and attempts.now_ms == 1390
    assert attempts.waits == [50, 100, 200, 200, 200, 200, 200]
    assert attempts.budgets == [1000, 1000, 1000, 1000, 830, 600, 370, 140]
    assert "after 8 attempts in 1390 ms" in str(e) and "503" in str(e), str(e)


def test_an_attempt_left_no_budget_gets_1_ms():
    # Instant attempts, Retry-After 1 s, 2000 ms in all: attempts at 0, 1000 and 2000 ms; the
    # third starts with nothing left and gets 1 ms (never 0, which would mean no timeout).
    attempts = Attempts(*[_server_error(503, retry_after=1) for _ in range(5)])
    e = _no_jitter(exact, dynreg.NetworkError, _run, attempts, attempts=5, total_ms=2000, timeout_ms=1500)
    assert attempts.budgets == [1500, 1000, 1] and attempts.waits == [1000, 1000]
    assert "after 3 attempts in 2000 ms" in str(e), str(e)

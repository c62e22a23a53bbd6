# dynreg.clock and the error types (runs on CPython and MicroPython).
import sys
import time

from support import exact
import dynreg
from dynreg import clock


# The unix port's time.time() is a double; rp2's is an int (and its floats are 32-bit).
DOUBLE_FLOATS = float(16777217) != 16777216.0
# Times after any build date of these tests' firmware: 2035-01-01 01:02:03 UTC.
LATER = 2051226123


def test_unix_port_epoch_1970():
    assert clock.to_unix(LATER, 1970) == LATER
    if DOUBLE_FLOATS:
        assert clock.to_unix(LATER + 0.8, 1970) == LATER


def test_esp32_epoch_2000():
    # 2035-01-01 00:00:00 UTC is 2051222400 Unix seconds and 1104537600 since 2000.
    assert clock.to_unix(1104537600, 2000) == 2051222400


def test_result_is_int():
    assert type(clock.to_unix(LATER + 0.99 if DOUBLE_FLOATS else LATER, 1970)) is int
    assert type(clock.unix_time()) is int


def test_unset_clock_is_clock_error():
    exact(dynreg.ClockError, clock.to_unix, 0, 1970)
    exact(dynreg.ClockError, clock.to_unix, 0, 2000)  # an ESP32 fresh from reset
    exact(dynreg.ClockError, clock.to_unix, 1704067199, 1970)  # one second before 2024


def _leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def build_day():
    # 00:00 UTC of the day this runtime was built, in Unix seconds, counted here day by day from
    # the date its sys.version ends with ("... MicroPython v1.28.0 on 2026-12-07"); None on
    # CPython, which has no build date.
    if sys.implementation.name != "micropython":
        return None
    y, m, d = [int(n) for n in sys.version.rsplit(" on ", 1)[1].split("-")]
    days = sum(366 if _leap(year) else 365 for year in range(1970, y))
    days += sum((31, 29 if _leap(y) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[:m - 1]) + d - 1
    assert time.gmtime(days * 86400 - (946684800 if time.gmtime(0)[0] == 2000 else 0))[:6] == (y, m, d, 0, 0, 0)
    return days * 86400


def test_a_clock_before_the_build_date_is_clock_error():
    # The firmware cannot have been built before its clock was right: MicroPython refuses any
    # time before its build date (a day before it, a second before it); CPython, which names
    # no build date, before 2024-01-01.
    day = build_day() or 1704067200
    exact(dynreg.ClockError, clock.to_unix, day - 86400, 1970)
    exact(dynreg.ClockError, clock.to_unix, day - 86400 - 946684800, 2000)  # the same on ESP32's epoch
    exact(dynreg.ClockError, clock.to_unix, day - 1, 1970)
    assert clock.to_unix(day, 1970) == day
    assert clock.to_unix(day - 946684800, 2000) == day
    assert clock.EARLIEST == day


def test_this_machine_clock_is_set():
    assert clock.unix_time() > 1704067200


def test_error_hierarchy():
    for kind in (dynreg.ConfigError, dynreg.ProtocolError, dynreg.RejectedError, dynreg.NetworkError,
                 dynreg.StorageError, dynreg.ClockError, dynreg.TLSError):
        assert issubclass(kind, dynreg.Error)
    assert issubclass(dynreg.TLSError, dynreg.NetworkError)
    assert issubclass(dynreg.Error, Exception)


def test_rejected_error_carries_code_and_message():
    e = dynreg.RejectedError(6289, "device is already active")
    assert e.code == 6289 and e.message == "device is already active"
    assert "6289" in str(e) and "already active" in str(e)


def test_import_is_cheap():
    # `import dynreg` must not load any cloud's module (boards that use one cloud only).
    # The loaded dynreg modules are set aside and put back, so other tests keep their classes.
    saved = {}
    for name in list(sys.modules):
        if name == "dynreg" or name.startswith("dynreg."):
            saved[name] = sys.modules.pop(name)
    try:
        import dynreg as fresh

        assert "dynreg.tencent" not in sys.modules and "dynreg.flow" not in sys.modules
        assert "dynreg.store" not in sys.modules and "dynreg.http" not in sys.modules
        assert callable(fresh.ensure) and callable(fresh.connect)
    finally:
        for name in list(sys.modules):
            if name == "dynreg" or name.startswith("dynreg."):
                del sys.modules[name]
        sys.modules.update(saved)

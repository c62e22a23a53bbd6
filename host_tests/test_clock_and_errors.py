# dynreg.clock and the error types (runs on CPython and MicroPython).
import sys

from support import exact
import dynreg
from dynreg import clock


# The unix port's time.time() is a double; rp2's is an int (and its floats are 32-bit).
DOUBLE_FLOATS = float(16777217) != 16777216.0


def test_unix_port_epoch_1970():
    assert clock.to_unix(1795300503, 1970) == 1795300503
    if DOUBLE_FLOATS:
        assert clock.to_unix(1795300503.8, 1970) == 1795300503


def test_esp32_epoch_2000():
    # 2026-11-21 00:00:00 UTC is 1795219200 Unix seconds and 848534400 since 2000.
    assert clock.to_unix(848534400, 2000) == 1795219200


def test_result_is_int():
    assert type(clock.to_unix(1795300503.99 if DOUBLE_FLOATS else 1795300503, 1970)) is int
    assert type(clock.unix_time()) is int


def test_unset_clock_is_clock_error():
    exact(dynreg.ClockError, clock.to_unix, 0, 1970)
    exact(dynreg.ClockError, clock.to_unix, 0, 2000)  # an ESP32 fresh from reset
    exact(dynreg.ClockError, clock.to_unix, 1704067199, 1970)  # one second before 2024
    assert clock.to_unix(1704067200, 1970) == 1704067200


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

# Unix time as an integer on every port. ESP32 counts from 2000, RP2 and unix from 1970;
# unix returns a float. A clock before the firmware's build date was never set (no SNTP yet):
# signing with it would only earn a rejection from the cloud.
import sys
import time
from micropython import const
from dynreg import ClockError

_Y2K = const(946684800)  # 2000-01-01 in Unix seconds
EPOCH_YEAR = time.gmtime(0)[0]


def _build_day(version):
    # MicroPython's sys.version ends with the build date ("... v1.28.0 on 2026-12-07"): that
    # day's 00:00 UTC in Unix seconds. Without one (CPython), 2024-01-01.
    try:
        y, m, d = map(int, version[-10:].split("-"))
    except ValueError:
        return 1704067200
    if m < 3:
        y -= 1
    return (365 * y + y // 4 - y // 100 + y // 400 + (153 * ((m + 9) % 12) + 2) // 5 + d - 719469) * 86400


EARLIEST = _build_day(sys.version)  # past the small-int range of 32-bit ports: a long int


def to_unix(port_seconds, epoch_year=EPOCH_YEAR):
    seconds = int(port_seconds) + (_Y2K if epoch_year == 2000 else 0)
    if seconds < EARLIEST:
        raise ClockError("clock not set: sync it by SNTP first")
    return seconds


def unix_time():
    return to_unix(time.time())


if hasattr(time, "ticks_ms"):
    ticks_ms = time.ticks_ms
    ticks_add = time.ticks_add
    ticks_diff = time.ticks_diff

    def sleep_ms(ms):
        # Whole seconds with sleep(): the unix port's sleep_ms wakes every millisecond (about
        # 1700 context switches a second), which a line of 1000 waiting devices cannot afford.
        if ms >= 1000:
            time.sleep(ms // 1000)
            ms %= 1000
        time.sleep_ms(ms)
else:  # CPython, for the host tests: ticks are plain integers, added and subtracted
    from operator import add as ticks_add, sub as ticks_diff

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def sleep_ms(ms):
        time.sleep(ms / 1000)

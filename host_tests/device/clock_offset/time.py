# `time` for a device under test whose wall clock is moved while it runs (a board whose SNTP
# resync jumped, or "a day later" without waiting a day). On the unix port a time.py on
# MICROPYPATH takes the place of the built-in module (`time` is extensible), as
# pico_emulator/board/socket.py takes the place of `socket` on the emulated Pico W. Only the
# wall clock moves: time() and time_ns() add the seconds written in the file named by
# DYNREG_CLOCK_OFFSET_FILE, re-read on every call; ticks_ms and sleeps are the built-in's.
import sys

_path = sys.path
sys.path = ()  # the built-in, not this file again
try:
    from time import *  # noqa: F401,F403
    from time import time as _time, time_ns as _time_ns
finally:
    sys.path = _path

from os import getenv

_OFFSET_FILE = getenv("DYNREG_CLOCK_OFFSET_FILE")


def offset():
    if not _OFFSET_FILE:
        return 0
    try:
        with open(_OFFSET_FILE) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def time():
    return _time() + offset()


def time_ns():
    return _time_ns() + offset() * 1000000000

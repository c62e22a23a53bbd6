# The watchdog: a board stuck anywhere (a DNS lookup that never returns, a radio driver that
# hangs) resets and boots again, instead of sitting dead until someone power-cycles it. main.py
# arms it once per boot (site.json "watchdog_ms"), feeds it from its loops and before every wait,
# and disarms it when the application stops for a person (a refusal no wait can change, a bad
# info, Ctrl-C): the REPL is then theirs, and a soft reset there does not end in a reset.
#   esp32: machine.WDT holds the whole timeout. It cannot be stopped: disarmed, it gets a day.
#   rp2: its WDT counts 8.3 s at most. A hard timer feeds it every second while the deadline
#     (the last feed + watchdog_ms) has not passed; then the feeding stops and the chip resets
#     within 8 s. A hang that stops the timer too (interrupts off) resets it within 8 s.
#   unix (the virtual board, the tests): a thread ends the process with RESET_EXIT, the exit
#     status that stands for machine.reset() there (reset() below).
import sys
import time

RESET_EXIT = 75  # unix: the process's exit status for a reset (sysexits' EX_TEMPFAIL: "try again")
_RP2_HARDWARE_MS = 8000  # under rp2's maximum of 8388 ms
_RP2_FEED_EVERY_MS = 1000
_RP2_CTRL_CLEAR = 0x40058000 + 0x3000  # WATCHDOG CTRL through the atomic clear alias (RP2040 datasheet 2.1.2, 4.7)
_RP2_ENABLE = 1 << 30  # CTRL.ENABLE
_ESP32_PARKED_MS = 86400000

_ms = 0
_deadline = None  # ticks_ms by which the next feed must come; None: not armed
_hardware = None  # machine.WDT
_timer = None


def arm(ms):
    # Once per boot; 0: no watchdog.
    global _ms, _deadline, _hardware, _timer
    if not ms or _deadline is not None:
        return
    _ms = ms
    _deadline = time.ticks_add(time.ticks_ms(), ms)
    if sys.platform == "linux":
        import _thread

        _thread.start_new_thread(_watch, ())
    elif sys.platform in ("rp2", "esp32"):
        from machine import WDT

        _hardware = WDT(timeout=min(ms, _RP2_HARDWARE_MS) if sys.platform == "rp2" else ms)
        if sys.platform == "rp2":
            from machine import Timer

            _timer = Timer(period=_RP2_FEED_EVERY_MS, mode=Timer.PERIODIC, callback=_tick, hard=True)


def feed():
    global _deadline
    if _deadline is not None:
        _deadline = time.ticks_add(time.ticks_ms(), _ms)
        if _hardware:
            _hardware.feed()


def disarm():
    global _deadline
    if _deadline is None:
        return
    _deadline = None  # the unix thread ends at its next look
    if _timer:
        _timer.deinit()
    if sys.platform == "rp2":
        import machine

        machine.mem32[_RP2_CTRL_CLEAR] = _RP2_ENABLE
    elif _hardware:
        from machine import WDT

        WDT(timeout=_ESP32_PARKED_MS)


def reset():
    # machine.reset(); on unix, the process ends with RESET_EXIT, from any thread.
    if sys.platform == "linux":
        import ffi

        ffi.open("libc.so.6").func("v", "_exit", "i")(RESET_EXIT)
    import machine

    machine.reset()


def _tick(timer):
    # rp2, in the timer's interrupt: nothing here may allocate.
    deadline = _deadline
    if deadline is not None and time.ticks_diff(deadline, time.ticks_ms()) > 0:
        _hardware.feed()


def _watch():
    while True:
        deadline = _deadline  # read once: the application may disarm meanwhile
        if deadline is None:
            return
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            print("watchdog: not fed for %d ms: reset" % _ms)
            reset()
        time.sleep_ms(100)

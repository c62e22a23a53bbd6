# The production line's comparisons (bench/line.py): a device of the line whose wait after a
# throttled answer follows another design than the library's. It puts the design in place of
# dynreg.flow.throttled_wait_ms, then runs bench/device_flow.py as the line's devices do.
# Bench-side only: the library keeps its own design. Every design spends no attempt on a
# throttled answer (the flow decides that), so only the waits differ.
#   micropython -m device_backoff INFO STEPS DESIGN
# DESIGN (base: the flow's backoff_ms, 1 s; n: throttled answers so far):
#   full          random(0, min(cap, base * 2^n)), cap max_backoff_ms (60 s): capped exponential
#                 with full jitter ("Exponential Backoff and Jitter", AWS Architecture Blog)
#   decorrelated  min(cap, random(base, 3 * the last wait)), cap 60 s (the same article)
#   equal16       min(cap, base * 2^n) halved plus a random point of the other half, cap 16 s:
#                 the library's design before issue 26
import sys

from dynreg import codec, flow


def _between(low, high):
    return low + codec.random_int(24) % (high - low + 1)


def full(base, cap):
    tries = [0]

    def wait_ms(spent_ms, opts):
        top = min(cap, base << min(tries[0], 16))
        tries[0] += 1
        return _between(0, top)

    return wait_ms


def decorrelated(base, cap):
    last = [base]

    def wait_ms(spent_ms, opts):
        last[0] = min(cap, _between(base, 3 * last[0]))
        return last[0]

    return wait_ms


def equal(base, cap):
    delay = [base]

    def wait_ms(spent_ms, opts):
        half = delay[0] // 2
        delay[0] = min(2 * delay[0], cap)
        return half + _between(0, half)

    return wait_ms


base, cap = flow.DEFAULTS["backoff_ms"], flow.DEFAULTS["max_backoff_ms"]
design, cap = {"full": (full, cap), "decorrelated": (decorrelated, cap), "equal16": (equal, 16000)}[sys.argv[3]]
flow.throttled_wait_ms = design(base, cap)
import device_flow  # noqa: E402,F401  (runs the device with INFO and STEPS)

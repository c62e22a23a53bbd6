# The reconnect storm's device (bench/storm.py): a board's application in short. dynreg.ensure
# (it registers at the first boot only), then dynreg.online.stay_online with the stored
# credential and its defaults, for ONLINE_MS at most, so that no device outlives the bench.
#   micropython -m device_online INFO ONLINE_MS
# Prints "T stored ns", then "T connected ns" at each session's start (wall clock), the
# library's status lines, and last "RESULT ok" or "RESULT <error> <message>". Never a secret.
import sys
import time

import dynreg
from dynreg import online


def on_connect(client):
    print("T connected", time.time_ns())


def main(path, online_ms):
    try:
        info = dynreg.ensure(path, log=print)
        print("T stored", time.time_ns())
        online.stay_online(info, on_connect, online_ms=online_ms, log=print)
        print("RESULT ok")
    except Exception as e:
        print("RESULT %s %s" % (type(e).__name__, e))


main(sys.argv[1], int(sys.argv[2]))

# The device side of the benchmarks, run on the MicroPython unix port as .mpy beside the
# library (bench/common.py compiles it). Kept small: it runs under the heap being measured.
#   micropython [-X heapsize=N] -m device_flow INFO STEPS
# STEPS, in this order:
#   p  import the Tencent flow first (a device that has booted); print "LOADED alloc" after a
#      collection: the heap the loaded bytecode holds
#   w  print READY and wait for one byte on stdin (the fleet's common start); at the end, stay
#      up until stdin closes (a device keeps running; its exit must not load the others' cores)
#   1  one registration attempt only
#   v  dynreg's status lines printed (attempts and retries; never a secret)
#   r  dynreg.ensure (registers unless a credential is stored)
#   c  dynreg.connect (MQTT), then disconnect
# Prints "HEAP alloc free" before importing dynreg, "T label ns" (wall clock, comparable across
# processes) at start, go, stored and connected, and last "RESULT ok" or "RESULT <error> <message>".
# Never prints a secret.
import sys
import time

print("T start", time.time_ns())


def main(info, steps):
    import gc

    print("HEAP", gc.mem_alloc(), gc.mem_free())
    import dynreg

    if "p" in steps:
        for name in ("dynreg.flow", "dynreg.tencent", "dynreg.http", "dynreg.mqtt", "umqtt.simple"):
            __import__(name)
        gc.collect()
        print("LOADED", gc.mem_alloc())
    if "w" in steps:
        print("READY")
        sys.stdin.buffer.read(1)
        print("T go", time.time_ns())
    try:
        if "r" in steps:
            options = {"log": print if "v" in steps else None}
            if "1" in steps:
                options["attempts"] = 1
            info = dynreg.ensure(info, **options)
            print("T stored", time.time_ns())
        if "c" in steps:
            client = dynreg.connect(info, log=None)
            print("T connected", time.time_ns())
            client.disconnect()
        print("RESULT ok")
    except MemoryError:
        print("RESULT MemoryError")
    except Exception as e:
        print("RESULT %s %s" % (type(e).__name__, e))
    if "w" in steps:
        sys.stdin.buffer.read(1)


main(sys.argv[1], sys.argv[2])

# The device side of bench/mip_ram.py, run as .mpy on a 32-bit unix port:
#   micropython -X heapsize=N -m device_mip CLOUD [INFO]
# Imports what a first boot with CLOUD holds (its module, its built-in roots as for the real
# cloud, HTTP unless Azure, MQTT and umqtt.simple), prints "HELD bytes": the heap they hold
# after a collection, above what was in use before. With INFO it then registers (one attempt)
# and logs in over MQTT. Last: "MODULES" (dynreg's loaded modules), "RESULT ok" or
# "RESULT <error> <message>". Never prints a secret.
import gc
import sys

gc.collect()
before = gc.mem_alloc()
try:
    cloud = sys.argv[1]
    for name in ("flow", "mqtt", cloud, "roots_" + cloud) + (() if cloud == "azure" else ("http",)):
        __import__("dynreg." + name)
    __import__("umqtt.simple")
    import dynreg

    gc.collect()
    print("HELD", gc.mem_alloc() - before)
    if len(sys.argv) > 2:
        info = dynreg.ensure(sys.argv[2], attempts=1, log=None)
        dynreg.connect(info, log=None).disconnect()
    print("MODULES", " ".join(sorted(n for n in sys.modules if n.startswith("dynreg"))))
    print("RESULT ok")
except MemoryError:
    print("RESULT MemoryError")
except Exception as e:
    print("RESULT %s %s" % (type(e).__name__, e))

# dynreg.online.stay_online on the MicroPython unix port with the heap run short at a reconnect,
# for host_tests/test_host_online_memory.py. The test passes the path of a JSON spec:
#   {"info": path, "online": {options}, "subscribe": topic,
#    "squeeze": bytes (after the first lost session, ballast leaves only this much heap free),
#    "release": bool (the ballast goes again once a connect has failed with a MemoryError)}
# and reads the last line: RESULT {"sessions": .., "error": .., "tls_contexts": how many TLS
# contexts dynreg built (net.tls_context calls)}
import gc
import json
import sys

from dynreg import net, online, store

ballast = [None] * 4096  # preallocated: growing a list needs a bigger block of its own


def squeeze(free_bytes):
    # Fills the heap to its last block, then gives back whole chunks until `free_bytes` are free.
    size, count = 256, 0
    while size and count < len(ballast):
        try:
            ballast[count] = bytes(size)
            count += 1
        except MemoryError:
            size //= 2
    released = 0
    while released < count and gc.mem_free() < free_bytes:
        ballast[released] = None
        released += 1
        gc.collect()


def release():
    for i in range(len(ballast)):
        ballast[i] = None


def main(spec):
    built = [0]
    real_tls_context = net.tls_context

    def counting_tls_context(*args):
        built[0] += 1
        return real_tls_context(*args)

    net.tls_context = counting_tls_context
    state = {"squeezed": False, "released": False}

    def log(text):
        print(text)
        if "offline after" in text and spec.get("squeeze") and not state["squeezed"]:
            state["squeezed"] = True
            squeeze(spec["squeeze"])
        elif "connect failed (MemoryError" in text and spec.get("release") and not state["released"]:
            state["released"] = True
            release()

    def on_connect(client):
        client.subscribe(spec["subscribe"].encode())

    result = {}
    try:
        result["sessions"] = online.stay_online(store.load(spec["info"]), on_connect, log=log, **spec["online"])
    except Exception as e:
        result["error"] = type(e).__name__
    release()
    gc.collect()
    result["tls_contexts"] = built[0]
    print("RESULT " + json.dumps(result))


with open(sys.argv[1]) as spec_file:
    main(json.load(spec_file))

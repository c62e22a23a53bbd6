# Runs the dynreg flow on the MicroPython unix port for the end-to-end tests, as a device
# would: ensure, then optionally connect and publish. The test passes the path of a JSON
# spec file (not the JSON itself: the unix port dies on an argument of 256 characters or more):
#   {"info": path, "ensure": {options}, "connect": {options} | null, "publish": topic | null,
#    "clock_offset": seconds, "nonce": fixed nonce, "preload": bool,
#    "subdevices": [[product_key, device_name], ...] registered through the connected gateway,
#    "elapsed": bool (adds "elapsed_ms": the device's own time for ensure/connect/publish),
#    "modules": bool (adds "modules": the dynreg modules loaded by the end),
#    "squeeze_after_answer": bytes (once the cloud's answer is in, ballast leaves only this much
#    heap free, so the flow runs out of memory between the answer and the flash or later),
#    "online": {options} (instead of connect: dynreg.online.stay_online with them; on_connect
#    subscribes to "subscribe": [topic, qos] when given, on_message records each message as
#    [topic, bytes] in "messages" and, for a payload b"fail" or b"fail-os", has a bug of its
#    own: an IndexError, or an OSError from a file that is not there; "sessions" is what
#    stay_online returned, and an exception it let through is the result's "error")}
# and reads the last line: RESULT {"ok": .., "error": .., "code": .., "credential": [field names]}
import json
import sys

import dynreg
from dynreg import clock, codec


ballast = []


def squeeze(free_bytes):
    import gc
    from dynreg import http

    real_post = http.post
    ballast.extend([None] * 4096)  # preallocated: growing a list needs a bigger block of its own

    def post(*args, **kwargs):
        answer = real_post(*args, **kwargs)
        # Fill the heap to the last block (the free heap is fragmented: ever smaller pieces),
        # then give back whole chunks until `free_bytes` are free.
        size, count = 256, 0  # 256-byte chunks: the headroom is set to within 256 bytes
        while size and count < len(ballast):
            try:
                ballast[count] = bytes(size)
                count += 1
            except MemoryError:
                size //= 2
        released = 0  # the big chunks first: they were allocated first
        while released < count and gc.mem_free() < free_bytes:
            ballast[released] = None
            released += 1
            gc.collect()
        return answer

    http.post = post


def run_online(info, spec):
    from dynreg import online

    messages = []

    def on_connect(client):
        if spec.get("subscribe"):
            client.subscribe(spec["subscribe"][0].encode(), spec["subscribe"][1])

    def on_message(client, topic, msg):
        messages.append([topic.decode(), len(msg)])
        if msg == b"fail":
            return [][0]
        if msg == b"fail-os":
            open("no-such-folder/file")

    try:
        return {"sessions": online.stay_online(info, on_connect, on_message, **spec["online"]), "messages": messages}
    except dynreg.Error:
        raise
    except Exception as e:
        return {"ok": False, "error": type(e).__name__, "message": str(e), "messages": messages}


def main(spec):
    if spec.get("preload"):
        # Import the whole flow first, so a constrained heap runs out in the flow, not on import.
        for name in ("dynreg.flow", "dynreg.tencent", "dynreg.http", "dynreg.mqtt", "dynreg.store", "umqtt.simple"):
            __import__(name)
    if spec.get("squeeze_after_answer") is not None:
        squeeze(spec["squeeze_after_answer"])
    if spec.get("clock_offset"):
        real = clock.unix_time
        clock.unix_time = lambda: real() + spec["clock_offset"]  # a device whose clock is off
    if spec.get("nonce") is not None:
        codec.random_int = lambda bits=31: spec["nonce"]
    start = clock.ticks_ms()
    result = {"ok": True}
    try:
        info = dynreg.ensure(spec["info"], **spec.get("ensure", {}))
        result["credential"] = sorted(info.credential)
        if spec.get("online") is not None:
            result.update(run_online(info, spec))
        if spec.get("connect") is not None:
            client = dynreg.connect(info, **spec["connect"])
            if spec.get("publish"):
                client.publish(spec["publish"].encode(), b'{"status":"online"}')
                result["published"] = spec["publish"]
            if spec.get("subdevices"):
                from dynreg import gateway

                registered, errors = gateway.register_subdevices(client, info, [tuple(s) for s in spec["subdevices"]],
                                                                 timeout_ms=5000)
                result["registered"] = ["%s/%s" % key for key in registered]
                result["errors"] = dict(("%s/%s" % key, value[0]) for key, value in errors.items())
            client.disconnect()
            result["connected"] = True
    except dynreg.Error as e:
        result = {"ok": False, "error": type(e).__name__, "message": str(e)}
        if isinstance(e, dynreg.RejectedError):
            result["code"] = e.code
    except MemoryError:
        result = {"ok": False, "error": "MemoryError", "message": ""}
    if spec.get("modules"):
        result["modules"] = sorted(name for name in sys.modules if name.startswith("dynreg"))
    if spec.get("elapsed"):
        result["elapsed_ms"] = clock.ticks_diff(clock.ticks_ms(), start)
    print("RESULT " + json.dumps(result))


with open(sys.argv[1]) as spec_file:
    main(json.load(spec_file))

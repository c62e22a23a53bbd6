# Runs the dynreg flow on the MicroPython unix port for the end-to-end tests, as a device
# would: ensure, then optionally connect and publish. The test passes one JSON argument:
#   {"info": path, "ensure": {options}, "connect": {options} | null, "publish": topic | null,
#    "clock_offset": seconds, "nonce": fixed nonce, "preload": bool,
#    "subdevices": [[product_key, device_name], ...] registered through the connected gateway}
# and reads the last line: RESULT {"ok": .., "error": .., "code": .., "credential": [field names]}
import json
import sys

import dynreg
from dynreg import clock, flow


def main(spec):
    if spec.get("preload"):
        # Import the whole flow first, so a constrained heap runs out in the flow, not on import.
        for name in ("dynreg.tencent_register", "dynreg.http", "dynreg.mqtt", "dynreg.store", "umqtt.simple"):
            __import__(name)
    if spec.get("clock_offset"):
        real = clock.unix_time
        clock.unix_time = lambda: real() + spec["clock_offset"]  # a device whose clock is off
    if spec.get("nonce") is not None:
        flow.random_int = lambda bits=31: spec["nonce"]
    result = {"ok": True}
    try:
        info = dynreg.ensure(spec["info"], **spec.get("ensure", {}))
        result["credential"] = sorted(info.credential)
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
    print("RESULT " + json.dumps(result))


main(json.loads(sys.argv[1]))

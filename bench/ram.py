# RAM: the smallest `-X heapsize` at which each flow completes on the unix port, with the
# library loaded as .mpy, against the local emulator. Success is not monotonic in the heap
# size (where the GC's blocks land moves with it), so a bisection only finds the
# neighbourhood; a sweep around it then reports the smallest size from which every probed size
# succeeded. Every probe is a fresh device process (and a fresh device in the cloud).
import os
import shutil
import subprocess

from common import (BUILD, MICROPYTHON, aliyun_info, azure_info, device_env, run_device,
                    say, tencent_info, three_clouds)

LOW, HIGH = 4 * 1024, 256 * 1024
STEP = 256  # resolution of the search, bytes
SWEEP_UP = 2048  # above the bisection's answer, probed until this many bytes in a row succeed
SWEEP_DOWN_MAX = 4096  # probed below it until two sizes in a row fail
TARGET_TENCENT_HTTPS = 32 * 1024
TENCENT, ALIYUN = "BENCHRAM01", "a1BenchRam1"
AZURE_GROUP, AZURE_SCOPE = "bench-ram", "0ne00BENCH1"

FLOWS = [
    # key, label, steps, target
    ("tencent_http", "Tencent registration, HTTP", "1r", None),
    ("tencent_https", "Tencent registration, HTTPS", "1r", TARGET_TENCENT_HTTPS),
    ("aliyun_https", "Alibaba registration, HTTPS", "1r", None),
    ("aliyun_mqtt", "Alibaba registration, MQTT (TLS)", "1r", None),
    ("azure_dps", "Azure DPS registration, MQTT (TLS), polled", "1r", None),
    ("mqtt_connect", "MQTT connect (TLS), already registered", "c", None),
]

_TLS_PROBE = """
import gc, socket, tls
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(open(%r, 'rb').read())
s = socket.socket()
s.connect(socket.getaddrinfo('localhost', %d)[0][-1])
gc.collect(); before = gc.mem_alloc()
t = ctx.wrap_socket(s, server_hostname='localhost')
gc.collect(); print(gc.mem_alloc() - before)
t.close()
"""


def _round(size):
    return size // STEP * STEP


def smallest_heap(new_info, steps, probe=None):
    """Bisection, then a sweep; returns the figures for one flow. probe(heap) -> result text
    replaces the device_flow run (bench/mip_ram.py)."""
    outcomes = {}  # heap size -> result text

    def ok(heap):
        if heap not in outcomes:
            outcomes[heap] = probe(heap) if probe else run_device(new_info(), steps, heap=heap)["result"]
        return outcomes[heap] == "ok"

    if not ok(HIGH):
        return {"error": "the flow fails even with %d bytes of heap: %s" % (HIGH, outcomes[HIGH])}
    low, high = LOW, HIGH
    while high - low > STEP:
        mid = _round((low + high) // 2)
        if ok(mid):
            high = mid
        else:
            low = mid
    found = high
    heap, streak = found, 0  # up until a run of successes as long as SWEEP_UP
    while streak < SWEEP_UP // STEP and heap < HIGH:
        heap += STEP
        streak = streak + 1 if ok(heap) else 0
    failures_in_a_row, heap = 0, found  # down until two sizes in a row fail
    while failures_in_a_row < 2 and heap > max(LOW, found - SWEEP_DOWN_MAX):
        heap -= STEP
        failures_in_a_row = 0 if ok(heap) else failures_in_a_row + 1
    window = [size for size in sorted(outcomes) if size >= found - SWEEP_DOWN_MAX]
    last_failure = max([size for size in window if outcomes[size] != "ok"], default=-1)
    smallest = min(size for size in window if size > last_failure)
    kinds = {}
    for result in outcomes.values():
        if result != "ok":
            kind = result.split()[0]
            kinds[kind] = kinds.get(kind, 0) + 1
    return {"smallest_heap": smallest, "bisection": found, "probes": len(outcomes),
            "successes_below": [size for size in window if size < smallest and outcomes[size] == "ok"],
            "failure_kinds": kinds}


def _baseline():
    """The heap the unix port and the 1 KB device script hold before dynreg is imported, and the
    smallest heap that runs that script alone (step "0" would still import dynreg: use -c)."""
    result = run_device("-", "")  # HEAP is printed before dynreg is imported; the rest fails harmlessly
    low, high = 256, 64 * 1024
    while high - low > 64:
        mid = (low + high) // 2
        proc = subprocess.run([MICROPYTHON, "-X", "heapsize=%d" % mid, "-c", "import gc; print(gc.mem_alloc())"],
                              capture_output=True, text=True, env=device_env())
        if proc.returncode == 0 and proc.stdout.strip():
            high = mid
        else:
            low = mid
    return {"alloc_at_script_start": result["heap"][0] if result["heap"] else None, "smallest_heap_empty": high}


def run():
    results = {"flows": {}, "targets": {"tencent_https": TARGET_TENCENT_HTTPS}}
    state = os.path.join(BUILD, "ram-cloud")
    shutil.rmtree(state, ignore_errors=True)
    counter = [0]
    with three_clouds(state, TENCENT, ALIYUN, AZURE_GROUP, AZURE_SCOPE) as cloud:

        def folder(kind):
            counter[0] += 1
            return os.path.join(state, "devices", "%s-%d" % (kind, counter[0]))

        def fresh(kind):
            name = "ram%05d" % (counter[0] + 1)
            if kind == "tencent_http":
                return tencent_info(folder(kind), cloud, TENCENT, name, scheme="http")
            if kind == "tencent_https":
                return tencent_info(folder(kind), cloud, TENCENT, name)
            if kind == "azure_dps":
                return azure_info(folder(kind), cloud, AZURE_SCOPE, name)
            cloud.add_device(ALIYUN, name)
            return aliyun_info(folder(kind), cloud, ALIYUN, name, api="https" if kind == "aliyun_https" else "mqtt")

        registered = tencent_info(folder("connect"), cloud, TENCENT, "ram-connect")
        first = run_device(registered, "r")
        if first["result"] != "ok":
            raise RuntimeError("could not register the device for the connect flow: %s" % first["result"])
        loaded = run_device(registered, "p")
        results["loaded_tencent_flow"] = loaded.get("loaded")
        proc = subprocess.run([MICROPYTHON, "-c", _TLS_PROBE % (cloud.ca_der_path, cloud.https_port)],
                              capture_output=True, text=True)
        results["tls_handshake_gc_bytes"] = int(proc.stdout.strip()) if proc.stdout.strip().isdigit() else None
        for key, label, steps, target in FLOWS:
            make = (lambda: registered) if key == "mqtt_connect" else (lambda key=key: fresh(key))
            figures = smallest_heap(make, steps)
            figures.update(label=label, target=target)
            results["flows"][key] = figures
            say("  %-40s %s" % (label, "%d bytes (%d probes)" % (figures["smallest_heap"], figures["probes"])
                                if "smallest_heap" in figures else figures["error"]))
    results["baseline"] = _baseline()
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))

# RAM of the mip path (issue 25): what a board holds once dynreg is imported, and the smallest
# heap a whole first boot completes in, for the three ways the library reaches a board:
#   py      `mip install` of package.json: lib/dynreg/*.py as they are, and umqtt.simple as
#           .mpy from the index (mip's default for a dependency)
#   mpy     `mip.install("dynreg", index=...)` from the index `make mip-index` builds
#   frozen  frozen into the firmware (manifest.py)
# The first two are installed by the stock build's own frozen mip from 127.0.0.1. Everything runs
# on the unix port built 32-bit (tools/firmware.sh unix32), the boards' word size: py and mpy on
# a stock build (no dynreg frozen, so none of dynreg's names sit in its ROM, as on stock
# firmware), frozen on the same build with dynreg frozen. A first boot is one HTTPS (Tencent,
# Alibaba) or MQTT-TLS (Azure DPS) registration against the local emulator, then the MQTT login
# over TLS. On the unix port mbedTLS allocates outside the GC heap, as it does on the ESP32 (its
# IDF heap); on the RP2040 it takes GC heap on top of these figures.
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading

from common import (BUILD, ROOT, aliyun_info, azure_info, mpy_cross, say, three_clouds,
                    tencent_info)
from ram import smallest_heap

sys.path.insert(0, os.path.join(ROOT, "tools"))
import mip_index  # noqa: E402
from runtime import FIRMWARE  # noqa: E402

STOCK = os.path.join(FIRMWARE, "unix32-stock", "micropython")
FROZEN = os.path.join(FIRMWARE, "unix32-dynreg", "micropython")
HERE = os.path.join(BUILD, "mip")
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "device_mip.py")
KIB = 1024
# The GC heap a board gives Python, from MicroPython v1.28.0's source:
# - ESP32 (no SPIRAM): MICROPY_GC_INITIAL_HEAP_SIZE is 56 KiB (ports/esp32/mpconfigport.h); with
#   MICROPY_GC_SPLIT_HEAP_AUTO the heap then grows on demand into the IDF heap, at least doubling
#   each time, "chosen so they can grow the heap once (double it) and still have enough
#   internal RAM to start WiFi and make a HTTPS request": 112 KiB. mbedTLS uses that IDF heap.
# - 64 KiB: the heap of issue 25's report.
# - Pico W: __GcHeapEnd - __GcHeapStart of the stock RPI_PICO_W image (read from its ELF).
BUDGETS = [("esp32_boot", "ESP32, heap at boot", 56 * KIB), ("k64", "64 KiB", 64 * KIB),
           ("esp32_grown", "ESP32, heap grown once", 112 * KIB)]
PATHS = [("py", ".py (mip install of package.json)"), ("mpy", ".mpy (make mip-index)"), ("frozen", "frozen")]
CLOUDS = [("tencent", "Tencent, HTTPS"), ("aliyun", "Alibaba, HTTPS"), ("azure", "Azure DPS, MQTT (TLS)")]
TENCENT, ALIYUN = "BENCHMIP01", "a1BenchMip1"
AZURE_GROUP, AZURE_SCOPE = "bench-mip", "0ne00BENCH2"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def pico_w_heap():
    elf = os.path.join(FIRMWARE, "RPI_PICO_W", "firmware.elf")
    try:
        out = subprocess.run(["arm-none-eabi-nm", elf], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    symbols = {line.split()[-1]: int(line.split()[0], 16) for line in out.splitlines() if "GcHeap" in line}
    return symbols["__GcHeapEnd"] - symbols["__GcHeapStart"]


def install():
    """The py and mpy installs, each by the stock build's mip from a local server; returns
    {path: MICROPYPATH}. The script (device_mip.py) is .mpy in its own folder on every path."""
    shutil.rmtree(HERE, ignore_errors=True)
    serve = os.path.join(HERE, "serve")
    made = mip_index.build(os.path.join(serve, "index"))
    repo = os.path.join(serve, "repo")
    shutil.copytree(os.path.join(ROOT, "lib", "dynreg"), os.path.join(repo, "lib", "dynreg"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "package.json"), repo)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=serve))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d" % server.server_address[1]
    calls = {"py": "mip.install(%r, index=%r, target=%%r)" % (url + "/repo/package.json", url + "/index"),
             "mpy": "mip.install('dynreg', index=%r, target=%%r)" % (url + "/index")}
    script = os.path.join(HERE, "script")
    mpy_cross(SCRIPT, os.path.join(script, "device_mip.mpy"))
    paths = {"frozen": script + ":.frozen"}
    try:
        for key, call in calls.items():
            lib = os.path.join(HERE, key, "lib")
            proc = subprocess.run([STOCK, "-c", "import mip\n" + call % lib], capture_output=True, text=True,
                                  timeout=120, env=dict(os.environ, no_proxy="127.0.0.1", NO_PROXY="127.0.0.1"))
            if proc.returncode or "Done" not in proc.stdout:
                raise RuntimeError("mip install (%s) failed: %s%s" % (key, proc.stdout[-500:], proc.stderr[-500:]))
            paths[key] = script + ":.frozen:" + lib  # a board's order: frozen modules, then /lib
    finally:
        server.shutdown()
        server.server_close()
    return paths, made


def on_the_chip(paths):
    """The same import (Tencent) on the emulated RP2040 (pico_emulator/): py and mpy from the
    Pico W's flash under the stock RPI_PICO_W image, frozen with RPI_PICO_W_DYNREG. A check of
    the 32-bit unix port as a model: {path: held bytes} or {"error": why}."""
    sys.path.insert(0, os.path.join(ROOT, "pico_emulator"))
    import pico

    missing = pico.check_ready()
    if missing:
        return {"error": missing}
    script = os.path.join(HERE, "script", "device_mip.mpy")
    held = {}
    for key, _ in PATHS:
        image = "RPI_PICO_W_DYNREG" if key == "frozen" else "RPI_PICO_W"
        args = [pico.node(), pico.RUNNER, "--quiet", "--timeout", "600", "--put", script + ":/device_mip.mpy",
                "--image", os.path.join(FIRMWARE, image, "firmware.uf2")]
        if key != "frozen":
            lib = paths[key].rsplit(":", 1)[1]
            for folder, _, names in os.walk(lib):
                for name in names:
                    path = os.path.join(folder, name)
                    args += ["--put", "%s:/lib/%s" % (path, os.path.relpath(path, lib))]
        args += ["--exec", "import sys\nsys.argv[:] = ['device_mip', 'tencent']\nimport device_mip"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=700, cwd=os.path.dirname(pico.RUNNER))
        found = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("HELD ")]
        held[key] = int(found[0]) if found and "RESULT ok" in proc.stdout else "failed: %s" % proc.stdout[-300:]
    return held


def probe(path_key, paths, cloud, heap, info=None):
    binary = FROZEN if path_key == "frozen" else STOCK
    command = [binary, "-X", "heapsize=%d" % heap, "-m", "device_mip", cloud] + ([info] if info else [])
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env=dict(os.environ, MICROPYPATH=paths[path_key]))
    except subprocess.TimeoutExpired:
        return {"result": "timeout"}
    found = {"result": "no result line"}
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if line.startswith("HELD "):
            found["held"] = int(line.split()[1])
        elif line.startswith("MODULES"):
            found["modules"] = line.split()[1:]
        elif line.startswith("RESULT "):
            found["result"] = line[len("RESULT "):].strip()
        elif "MemoryError" in line and found["result"] == "no result line":
            found["result"] = "MemoryError"
    return found


def run():
    for binary in (STOCK, FROZEN):
        if not os.path.exists(binary):
            raise RuntimeError("no %s: run tools/firmware.sh unix32" % os.path.relpath(binary, ROOT))
    paths, made = install()
    results = {"index": made, "budgets": {k: size for k, _, size in BUDGETS}, "rows": {},
               "paths": dict(PATHS), "clouds": dict(CLOUDS)}
    pico = pico_w_heap()
    if pico:
        results["budgets"]["pico_w"] = pico
    state = os.path.join(HERE, "cloud")
    counter = [0]
    with three_clouds(state, TENCENT, ALIYUN, AZURE_GROUP, AZURE_SCOPE) as cloud:

        def fresh(kind):
            counter[0] += 1
            name = "mip%05d" % counter[0]
            folder = os.path.join(state, "devices", name)
            if kind == "tencent":
                return tencent_info(folder, cloud, TENCENT, name)
            if kind == "azure":
                return azure_info(folder, cloud, AZURE_SCOPE, name)
            cloud.add_device(ALIYUN, name)
            return aliyun_info(folder, cloud, ALIYUN, name)

        for path_key, _ in PATHS:
            for kind, label in CLOUDS:
                def load(heap, path_key=path_key, kind=kind):
                    return probe(path_key, paths, kind, heap)

                def boot(heap, path_key=path_key, kind=kind):
                    return probe(path_key, paths, kind, heap, fresh(kind))

                loaded, first = load(1024 * KIB), boot(1024 * KIB)  # the modules a first boot loads: as imported
                row = {"held": loaded.get("held"), "imported": loaded.get("modules"),
                       "first_boot_modules": first.get("modules"), "first_boot_result": first["result"]}
                row["import"] = smallest_heap(None, None, probe=lambda heap: load(heap)["result"])
                row["first_boot"] = smallest_heap(None, None, probe=lambda heap: boot(heap)["result"])
                row["at"] = {key: boot(size)["result"] for key, _, size in BUDGETS}
                results["rows"]["%s/%s" % (path_key, kind)] = row
                say("  %-36s %-24s held %6s B, import needs %6s B, first boot needs %6s B; %s" % (
                    dict(PATHS)[path_key], label, row["held"], row["import"].get("smallest_heap"),
                    row["first_boot"].get("smallest_heap", row["first_boot"].get("error")),
                    ", ".join("%d KiB %s" % (size // KIB, "ok" if row["at"][key] == "ok" else row["at"][key])
                              for key, _, size in BUDGETS)))
    results["chip"] = on_the_chip(paths)
    say("  on the emulated RP2040 (Pico W images), Tencent's import holds: %s" % results["chip"])
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))

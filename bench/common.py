# Shared helpers of the benchmark suite (host side, CPython): paths, devices on the MicroPython
# v1.28.0 unix port with dynreg and umqtt.simple frozen (as on a board), device-info files,
# the emulator, statistics.
import contextlib
import json
import os
import subprocess
import sys
import time

from cloud_emulator.testing import running_emulator  # noqa: F401  (re-exported)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

sys.path.insert(0, os.path.join(ROOT, "tools"))
from runtime import MICROPYTHON, MPY_CROSS, VENDOR_PYTHON, VENDOR_SDK  # noqa: E402,F401  (re-exported)

BENCH = os.path.join(ROOT, "bench")
BUILD = os.path.join(ROOT, "build", "bench")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
LIB = os.path.join(ROOT, "lib", "dynreg")
DEVICE_SCRIPT = os.path.join(BENCH, "device_flow.py")
# Loaded only by the line's comparisons (device_backoff) and the reconnect storm (device_online).
OTHER_DEVICE_SCRIPTS = ("device_backoff.py", "device_online.py")
SECRET = "b3nchPr0ductS3cret-0123456789"  # the benchmark products' ProductSecret (local emulator only)
AZURE_KEY = "YjNuY2gtZ3IwdXAta2V5LWYwci1sMGNhbC11c2UtMDEyMzQ1Njc4OQ=="  # an enrollment group's key (base64 of 40 bytes)


def library_modules():
    return sorted(name[:-3] for name in os.listdir(LIB) if name.endswith(".py"))


def mpy_cross(source, target, opt=0):
    # opt: mpy-cross's -O level; manifest.py freezes dynreg at 3 (no line numbers).
    os.makedirs(os.path.dirname(target), exist_ok=True)
    subprocess.run([MPY_CROSS, "-O%d" % opt, "-o", target, source], check=True)
    return os.path.getsize(target)


_MPY_DIR = []


def mpy_path():
    """The device scripts compiled with the release's mpy-cross into build/bench/mpy (once per
    run), then the frozen modules: the MICROPYPATH of every device the bench runs."""
    if not _MPY_DIR:
        out = os.path.join(BUILD, "mpy")
        for script in (DEVICE_SCRIPT,) + tuple(os.path.join(BENCH, name) for name in OTHER_DEVICE_SCRIPTS):
            mpy_cross(script, os.path.join(out, os.path.basename(script)[:-3] + ".mpy"))
        _MPY_DIR.append(out + ":.frozen")
    return _MPY_DIR[0]


def device_command(info, steps, heap=None, script="device_flow", *extra):
    """The unix-port command line of one device run (bench/device_flow.py, as .mpy; or another
    device script, with its own arguments after INFO and STEPS)."""
    heap_option = ["-X", "heapsize=%d" % heap] if heap else []
    return [MICROPYTHON] + heap_option + ["-m", script, info, steps] + list(extra)


def device_env():
    return dict(os.environ, MICROPYPATH=mpy_path())


def parse_device_output(text):
    """{"times": {label: ns}, "heap": (alloc, free), "result": "ok" | error text}."""
    parsed = {"times": {}, "heap": None, "result": "no result line"}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "T" and len(parts) == 3:
            parsed["times"][parts[1]] = int(parts[2])
        elif parts[0] == "HEAP" and len(parts) == 3:
            parsed["heap"] = (int(parts[1]), int(parts[2]))
        elif parts[0] == "LOADED" and len(parts) == 2:
            parsed["loaded"] = int(parts[1])
        elif parts[0] == "RESULT":
            parsed["result"] = line[len("RESULT "):].strip()
        elif "MemoryError" in line and parsed["result"] == "no result line":
            parsed["result"] = "MemoryError"  # ran out before the script could catch it
    return parsed


def run_device(info, steps, heap=None, timeout=60):
    """One device run; returns parse_device_output's dict plus "spawn_ns" and "exit"."""
    command, env = device_command(info, steps, heap), device_env()
    spawn = time.time_ns()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"times": {}, "heap": None, "result": "timeout", "spawn_ns": spawn, "exit": None}
    parsed = parse_device_output(proc.stdout + "\n" + proc.stderr)
    parsed.update(spawn_ns=spawn, exit=proc.returncode)
    return parsed


# -- device-info files (dynreg's own format), pointed at the running emulator ----------------------


def write_json(path, doc):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def tencent_info(folder, cloud, product, device, scheme="https"):
    # scheme "http": with the info's opt-in to plain HTTP (docs/CLOUDS.md "Device info", plain_http).
    port = cloud.https_port if scheme == "https" else cloud.http_port
    doc = {"dynreg": 1, "cloud": "tencent", "product_id": product, "product_secret": SECRET, "device_name": device,
           "register_url": "%s://localhost:%d" % (scheme, port), "mqtt_url": "mqtts://localhost:%d" % cloud.mqtts_port,
           "ca": cloud.ca_der_path, "credential": {"psk": ""}}
    if scheme == "http":
        doc["plain_http"] = True
    return write_json(os.path.join(folder, "device_info.json"), doc)


def azure_info(folder, cloud, id_scope, device):
    url = "mqtts://localhost:%d" % cloud.mqtts_port
    return write_json(os.path.join(folder, "device_info.json"), {
        "dynreg": 1, "cloud": "azure", "id_scope": id_scope, "group_key": AZURE_KEY, "device_name": device,
        "register_url": url, "mqtt_url": url, "ca": cloud.ca_der_path, "credential": {}})


def aws_info(folder, cloud, template, device, claim):
    # A fresh board of the template: the claim's PEM files (cloud.add_aws_claim's) copied beside
    # the info, as the board spends them (erased after its first login).
    os.makedirs(folder, exist_ok=True)
    for source, name in ((claim.cert_pem, "claim.crt"), (claim.key_pem, "claim.key")):
        with open(source, "rb") as fin, open(os.path.join(folder, name), "wb") as fout:
            fout.write(fin.read())
    return write_json(os.path.join(folder, "device_info.json"), {
        "dynreg": 1, "cloud": "aws", "template": template, "device_name": device,
        "mqtt_url": "mqtts://localhost:%d" % cloud.aws_mqtts_port, "ca": cloud.ca_der_path,
        "claim_cert": "claim.crt", "claim_key": "claim.key", "credential": {}})


def aliyun_info(folder, cloud, product, device, api="https"):
    return write_json(os.path.join(folder, "device_info.json"), {
        "dynreg": 1, "cloud": "aliyun", "product_key": product, "product_secret": SECRET, "device_name": device,
        "api": api, "register_url": "https://localhost:%d" % cloud.https_port,
        "mqtt_url": "mqtts://localhost:%d" % cloud.mqtts_port, "ca": cloud.ca_der_path, "credential": {}})


# -- statistics ------------------------------------------------------------------------------------


@contextlib.contextmanager
def three_clouds(state, tencent, aliyun, azure_group, azure_scope):
    """A running emulator with one product of each cloud, registrations unlimited: the RAM
    benches' devices register against it as often as their probes need."""
    with running_emulator(state) as cloud:
        cloud.add_product(tencent, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100000)
        cloud.add_product(aliyun, SECRET, cloud="aliyun", limit=100000)
        cloud.add_product(azure_group, AZURE_KEY, cloud="azure", id_scope=azure_scope, hub="bench.azure-devices.net",
                          assign_seconds=0)
        yield cloud


def cpu_seconds(pid):
    """CPU time of a live process. /proc/<pid>/stat counts clock ticks of 10 ms, threads that
    ended included; a device's registration takes less than one tick, which the scheduler's
    nanosecond counts of the live threads (schedstat) see. The larger of the two."""
    ticks = nanoseconds = 0
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                nanoseconds += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass  # gone: what was read so far
    return max(ticks / os.sysconf("SC_CLK_TCK"), nanoseconds / 1e9)


def machine_busy_seconds():
    with open("/proc/stat") as f:
        fields = [int(value) for value in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def peak_per_second(times):
    """The most events in any window of one second (times sorted, in seconds)."""
    peak = first = 0
    for last, t in enumerate(times):
        while t - times[first] >= 1.0:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def median(values):
    values = sorted(values)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def percentile(values, p):
    """Nearest-rank percentile: the smallest value with at least p % of the values at or below it."""
    values = sorted(values)
    if not values:
        return None
    rank = max(1, -(-len(values) * p // 100))
    return values[int(rank) - 1]


def say(text=""):
    print(text, flush=True)


def versions():
    """Machine and runtime facts for the report."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mp = subprocess.run([MICROPYTHON, "-c", "import sys; v = sys.implementation.version; "
                         "print('%d.%d.%d' % v[:3] + ('-' + v[3] if len(v) > 3 and v[3] else ''), "
                         "sys.version.split(';')[-1].strip())"], capture_output=True, text=True).stdout.split(None, 1)
    cross = subprocess.run([MPY_CROSS, "--version"], capture_output=True, text=True).stdout.strip()
    py = subprocess.run([PYTHON, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True).stdout
    build = mp[1].strip().replace("MicroPython ", "") if len(mp) > 1 else "?"
    micropython = "MicroPython %s (%s, built from source, dynreg frozen)" % (mp[0], build)
    cross = cross.split(" on ")[0].replace("MicroPython ", "mpy-cross ") + (
        " (%s)" % cross.split("; ")[-1].replace("mpy-cross ", "") if "; " in cross else "")
    return {"date": time.strftime("%Y-%m-%d"), "load_average_at_start": list(os.getloadavg()),
            "nproc": len(os.sched_getaffinity(0)), "cpu": cpu,
            "python": py.strip(), "micropython": micropython, "mpy_cross": cross}

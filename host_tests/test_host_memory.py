# The registration flows on the unix port with a constrained heap (-X heapsize), the library
# frozen as on a board. Just under each flow's threshold the MemoryError lands at
# different points of the flow; after each, the info holds the old state or the complete new
# one (never half), and the next boot with enough heap succeeds.
import json
import os
import subprocess

import pytest

from cloud_emulator.testing import running_emulator
from e2e import ROOT, MICROPYTHON, SECRET, write_info, read_json, registrations
import runtime

PRODUCT = "HEAPTEST01"


@pytest.fixture(scope="module")
def mpy_path(tmp_path_factory):
    # The device script compiled with the release's mpy-cross, then the frozen modules.
    out = tmp_path_factory.mktemp("mpy")
    subprocess.run([runtime.MPY_CROSS, "-o", str(out / "run_device.mpy"),
                    os.path.join(ROOT, "host_tests", "device", "run_device.py")], check=True)
    return "%s:.frozen" % out


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=10000)
        yield cloud


def boot(mpy_path, info, heap, connect=False, squeeze=None):
    spec = {"info": info, "ensure": {"attempts": 1}, "connect": {} if connect else None, "publish": None,
            "preload": True, "squeeze_after_answer": squeeze}
    spec_path = info + ".spec"
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    proc = subprocess.run([MICROPYTHON, "-X", "heapsize=%d" % heap, "-m", "run_device", spec_path],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, MICROPYPATH=mpy_path))
    os.remove(spec_path)
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    if last.startswith("RESULT "):
        return json.loads(last[7:])
    assert "MemoryError" in proc.stderr, proc.stdout + proc.stderr  # ran out while importing
    return {"ok": False, "error": "MemoryError"}


def smallest_heap(mpy_path, make_info, connect=False):
    low, high = 8 * 1024, 256 * 1024
    while high - low > 1024:
        mid = (low + high) // 2
        if boot(mpy_path, make_info("probe%d" % mid), mid, connect)["ok"]:
            high = mid
        else:
            low = mid
    return high


def _sweep(cloud, mpy_path, tmp_path, scheme):
    def make_info(name):
        folder = tmp_path / scheme / name
        folder.mkdir(parents=True, exist_ok=True)
        return write_info(folder, cloud, PRODUCT, device_name="%s-%s" % (scheme, name), scheme=scheme)

    # Success is not monotonic in the heap size (the GC's layout), so the search only finds
    # the neighbourhood; the sweep walks down through it until enough boots were cut short.
    threshold = smallest_heap(mpy_path, make_info, connect=True)
    outcomes = {"MemoryError": 0, "ok": 0, "after the cloud answered": 0}  # where cuts land: the GC decides
    heap, step = threshold + 2048, 0
    while outcomes["MemoryError"] < 16 and heap > threshold - 16384:
        heap, step = heap - 128, step + 1
        info = make_info("cut%d" % step)
        before = open(info).read()
        first = boot(mpy_path, info, heap, connect=True)
        assert first["ok"] or first["error"] == "MemoryError", first
        outcomes["ok" if first["ok"] else "MemoryError"] += 1
        if not first["ok"] and registrations(cloud, "%s-cut%d" % (scheme, step)):
            outcomes["after the cloud answered"] += 1  # cut between the answer and the flash, or later
        if open(info).read() != before:  # cut after the save: the whole credential the cloud issued
            issued = cloud.device(PRODUCT, "%s-cut%d" % (scheme, step))["psk"]
            assert read_json(info)["credential"] == {"psk": issued}, "half state after a MemoryError"
        assert not [n for n in os.listdir(os.path.dirname(info)) if n not in ("device_info.json", "device_info.json.tmp")]
        second = boot(mpy_path, info, 256 * 1024, connect=True)  # the next boot, with enough heap
        assert second["ok"] and second.get("connected"), second
        stored = read_json(info)["credential"]["psk"]
        assert stored == cloud.device(PRODUCT, "%s-cut%d" % (scheme, step))["psk"]
    print("memory (%s): registration and connect complete from about %d bytes of heap; %d boots cut short by MemoryError "
          "(%d of them after the cloud had answered), %d completed; each followed by a good boot"
          % (scheme, threshold, outcomes["MemoryError"], outcomes["after the cloud answered"], outcomes["ok"]))
    return outcomes


def test_memory_error_leaves_no_half_state_and_next_boot_succeeds(cloud, mpy_path, tmp_path):
    totals = [_sweep(cloud, mpy_path, tmp_path, scheme) for scheme in ("http", "https")]
    assert sum(t["MemoryError"] for t in totals) >= 32


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_memory_runs_out_after_the_answer_and_nothing_half_stands(cloud, mpy_path, tmp_path, scheme):
    # Ballast leaves `free` bytes once the answer is in: the MemoryError lands while parsing,
    # decrypting or saving, or not at all. The credential is on flash whole or not at all, and
    # the next boot succeeds (registering again if it must: the device has not logged in).
    outcomes = {"MemoryError": 0, "ok": 0, "before the save": 0, "after the save": 0}
    for free in range(0, 6144, 192):
        name = "%s-squeeze%d" % (scheme, free)
        folder = tmp_path / name
        folder.mkdir()
        info = write_info(folder, cloud, PRODUCT, device_name=name, scheme=scheme)
        before = open(info).read()
        first = boot(mpy_path, info, 256 * 1024, connect=True, squeeze=free)
        assert first["ok"] or first["error"] == "MemoryError", first
        outcomes["ok" if first["ok"] else "MemoryError"] += 1
        assert registrations(cloud, name), "the cloud never answered"
        saved = open(info).read() != before
        if saved:  # the whole credential the cloud issued, nothing else
            assert read_json(info)["credential"] == {"psk": cloud.device(PRODUCT, name)["psk"]}, "half state"
        if not first["ok"]:
            outcomes["after the save" if saved else "before the save"] += 1
        # dynreg.fill, empty, is the mark of a scrub owed after the ProductSecret's erasure
        # (store.scrub_free_space), which the memory ran out of.
        left = [n for n in os.listdir(str(folder)) if n not in ("device_info.json", "device_info.json.tmp")]
        assert left in ([], ["dynreg.fill"]) and not any(os.path.getsize(str(folder / n)) for n in left), left
        second = boot(mpy_path, info, 256 * 1024, connect=True)
        assert second["ok"] and second.get("connected"), second
        assert "dynreg.fill" not in os.listdir(str(folder))  # the owed scrub ran at this login
        assert read_json(info)["credential"]["psk"] == cloud.device(PRODUCT, name)["psk"]
    print("memory after the answer (%s): %d boots ran out (%d before the credential was saved, %d after it, "
          "while connecting), %d completed; each followed by a good boot"
          % (scheme, outcomes["MemoryError"], outcomes["before the save"], outcomes["after the save"], outcomes["ok"]))
    # (Connecting needs less than saving, so cuts after the save are rare: the count shows it.)
    assert outcomes["before the save"] >= 5 and outcomes["ok"] >= 5

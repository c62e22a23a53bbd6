# Where the host side finds what ships (tools/firmware.sh builds it into build/): the
# MicroPython v1.28.0 unix port with dynreg and umqtt.simple frozen as the boards freeze them,
# its mpy-cross, the Pico W image, and the other umqtt.simple versions a user can have.
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIRMWARE = os.path.join(ROOT, "build", "firmware")
MICROPYTHON = os.path.join(FIRMWARE, "unix", "micropython")
MPY_CROSS = os.path.join(FIRMWARE, "mpy-cross")
PICOW_DIR = os.path.join(FIRMWARE, "RPI_PICO_W_DYNREG")
UMQTT_DIR = os.path.join(ROOT, "build", "umqtt")
VENDOR_PYTHON = os.path.join(ROOT, "build", "vendor-sdks", "bin", "python")  # tools/bootstrap.sh
VENDOR_SDK = os.path.join(ROOT, "tools", "vendor_sdk.py")
FROZEN_UMQTT = "frozen"  # the umqtt.simple frozen into the firmware (1.7.0 at v1.28.0's pin)


def source_dir():
    # The MicroPython v1.28.0 tree the firmware was built from.
    with open(os.path.join(FIRMWARE, "source-dir")) as f:
        return f.read().strip()


def frozen_umqtt_version():
    with open(os.path.join(FIRMWARE, "umqtt-frozen-version")) as f:
        return f.read().strip()


def umqtt_variants(supported_only=True):
    # The umqtt.simple versions a user can have, as labels: "frozen", then "mip-1.8.0" (what
    # mip installs today) and, unless supported_only, "pypi-1.3.4" (too old: dynreg refuses it).
    found = sorted(n for n in os.listdir(UMQTT_DIR) if os.path.isdir(os.path.join(UMQTT_DIR, n))) \
        if os.path.isdir(UMQTT_DIR) else []
    return [FROZEN_UMQTT] + [n for n in found if n.startswith("mip-") or not supported_only]


def umqtt_version(label):
    return frozen_umqtt_version() if label == FROZEN_UMQTT else label.split("-", 1)[1]


def micropypath(*folders, umqtt=FROZEN_UMQTT):
    # MICROPYPATH for the unix port: a umqtt.simple other than the frozen one comes first (as
    # a mip install on stock firmware would), then the frozen modules, then `folders`.
    first = [] if umqtt == FROZEN_UMQTT else [os.path.join(UMQTT_DIR, umqtt)]
    return ":".join(first + [".frozen"] + [os.path.join(ROOT, f) for f in folders])


def check_built():
    # The tests run the frozen build: it must exist and hold today's lib/.
    if not os.path.exists(MICROPYTHON):
        return "no %s: run `make firmware` (or `make test`)" % os.path.relpath(MICROPYTHON, ROOT)
    built = os.path.getmtime(os.path.join(FIRMWARE, ".unix.inputs"))  # rewritten by every check
    for folder, _, files in os.walk(os.path.join(ROOT, "lib")):
        for name in files:
            if name.endswith(".py") and os.path.getmtime(os.path.join(folder, name)) > built:
                return "lib/ changed after the frozen build: run `make firmware` (or `make test`)"
    return None

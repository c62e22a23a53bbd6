# Flash: bytecode bytes per module of lib/dynreg compiled with the pinned mpy-cross at the
# level manifest.py freezes them, the total, and the total of
# a one-cloud build (a product that talks to one cloud ships only its modules).
import json
import os

from common import BUILD, LIB, library_modules, mpy_cross, say
from runtime import FIRMWARE

KB = 1024
TARGET_TOTAL = 12 * KB
TARGET_ONE_CLOUD = 7 * KB
AZURE_MODULES = ("azure", "azure_register")
NOT_IN_TENCENT_ONLY = ("aliyun", "aliyun_register", "gateway") + AZURE_MODULES
NOT_IN_ALIYUN_ONLY = ("tencent", "tencent_register") + AZURE_MODULES
NOT_IN_AZURE_ONLY = ("tencent", "tencent_register", "aliyun", "aliyun_register", "gateway", "http")
ONE_CLOUD = {"tencent_only": NOT_IN_TENCENT_ONLY, "aliyun_only": NOT_IN_ALIYUN_ONLY, "azure_only": NOT_IN_AZURE_ONLY}
# The (#16) limit on what the whole library costs frozen into the Pico W image.
TARGET_FROZEN = 36 * KB
FROZEN_OPT = 0  # manifest.py's opt= for dynreg (the default)


def frozen_cost():
    # What the real build costs: the Pico W image against a stock RPI_PICO_W of the same
    # release (tools/firmware.sh writes both sizes).
    path = os.path.join(FIRMWARE, "sizes.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        sizes = json.load(f)
    ours, stock = sizes["RPI_PICO_W_DYNREG"]["bin"], sizes["RPI_PICO_W"]["bin"]
    return {"ours": ours, "stock": stock, "cost": ours - stock}


def run():
    out = os.path.join(BUILD, "flash")
    modules = {}
    for name in library_modules():
        modules[name] = mpy_cross(os.path.join(LIB, name + ".py"), os.path.join(out, name + ".mpy"), FROZEN_OPT)
    total = sum(modules.values())
    builds = dict((key, sum(size for name, size in modules.items() if name not in excluded))
                  for key, excluded in ONE_CLOUD.items())
    say("  %d modules, %d bytes of bytecode (target <= %d); Tencent only %d, Alibaba only %d, Azure only %d "
        "(target <= %d)" % (len(modules), total, TARGET_TOTAL, builds["tencent_only"], builds["aliyun_only"],
                            builds["azure_only"], TARGET_ONE_CLOUD))
    image = frozen_cost()
    if image:
        say("  frozen into the Pico W image: %d bytes (%d against stock %d)" % (image["cost"], image["ours"], image["stock"]))
    return {"modules": modules, "total": total, "builds": builds, "image": image,
            "excluded": dict((key, list(excluded)) for key, excluded in ONE_CLOUD.items()),
            "targets": {"total": TARGET_TOTAL, "one_cloud": TARGET_ONE_CLOUD, "frozen": TARGET_FROZEN}}


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))

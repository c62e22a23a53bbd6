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
NOT_IN_TENCENT_ONLY = ("aliyun", "gateway", "azure", "aws", "roots_aliyun", "roots_azure", "roots_aws")
NOT_IN_ALIYUN_ONLY = ("tencent", "azure", "aws", "roots_tencent", "roots_azure", "roots_aws")
NOT_IN_AZURE_ONLY = ("tencent", "aliyun", "gateway", "http", "aws", "roots_tencent", "roots_aliyun", "roots_aws")
NOT_IN_AWS_ONLY = ("tencent", "aliyun", "gateway", "http", "azure", "roots_tencent", "roots_aliyun", "roots_azure")
ONE_CLOUD = {"tencent_only": NOT_IN_TENCENT_ONLY, "aliyun_only": NOT_IN_ALIYUN_ONLY, "azure_only": NOT_IN_AZURE_ONLY,
             "aws_only": NOT_IN_AWS_ONLY}
# The limit on what the whole library (dynreg's own modules) costs frozen into the Pico W image:
# 36 KiB for three clouds (#16), 40 KiB for four (#29, AWS); the built-in roots (roots_<cloud>,
# DER data) are counted apart (#24, #29).
TARGET_FROZEN = 40 * KB
FROZEN_OPT = 3  # manifest.py's opt= for dynreg


def frozen_cost():
    # What the real build costs: the Pico W image against a stock RPI_PICO_W of the same
    # release, and against the reference image that differs from ours only by dynreg (stock
    # plus umqtt.simple, bench/boards/RPI_PICO_W_UMQTT); tools/firmware.sh writes all three sizes.
    path = os.path.join(FIRMWARE, "sizes.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        sizes = json.load(f)
    ours, stock = sizes["RPI_PICO_W_DYNREG"]["bin"], sizes["RPI_PICO_W"]["bin"]
    image = {"ours": ours, "stock": stock, "cost": ours - stock}
    if "RPI_PICO_W_UMQTT" in sizes:
        reference = sizes["RPI_PICO_W_UMQTT"]["bin"]
        image.update(reference=reference, own=ours - reference, umqtt=reference - stock)
        if "RPI_PICO_W_TENCENT" in sizes:  # tools/firmware.sh onecloud
            image.update(tencent_only=sizes["RPI_PICO_W_TENCENT"]["bin"] - reference)
    return image


def run():
    out = os.path.join(BUILD, "flash")
    modules = {}
    for name in library_modules():
        modules[name] = mpy_cross(os.path.join(LIB, name + ".py"), os.path.join(out, name + ".mpy"), FROZEN_OPT)
    roots = dict((name, size) for name, size in modules.items() if name.startswith("roots_"))
    total = sum(modules.values())
    builds = dict((key, sum(size for name, size in modules.items() if name not in excluded))
                  for key, excluded in ONE_CLOUD.items())
    say("  %d modules, %d bytes of bytecode (target <= %d); Tencent only %d, Alibaba only %d, Azure only %d, "
        "AWS only %d (target <= %d)" % (len(modules), total, TARGET_TOTAL, builds["tencent_only"],
                                        builds["aliyun_only"], builds["azure_only"], builds["aws_only"],
                                        TARGET_ONE_CLOUD))
    say("  built-in roots (DER, counted apart): %s" % ", ".join("%s %d B" % (n, s) for n, s in sorted(roots.items())))
    image = frozen_cost()
    if image:
        say("  frozen into the Pico W image: %d bytes with umqtt.simple (%d against stock %d)"
            % (image["cost"], image["ours"], image["stock"]))
        if "own" in image:
            say("  of which dynreg: %d bytes, its code %d (roots apart, target <= %d), umqtt.simple %d"
                % (image["own"], image["own"] - sum(roots.values()), TARGET_FROZEN, image["umqtt"]))
        if "tencent_only" in image:
            say("  a Tencent-only image (clouds=\"tencent\"): dynreg %d bytes" % image["tencent_only"])
    return {"modules": modules, "total": total, "builds": builds, "image": image, "roots": roots,
            "excluded": dict((key, list(excluded)) for key, excluded in ONE_CLOUD.items()),
            "targets": {"total": TARGET_TOTAL, "one_cloud": TARGET_ONE_CLOUD, "frozen": TARGET_FROZEN}}


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))

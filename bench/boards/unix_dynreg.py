# The 32-bit unix port of bench/mip_ram.py's "frozen" path, never shipped: the unix port's
# standard frozen modules (as the stock 32-bit build beside it has them), then dynreg as the
# boards freeze it. Built by `tools/firmware.sh unix32`.
include("$(PORT_DIR)/variants/standard/manifest.py")
include("../../manifest.py", is_require=True)

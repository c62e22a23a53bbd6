# A Tencent-only Pico W image for bench/flash.py, never shipped: RPI_PICO_W_DYNREG with
# manifest.py's option clouds="tencent", as a board that serves one Tencent product freezes
# it (no Alibaba or Azure code, no roots of theirs). Built by `tools/firmware.sh onecloud`.
include("$(PORT_DIR)/boards/RPI_PICO_W/manifest.py")
include("../../manifest.py", is_require=True, clouds="tencent")

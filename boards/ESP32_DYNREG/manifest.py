# ESP32_GENERIC's frozen modules, then dynreg. Ours is included as require() includes a
# micropython-lib package, in a metadata scope of its own, so that its version is tagged
# (as __version__) on dynreg's modules only, not on the port's.
include("$(PORT_DIR)/boards/manifest.py")
include("$(BOARD_DIR)/../../manifest.py", is_require=True)

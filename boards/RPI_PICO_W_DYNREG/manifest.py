# RPI_PICO_W's frozen modules (the port's set plus the networking bundle), then dynreg. Ours
# is included as require() includes a micropython-lib package, in a metadata scope of its
# own, so that its version is tagged (as __version__) on dynreg's modules only.
include("$(PORT_DIR)/boards/RPI_PICO_W/manifest.py")
include("$(BOARD_DIR)/../../manifest.py", is_require=True)

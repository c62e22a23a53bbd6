# A reference image for bench/flash.py, never shipped: the stock RPI_PICO_W plus
# micropython-lib's umqtt.simple at the release's pin, frozen as boards/RPI_PICO_W_DYNREG
# freezes it. The Pico W image less this one is what dynreg's own modules cost.
include("$(PORT_DIR)/boards/RPI_PICO_W/manifest.py")
require("umqtt.simple")

# RPI_PICO_W of MicroPython v1.28.0 with dynreg frozen in; an out-of-tree board:
#   make -C $MPY_DIR/ports/rp2 BOARD_DIR=$PWD/boards/RPI_PICO_W_DYNREG
# The stock board sets PICO_BOARD (pico_w), the CYW43 radio and Bluetooth, and points the
# frozen manifest at ${MICROPY_BOARD_DIR}/manifest.py, which is ours.
include(${MICROPY_PORT_DIR}/boards/RPI_PICO_W/mpconfigboard.cmake)

# The port looks for pins.csv in the board folder; ours has the stock board's pins.
if(NOT MICROPY_BOARD_PINS)
    set(MICROPY_BOARD_PINS ${MICROPY_PORT_DIR}/boards/RPI_PICO_W/pins.csv)
endif()

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)

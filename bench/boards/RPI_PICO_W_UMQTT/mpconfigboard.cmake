# Reference image for bench/flash.py (see manifest.py): RPI_PICO_W with umqtt.simple frozen.
include(${MICROPY_PORT_DIR}/boards/RPI_PICO_W/mpconfigboard.cmake)

if(NOT MICROPY_BOARD_PINS)
    set(MICROPY_BOARD_PINS ${MICROPY_PORT_DIR}/boards/RPI_PICO_W/pins.csv)
endif()

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)

# ESP32_GENERIC of MicroPython v1.28.0 with dynreg frozen in; an out-of-tree board:
#   make -C $MPY_DIR/ports/esp32 BOARD_DIR=$PWD/boards/ESP32_DYNREG
# The port's CMakeLists includes this file from the port folder (CMAKE_CURRENT_SOURCE_DIR),
# so the stock board's relative sdkconfig paths still resolve.
include(${CMAKE_CURRENT_SOURCE_DIR}/boards/ESP32_GENERIC/mpconfigboard.cmake)

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)

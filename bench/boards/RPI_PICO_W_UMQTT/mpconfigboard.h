// Reference image for bench/flash.py: RPI_PICO_W's settings, under the same board name as
// boards/RPI_PICO_W_DYNREG, so that only the frozen modules differ between the two.
#include "boards/RPI_PICO_W/mpconfigboard.h"

#undef MICROPY_HW_BOARD_NAME
#define MICROPY_HW_BOARD_NAME "Raspberry Pi Pico W with dynreg"

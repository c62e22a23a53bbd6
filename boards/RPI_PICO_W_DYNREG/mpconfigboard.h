// RPI_PICO_W's settings (flash storage size, CYW43) under our name.
#include "boards/RPI_PICO_W/mpconfigboard.h"

#undef MICROPY_HW_BOARD_NAME
#define MICROPY_HW_BOARD_NAME "Raspberry Pi Pico W with dynreg"

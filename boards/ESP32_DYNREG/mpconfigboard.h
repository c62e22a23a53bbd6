// ESP32_GENERIC's settings under our name (REPL banner, sys.implementation._machine).
#define MICROPY_HW_BOARD_NAME "ESP32 module with dynreg"
#define MICROPY_HW_MCU_NAME "ESP32"

# Boards and bench: firmware images and the virtual bench. Included by the main Makefile,
# which defines VENV and `setup`. See boards/README.md. Boards are provisioned with the
# `dynreg provision` command (.venv/bin/dynreg after `make setup`), not with make.
#
#   make firmware-picow      # -> build/firmware/RPI_PICO_W_DYNREG/firmware.uf2 (CI builds it)
#   make firmware-esp32      # ESP-IDF's idf.py on PATH -> build/firmware/ESP32_DYNREG (CI cannot)
#   make bench-board
# The MicroPython v1.28.0 source: MPY_DIR=~/micropython, else the kit, else a clone (tools/firmware.sh).

.PHONY: firmware-esp32 firmware-picow bench-board

## firmware-picow: the Pico W image, build/firmware/RPI_PICO_W_DYNREG/firmware.uf2
firmware-picow: setup
	@tools/firmware.sh picow
	@echo "firmware-picow: build/firmware/RPI_PICO_W_DYNREG/firmware.uf2"
	@echo "  flash: hold BOOTSEL, plug the board in, copy firmware.uf2 to the RPI-RP2 drive"

## firmware-esp32: the ESP32 image (needs ESP-IDF's idf.py on PATH)
firmware-esp32: setup
	@tools/firmware.sh esp32

# The virtual bench: the unix port on a pty, then the Pico W image on an emulated RP2040 on a
# pty (provisioned by `dynreg provision` over mpremote, booted twice).
## bench-board: the virtual bench: the unix port and the emulated Pico W provisioned and booted
bench-board: firmware
	@$(VENV)/bin/python -m pytest -q -s -p no:cacheprovider host_tests/test_host_bench.py -k "registers_once or share_an_id"
	@$(VENV)/bin/python -m pytest -q -s -p no:cacheprovider host_tests/test_host_pico.py -k tencent

# Boards and bench: firmware images, provisioning, the virtual bench. Included by the main
# Makefile, which defines VENV and `setup`. See boards/README.md.
#
#   make firmware-picow      # -> build/firmware/RPI_PICO_W_DYNREG/firmware.uf2 (CI builds it)
#   make firmware-esp32      # ESP-IDF's idf.py on PATH -> build/firmware/ESP32_DYNREG (CI cannot)
#   make provision PORTS=/dev/ttyUSB0,/dev/ttyACM0 INFO=product_info.json CA=ca.der [SECRET_FILE=..] [SITE=..]
#   make bench-board
# The MicroPython v1.28.0 source: MPY_DIR=~/micropython, else the kit, else a clone (tools/firmware.sh).
PORTS ?= auto
INFO ?=
CA ?=
SECRET_FILE ?=
SITE ?=
APP ?= firmware

.PHONY: firmware-esp32 firmware-picow provision bench-board

## firmware-picow: the Pico W image, build/firmware/RPI_PICO_W_DYNREG/firmware.uf2
firmware-picow: setup
	@tools/firmware.sh picow
	@echo "firmware-picow: build/firmware/RPI_PICO_W_DYNREG/firmware.uf2"
	@echo "  flash: hold BOOTSEL, plug the board in, copy firmware.uf2 to the RPI-RP2 drive"

## firmware-esp32: the ESP32 image (needs ESP-IDF's idf.py on PATH)
firmware-esp32: setup
	@tools/firmware.sh esp32

# The ProductSecret: SECRET_FILE=path, or DYNREG_PRODUCT_SECRET in the environment; never
# on the command line.
## provision: write the identity to boards over mpremote: PORTS=.. INFO=.. CA=.. [SECRET_FILE=..] [SITE=..]; checks INFO first (tools/info_check.py)
provision: setup
	@[ -n "$(INFO)" ] || { echo "provision: INFO=product_info.json is required (see boards/README.md)"; exit 2; }
	@$(VENV)/bin/python tools/provision.py --ports "$(PORTS)" --info "$(INFO)" \
		$(if $(CA),--ca "$(CA)") $(if $(SECRET_FILE),--secret-file "$(SECRET_FILE)") \
		$(if $(SITE),--site "$(SITE)") $(if $(APP),--app "$(APP)") $(PROVISION_ARGS)

# The virtual bench: the unix port on a pty, then the Pico W image on an emulated RP2040 on a
# pty (provisioned by tools/provision.py over mpremote, booted twice).
## bench-board: the virtual bench: the unix port and the emulated Pico W provisioned and booted
bench-board: firmware
	@$(VENV)/bin/python -m pytest -q -s -p no:cacheprovider host_tests/test_host_bench.py -k "registers_once or share_an_id"
	@$(VENV)/bin/python -m pytest -q -s -p no:cacheprovider host_tests/test_host_pico.py -k tencent

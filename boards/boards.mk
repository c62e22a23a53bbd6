# Boards and bench: firmware builds, the manifest check, provisioning, the virtual bench.
# Included by the main Makefile, which defines VENV, MICROPYTHON and `setup`. See
# boards/README.md.
#
#   make firmware-esp32 MPY_DIR=~/micropython     # ESP-IDF's idf.py on PATH
#   make firmware-picow MPY_DIR=~/micropython     # arm-none-eabi-gcc and cmake on PATH
#   make manifest-check
#   make provision PORTS=/dev/ttyUSB0,/dev/ttyACM0 INFO=product_info.json CA=ca.der [SECRET_FILE=..] [SITE=..]
#   make bench-board
MPY_RELEASE := 1.28.0
BOARDS_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
ESP32_BOARD_DIR := $(BOARDS_ROOT)/ESP32_DYNREG
PICOW_BOARD_DIR := $(BOARDS_ROOT)/RPI_PICO_W_DYNREG
PORTS ?= auto
INFO ?=
CA ?=
SECRET_FILE ?=
SITE ?=
APP ?= firmware

.PHONY: firmware-esp32 firmware-picow manifest-check provision bench-board

# The checkout must be the pinned release: its version numbers from py/mpconfig.h.
define check_mpy_dir
	@if [ -z "$(MPY_DIR)" ] || [ ! -f "$(MPY_DIR)/py/mpconfig.h" ]; then \
		echo "$@: MPY_DIR must name a MicroPython v$(MPY_RELEASE) checkout (MPY_DIR='$(MPY_DIR)')."; \
		echo "  git clone --branch v$(MPY_RELEASE) --depth 1 https://github.com/micropython/micropython"; \
		echo "  make $@ MPY_DIR=\$$PWD/micropython"; exit 1; fi
	@found=$$(awk '/^#define MICROPY_VERSION_(MAJOR|MINOR|MICRO) /{v = v (v ? "." : "") $$3} END {print v}' "$(MPY_DIR)/py/mpconfig.h"); \
	if [ "$$found" != "$(MPY_RELEASE)" ]; then \
		echo "$@: $(MPY_DIR) is MicroPython $$found; the boards are pinned to v$(MPY_RELEASE):"; \
		echo "  git -C $(MPY_DIR) checkout v$(MPY_RELEASE) && git -C $(MPY_DIR) submodule update --init"; exit 1; fi
endef

# $(call need_tool,command,how to get it)
define need_tool
	@command -v $(1) >/dev/null 2>&1 || { echo "$@: '$(1)' is not on PATH. $(2)"; exit 1; }
endef

firmware-esp32: setup
	$(check_mpy_dir)
	$(call need_tool,idf.py,Install ESP-IDF (the version $(MPY_DIR)/ports/esp32/README.md names for v$(MPY_RELEASE)) then source its export.sh in this shell)
	@$(VENV)/bin/python tools/manifest_check.py --mpy-dir "$(MPY_DIR)"
	$(MAKE) -C "$(MPY_DIR)/mpy-cross"
	$(MAKE) -C "$(MPY_DIR)/ports/esp32" BOARD_DIR="$(ESP32_BOARD_DIR)" submodules
	$(MAKE) -C "$(MPY_DIR)/ports/esp32" BOARD_DIR="$(ESP32_BOARD_DIR)"
	@echo "firmware-esp32: $(MPY_DIR)/ports/esp32/build-ESP32_DYNREG/firmware.bin"
	@echo "  flash: make -C $(MPY_DIR)/ports/esp32 BOARD_DIR=$(ESP32_BOARD_DIR) PORT=/dev/ttyUSB0 erase deploy"

firmware-picow: setup
	$(check_mpy_dir)
	$(call need_tool,arm-none-eabi-gcc,Install the Arm GNU toolchain: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)
	$(call need_tool,cmake,Install CMake 3.13 or later: apt-get install cmake)
	@$(VENV)/bin/python tools/manifest_check.py --mpy-dir "$(MPY_DIR)"
	$(MAKE) -C "$(MPY_DIR)/mpy-cross"
	$(MAKE) -C "$(MPY_DIR)/ports/rp2" BOARD_DIR="$(PICOW_BOARD_DIR)" submodules
	$(MAKE) -C "$(MPY_DIR)/ports/rp2" BOARD_DIR="$(PICOW_BOARD_DIR)"
	@echo "firmware-picow: $(MPY_DIR)/ports/rp2/build-RPI_PICO_W_DYNREG/firmware.uf2"
	@echo "  flash: hold BOOTSEL, plug the board in, copy firmware.uf2 to the RPI-RP2 drive"

manifest-check: setup
	@$(VENV)/bin/python tools/manifest_check.py

# The ProductSecret: SECRET_FILE=path, or DYNREG_PRODUCT_SECRET in the environment; never
# on the command line.
provision: setup
	@[ -n "$(INFO)" ] || { echo "provision: INFO=product_info.json is required (see boards/README.md)"; exit 2; }
	@$(VENV)/bin/python tools/provision.py --ports "$(PORTS)" --info "$(INFO)" \
		$(if $(CA),--ca "$(CA)") $(if $(SECRET_FILE),--secret-file "$(SECRET_FILE)") \
		$(if $(SITE),--site "$(SITE)") $(if $(APP),--app "$(APP)") $(PROVISION_ARGS)

bench-board: setup
	@$(VENV)/bin/python -m pytest -q -s -p no:cacheprovider host_tests/test_host_bench.py -k registers_once

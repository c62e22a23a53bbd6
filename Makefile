# dynreg: `make demo` and `make test` set up everything they need on a fresh machine.
VENV := .venv
MICROPYTHON := build/firmware/unix/micropython
MPY_CROSS := build/firmware/mpy-cross
LIB_SOURCES := $(shell find lib -name '*.py')

.PHONY: all setup firmware firmware-unix test check demo cloud bench mpy mip-index clean help

## all: the default: same as test
all: test

## setup: the venv (.venv, with the dynreg command installed) and tools a fresh machine needs (tools/bootstrap.sh)
setup:
	@tools/bootstrap.sh

# MicroPython v1.28.0 from source (MPY_DIR, the kit, or a clone; tools/firmware.sh): the unix
# port with dynreg frozen, the Pico W image and a stock one, into build/firmware. Cached.
## firmware: MicroPython v1.28.0 from source: the unix port with dynreg frozen, the Pico W images (cached)
firmware: setup
	@tools/firmware.sh all

## firmware-unix: only the unix port with dynreg frozen
firmware-unix: setup
	@tools/firmware.sh unix

## test: the whole test suite (tools/run_tests.sh)
test: firmware mpy
	@tools/run_tests.sh

# While changing code: the tests not marked long (pytest -m "not long") and the unix port's
# suite; no emulated chip, no demo. A few minutes on 2 cores; `make test` is what CI runs.
## check: the quick tier: CPython tests not marked long, and the unix port's suite
check: firmware-unix mpy
	@tools/run_tests.sh --quick

# Devices register against the local cloud emulator on the frozen unix build, then boot again.
## demo: devices register against the local cloud emulator, then boot again
demo: firmware-unix
	@$(VENV)/bin/python tools/demo.py

# The local cloud emulator on its default ports, state kept in build/cloud (every command's default --state).
# Add a product: .venv/bin/dynreg cloud add-product --product-id ID --generate-secret FILE ...
## cloud: the local cloud emulator on its default ports, state in build/cloud
cloud: setup
	@$(VENV)/bin/dynreg cloud serve --state build/cloud

# Cross-compiles lib/ for the pinned MicroPython release; fails on any file that would not
# compile for the boards.
## mpy: cross-compile lib/ with mpy-cross; fails on any file the boards could not load
mpy: firmware-unix
	@rm -rf build/mpy && mkdir -p build/mpy
	@total=0; for f in $(LIB_SOURCES); do \
		out=build/mpy/$${f#lib/}; out=$${out%.py}.mpy; mkdir -p $$(dirname $$out); \
		$(MPY_CROSS) -o $$out $$f || exit 1; total=$$((total + $$(stat -c %s $$out))); \
	done; echo "mpy-cross: lib/ compiles, $$total bytes of bytecode"

# dynreg as .mpy for boards on stock firmware: a mip index in micropython-lib's layout, compiled
# by the pinned mpy-cross; serve the folder with any static HTTP server (boards/README.md).
## mip-index: dynreg and umqtt.simple as .mpy in a mip index, build/mip-index (for stock firmware)
mip-index: firmware-unix
	@$(VENV)/bin/python tools/mip_index.py

## clean: remove build/
clean:
	rm -rf build

## help: list every target, one line each (the "## target: what" lines of the Makefile and its includes)
help:
	@awk '/^## [a-z0-9-]+: /{sub(/^## /, ""); i = index($$0, ": "); printf "  %-15s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2)}' $(MAKEFILE_LIST)

# Firmware builds, manifest checks and the virtual bench.
include boards/boards.mk
# `make bench`: flash, RAM, time and production-line figures, build/bench.{json,md,png}, build/bench-line.png.
include bench/bench.mk

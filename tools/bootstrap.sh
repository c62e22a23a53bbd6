#!/usr/bin/env bash
# Sets up everything the host side needs, on a fresh machine: CPython 3.11 (apt-get when it
# is missing and we may), the virtualenv with the pinned tools of requirements.txt and this
# checkout's host tools installed editable (the dynreg command), and the
# old umqtt.simple 1.3.4 from PyPI into build/umqtt (fetched, never committed; dynreg must
# refuse it clearly). The MicroPython side is built from source by tools/firmware.sh.
# Node.js and the emulated Pico W's npm packages (pico_emulator/). Idempotent: a second run
# only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.installed

say() { printf 'bootstrap: %s\n' "$*"; }

find_python() {
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"; return 0
        fi
    done
    return 1
}

if [ ! -f "$STAMP" ] || [ requirements.txt -nt "$STAMP" ]; then
    if ! PY=$(find_python); then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            say "CPython 3.11 not found: installing it with apt-get"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv >/dev/null
        fi
        PY=$(find_python) || { say "CPython 3.11 is required (the pinned host tools of requirements.txt); install it and retry."; exit 1; }
    fi
    if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            say "venv/ensurepip missing: installing python3.11-venv with apt-get"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-venv >/dev/null
        fi
    fi
    say "creating $VENV with $PY ($("$PY" --version 2>&1))"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
    "$VENV/bin/python" -c 'import pytest, hypothesis, cryptography, amqtt' || { say "pip install failed"; exit 1; }
    touch "$STAMP"
fi

# The host tools (pyproject.toml: the dynreg command, the emulator and its pytest plugin),
# editable: .venv/bin/dynreg runs this checkout's code. Its own stamp, so that an existing
# .venv gets it too, and again when pyproject.toml changes.
PKG_STAMP=$VENV/.installed-package
if [ ! -f "$PKG_STAMP" ] || [ pyproject.toml -nt "$PKG_STAMP" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >/dev/null \
        && "$VENV/bin/dynreg" --help >/dev/null || { say "installing the host tools (pip install -e .) failed"; exit 1; }
    touch "$PKG_STAMP"
    say "installed the host tools editable into $VENV: $VENV/bin/dynreg"
fi

# umqtt.simple: its PyPI sdist has no setup.py, so pip cannot install it, but
# `pip download --no-clean` leaves the unpacked files in the TMPDIR we give it.
UMQTT=build/umqtt/pypi-1.3.4/umqtt/simple.py
if [ ! -f "$UMQTT" ]; then
    scratch=$(mktemp -d)
    TMPDIR=$scratch "$VENV/bin/pip" download -q --no-deps --no-clean --disable-pip-version-check \
        -d "$scratch/dl" micropython-umqtt.simple==1.3.4 >/dev/null 2>&1 || true
    found=$(find "$scratch" -path '*umqtt/simple.py' | head -n 1)
    [ -n "$found" ] || { say "could not fetch micropython-umqtt.simple==1.3.4 from PyPI"; rm -rf "$scratch"; exit 1; }
    mkdir -p "$(dirname "$UMQTT")"
    cp "$found" "$UMQTT"
    rm -rf "$scratch"
    say "fetched umqtt.simple 1.3.4 into build/umqtt"
fi

# MQTT 3.1 clients (the Tencent Python SDK speaks it) are served by mosquitto, Debian's, with
# the emulator's plugin (cloud_emulator/mosquitto_judge.c), built here against its headers.
# mosquitto.h (the plugin includes it) is libmosquitto-dev's, not mosquitto-dev's.
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ] || [ ! -f /usr/include/mosquitto_broker.h ] \
        || [ ! -f /usr/include/mosquitto.h ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "mosquitto or its headers not found: installing mosquitto, mosquitto-dev and libmosquitto-dev with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-dev libmosquitto-dev >/dev/null
        # Debian starts the packaged service on 1883; the emulator runs its own instance.
        (service mosquitto stop || systemctl stop mosquitto) >/dev/null 2>&1 || true
    fi
    [ -f /usr/include/mosquitto_broker.h ] && [ -f /usr/include/mosquitto.h ] \
        || { say "mosquitto and its plugin headers (Debian: mosquitto mosquitto-dev libmosquitto-dev) are required; install them and retry."; exit 1; }
fi
PLUGIN=build/mosquitto/dynreg_judge.so
if [ ! -f "$PLUGIN" ] || [ cloud_emulator/mosquitto_judge.c -nt "$PLUGIN" ]; then
    mkdir -p build/mosquitto
    gcc -O2 -Wall -Wextra -Werror -shared -fPIC cloud_emulator/mosquitto_judge.c -o "$PLUGIN.new" \
        || { say "building the mosquitto plugin failed"; exit 1; }
    mv "$PLUGIN.new" "$PLUGIN"
    say "built the emulator's mosquitto plugin into $PLUGIN"
fi

# The vendors' own device SDKs (tools/vendor_sdks.txt), the independent clients of the
# conformance tests, in a virtualenv of their own: --no-deps, since tencent-iot-device names
# pycrypto, which does not build on CPython 3.11; the file pins everything they import.
SDK_VENV=build/vendor-sdks
SDK_STAMP=$SDK_VENV/.installed
if [ ! -f "$SDK_STAMP" ] || [ tools/vendor_sdks.txt -nt "$SDK_STAMP" ]; then
    rm -rf "$SDK_VENV"
    "$(find_python)" -m venv "$SDK_VENV"
    "$SDK_VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r tools/vendor_sdks.txt 2>&1 \
        | grep -v "is ignored: it is neither" || true
    "$SDK_VENV/bin/python" -c 'import linkkit.linkkit, hub.hub, paho.mqtt.client, azure.iot.device, awsiot.iotidentity, awscrt' 2>/dev/null \
        || { say "the vendor SDKs of tools/vendor_sdks.txt did not install into $SDK_VENV"; exit 1; }
    touch "$SDK_STAMP"
    say "installed the vendor SDKs (tools/vendor_sdks.txt) into $SDK_VENV"
fi

# The emulated Pico W (pico_emulator/): Node.js and rp2040js, pinned by its package-lock.json.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "Node.js not found: installing nodejs and npm with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    command -v node >/dev/null 2>&1 || { say "Node.js 18 or later is required for the emulated Pico W; install it and retry."; exit 1; }
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 18 ]; then
    say "Node.js $(node --version) is too old for rp2040js: 18 or later is required."; exit 1
fi
EMU_STAMP=pico_emulator/node_modules/.installed
if [ ! -f "$EMU_STAMP" ] || [ pico_emulator/package-lock.json -nt "$EMU_STAMP" ]; then
    (cd pico_emulator && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || { say "npm ci in pico_emulator failed"; exit 1; }
    touch "$EMU_STAMP"
    say "installed rp2040js $(node -p 'require("./pico_emulator/node_modules/rp2040js/package.json").version') into pico_emulator/node_modules"
fi

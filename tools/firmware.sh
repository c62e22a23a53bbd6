#!/usr/bin/env bash
# Builds what ships, from MicroPython v1.28.0's own source, into build/firmware/:
#   mpy-cross                        the cross compiler of the pinned release
#   unix/micropython                 the unix port with manifest.py frozen, as the boards freeze it
#   RPI_PICO_W_DYNREG/firmware.*     the Pico W image (.uf2, .bin, .elf)
#   RPI_PICO_W/firmware.*            the stock Pico W image of the same release, for its size
#   RPI_PICO_W_UMQTT/firmware.*      stock plus umqtt.simple (bench/boards/), for dynreg's own size
#   RPI_PICO_W_TENCENT/firmware.*    ours with clouds="tencent" (bench/boards/tencent_only.py), make bench only
#   unix32-stock/micropython         the unix port built 32-bit (the boards' word size), stock frozen modules
#   unix32-dynreg/micropython        the same with dynreg frozen (bench/boards/unix_dynreg.py); both make bench only
#   sizes.json                       the images' sizes
# and lays out every umqtt.simple a user can have besides the frozen one in build/umqtt/.
#
#   tools/firmware.sh [all|unix|picow|stock|onecloud|unix32|esp32|source]  (default: all; esp32 needs ESP-IDF)
#
# The MicroPython source comes from, in this order: MPY_DIR (your own v1.28.0 checkout with
# its submodules, built in place), the firmware kit (DYNREG_KIT, by default
# ../shared/micropython-kit beside this checkout, unpacked into build/micropython), or a
# shallow clone of the v1.28.0 tag and its submodules (needs internet). Each output is cached
# on a hash of its inputs: a second run rebuilds only what changed. Missing build tools are
# installed with apt-get when we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RELEASE=1.28.0
OUT=$ROOT/build/firmware
JOBS=${JOBS:-$(nproc)}
MPY_LIB_URL=https://github.com/micropython/micropython-lib
# The kit's tree lies inside this checkout: without a ceiling, MicroPython's makeversionhdr.py
# would find our git repository and stamp our commit as the firmware's version.
export GIT_CEILING_DIRECTORIES=$ROOT/build
say() { printf 'firmware: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

apt_packages() {
    # What the builds need, by Debian package; installed when missing and we may.
    local need=() pkg
    for pkg in build-essential libffi-dev pkg-config cmake xz-utils "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    [ ${#need[@]} = 0 ] && return 0
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing ${need[*]} with apt-get"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } \
            > build/apt.log 2>&1 || { tail -n 20 build/apt.log; die "apt-get install ${need[*]} failed"; }
    elif ! command -v dpkg >/dev/null 2>&1; then
        return 0  # not Debian: the build itself will say what is missing
    else
        die "missing packages: ${need[*]} (apt-get install them as root, then retry)"
    fi
}

put() {
    # A new binary beside the old one, then renamed over it: a test still running the old one
    # keeps it ("Text file busy" is what cp gives), and nothing ever runs half a file.
    cp "$1" "$2.new" && mv -f "$2.new" "$2"
}

mpy_version() {
    awk '/^#define MICROPY_VERSION_(MAJOR|MINOR|MICRO) /{v = v (v ? "." : "") $3} END {print v}' "$1/py/mpconfig.h"
}

kit_dir() {
    local kit=${DYNREG_KIT:-$ROOT/../shared/micropython-kit}
    [ -f "$kit/unpack.sh" ] && [ -f "$kit/SHA256SUMS" ] && (cd "$kit" && pwd)
}

# Sets SRC (the MicroPython tree) and SOURCE_ID (what it is, for the cache keys).
resolve_source() {
    mkdir -p build
    local kit
    if [ -n "${MPY_DIR:-}" ]; then
        SRC=$(cd "$MPY_DIR" && pwd) || die "MPY_DIR=$MPY_DIR is not a folder"
        [ -f "$SRC/py/mpconfig.h" ] || die "MPY_DIR=$SRC is not a MicroPython checkout"
        [ "$(mpy_version "$SRC")" = "$RELEASE" ] || die "MPY_DIR=$SRC is MicroPython $(mpy_version "$SRC"); the boards are pinned to v$RELEASE: git -C $SRC checkout v$RELEASE && git -C $SRC submodule update --init"
        [ -f "$SRC/lib/micropython-lib/micropython/umqtt.simple/manifest.py" ] || die "MPY_DIR=$SRC has no lib/micropython-lib: git -C $SRC submodule update --init lib/micropython-lib"
        SOURCE_ID="MPY_DIR $SRC ($(git -C "$SRC" describe --tags --always 2>/dev/null || echo "no git"))"
        LATEST_LIB=${MPY_LIB_LATEST:-}
    elif kit=$(kit_dir); then
        SRC=$ROOT/build/micropython
        local id
        id="kit $(sha256sum "$kit/SHA256SUMS" | cut -c1-16)"
        if [ "$(cat "$SRC/.dynreg-source" 2>/dev/null)" != "$id" ]; then
            say "unpacking MicroPython v$RELEASE from the kit $kit into build/micropython"
            rm -rf "$SRC"
            sh "$kit/unpack.sh" "$SRC" >/dev/null
            echo "$id" > "$SRC/.dynreg-source"
        fi
        SOURCE_ID="$id"
        LATEST_LIB=$(ls -d "$SRC"/extra/micropython-lib-latest 2>/dev/null || true)
    else
        SRC=$ROOT/build/micropython
        if [ "$(cat "$SRC/.dynreg-source" 2>/dev/null)" != "clone v$RELEASE" ]; then
            command -v git >/dev/null || apt_packages git
            say "no MPY_DIR and no kit: cloning MicroPython v$RELEASE and its submodules (needs internet)"
            rm -rf "$SRC"
            git clone -q --depth 1 --branch "v$RELEASE" https://github.com/micropython/micropython "$SRC"
            git -C "$SRC" submodule update -q --init --depth 1 lib/micropython-lib lib/mbedtls \
                lib/berkeley-db-1.xx lib/pico-sdk lib/tinyusb lib/cyw43-driver lib/lwip lib/btstack
            git clone -q --depth 1 "$MPY_LIB_URL" "$SRC/extra/micropython-lib-latest"
            echo "clone v$RELEASE" > "$SRC/.dynreg-source"
        fi
        SOURCE_ID="clone v$RELEASE"
        LATEST_LIB=$SRC/extra/micropython-lib-latest
    fi
    [ "$(mpy_version "$SRC")" = "$RELEASE" ] || die "$SRC is not MicroPython v$RELEASE"
}

# inputs_hash FILE-OR-FOLDER...: a hash of the source id, this recipe and the inputs' contents.
inputs_hash() {
    { echo "$SOURCE_ID"; find tools/firmware.sh "$@" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
        | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-32
}

# cached NAME HASH: true when NAME was built from these inputs already (the stamp is touched:
# the tests check that it is newer than lib/).
cached() { [ "$(cat "$OUT/.$1.inputs" 2>/dev/null)" = "$2" ] && touch "$OUT/.$1.inputs"; }
done_with() { echo "$2" > "$OUT/.$1.inputs"; }

step() {
    # step NAME LOG COMMAND...: runs a build command into a log, timed, with its tail on failure.
    local name=$1 log=$OUT/$2.log t0=$SECONDS
    shift 2
    "$@" > "$log" 2>&1 || { tail -n 30 "$log"; die "$name failed (log: ${log#$ROOT/})"; }
    say "$name built in $((SECONDS - t0)) s"
}

build_mpy_cross() {
    local h
    h=$(inputs_hash "$SRC/py/mpconfig.h")
    cached mpy-cross "$h" && [ -x "$OUT/mpy-cross" ] && return 0
    step "mpy-cross v$RELEASE" mpy-cross make -C "$SRC/mpy-cross" -j"$JOBS"
    put "$SRC/mpy-cross/build/mpy-cross" "$OUT/mpy-cross"
    done_with mpy-cross "$h"
}

build_unix() {
    local h
    h=$(inputs_hash manifest.py lib)
    cached unix "$h" && [ -x "$OUT/unix/micropython" ] && return 0
    build_mpy_cross
    # makemanifest.py recompiles a frozen module only when its source is newer than its .mpy:
    # a changed manifest (an opt= level) would leave the old bytecode in. Inputs changed: all anew.
    rm -rf "$SRC/ports/unix/build-dynreg/frozen_mpy"
    step "unix port v$RELEASE (dynreg frozen)" unix \
        make -C "$SRC/ports/unix" -j"$JOBS" BUILD=build-dynreg FROZEN_MANIFEST="$ROOT/manifest.py"
    mkdir -p "$OUT/unix"
    put "$SRC/ports/unix/build-dynreg/micropython" "$OUT/unix/micropython"
    done_with unix "$h"
}

build_unix32() {
    # bench/mip_ram.py's heap figures for the mip path: a 32-bit unix port has the boards'
    # object sizes (4-byte words, 16-byte GC blocks). "stock" freezes what the standard
    # variant freezes (mip among them) and no dynreg, so dynreg's names are not in its ROM;
    # "dynreg" adds dynreg as the boards freeze it. No ffi: it needs a 32-bit libffi.
    apt_packages gcc-multilib
    build_mpy_cross
    local name manifest h
    for name in unix32-stock unix32-dynreg; do
        if [ "$name" = unix32-stock ]; then
            manifest=$SRC/ports/unix/variants/standard/manifest.py
            h=$(inputs_hash "$SRC/py/mpconfig.h")
        else
            manifest=$ROOT/bench/boards/unix_dynreg.py
            h=$(inputs_hash manifest.py lib bench/boards/unix_dynreg.py)
        fi
        cached "$name" "$h" && [ -x "$OUT/$name/micropython" ] && continue
        rm -rf "$SRC/ports/unix/build-$name/frozen_mpy"  # as in build_unix
        step "unix port v$RELEASE, 32-bit ($name)" "$name" make -C "$SRC/ports/unix" -j"$JOBS" BUILD="build-$name" \
            MICROPY_FORCE_32BIT=1 MICROPY_PY_FFI=0 FROZEN_MANIFEST="$manifest"
        mkdir -p "$OUT/$name"
        put "$SRC/ports/unix/build-$name/micropython" "$OUT/$name/micropython"
        done_with "$name" "$h"
    done
}

build_picotool() {
    # pico-sdk 2.x writes the .uf2 with a host picotool. The kit ships its source; a clone
    # lets the SDK fetch it itself.
    PICOTOOL_ARGS=""
    local pt=$SRC/lib/picotool
    [ -f "$pt/CMakeLists.txt" ] || return 0
    if [ ! -x "$pt/install/picotool/picotool" ]; then
        step "picotool" picotool bash -c "cmake -S '$pt' -B '$pt/build' -DPICO_SDK_PATH='$SRC/lib/pico-sdk' \
            -DPICOTOOL_NO_LIBUSB=1 -DPICOTOOL_FLAT_INSTALL=1 -DCMAKE_INSTALL_PREFIX='$pt/install' \
            && make -C '$pt/build' -j$JOBS && make -C '$pt/build' install"
    fi
    PICOTOOL_ARGS="-Dpicotool_DIR=$pt/install/picotool"
}

# build_rp2 NAME MAKE-ARGS...: an rp2 image into build/firmware/NAME/.
build_rp2() {
    local name=$1 h
    shift
    case $name in
        RPI_PICO_W) h=$(inputs_hash "$SRC/py/mpconfig.h") ;;
        RPI_PICO_W_UMQTT) h=$(inputs_hash "$SRC/py/mpconfig.h" "bench/boards/$name") ;;
        RPI_PICO_W_TENCENT) h=$(inputs_hash manifest.py lib bench/boards/tencent_only.py boards/RPI_PICO_W_DYNREG) ;;
        *) h=$(inputs_hash manifest.py lib "boards/$name") ;;
    esac
    cached "$name" "$h" && [ -f "$OUT/$name/firmware.uf2" ] && return 0
    apt_packages gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib
    build_mpy_cross
    build_picotool
    rm -rf "$SRC/ports/rp2/build-$name/frozen_mpy"  # as in build_unix
    step "rp2 $name v$RELEASE" "$name" env CMAKE_ARGS="${CMAKE_ARGS:-} $PICOTOOL_ARGS" \
        make -C "$SRC/ports/rp2" -j"$JOBS" "$@"
    mkdir -p "$OUT/$name"
    cp "$SRC/ports/rp2/build-$name"/firmware.{uf2,bin,elf} "$OUT/$name/"
    done_with "$name" "$h"
}

build_esp32() {
    # Not built in CI: no Xtensa toolchain or ESP-IDF can be installed from the registries
    # it reaches. With ESP-IDF installed and its export.sh sourced, this is the whole build.
    command -v idf.py >/dev/null 2>&1 || die "idf.py is not on PATH: install the ESP-IDF version that $SRC/ports/esp32/README.md names for v$RELEASE, then source its export.sh in this shell"
    build_mpy_cross
    step "esp32 ESP32_DYNREG v$RELEASE" ESP32_DYNREG make -C "$SRC/ports/esp32" -j"$JOBS" BOARD_DIR="$ROOT/boards/ESP32_DYNREG"
    mkdir -p "$OUT/ESP32_DYNREG"
    cp "$SRC/ports/esp32/build-ESP32_DYNREG/firmware.bin" "$OUT/ESP32_DYNREG/"
    say "ESP32 image: build/firmware/ESP32_DYNREG/firmware.bin; flash it with"
    say "  esptool.py --chip esp32 --port /dev/ttyUSB0 erase_flash"
    say "  esptool.py --chip esp32 --port /dev/ttyUSB0 --baud 460800 write_flash -z 0x1000 build/firmware/ESP32_DYNREG/firmware.bin"
}

umqtt_variants() {
    # The frozen unix build holds umqtt.simple 1.7.0 (v1.28.0's micropython-lib pin). A user
    # of mip gets micropython-lib's current one, and an old install may hold PyPI's 1.3.4.
    local dest=build/umqtt
    if [ -n "${LATEST_LIB:-}" ] && [ -f "$LATEST_LIB/micropython/umqtt.simple/manifest.py" ]; then
        local v
        v=$(sed -n 's/.*version="\([^"]*\)".*/\1/p' "$LATEST_LIB/micropython/umqtt.simple/manifest.py")
        mkdir -p "$dest/mip-$v/umqtt"
        cp "$LATEST_LIB/micropython/umqtt.simple/umqtt/simple.py" "$dest/mip-$v/umqtt/simple.py"
        echo "$v" > "$dest/mip-$v/VERSION"
    fi
    local pinned
    pinned=$(sed -n 's/.*version="\([^"]*\)".*/\1/p' "$SRC/lib/micropython-lib/micropython/umqtt.simple/manifest.py")
    echo "$pinned" > "$OUT/umqtt-frozen-version"
}

write_sizes() {
    # sizes.json: every image's file sizes and sections, and the unix binary's.
    python3 - "$OUT" <<'PY'
import json, os, subprocess, sys
out = sys.argv[1]
sizes = {}
for name in ("RPI_PICO_W_DYNREG", "RPI_PICO_W", "RPI_PICO_W_UMQTT", "RPI_PICO_W_TENCENT"):
    folder = os.path.join(out, name)
    if not os.path.exists(os.path.join(folder, "firmware.elf")):
        continue
    sections = {}
    for line in subprocess.run(["arm-none-eabi-size", "-A", os.path.join(folder, "firmware.elf")],
                               capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    sizes[name] = {"bin": os.path.getsize(os.path.join(folder, "firmware.bin")),
                   "uf2": os.path.getsize(os.path.join(folder, "firmware.uf2")),
                   "sections": {k: sections[k] for k in (".text", ".rodata", ".data", ".bss") if k in sections}}
unix = os.path.join(out, "unix", "micropython")
if os.path.exists(unix):
    text, data, bss = subprocess.run(["size", unix], capture_output=True, text=True,
                                     check=True).stdout.splitlines()[1].split()[:3]
    sizes["unix"] = {"text": int(text), "data": int(data), "bss": int(bss)}
with open(os.path.join(out, "sizes.json"), "w") as f:
    json.dump(sizes, f, indent=1, sort_keys=True)
ours, stock = sizes.get("RPI_PICO_W_DYNREG"), sizes.get("RPI_PICO_W")
if ours:
    line = "Pico W image %d B (.bin), %d B (.uf2)" % (ours["bin"], ours["uf2"])
    if stock:
        line += "; stock RPI_PICO_W %d B: dynreg and umqtt.simple add %d B of flash" % (
            stock["bin"], ours["bin"] - stock["bin"])
        reference = sizes.get("RPI_PICO_W_UMQTT")
        if reference:
            line += ", dynreg alone %d B" % (ours["bin"] - reference["bin"])
    print("firmware: " + line)
PY
}

main() {
    local what=${1:-all}
    mkdir -p "$OUT"
    apt_packages
    resolve_source
    say "MicroPython v$RELEASE source: $SOURCE_ID"
    if [ "$what" != esp32 ]; then  # the tree build/firmware's unix and rp2 builds come from
        echo "$SOURCE_ID" > "$OUT/source-id"
        echo "$SRC" > "$OUT/source-dir"
    fi
    case "$what" in
        source) ;;
        unix) build_unix; umqtt_variants ;;
        picow) build_rp2 RPI_PICO_W_DYNREG BOARD_DIR="$ROOT/boards/RPI_PICO_W_DYNREG"; write_sizes ;;
        stock)
            build_rp2 RPI_PICO_W BOARD=RPI_PICO_W
            build_rp2 RPI_PICO_W_UMQTT BOARD_DIR="$ROOT/bench/boards/RPI_PICO_W_UMQTT"
            write_sizes ;;
        onecloud)  # bench/flash.py's one-cloud figure: the Pico W image with clouds="tencent"
            build_rp2 RPI_PICO_W_TENCENT BOARD_DIR="$ROOT/boards/RPI_PICO_W_DYNREG" BUILD=build-RPI_PICO_W_TENCENT \
                FROZEN_MANIFEST="$ROOT/bench/boards/tencent_only.py"
            write_sizes ;;
        unix32) build_unix32 ;;  # bench/mip_ram.py
        esp32) build_esp32 ;;
        all)
            build_unix; umqtt_variants
            build_rp2 RPI_PICO_W_DYNREG BOARD_DIR="$ROOT/boards/RPI_PICO_W_DYNREG"
            build_rp2 RPI_PICO_W BOARD=RPI_PICO_W
            build_rp2 RPI_PICO_W_UMQTT BOARD_DIR="$ROOT/bench/boards/RPI_PICO_W_UMQTT"
            write_sizes ;;
        *) die "unknown target $what (all, unix, picow, stock, onecloud, unix32, esp32, source)" ;;
    esac
}

main "$@"

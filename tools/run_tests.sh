#!/usr/bin/env bash
# The whole suite on three runtimes: CPython (pytest), the MicroPython v1.28.0 unix port with
# dynreg frozen, and the Pico W image on an emulated RP2040 (tools/firmware.sh builds both);
# then the demo, the secrets scan and docs/ERRORS.md against what the devices printed
# (tools/check_errors_doc.py); ends with each runtime's count, one total line and the firmware sizes.
# `--quick` (make check): the tests not marked `long` on CPython and the unix port's suite; no
# emulated chip, no demo, no ERRORS.md check (the long tests print what it quotes).
set -uo pipefail
cd "$(dirname "$0")/.."
MICROPYTHON=build/firmware/unix/micropython
quick=0
if [ "${1:-}" = "--quick" ]; then
    quick=1
    shift
    set -- -m "not long" "$@"
fi
mkdir -p build
rm -f build/device-output.log
export DYNREG_TRANSCRIPT=$PWD/build/device-output.log
t0=$SECONDS
echo "== CPython $(.venv/bin/python -c 'import sys; print(sys.version.split()[0])') (pytest) =="
.venv/bin/python -m pytest host_tests -q -p no:cacheprovider --basetemp=build/pytest-tmp "$@" 2>&1 | tee build/pytest.out
cpython_rc=${PIPESTATUS[0]}
mp_version=$($MICROPYTHON -c 'import sys; print(sys.version.split(";")[1].strip())')
echo "== $mp_version, unix port built from source, dynreg frozen =="
# 8 MiB of heap: the power-cut tests copy whole 256 KiB FAT images, which the default 2 MiB,
# fragmented by the thousands of cuts before them, cannot always place.
$MICROPYTHON -X heapsize=8M host_tests/mp_runner.py 2>&1 | tee build/mp.out
mp_rc=${PIPESTATUS[0]}
if [ $quick = 1 ]; then
    .venv/bin/python tools/scan_secrets.py --roots build/pytest-tmp --outputs build/pytest.out build/mp.out \
        build/device-output.log
    scan_rc=$?
    count() { grep -oE "[0-9]+ $2" "$1" | tail -n 1 | grep -oE '^[0-9]+' || echo 0; }
    echo "quick tier (make check) took $((SECONDS - t0)) s; the whole suite: make test"
    echo "CPython (not long):      $(count build/pytest.out passed) passed, $(count build/pytest.out failed) failed"
    echo "MicroPython v1.28.0 unix: $(count build/mp.out passed) passed, $(count build/mp.out failed) failed"
    [ "$cpython_rc" = 0 ] && [ "$mp_rc" = 0 ] && [ "$scan_rc" = 0 ]
    exit
fi
echo "== the Pico W image (RPI_PICO_W_DYNREG) on an emulated RP2040, dynreg frozen, store on its flash =="
.venv/bin/python pico_emulator/device_suite.py 2>&1 | tee build/pico.out
pico_rc=${PIPESTATUS[0]}

echo "== the demo, then the secrets scan of everything printed and logged =="
.venv/bin/python tools/demo.py > build/demo.out 2>&1
demo_rc=$?
tail -n 1 build/demo.out
.venv/bin/python tools/scan_secrets.py --roots build/pytest-tmp build/demo \
    --outputs build/pytest.out build/mp.out build/pico.out build/demo.out build/device-output.log
scan_rc=$?
# After every device has run: each message docs/ERRORS.md quotes must be in what they printed
# (a subset of the tests, "$@", cannot show that).
if [ $# -eq 0 ]; then
    echo "== docs/ERRORS.md: every quoted message printed by a device under test =="
    .venv/bin/python tools/check_errors_doc.py build/device-output.log
    doc_rc=$?
else
    echo "== docs/ERRORS.md check skipped: pytest ran a subset ($*) =="
    doc_rc=0
fi

count() { grep -oE "[0-9]+ $2" "$1" | tail -n 1 | grep -oE '^[0-9]+' || echo 0; }
cp_pass=$(count build/pytest.out passed); cp_fail=$(( $(count build/pytest.out failed) + $(count build/pytest.out error) ))
mp_pass=$(count build/mp.out passed); mp_fail=$(count build/mp.out failed)
pico_pass=$(count build/pico.out passed); pico_fail=$(count build/pico.out failed)
[ "$cpython_rc" = 0 ] || [ "$cp_fail" != 0 ] || cp_fail=1
[ "$mp_rc" = 0 ] || [ "$mp_fail" != 0 ] || mp_fail=1
[ "$pico_rc" = 0 ] || [ "$pico_fail" != 0 ] || pico_fail=1
[ "$demo_rc" = 0 ] && [ "$scan_rc" = 0 ] || cp_fail=$((cp_fail + 1))  # counted with the host side
[ "$doc_rc" = 0 ] || cp_fail=$((cp_fail + 1))
echo
.venv/bin/python - <<'PY'
import json
s = json.load(open("build/firmware/sizes.json"))
ours, stock = s["RPI_PICO_W_DYNREG"], s["RPI_PICO_W"]
own = ", dynreg alone %d B" % (ours["bin"] - s["RPI_PICO_W_UMQTT"]["bin"]) if "RPI_PICO_W_UMQTT" in s else ""
print("firmware: Pico W image %d B (.bin), stock RPI_PICO_W %d B: dynreg + umqtt.simple add %d B%s;"
      " unix port text %d B" % (ours["bin"], stock["bin"], ours["bin"] - stock["bin"], own, s["unix"]["text"]))
PY
echo "tests took $((SECONDS - t0)) s"
echo "CPython:                 $cp_pass passed, $cp_fail failed"
echo "MicroPython v1.28.0 unix: $mp_pass passed, $mp_fail failed"
echo "Pico W image (emulated): $pico_pass passed, $pico_fail failed"
echo "total: $((cp_pass + mp_pass + pico_pass)) passed, $((cp_fail + mp_fail + pico_fail)) failed"
[ "$cpython_rc" = 0 ] && [ "$mp_rc" = 0 ] && [ "$pico_rc" = 0 ] && [ "$demo_rc" = 0 ] && [ "$scan_rc" = 0 ] \
    && [ "$doc_rc" = 0 ]

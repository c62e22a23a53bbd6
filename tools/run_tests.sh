#!/usr/bin/env bash
# The whole suite on both runtimes; ends with each runtime's count and one total line.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
rm -f build/device-output.log
export DYNREG_TRANSCRIPT=$PWD/build/device-output.log
echo "== CPython $(.venv/bin/python -c 'import sys; print(sys.version.split()[0])') (pytest) =="
.venv/bin/python -m pytest host_tests -q -p no:cacheprovider --basetemp=build/pytest-tmp "$@" 2>&1 | tee build/pytest.out
cpython_rc=${PIPESTATUS[0]}
echo "== MicroPython unix port $(.venv/bin/micropython -c 'import sys; print(sys.version.split(";")[1].strip())') =="
.venv/bin/micropython host_tests/mp_runner.py 2>&1 | tee build/mp.out
mp_rc=${PIPESTATUS[0]}

echo "== the demo, then the secrets scan of everything printed and logged =="
.venv/bin/python tools/demo.py > build/demo.out 2>&1
demo_rc=$?
tail -n 1 build/demo.out
.venv/bin/python tools/scan_secrets.py --roots build/pytest-tmp build/demo \
    --outputs build/pytest.out build/mp.out build/demo.out build/device-output.log
scan_rc=$?

count() { grep -oE "[0-9]+ $2" "$1" | tail -n 1 | grep -oE '^[0-9]+' || echo 0; }
cp_pass=$(count build/pytest.out passed); cp_fail=$(( $(count build/pytest.out failed) + $(count build/pytest.out error) ))
mp_pass=$(count build/mp.out passed); mp_fail=$(count build/mp.out failed)
[ "$cpython_rc" = 0 ] || [ "$cp_fail" != 0 ] || cp_fail=1
[ "$mp_rc" = 0 ] || [ "$mp_fail" != 0 ] || mp_fail=1
[ "$demo_rc" = 0 ] && [ "$scan_rc" = 0 ] || cp_fail=$((cp_fail + 1))  # counted with the host side
echo
echo "CPython:     $cp_pass passed, $cp_fail failed"
echo "MicroPython: $mp_pass passed, $mp_fail failed"
echo "total: $((cp_pass + mp_pass)) passed, $((cp_fail + mp_fail)) failed"
[ "$cpython_rc" = 0 ] && [ "$mp_rc" = 0 ] && [ "$demo_rc" = 0 ] && [ "$scan_rc" = 0 ]

# Runs every shared test file (test_*.py but not test_host_*.py) on the MicroPython unix
# port, against the dynreg frozen into it. Usage, from the repository root:
#   build/firmware/unix/micropython -X heapsize=8M host_tests/mp_runner.py [file ...]
# Prints one line per failure and a final "N passed, N failed"; exits 1 on any failure.
import gc
import os
import sys

sys.path.insert(0, "host_tests")


def test_files(names):
    if names:
        return [n.rsplit("/", 1)[-1] for n in names]
    return sorted(n for n in os.listdir("host_tests")
                  if n.startswith("test_") and n.endswith(".py") and not n.startswith("test_host_"))


def main(names):
    passed = failed = 0
    for filename in test_files(names):
        module_name = filename[:-3]
        try:
            module = __import__(module_name)
        except Exception as e:
            failed += 1
            print("FAIL %s (import): %s: %s" % (module_name, type(e).__name__, e))
            continue
        for name in sorted(dir(module)):
            if not name.startswith("test_"):
                continue
            gc.collect()  # a board's heap is small: each test starts from a compacted one
            try:
                getattr(module, name)()
                passed += 1
            except Exception as e:
                failed += 1
                print("FAIL %s.%s: %s: %s" % (module_name, name, type(e).__name__, e))
        del sys.modules[module_name]  # its data (vectors, big test inputs) goes with it
        del module
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


# A board has no sys.argv (rp2): pico_emulator/device_suite.py passes the names as ARGV.
main(globals().get("ARGV") or getattr(sys, "argv", [])[1:])

# CPython side of the one test suite: the device library from lib/, with thin strict shims
# for the MicroPython-only modules it imports (micropython, cryptolib).
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.join(HERE, "shims"), os.path.join(HERE, "..", "lib"), HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

# test_host_*.py are CPython-only (oracles, hypothesis, the emulator); test_mp_*.py need the
# MicroPython unix port (littlefs through vfs); every other test_*.py runs on both.
collect_ignore_glob = ["test_mp_*.py"]

# CPython side of the one test suite: the device library from lib/, with thin strict shims
# for the MicroPython-only modules it imports (micropython, cryptolib).
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.join(HERE, "shims"), os.path.join(HERE, "..", "lib"), HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import pytest

# The emulator's fixture as users load it (docs/EMULATOR.md): our tests use the same one. The
# package's pytest11 entry point (the bootstrap installs it) has loaded it already under this
# name, so this line loads it only where the package is not installed.
pytest_plugins = ["cloud_emulator.pytest_plugin"]

sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import runtime  # noqa: E402


@pytest.fixture(scope="module", params=runtime.umqtt_variants())
def umqtt(request):
    # Every umqtt.simple a user can have (runtime.umqtt_variants): the devices of the tests
    # that use it (or a fixture that does) run with this one, each version in turn.
    import e2e

    e2e.UMQTT = request.param
    yield request.param
    e2e.UMQTT = runtime.FROZEN_UMQTT


# The quick tier (make check, pytest -m "not long") leaves out these modules, minutes in all:
# the emulated chip, boards that stay online, stalls and waits, whole lines of boards.
LONG = ("test_host_pico", "test_host_by_hand", "test_host_online", "test_host_board_life", "test_host_stalls",
        "test_host_faults", "test_host_throttle", "test_host_emulator_cli", "test_host_bench")


def pytest_configure(config):
    config.addinivalue_line("markers", "long: left out of the quick tier (make check)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.startswith(LONG):
            item.add_marker(pytest.mark.long)


# test_host_*.py are CPython-only (oracles, hypothesis, the emulator); test_mp_*.py need the
# MicroPython unix port (littlefs through vfs); every other test_*.py runs on both.
collect_ignore_glob = ["test_mp_*.py"]

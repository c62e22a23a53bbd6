# CPython side of the one test suite: the device library from lib/, with thin strict shims
# for the MicroPython-only modules it imports (micropython, cryptolib).
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.join(HERE, "shims"), os.path.join(HERE, "..", "lib"), HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import pytest

# The emulator's fixture as users load it (docs/EMULATOR.md): our tests use the same one.
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


# test_host_*.py are CPython-only (oracles, hypothesis, the emulator); test_mp_*.py need the
# MicroPython unix port (littlefs through vfs); every other test_*.py runs on both.
collect_ignore_glob = ["test_mp_*.py"]

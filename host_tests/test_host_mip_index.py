# The .mpy path for stock firmware: `make mip-index` (tools/mip_index.py) builds a mip index,
# any static HTTP server serves it (here on 127.0.0.1), micropython-lib's own mip (the one stock
# firmware freezes, from the pinned tree) installs dynreg from it on the unix port, and the
# installed .mpy files register and log in against the local cloud emulator. The device runs
# without `.frozen` on its path, so nothing of the frozen dynreg or umqtt.simple can stand in.
import functools
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from cloud_emulator.testing import running_emulator
from e2e import ROOT, registrations, write_info
import runtime

sys.path.insert(0, os.path.join(ROOT, "boards", "unix"))
from serial_board import VirtualBoard  # noqa: E402

PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")
PRODUCT = "MIPIDX0001"
SECRET = "m1p-Pr0duct-S3cret-0123"
MPY_VERSION = 6  # MicroPython v1.28.0 loads .mpy version 6 (docs/reference/mpyfiles.rst)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    # The index as `make mip-index` builds it, behind a plain static server.
    out = tmp_path_factory.mktemp("mip") / "index"
    proc = subprocess.run([PYTHON, os.path.join(ROOT, "tools", "mip_index.py"), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % server.server_address[1], out
    server.shutdown()
    server.server_close()


def device(script, lib, tmp_path, timeout=60):
    # The unix port as a board on stock firmware: its path is the install folder and mip with
    # what mip needs (requests), from the micropython-lib of v1.28.0; no `.frozen`.
    mpylib = os.path.join(runtime.source_dir(), "lib", "micropython-lib")
    path = [str(lib), os.path.join(mpylib, "micropython", "mip"), os.path.join(mpylib, "python-ecosys", "requests")]
    main = tmp_path / "device_main.py"
    main.write_text(script)
    env = dict(os.environ, MICROPYPATH=":".join(path), no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
    proc = subprocess.run([runtime.MICROPYTHON, str(main)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=str(tmp_path))
    return proc.returncode, proc.stdout + proc.stderr


def installed(lib):
    found = {}
    for folder, _, names in os.walk(lib):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, lib)] = f.read()
    return found


def test_mip_installs_the_index_as_mpy_and_the_board_registers_from_it(index, tmp_path):
    url, out = index
    lib = tmp_path / "lib"
    rc, output = device("import dynreg\n", lib, tmp_path)
    assert rc != 0 and "ImportError" in output, output  # nothing frozen stands in

    rc, output = device("import mip\nmip.install('dynreg', index=%r, target=%r)\n" % (url, str(lib)), lib, tmp_path)
    assert rc == 0 and "Done" in output and "Package may be partially installed" not in output, output
    files = installed(lib)
    modules = sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, "lib", "dynreg")) if n.endswith(".py"))
    # dynreg's modules, umqtt.simple and the ssl module it requires, all compiled; no source.
    assert sorted(files) == sorted(["dynreg/%s.mpy" % m for m in modules] + ["umqtt/simple.mpy", "ssl.mpy"])
    for name, data in files.items():
        assert data[:2] == b"M" + bytes([MPY_VERSION]), name  # the .mpy header: "M", then its version

    # By URL, without an index: the same files.
    other = tmp_path / "lib-by-url"
    rc, output = device("import mip\nmip.install(%r, target=%r)\n" % (url + "/dynreg.json", str(other)), other,
                        tmp_path)
    assert rc == 0 and "Done" in output, output
    assert installed(other) == files

    with running_emulator(tmp_path / "cloud") as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=10)
        (tmp_path / "board").mkdir()
        info = write_info(tmp_path / "board", cloud, PRODUCT, "mip001", secret=SECRET,
                          mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port)
        rc, output = device(
            "import sys, dynreg\n"
            "info = dynreg.ensure(%r, log=None)\n"
            "dynreg.connect(info, log=None).disconnect()\n"
            "for name in sorted(sys.modules):\n"
            "    if name.startswith('dynreg') or name == 'umqtt.simple':\n"
            "        print('LOADED', name, sys.modules[name].__file__)\n"
            "print('version', dynreg.__version__)\n" % info, lib, tmp_path)
        assert rc == 0, output
        issued = cloud.device(PRODUCT, "mip001")
        logins = [e["result"] for e in cloud.log() if e.get("api") == "mqtt-connect" and e.get("device") == "mip001"]
        assert [e["result"] for e in registrations(cloud, "mip001")] == ["ok"], output
    with open(info) as f:
        assert json.load(f)["credential"]["psk"] == issued["psk"]
    assert logins == ["ok"]
    loaded = dict(line.split()[1:] for line in output.splitlines() if line.startswith("LOADED "))
    assert {"dynreg", "dynreg.flow", "dynreg.tencent", "dynreg.mqtt", "umqtt.simple"} <= set(loaded), output
    for name, path in loaded.items():  # every module from the installed .mpy files
        relative = "dynreg/__init__.mpy" if name == "dynreg" else name.replace(".", "/") + ".mpy"
        assert path == os.path.join(str(lib), relative), (name, path)
    with open(os.path.join(ROOT, "package.json")) as f:
        assert "version %s" % json.load(f)["version"] in output, output
    assert SECRET not in output and issued["psk"] not in output


def test_mpremote_installs_the_index_onto_a_stock_board(index, tmp_path):
    # From the PC over the board's serial port, as boards/README.md gives it: mpremote fetches
    # the index on the host and copies the .mpy files to /lib on a board without frozen dynreg.
    url, out = index
    env = dict(os.environ, no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
    with VirtualBoard(str(tmp_path / "flash.img"), fresh=True, stock=True) as board:
        def mpremote(*args):
            proc = subprocess.run([MPREMOTE, "connect", board.port, "resume"] + list(args), capture_output=True,
                                  text=True, timeout=60, env=env)
            assert proc.returncode == 0, proc.stdout + proc.stderr + board.console_text()
            return proc.stdout

        assert "ImportError" in mpremote("exec", "try:\n import dynreg\nexcept ImportError:\n print('ImportError')")
        assert "Done" in mpremote("mip", "install", "--index", url, "dynreg")
        with open(out / "package" / str(MPY_VERSION) / "dynreg" / "latest.json") as f:
            listed = json.load(f)["hashes"]
        for target, short in listed:  # each file of the index, byte for byte
            on_board = mpremote("fs", "sha256sum", ":lib/" + target).split()[-1]
            assert on_board[:8] == short, target
        loaded = mpremote("exec", "import dynreg, dynreg.flow, umqtt.simple\n"
                                  "print(dynreg.__file__, umqtt.simple.__file__)")
        assert loaded.split() == ["/flash/lib/dynreg/__init__.mpy", "/flash/lib/umqtt/simple.mpy"], loaded

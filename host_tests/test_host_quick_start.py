# The README's quick starts, run as written. Each command line the README shows is run here
# from the repository root, in a shell where the virtualenv was activated as the README says;
# only what a person fills in differs: the board's port, where the files are, the index's port.
# No real board and no real cloud are here: the Pico W image boots on the emulated RP2040
# (pico_emulator/), the board on stock firmware is the unix port without the frozen dynreg
# (boards/unix/), and the product's info points at the local cloud emulator.
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from cloud_emulator.testing import running_emulator
from e2e import ROOT, registrations
from test_host_by_hand import Console, doc_lines

sys.path.insert(0, os.path.join(ROOT, "pico_emulator"))
sys.path.insert(0, os.path.join(ROOT, "boards", "unix"))
import pico  # noqa: E402
from serial_board import VirtualBoard  # noqa: E402

README = "README.md"
ACTIVATE = ". .venv/bin/activate"
BUILD = "make firmware-picow"
UF2 = "build/firmware/RPI_PICO_W_DYNREG/firmware.uf2"
CHECK = "dynreg check product_info.json --secret-file secret.txt --site site.json --board rp2"
PROVISION = ("dynreg provision --ports /dev/ttyACM0 --info product_info.json --secret-file secret.txt "
             "--site site.json --app firmware")
MIP_INDEX = "make mip-index"
SERVE = "python3 -m http.server -d build/mip-index 8000"
MIP_INSTALL = "mpremote connect /dev/ttyUSB0 mip install --index http://localhost:8000 dynreg"
PRODUCT = "S3EUVBRJLB"  # the README's ProductId
SECRET = "quick-Start-Pr0duct-S3cret-42"
# A group key as Azure's portal shows one: the base64 of 32 bytes.
GROUP_KEY = "cXVpY2stc3RhcnQtZ3JvdXAta2V5LTAxMjM0NTY3ODk="
WAIT = 120  # seconds: the bound of every wait on the unix port, far above what a step needs
CHIP_WAIT = 600  # the emulated chip runs at a third of real time, slower on a busy machine
# The proxies a test machine may set must not catch the index on localhost.
ENV = dict(os.environ, no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")


def filled(line, values):
    for written, value in values.items():
        line = line.replace(written, value)
    return line


def shell(line, timeout=WAIT):
    # The line as a person types it once the virtualenv is active.
    proc = subprocess.run(["bash", "-c", ACTIVATE + " && " + line], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=ENV)
    output = proc.stdout + proc.stderr
    assert SECRET not in output and GROUP_KEY not in output, output
    return proc.returncode, output


def readme_infos():
    # The product infos of the README's first quick start, by cloud, as written there.
    with open(os.path.join(ROOT, README)) as f:
        blocks = re.findall(r"```json\n(.*?)```", f.read(), flags=re.S)
    infos = [json.loads(block) for block in blocks]
    return {info["cloud"]: info for info in infos if info.get("dynreg") == 1}


def files(folder, info, secret, site):
    # product_info.json, secret.txt and site.json as the README has a person write them, in
    # `folder`; the values that fill the README's lines. secret.txt: so named, the secrets scan
    # of `make test` takes it for the store it is.
    (folder / "product_info.json").write_text(json.dumps(info))
    (folder / "secret.txt").write_text(secret + "\n")
    shutil.copy(site, folder / "site.json")
    return {name: str(folder / name) for name in ("product_info.json", "secret.txt", "site.json")}


def test_the_readme_shows_the_lines_run_here():
    doc_lines(README, ACTIVATE, BUILD, CHECK, PROVISION, MIP_INDEX, SERVE, MIP_INSTALL)
    assert UF2 in open(os.path.join(ROOT, README)).read()


def test_the_readmes_make_targets_are_what_the_suite_runs():
    # `make demo`, `make check` and `make test` as the README shows them: the demo is the one
    # tools/run_tests.sh runs (tools/demo.py), the two tiers are tools/run_tests.sh, and CI runs
    # `make test`.
    with open(os.path.join(ROOT, README)) as f:
        shown = f.read()
    for target in ("make demo", "make test"):
        assert re.search(r"^    %s\b" % target, shown, re.M), target
    assert "`make check`" in shown
    with open(os.path.join(ROOT, "Makefile")) as f:
        makefile = f.read()
    recipes = dict(re.findall(r"^([a-z-]+):[^\n]*\n\t@?([^\n]+)", makefile, re.M))
    assert recipes["demo"] == "$(VENV)/bin/python tools/demo.py"
    assert recipes["test"] == "tools/run_tests.sh" and recipes["check"] == "tools/run_tests.sh --quick"
    with open(os.path.join(ROOT, "tools", "run_tests.sh")) as f:
        assert ".venv/bin/python tools/demo.py" in f.read()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        assert f.read().rstrip().endswith("\nmake test")


@pytest.mark.parametrize("cloud", ["tencent", "aliyun", "azure"])
def test_the_readmes_infos_pass_its_check_line(tmp_path, cloud):
    # Step 4 of the first quick start, on each info of step 3 as written, with the example site
    # file the README starts from.
    infos = readme_infos()
    values = files(tmp_path, infos[cloud], GROUP_KEY if cloud == "azure" else SECRET,
                   os.path.join(ROOT, "boards", "site.example.json"))
    code, output = shell(filled(CHECK, values))
    assert code == 0, output
    assert output.count("ok: ") == 2 and "problem:" not in output, output


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    # 60 s a request: the emulated Pico W runs at a third of real time, slower on a busy machine.
    with running_emulator(tmp_path_factory.mktemp("cloud"), client_timeout=60) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100)
        yield cloud


def pointed_at(cloud, folder):
    # The README's Tencent info as it is, pointed at the emulator: its endpoints and its CA,
    # beside the info (the real cloud needs none of the three).
    info = dict(readme_infos()["tencent"], register_url="https://localhost:%d" % cloud.https_port,
                mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port, ca="ca.der")
    shutil.copy(cloud.ca_der_path, folder / "ca.der")
    return info


def boot_log(board, timeout):
    # What the README's step 6 says the board prints; the DeviceName is its chip id.
    name = board.wait_for(r"dynreg: registering %s/(\w+) with tencent" % PRODUCT, timeout=timeout).group(1)
    board.wait_for(r"dynreg: credential stored in device_info\.json", timeout=timeout)
    board.wait_for(r"dynreg: MQTT connected", timeout=timeout)
    board.wait_for(r"published status on %s/%s/data" % (PRODUCT, name), timeout=timeout)
    return name


def transcript(title, text):
    path = os.environ.get("DYNREG_TRANSCRIPT")
    if path:  # for the secrets scan of `make test`
        with open(path, "a") as f:
            f.write("-- %s --\n%s" % (title, text))


@pytest.mark.long
def test_quick_start_a_real_product_on_the_pico_w_image(tmp_path, cloud):
    problem = pico.check_ready()
    if problem:
        pytest.fail("the emulated Pico W cannot run: " + problem)
    code, output = shell(BUILD, timeout=1800)
    assert code == 0 and UF2 in output, output
    # The file step 2 copies to the RPI-RP2 drive is the one the emulated chip boots.
    assert os.path.samefile(pico.IMAGE, os.path.join(ROOT, UF2))
    with open(pico.IMAGE, "rb") as f:
        assert f.read(4) == b"UF2\n"
    # The emulated chip has no radio: its site file names the UART tunnel that stands in for
    # it, whose socket module goes onto the flash first (a real Pico W needs neither).
    values = files(tmp_path, pointed_at(cloud, tmp_path), SECRET, os.path.join(ROOT, "pico_emulator", "site.json"))
    code, output = shell(filled(CHECK, values))
    assert code == 0 and "problem:" not in output, output
    flash = str(tmp_path / "pico.bin")
    before = len(registrations(cloud))
    board = Console([sys.executable, os.path.join(ROOT, "pico_emulator", "pico.py"), flash])
    try:
        port = board.wait_for(r"emulated Pico W on (/dev/pts/\d+)").group(1)
        proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "mpremote"), "connect", port, "fs", "cp",
                               pico.SOCKET_MODULE, ":socket.py"], capture_output=True, text=True, timeout=CHIP_WAIT)
        assert proc.returncode == 0, proc.stdout + proc.stderr + board.text
        code, output = shell(filled(PROVISION, dict(values, **{"/dev/ttyACM0": port})), timeout=900)
        assert code == 0 and "1 of 1 board(s) provisioned" in output, output + board.text
    finally:
        assert board.ctrl_c() == 0, board.text
    assert len(registrations(cloud)) == before  # provisioning registers nothing

    board = Console([sys.executable, os.path.join(ROOT, "pico_emulator", "pico.py"), flash])  # power on
    try:
        board.wait_for(r"emulated Pico W on /dev/pts/\d+")
        name = boot_log(board, CHIP_WAIT)
    finally:
        assert board.ctrl_c() == 0, board.text
    transcript("README quick start, Pico W image", board.text)
    assert SECRET not in board.text
    assert [r["result"] for r in registrations(cloud, name)] == ["ok"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served(url, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status == 200
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class _Sink:
    # The console of a board started here goes nowhere but its own record (board.console).
    def write(self, text):
        pass

    def flush(self):
        pass


@pytest.mark.long
def test_quick_start_stock_micropython_with_mip(tmp_path, cloud):
    before = len(registrations(cloud))
    code, output = shell(MIP_INDEX, timeout=600)
    assert code == 0, output
    port = str(free_port())
    server = Console(["bash", "-c", ACTIVATE + " && exec " + SERVE.replace("8000", port)], env=ENV)
    image = str(tmp_path / "stock.img")
    try:
        served("http://localhost:%s/dynreg.json" % port)
        # A board on stock firmware: nothing of dynreg or umqtt.simple until mip installs it.
        with VirtualBoard(image, fresh=True, stock=True, soft_reset=True, echo=_Sink()) as board:
            code, output = shell(filled(MIP_INSTALL, {"/dev/ttyUSB0": board.port, "8000": port}))
            assert code == 0 and "Done" in output, output + board.console_text()
            # Steps 3 to 6 of the first quick start; the unix port is online already and
            # needs nothing of the site file.
            (tmp_path / "site-empty.json").write_text("{}")
            values = files(tmp_path, pointed_at(cloud, tmp_path), SECRET, str(tmp_path / "site-empty.json"))
            code, output = shell(filled(PROVISION, dict(values, **{"/dev/ttyACM0": board.port})))
            assert code == 0 and "1 of 1 board(s) provisioned" in output, output + board.console_text()
    finally:
        server.ctrl_c()
    assert len(registrations(cloud)) == before  # provisioning registers nothing

    with VirtualBoard(image, boot=True, stock=True, soft_reset=True, wait_for_repl=False, echo=_Sink()) as board:
        deadline = time.monotonic() + WAIT
        while b"published status on" not in board.console and time.monotonic() < deadline:
            time.sleep(0.1)
        text = board.console_text()
    transcript("README quick start, stock firmware with mip", text)
    assert SECRET not in text
    name = re.search(r"dynreg: registering %s/(\w+) with tencent" % PRODUCT, text).group(1)
    for line in ("dynreg: credential stored in device_info.json", "dynreg: MQTT connected",
                 "published status on %s/%s/data" % (PRODUCT, name)):
        assert line in text, text
    assert [r["result"] for r in registrations(cloud, name)] == ["ok"]

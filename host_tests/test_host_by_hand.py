# The virtual line as a person runs it by hand: each command that a file header or a doc gives
# for the virtual boards is run here as written, from the repository root with the paths a
# fresh clone has; only what a person would fill in differs (the pty a board got, the image
# and product files, which live in a temporary folder here, and the emulator's ports, free
# ones here where `make cloud` has its defaults). The emulator is the tests' own
# (running_emulator), set up as the doc's add-product line sets up `make cloud`'s.
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from cloud_emulator.testing import running_emulator
from e2e import ROOT, registrations

sys.path.insert(0, os.path.join(ROOT, "pico_emulator"))
import pico  # noqa: E402

PRODUCT = "BENCH00001"  # as in boards/README.md
SECRET = "by-hand-Pr0duct-S3cret-0123"
WAIT = 120  # seconds: the bound of every wait, far above what any step needs
# The docs' `dynreg ...` lines run as in a shell with the venv active (.venv/bin first on PATH).
VENV_ON_PATH = dict(os.environ, PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""))


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def header_command(path, marker):
    # The command line in a file's header comment: the line holding `marker`.
    [line] = [line[1:].strip() for line in read(path).splitlines() if line.startswith("#") and marker in line]
    return line


def doc_lines(path, *lines):
    # Each line must be in the doc as written (an indented code block).
    text = read(path)
    for line in lines:
        assert "    " + line + "\n" in text, "%s no longer shows: %s" % (path, line)
    return lines


class Console:
    # A process whose stdout is read as it comes; wait_for() a text in it.
    def __init__(self, command, **kwargs):
        self.text = ""
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        cwd=ROOT, **kwargs)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            self.text += line

    def wait_for(self, pattern, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.text)
            if match:
                return match
            if self.process.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)  # the rest of its output
                raise AssertionError("no %r (exit %s):\n%s" % (pattern, self.process.poll(), self.text))
            time.sleep(0.05)

    def ctrl_c(self):
        # Ctrl-C, as a person stops the board: it ends cleanly, and nothing of it is left running.
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self.thread.join(5)
        return code


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    # 60 s a request: the emulated Pico W runs at a third of real time, slower on a busy machine.
    with running_emulator(tmp_path_factory.mktemp("cloud"), client_timeout=60) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100)
        yield cloud


@pytest.fixture
def product(tmp_path, cloud):
    # product_info.json as boards/README.md has a person write it (its ports the emulator's),
    # and the secret file that add-product --generate-secret writes.
    info = tmp_path / "product_info.json"
    info.write_text(json.dumps({"dynreg": 1, "cloud": "tencent", "product_id": PRODUCT,
                                "device_name_from": "unique_id",
                                "register_url": "https://localhost:%d" % cloud.https_port,
                                "mqtt_url": "mqtts://localhost:%d" % cloud.mqtts_port, "credential": {"psk": ""}}))
    secret = tmp_path / "secret.txt"  # so named, tools/scan_secrets.py takes it for the store it is
    secret.write_text(SECRET + "\n")
    return {"product_info.json": str(info), "build/cloud/ca.der": cloud.ca_der_path,
            "build/bench-secret.txt": str(secret), "build/bench.img": str(tmp_path / "bench.img"),
            "build/pico.bin": str(tmp_path / "pico.bin")}


def filled(line, values):
    for written, value in values.items():
        line = line.replace(written, value)
    return line


def test_run_py_header_command_boots_the_application(tmp_path, cloud, product):
    # boards/unix/run.py: "MICROPYPATH=.frozen:firmware build/firmware/unix/micropython
    # boards/unix/run.py IMAGE [--format] [--put SRC DEST ...] [--no-main]".
    command = header_command(os.path.join("boards", "unix", "run.py"), "boards/unix/run.py IMAGE")
    doc = json.loads(open(product["product_info.json"]).read())
    doc.update(product_secret=SECRET, device_name="by-hand-run", ca="ca.der")
    (tmp_path / "run").mkdir()
    info = tmp_path / "run" / "device_info.json"
    info.write_text(json.dumps(doc))
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"boot_attempts": 1, "sessions": 1}))
    puts = "--put %s device_info.json --put %s ca.der --put %s site.json" % (info, cloud.ca_der_path, site)
    command = command.split(" IMAGE ")[0] + " %s --format %s" % (tmp_path / "run.img", puts)
    proc = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=WAIT)
    output = proc.stdout + proc.stderr
    assert "ImportError" not in output and "published status on %s/by-hand-run/data" % PRODUCT in output, output
    assert proc.returncode == 0 and SECRET not in output
    assert len(registrations(cloud, "by-hand-run")) == 1


def test_repl_py_header_command_gives_a_repl_on_the_image(tmp_path):
    command = header_command(os.path.join("boards", "unix", "repl.py"), "boards/unix/repl.py IMAGE")
    command = command.split(" IMAGE ")[0] + " %s --format" % shlex.quote(str(tmp_path / "repl.img"))
    proc = subprocess.run(command, shell=True, cwd=ROOT, input="import os\nprint(os.getcwd(), 6 * 7)\n",
                          capture_output=True, text=True, timeout=WAIT)
    assert "/flash 42" in proc.stdout, proc.stdout + proc.stderr


BOARD = ".venv/bin/python boards/unix/serial_board.py build/bench.img --format"
PROVISION = ("dynreg provision --ports /dev/pts/5 --info product_info.json --ca build/cloud/ca.der "
             "--secret-file build/bench-secret.txt --app firmware")
POWER_ON = ".venv/bin/python boards/unix/serial_board.py build/bench.img --boot"


def test_the_virtual_bench_by_hand_with_dynreg_provision(cloud, product):
    # boards/README.md "By hand": a virtual board, `dynreg provision` as for a real board (its
    # mpremote soft-resets the board before each step: the virtual board starts again, as a
    # board does), then Ctrl-C and power on: the boot log on the console, registered and online.
    doc_lines(os.path.join("boards", "README.md"), BOARD, PROVISION, POWER_ON)
    assert BOARD.replace("build/bench.img", "IMAGE").split(" --")[0] in header_command(
        os.path.join("boards", "unix", "serial_board.py"), "serial_board.py IMAGE")
    before = len(registrations(cloud))
    board = Console(shlex.split(filled(BOARD, product)))
    try:
        port = board.wait_for(r"virtual board on (/dev/pts/\d+)").group(1)
        proc = subprocess.run(filled(PROVISION, dict(product, **{"/dev/pts/5": port})), shell=True, cwd=ROOT,
                              env=VENV_ON_PATH, capture_output=True, text=True, timeout=WAIT)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "1 of 1 board(s) provisioned" in output, output + board.text
        assert "Input/output error" not in output and SECRET not in output
        assert board.process.poll() is None and "MPY: soft reboot" in board.text, board.text  # reset, not ended
    finally:
        assert board.ctrl_c() == 0, board.text
    assert len(registrations(cloud)) == before  # provisioning registers nothing

    board = Console(shlex.split(filled(POWER_ON, product)))
    try:
        board.wait_for(r"virtual board on /dev/pts/\d+")
        # The boot log, as it comes: the board registers and stays online.
        name = board.wait_for(r"dynreg: registering %s/(\w+) with tencent" % PRODUCT).group(1)
        board.wait_for(r"published status on %s/%s/data" % (PRODUCT, name))
    finally:
        assert board.ctrl_c() == 0, board.text
    assert SECRET not in board.text
    [registration] = registrations(cloud, name)
    assert registration["result"] == "ok"


def test_a_virtual_board_whose_process_ends_says_so(tmp_path):
    # Not silently: a board whose unix process ends by itself without a soft reset (here: its
    # image holds no filesystem) says why, and that it stopped; and it never offers a REPL
    # outside its flash, where a tool would write into the host's folder.
    image = tmp_path / "garbage.img"
    image.write_bytes(b"\0" * 8192)
    board = Console([sys.executable, os.path.join(ROOT, "boards", "unix", "serial_board.py"), str(image), "--boot"])
    try:
        board.wait_for(r"board stopped: its process ended \(exit status 1\)")
        assert board.process.wait(30) == 1
        assert "virtual board: cannot mount %s (OSError 84): give an image made with --format" % image in board.text
    finally:
        if board.process.poll() is None:
            board.ctrl_c()


PICO = ".venv/bin/python pico_emulator/pico.py build/pico.bin"
SOCKET = ".venv/bin/mpremote connect /dev/pts/6 fs cp pico_emulator/board/socket.py :socket.py"
PICO_PROVISION = ("dynreg provision --ports /dev/pts/6 --info product_info.json --ca build/cloud/ca.der "
                  "--secret-file build/bench-secret.txt --site pico_emulator/site.json --app firmware")


def test_the_emulated_pico_w_by_hand(cloud, product):
    # boards/README.md "The emulated Pico W leg": the radio's stand-in onto the flash, the
    # product provisioned, then powered off and on: the Pico W image registers and publishes.
    problem = pico.check_ready()
    if problem:
        pytest.fail("the emulated Pico W cannot run: " + problem)
    doc_lines(os.path.join("boards", "README.md"), PICO, SOCKET, PICO_PROVISION)
    board = Console(shlex.split(filled(PICO, product)))
    try:
        port = board.wait_for(r"emulated Pico W on (/dev/pts/\d+)").group(1)
        values = dict(product, **{"/dev/pts/6": port})
        proc = subprocess.run(shlex.split(filled(SOCKET, values)), cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr + board.text
        proc = subprocess.run(filled(PICO_PROVISION, values), shell=True, cwd=ROOT, env=VENV_ON_PATH,
                              capture_output=True, text=True, timeout=900)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "1 of 1 board(s) provisioned" in output, output + board.text
        assert SECRET not in output
    finally:
        assert board.ctrl_c() == 0, board.text
    board = Console(shlex.split(filled(PICO, product)))
    try:
        board.wait_for(r"emulated Pico W on /dev/pts/\d+")
        board.wait_for(r"clock: set from localhost", timeout=600)
        name = board.wait_for(r"dynreg: registering %s/(\w+) with tencent" % PRODUCT, timeout=600).group(1)
        board.wait_for(r"published status on %s/%s/data" % (PRODUCT, name), timeout=600)
    finally:
        assert board.ctrl_c() == 0, board.text
    transcript = os.environ.get("DYNREG_TRANSCRIPT")
    if transcript:  # for the secrets scan of `make test`
        with open(transcript, "a") as f:
            f.write("-- emulated Pico W by hand --\n" + board.text)
    assert SECRET not in board.text
    assert [r["result"] for r in registrations(cloud, name)] == ["ok"]

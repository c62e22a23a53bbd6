# Host side (CPython) of the emulated Pico W: the RPI_PICO_W_DYNREG image that
# tools/firmware.sh built, booted in rp2040js by run-pico.mjs, either running scripts through
# the raw REPL (run) or as a board on a pseudo-terminal that mpremote and `dynreg provision`
# open as they would /dev/ttyACM0 (PicoBoard).
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "boards", "unix"))
import runtime  # noqa: E402
from serial_board import VirtualBoard, serve  # noqa: E402

RUNNER = os.path.join(HERE, "run-pico.mjs")
IMAGE = os.path.join(runtime.PICOW_DIR, "firmware.uf2")
SOCKET_MODULE = os.path.join(HERE, "board", "socket.py")  # the radio's stand-in, for the flash root
CUT = 4  # run-pico.mjs's exit status after a power cut
RESET = 5  # ... after a reset (the watchdog bit, or machine.reset()): boot it again from its flash


def node():
    return shutil.which("node") or "/usr/bin/node"


def check_ready():
    # None when the emulated Pico can run here, else what is missing and how to get it.
    if not os.path.exists(node()):
        return "node is not installed (tools/bootstrap.sh installs it)"
    if not os.path.isdir(os.path.join(HERE, "node_modules", "rp2040js")):
        return "rp2040js is not installed: cd pico_emulator && npm ci (tools/bootstrap.sh does it)"
    if not os.path.exists(IMAGE):
        return "no Pico W image: make firmware-picow"
    return None


def run(*scripts, puts=(), flash_load=None, flash_save=None, tunnel=False, cut_at=None, torn=False,
        unique_id=None, timeout=900, env=None, image=None):
    """Boots the image (`image`, by default the Pico W image as built; over `flash_load` when given), copies `puts` [(host path, board path)] to
    its flash, runs each script (code) through the raw REPL. Returns the CompletedProcess;
    stderr holds the runner's "[emu] ..." lines with each script's emulated time."""
    args = [node(), RUNNER, "--timeout", str(timeout), "--image", image or IMAGE]  # the image over the flash
    if flash_load:
        args += ["--flash-load", flash_load]
    if flash_save:
        args += ["--flash-save", flash_save]
    if tunnel:
        args.append("--tunnel")
    if cut_at:
        args += ["--cut-at", str(cut_at)] + (["--cut-torn"] if torn else [])
    if unique_id:
        args += ["--unique-id", unique_id]
    for src, dest in puts:
        args += ["--put", "%s:%s" % (src, dest)]
    for code in scripts:
        args += ["--exec", code]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout + 30, cwd=HERE,
                          env=dict(os.environ, **(env or {})))


def emulated_seconds(stderr):
    # [(script name, emulated s, wall s)] from the runner's lines.
    import re

    return [(m.group(1), float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"\[emu\] ([^\n]+?): ([\d.]+) s emulated, ([\d.]+) s wall", stderr)]


class PicoBoard(VirtualBoard):
    """The emulated Pico W on a pseudo-terminal (run-pico.mjs --serial): `port` is the host's
    end, for mpremote. The flash is kept in `flash` (loaded at start when it exists, saved at
    stop), so a board can be stopped and booted again, as a power cycle does."""

    def __init__(self, flash, tunnel=True, unique_id=None, env=None, ready_timeout=60.0, echo=None):
        super().__init__(flash, env=env, ready_timeout=ready_timeout, echo=echo)
        self.flash = flash
        self.tunnel = tunnel
        self.unique_id = unique_id
        self.log = None

    def command(self):
        args = [node(), RUNNER, "--serial", "--image", IMAGE, "--flash-save", self.flash]
        if os.path.exists(self.flash):
            args[3:3] = ["--flash-load", self.flash]
        if self.tunnel:
            args.append("--tunnel")
        if self.unique_id:
            args += ["--unique-id", self.unique_id]
        return args

    def start(self):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="pico-emu-", suffix=".log")
        return super().start()

    def stderr(self):
        return self.log

    def ready(self, timeout):
        # The chip has enumerated its USB serial port: a tool may open it now.
        deadline = time.monotonic() + timeout
        while "USB CDC connected" not in self.runner_log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("emulated Pico: no USB serial port (exit %s):\n%s"
                                   % (self.process.poll(), self.runner_log()))
            time.sleep(0.05)

    def runner_log(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        super().stop()  # SIGTERM: the runner saves the flash before it exits
        if self.log:
            self.log.close()


def main(argv):
    # .venv/bin/python pico_emulator/pico.py FLASH.bin: an emulated Pico W on a pty, until Ctrl-C,
    # its console printed as it comes. To run firmware/, its flash needs board/socket.py, the
    # radio's stand-in, and site.json (this folder's): boards/README.md, "The emulated Pico W leg".
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: pico.py FLASH.bin  (the flash is loaded when it exists, saved at the end)", file=sys.stderr)
        return 2
    return serve(PicoBoard(argv[0], echo=sys.stdout),
                 "emulated Pico W on %s (flash " + argv[0] + "); its console follows; Ctrl-C powers it off")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

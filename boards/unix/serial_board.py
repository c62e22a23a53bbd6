# Host side (CPython) of the virtual bench: the unix port running boards/unix/repl.py on a
# pseudo-terminal, and a second pseudo-terminal whose /dev/pts/N a host tool opens as it
# would a board's USB serial port. A thread copies bytes between the two, as the board's
# USB-serial bridge does, and keeps everything the board printed (the console).
#
#   .venv/bin/python boards/unix/serial_board.py IMAGE [--format] [--boot]
#   -> "virtual board on /dev/pts/N"; then: .venv/bin/mpremote connect /dev/pts/N ...
# Run so, by hand, it prints the board's console as it comes (the boot log with --boot), and a
# soft reset (mpremote's, Ctrl-D, sys.exit()) restarts the board on its image as a board
# restarts, so mpremote and `dynreg provision` work as with a board; Ctrl-C powers it off. The
# tests' VirtualBoard ends at a soft reset instead, and its mpremote uses `resume`.
#
# Two terminals, not one: a tool that opened the board's own terminal would read the bytes
# meant for the board. Both are raw, so "\n" is not turned into "\r\n" on the way.
import hashlib
import os
import pty
import select
import subprocess
import sys
import threading
import time
import tty

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from runtime import MICROPYTHON, micropypath  # noqa: E402

REPL = os.path.join(ROOT, "boards", "unix", "repl.py")


class VirtualBoard:
    def __init__(self, image, fresh=False, boot=False, stock=False, env=None, ready_timeout=10.0,
                 soft_reset=False, echo=None, wait_for_repl=True):
        self.image = image
        self.ready_timeout = ready_timeout
        self.fresh = fresh
        self.boot = boot
        self.stock = stock
        self.env = env or {}
        self.console = bytearray()
        self.port = None
        self.process = None
        # By hand (main()): a soft reset starts the board again, as a board does, instead of
        # ending it; the console goes to `echo` as it comes; with --boot the port is
        # announced at once, while main.py runs (it may stay online for good).
        self.soft_reset = soft_reset
        self.echo = echo
        self.wait_for_repl = wait_for_repl
        self.raw = False  # started again after a soft reset in the raw REPL
        self._raw_pending = False
        self.restarts = 0

    def start(self):
        if self.process is not None:
            raise RuntimeError("virtual board already started: one process per image")
        board_end, board_tty = pty.openpty()
        host_end, host_tty = pty.openpty()
        for fd in (board_tty, host_tty):
            tty.setraw(fd)
        self._board_end, self._host_end, self._host_tty = board_end, host_end, host_tty
        self.port = os.ttyname(host_tty)
        self._spawn(board_tty)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()
        try:
            self.ready(self.ready_timeout)
        except RuntimeError:
            self.stop()
            raise
        # What the board printed so far also waits in the host terminal: drop it, so that a
        # long boot log cannot fill the terminal before a tool connects.
        _drain(self._host_tty)
        return self

    def _spawn(self, board_tty):
        self._spawned_at = len(self.console)
        env = dict(os.environ, MICROPYPATH=micropypath(), DYNREG_UNIQUE_ID=self.chip_id())
        env.update(self.env)
        self.process = subprocess.Popen(self.command(), stdin=board_tty, stdout=board_tty,
                                        stderr=self.stderr() or board_tty, env=env, cwd=ROOT,
                                        start_new_session=True)
        os.close(board_tty)

    def chip_id(self):
        # The chip id firmware/board.py names the unix port's device by (env DYNREG_UNIQUE_ID,
        # unless `env` sets it): one per image, the board's flash, so that every virtual board
        # of a batch has its own and keeps it across power cycles.
        return hashlib.sha256(os.path.realpath(self.image).encode()).hexdigest()[:16]

    def command(self):
        return [MICROPYTHON, "-i", REPL, self.image] + (["--format"] if self.fresh else []) + (
            ["--boot"] if self.boot else []) + (["--stock"] if self.stock else []) + (["--raw"] if self.raw else [])

    def stderr(self):
        return None  # the board's stderr is its console, as on a board

    def ready(self, timeout):
        if self.wait_for_repl:
            self.wait_for(b">>> ", timeout)  # with --boot: after main.py

    def _relay(self):
        # The host side's own end stays open (self._host_tty), so reads never fail while no
        # tool is connected; what the board prints then waits in the terminal's buffer.
        while not self._stop.is_set():
            ready, _, _ = select.select([self._board_end, self._host_end], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # the board process ended
                    data = b""
                if fd == self._board_end:
                    if not data:
                        if self._restart():
                            break  # select again, on the new process's terminal
                        return
                    self._to_host(data)
                    self.console += data
                    self._echo(data)
                    if self._raw_pending and b">>> " in self.console[self._spawned_at:]:
                        self._raw_pending = False
                        os.write(self._board_end, b"\x01")
                elif data:
                    try:
                        os.write(self._board_end, data)
                    except OSError:  # the board process is ending
                        pass

    def _restart(self):
        # The unix process ended. On a board that is a soft reset (Ctrl-D, sys.exit(),
        # mpremote's reset): "MPY: soft reboot", then boot.py and, unless its REPL was in raw
        # mode, main.py; in raw mode it comes back to the raw REPL. So, with soft_reset, a new
        # process on the same image, told to enter the raw REPL when the old one was in it.
        # Not when it never reached its REPL (a failure at start: it would loop), nor when a
        # signal ended it (killed: a power cut, not a reset).
        since = bytes(self.console[self._spawned_at:])
        if not self.soft_reset or self._stop.is_set() or (b">>> " not in since and b"raw REPL" not in since):
            return False
        if self.process.wait() < 0:
            return False
        os.close(self._board_end)
        self.raw = since.rfind(b"raw REPL; CTRL-B to exit") > since.rfind(b">>> ")
        self.fresh, self.boot = False, not self.raw
        reboot = b"MPY: soft reboot\r\n"
        self._to_host(reboot)
        self.console += reboot
        self._echo(reboot)
        self._board_end, board_tty = pty.openpty()
        tty.setraw(board_tty)
        self._spawn(board_tty)
        self.restarts += 1
        # Ctrl-A once its REPL is up: the raw REPL, which the board never left (sent sooner, the
        # port's terminal setup would discard it).
        self._raw_pending = self.raw
        return True

    def _to_host(self, data):
        if not self.echo:
            os.write(self._host_end, data)
            return
        # By hand no tool may be reading: wait a second for room, then drop the rest, as a
        # board's USB serial port drops what no host reads, rather than stall the board.
        os.set_blocking(self._host_end, False)
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._host_end, view):]
            except BlockingIOError:
                if not select.select([], [self._host_end], [], 1.0)[1]:
                    return

    def _echo(self, data):
        if self.echo:
            text = data.decode("utf-8", "replace").replace("\r", "")
            self.echo.write("".join(c for c in text if (c >= " " or c in "\n\t") and c != "\ufffd"))
            self.echo.flush()

    def running(self):
        # The board is on: its process runs, or a soft reset is starting it again.
        return self._thread.is_alive()

    def wait_for(self, text, timeout):
        deadline = time.monotonic() + timeout
        while text not in self.console:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("virtual board: no %r on its console (exit %s):\n%s"
                                   % (text, self.process.poll(), self.console_text()))
            time.sleep(0.02)

    def console_text(self):
        return self.console.decode("utf-8", "replace")

    def stop(self):
        self.soft_reset = False  # what ends now stays ended
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stop.set()
        _drain(self._host_tty)  # a relay blocked on a full host terminal can then finish
        self._thread.join(2)
        for fd in (self._board_end, self._host_end, self._host_tty):
            os.close(fd)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _drain(fd):
    while select.select([fd], [], [], 0.05)[0]:
        os.read(fd, 4096)


def main(argv):
    if not argv or argv[0].startswith("-"):
        print("usage: serial_board.py IMAGE [--format] [--boot]", file=sys.stderr)
        return 2
    boot = "--boot" in argv
    return serve(VirtualBoard(argv[0], fresh="--format" in argv, boot=boot, soft_reset=True, echo=sys.stdout,
                              wait_for_repl=not boot),
                 "virtual board on %s (image " + argv[0] + "); its console follows; Ctrl-C stops it")


def serve(board, banner):
    # Runs `board` until it ends, Ctrl-C or SIGTERM, after printing `banner` % its port; what
    # it prints comes here too (board.echo).
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        board.start()
    except RuntimeError as e:
        print(e, flush=True)
        return 1
    try:
        print(banner % board.port, flush=True)
        while board.running():
            time.sleep(0.2)
        print("\nboard stopped: its process ended (exit status %s)" % board.process.poll(), flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        board.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

# Host side (CPython) of the virtual bench: the unix port running boards/unix/repl.py on a
# pseudo-terminal, and a second pseudo-terminal whose /dev/pts/N a host tool opens as it
# would a board's USB serial port. A thread copies bytes between the two, as the board's
# USB-serial bridge does, and keeps everything the board printed (the console).
#
#   .venv/bin/python boards/unix/serial_board.py IMAGE [--format] [--boot]
#   -> "virtual board on /dev/pts/N"; then: .venv/bin/mpremote connect /dev/pts/N resume ...
#
# Two terminals, not one: a tool that opened the board's own terminal would read the bytes
# meant for the board. Both are raw, so "\n" is not turned into "\r\n" on the way.
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
    def __init__(self, image, fresh=False, boot=False, stock=False, env=None, ready_timeout=10.0):
        self.image = image
        self.ready_timeout = ready_timeout
        self.fresh = fresh
        self.boot = boot
        self.stock = stock
        self.env = env or {}
        self.console = bytearray()
        self.port = None
        self.process = None

    def start(self):
        if self.process is not None:
            raise RuntimeError("virtual board already started: one process per image")
        board_end, board_tty = pty.openpty()
        host_end, host_tty = pty.openpty()
        for fd in (board_tty, host_tty):
            tty.setraw(fd)
        self._board_end, self._host_end, self._host_tty = board_end, host_end, host_tty
        self.port = os.ttyname(host_tty)
        env = dict(os.environ, MICROPYPATH=micropypath())
        env.update(self.env)
        self.process = subprocess.Popen(self.command(), stdin=board_tty, stdout=board_tty,
                                        stderr=self.stderr() or board_tty, env=env, cwd=ROOT,
                                        start_new_session=True)
        os.close(board_tty)
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

    def command(self):
        return [MICROPYTHON, "-i", REPL, self.image] + (["--format"] if self.fresh else []) + (
            ["--boot"] if self.boot else []) + (["--stock"] if self.stock else [])

    def stderr(self):
        return None  # the board's stderr is its console, as on a board

    def ready(self, timeout):
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
                        return
                    os.write(self._host_end, data)
                    self.console += data
                elif data:
                    os.write(self._board_end, data)

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
    return serve(VirtualBoard(argv[0], fresh="--format" in argv, boot="--boot" in argv),
                 "virtual board on %s (image " + argv[0] + "); Ctrl-C stops it")


def serve(board, banner):
    # Runs `board` until it ends or Ctrl-C, after printing `banner` % its port.
    with board:
        print(banner % board.port, flush=True)
        try:
            while board.process.poll() is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

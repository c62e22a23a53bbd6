# The unix port as a board that a host reaches over a serial line (see serial_board.py):
# mounts the littlefs2 image at /flash, makes it the working folder and gives sys.path a
# board's shape, then, with --boot, runs boot.py and main.py from the image as a board does
# at power-on (--raw: boot.py only, as after a soft reset in the raw REPL). Run with
# `micropython -i` so that the port's own REPL follows, with the raw REPL and raw-paste mode
# that mpremote speaks:
#   MICROPYPATH=.frozen build/firmware/unix/micropython -i boards/unix/repl.py IMAGE [--format] [--boot] [--stock]
# dynreg and umqtt.simple are frozen into the unix build as on a board; --stock hides the
# frozen modules, as on stock firmware where mip installs both. A soft reset ends the unix
# process: serial_board.py run by hand starts it again (--raw after a reset in the raw REPL),
# as a board restarts; the tests' virtual boards end there, so their mpremote uses `resume`.
import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE)
from blockdev import FileBlockDevice  # noqa: E402

FLASH = "/flash"


def mount(image, fresh):
    import vfs

    device = FileBlockDevice(image, blocks=64 if fresh else None)
    if fresh:
        vfs.VfsLfs2.mkfs(device)
    vfs.mount(vfs.VfsLfs2(device), FLASH)
    os.chdir(FLASH)


def board_path(stock):
    # A board searches '' (the flash root), then its frozen modules, then /lib; mip installs
    # into the first entry that ends in /lib, so /flash/lib must come before any host folder
    # of that name.
    host = [p for p in sys.path if p not in ("", HERE, ".frozen") and not p.startswith(FLASH)]
    sys.path[:] = [""] + ([] if stock else [".frozen"]) + host + [FLASH + "/lib"]


def run_file(name):
    # As the board's pyexec does: run the file if it exists, report an error, carry on.
    try:
        os.stat(name)
    except OSError:
        return
    try:
        with open(name) as f:
            code = f.read()
        exec(code, {"__name__": "__main__", "__file__": name})
    except Exception as e:  # noqa: BLE001 -- a board prints any error and goes on to the REPL
        sys.print_exception(e)


def halt(status):
    # Ends the process: under -i the port starts its REPL after this script whatever it raised,
    # and a REPL outside /flash would let a tool write into the host's working folder.
    import ffi

    ffi.open("libc.so.6").func("v", "_exit", "i")(status)


def main(argv):
    try:
        mount(argv[0], "--format" in argv)
    except OSError as e:  # no such file, or no littlefs2 on it: no board to start
        print("virtual board: cannot mount %s (OSError %s): give an image made with --format" % (argv[0], e.args[0]))
        halt(1)
    board_path("--stock" in argv)
    if "--boot" in argv or "--raw" in argv:
        run_file("boot.py")
    if "--boot" in argv:
        run_file("main.py")


main(sys.argv[1:])

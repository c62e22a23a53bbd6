# Boots the unix port like a board: mounts a littlefs2 image file at /flash, makes it the
# working folder and runs the application's main.py. The library and umqtt.simple are frozen
# into the unix build as on a board; the application comes from MICROPYPATH:
#   MICROPYPATH=.frozen:firmware build/firmware/unix/micropython boards/unix/run.py IMAGE [--format] [--put SRC DEST ...] [--no-main]
# --format makes a fresh filesystem; --put copies host files into the image (provisioning).
import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE)
from blockdev import FileBlockDevice  # noqa: E402


def copy_into(src, dest):
    with open(src, "rb") as fin:
        data = fin.read()
    with open(dest + ".tmp", "wb") as fout:
        fout.write(data)
    os.rename(dest + ".tmp", dest)


def main(argv):
    import vfs

    image = argv[0]
    args = argv[1:]
    fresh = "--format" in args
    device = FileBlockDevice(image, blocks=64 if fresh else None)
    if fresh:
        vfs.VfsLfs2.mkfs(device)
    vfs.mount(vfs.VfsLfs2(device), "/flash")
    while "--put" in args:
        i = args.index("--put")
        copy_into(args[i + 1], "/flash/" + args[i + 2])
        args = args[:i] + args[i + 3:]
    if "--no-main" in args:
        return 0
    # MICROPYPATH's folders are relative to where the command ran (firmware/): keep them
    # found once the working folder is the flash.
    here = os.getcwd()
    sys.path[:] = [p if p in ("", ".frozen") or p.startswith("/") else here + "/" + p for p in sys.path]
    os.chdir("/flash")
    import main as app

    return app.main()


sys.exit(main(sys.argv[1:]) or 0)

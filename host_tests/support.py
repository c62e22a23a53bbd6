# Helpers shared by the test files that run on both CPython and the MicroPython unix port.
import json
import os
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"
try:
    HERE = os.path.dirname(os.path.abspath(__file__))
except (AttributeError, NameError):
    HERE = "host_tests"
if IS_MICROPYTHON and "/" in __file__:
    HERE = __file__.rsplit("/", 1)[0]


def vectors(name):
    with open(HERE + "/vectors/" + name + ".json") as f:
        return json.load(f)


def raises(kind, fn, *args, **kwargs):
    # Calls fn and returns the exception it raised, which must be `kind` (not a subclass of
    # something broader). Fails when it returns normally.
    try:
        fn(*args, **kwargs)
    except kind as e:
        return e
    raise AssertionError("%s was not raised" % kind.__name__)


def exact(kind, fn, *args, **kwargs):
    e = raises(Exception, fn, *args, **kwargs)
    if type(e) is not kind:
        raise AssertionError("expected %s, got %s: %s" % (kind.__name__, type(e).__name__, e))
    return e


class RAMBlockDevice:
    # A block device in RAM for vfs.VfsLfs2, with littlefs's extended interface.
    def __init__(self, block_size=512, blocks=128):
        self.block_size = block_size
        self.data = bytearray(block_size * blocks)

    def readblocks(self, block, buf, offset=0):
        start = block * self.block_size + offset
        buf[:] = self.data[start:start + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        start = block * self.block_size + (offset or 0)
        self.data[start:start + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return len(self.data) // self.block_size
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase
            return 0
        return None


_ram_disk = []


def _remove_tree(path):
    for entry in os.listdir(path):
        full = path + "/" + entry
        if os.stat(full)[0] & 0x4000:  # a folder
            _remove_tree(full)
            os.rmdir(full)
        else:
            os.remove(full)


def scratch_dir():
    # A fresh empty folder: on a board (the emulated Pico W) a folder on its own littlefs
    # flash; on the unix port a littlefs2 filesystem in RAM, formatted anew for each test, as
    # the boards' flash is; on CPython a temporary folder.
    if sys.platform == "rp2":
        path = "/scratch"
        try:
            _remove_tree(path)
        except OSError:
            os.mkdir(path)
        return path
    if IS_MICROPYTHON:
        import vfs

        mount_point = "/lfs"
        if _ram_disk:
            vfs.umount(mount_point)
        else:
            _ram_disk.append(RAMBlockDevice())
        vfs.VfsLfs2.mkfs(_ram_disk[0])
        vfs.mount(vfs.VfsLfs2(_ram_disk[0]), mount_point)
        return mount_point
    import tempfile

    return tempfile.mkdtemp(prefix="dynreg-test-")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


def listdir(path):
    return sorted(os.listdir(path))

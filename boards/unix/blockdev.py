# A block device backed by a file, so the unix port boots from a littlefs2 image as the
# boards boot from flash. Host-side: used by the virtual board, not frozen into firmware.
import os

BLOCK_SIZE = 4096


class FileBlockDevice:
    def __init__(self, path, blocks=None):
        if blocks is not None:
            with open(path, "wb") as f:
                f.write(b"\xff" * (blocks * BLOCK_SIZE))
        self.f = open(path, "r+b")
        self.blocks = os.stat(path)[6] // BLOCK_SIZE

    def readblocks(self, block, buf, offset=0):
        self.f.seek(block * BLOCK_SIZE + offset)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        self.f.seek(block * BLOCK_SIZE + (offset or 0))
        self.f.write(buf)
        self.f.flush()

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return BLOCK_SIZE
        if op == 6:  # erase: littlefs tolerates stale data in RAM-like media
            return 0
        return 0 if op in (1, 2, 3) else None

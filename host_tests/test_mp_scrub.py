# MicroPython only (real littlefs2 through vfs.VfsLfs2, real FatFs through vfs.VfsFat, on
# flash in RAM): once the ProductSecret is erased from the info, its old copies must be
# nowhere in the raw image. littlefs and FAT never overwrite in place: the provisioned info,
# the save's .tmp and its rewrite all leave copies in freed blocks (and, where the info is
# small enough to live inline, in the old commits of the metadata pair). The board's flow is
# replayed as it runs, each step on a fresh mount (a boot): provisioning as `dynreg provision`
# writes (<name>.tmp, then renamed), the credential saved, the secret erased at the login
# (dynreg.mqtt.spend_product_secret, which then scrubs). Without the scrub the secret is still
# in the image (so the search can fail); after it, in no form, on any geometry; and after a
# power cut at any write of the erase and the scrub, the next boot empties the filler and
# the next login scrubs again.
import os
import time

import vfs

from support import RAMBlockDevice
from power_cut_kinds import KINDS, SAVE, expected, info_text
from dynreg import mqtt, store

MOUNT = "/scrub"
PATH = MOUNT + "/device_info.json"
SECRET = "Scrub7Qv2Xk9Lp4Zt8Wn3Rj6"  # distinctive: matches nothing but itself
_TEST_SECRET = "hzvf5LF9S0isvBhDSauWMaIk"  # power_cut_kinds.SECRET, replaced by ours
# (name, filesystem, block size, blocks, options): the Pico W's littlefs (4 KiB blocks, 256-byte
# pages: an info under 512 bytes lives inline in the metadata pair), ESP32's (4 KiB blocks, the
# default 32-byte pages: the info in blocks of its own), small blocks, FAT in 512 B and 4 KiB.
FILESYSTEMS = (
    ("littlefs2 as the Pico W's", vfs.VfsLfs2, 4096, 212, {"progsize": 256}),
    ("littlefs2 as ESP32's", vfs.VfsLfs2, 4096, 64, {}),
    ("littlefs2 512-byte blocks", vfs.VfsLfs2, 512, 128, {}),
    ("FAT 512-byte sectors", vfs.VfsFat, 512, 256, {}),
    ("FAT 4 KiB sectors", vfs.VfsFat, 4096, 64, {}),
)


class Flash(RAMBlockDevice):
    # NOR flash in RAM: an erase sets a block to 0xFF (littlefs erases every block before it
    # programs it). Counts what is written; from write number `cut` on, nothing lands (the
    # power is gone: EIO to littlefs, silence to FAT, as test_mp_power_loss.py cuts).
    def __init__(self, block_size, blocks, image=None, cut=None):
        super().__init__(block_size, blocks)
        if image is not None:
            self.data[:] = image
        self.cut = cut
        self.writes = self.written = self.erases = 0

    def writeblocks(self, block, buf, offset=None):
        self.writes += 1
        if self.cut is not None and self.writes >= self.cut:
            return -5 if offset is not None else 0
        self.written += len(buf)
        super().writeblocks(block, buf, offset)
        return 0

    def ioctl(self, op, arg):
        if op == 6:
            self.erases += 1
            if self.cut is None or self.writes < self.cut:
                start = arg * self.block_size
                self.data[start:start + self.block_size] = b"\xff" * self.block_size
            return 0
        return super().ioctl(op, arg)


def _mount(fs, device):
    try:
        vfs.umount(MOUNT)
    except OSError:
        pass
    vfs.mount(fs[1](device, **fs[4]), MOUNT)


def _copies(image):
    # Where the secret is: (offset, form) for the whole secret and each of its halves (a copy
    # across a block boundary), in every form it could be stored in: as written (JSON leaves
    # it as it is: letters and digits only) and in base64.
    from binascii import b2a_base64

    forms = [SECRET[:12], SECRET[12:], b2a_base64(SECRET.encode())[:-1].decode()]
    found = []
    for form in forms:
        i = image.find(form.encode())
        while i >= 0:
            found.append((i, form[:3]))
            i = image.find(form.encode(), i + 1)
    return found


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _board(fs, fields, credential, erase=True):
    # A board through its first boot, each step on a fresh mount: provisioned, the credential
    # saved, and (erase) the secret erased as the login does, the scrub not run. Its flash.
    device = Flash(fs[2], fs[3])
    fs[1].mkfs(device, **fs[4])
    _mount(fs, device)
    for name, data in (("ca.der", bytes(range(256)) * 3), ("device_info.json", info_text(fields).replace(
            _TEST_SECRET, SECRET).encode()), ("site.json", b'{"boot_attempts": 3}')):
        _write(MOUNT + "/" + name + ".tmp", data)  # provision.py: every file copied, then renamed
        os.rename(MOUNT + "/" + name + ".tmp", MOUNT + "/" + name)
    _mount(fs, device)
    store.load(PATH).save_credential(credential)
    _mount(fs, device)
    if not erase:
        return device
    info = store.load(PATH)
    assert info.erase_product_secret() is True
    assert info.product_secret is None and SECRET.encode() not in _read(PATH)
    return device


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _blocks(device, copies):
    return sorted(set(i // device.block_size for i, _ in copies))


def _check_board(credential):
    # The board after the scrub: its files as before, no filler left.
    info = store.load(PATH)
    assert info.credential == expected(credential) and info.product_secret is None, "the info changed"
    assert not info.unscrubbed and store.FILL not in os.listdir(MOUNT), "a filler left"
    assert _read(MOUNT + "/ca.der") == bytes(range(256)) * 3, "another file damaged"
    if "cert" in credential:
        assert info.read_credential_file("cert_file") == credential["cert"].encode()


def test_no_copy_of_the_erased_secret_is_left_in_the_raw_image_of_any_filesystem():
    failures = []
    for fs in FILESYSTEMS:
        left = 0
        for name, fields, credential, action in KINDS:
            if action != SAVE or "group_key" in fields:  # Azure's group key: the same path
                continue
            device = _board(fs, fields, credential)
            before = _copies(bytes(device.data))
            left += bool(before)
            writes, written, erases = device.writes, device.written, device.erases
            t0 = time.ticks_ms()
            filled = store.scrub_free_space(MOUNT)
            ms = time.ticks_diff(time.ticks_ms(), t0)
            after = _copies(bytes(device.data))
            if after:
                failures.append("%s, %s: the secret at %s" % (fs[0], name, after[:4]))
            _mount(fs, device)
            _check_board(credential)
            print("scrub: %-26s %-28s copies before in blocks %s; %d B filled, %d writes (%d B), "
                  "%d erases of %d blocks, %d ms" % (fs[0], name, _blocks(device, before), filled,
                                                      device.writes - writes, device.written - written,
                                                      device.erases - erases, fs[3], ms))
        # FAT rewrites a file in its own clusters: only the certificate device's save leaves a
        # copy there (its info's .tmp, in clusters that the key files moved past). littlefs, every time.
        if not left or fs[1] is vfs.VfsLfs2 and left < 5:
            failures.append("%s: without the scrub, copies in only %d boards: the search finds nothing" % (fs[0], left))
    assert not failures, failures


def test_the_login_erases_and_scrubs_and_says_so():
    # dynreg.mqtt.connect's last step, as it runs after the broker accepted the login.
    fs = FILESYSTEMS[0]
    name, fields, credential, _ = KINDS[1]
    device = _board(fs, fields, credential, erase=False)
    info = store.load(PATH)
    lines = []
    mqtt.spend_product_secret(info, {"log": lines.append})
    assert lines[0] == "dynreg: ProductSecret erased from %s" % PATH, lines
    assert lines[1].startswith("dynreg: free flash scrubbed (") and lines[1].endswith(" KiB)"), lines
    assert not _copies(bytes(device.data))
    lines = []
    mqtt.spend_product_secret(info, {"log": lines.append})  # the next login: nothing left to do
    assert lines == []


class Sparse(Flash):
    # A large flash that holds only the blocks written.
    def __init__(self, block_size, blocks):
        super().__init__(block_size, 1)
        self.blocks = blocks
        self.stored = {}

    def readblocks(self, block, buf, offset=0):
        for i in range(len(buf) // self.block_size):
            buf[i * self.block_size:(i + 1) * self.block_size] = self.stored.get(block + i, bytes(self.block_size))

    def writeblocks(self, block, buf, offset=None):
        self.writes += 1
        for i in range(len(buf) // self.block_size):
            self.stored[block + i] = bytes(buf[i * self.block_size:(i + 1) * self.block_size])

    def ioctl(self, op, arg):
        return self.blocks if op == 4 else super().ioctl(op, arg)


def test_a_filesystem_larger_than_a_board_is_not_filled():
    # 32 MiB free (a card, or the host's own disk under the unix port): left alone.
    fs = ("FAT 32 MiB", vfs.VfsFat, 512, 65536 + 256, {})
    device = Sparse(fs[2], fs[3])
    fs[1].mkfs(device)
    _mount(fs, device)
    writes = device.writes
    assert store.scrub_free_space(MOUNT) is None
    assert device.writes - writes < 8 and os.listdir(MOUNT) == []  # the filler's name, created and removed
    vfs.umount(MOUNT)


def test_a_power_cut_in_the_erase_or_the_scrub_is_mended_by_the_next_boot_and_login():
    # Cut at every write of the login's erase and scrub: the next boot (store.load) empties
    # the filler, and the next login finishes: the secret erased if it was not, the free
    # space scrubbed again. Small geometries, every cut point.
    failures = []
    for fs in (FILESYSTEMS[2], FILESYSTEMS[3]):
        name, fields, credential, _ = KINDS[2]  # the certificate device: copies on FAT too
        ready = Flash(fs[2], fs[3])
        fs[1].mkfs(ready)
        _mount(fs, ready)
        _write(PATH, info_text(fields).replace(_TEST_SECRET, SECRET).encode())
        _write(MOUNT + "/ca.der", bytes(range(256)) * 3)
        store.load(PATH).save_credential(credential)
        image = bytes(ready.data)

        def login(device, lines):
            _mount(fs, device)
            info = store.load(PATH)
            mqtt.spend_product_secret(info, {"log": lines.append})

        dry = Flash(fs[2], fs[3], image)
        login(dry, [])
        total = dry.writes
        states = {}
        for cut in range(1, total + 1):
            device = Flash(fs[2], fs[3], image, cut)
            try:
                login(device, [])
            except OSError:
                pass  # the erase cut short: dynreg.connect raises nothing else
            after = Flash(fs[2], fs[3], bytes(device.data))
            try:
                _mount(fs, after)
                info = store.load(PATH)
                state = "secret in the info" if info.product_secret else "scrub owed" if info.unscrubbed else "done"
                states[state] = states.get(state, 0) + 1
                if store.FILL in os.listdir(MOUNT) and os.stat(MOUNT + "/" + store.FILL)[6]:
                    raise AssertionError("the filler still takes space after the boot")
                if state == "scrub owed" and not store.load(PATH).unscrubbed:
                    raise AssertionError("a boot retried (another load) forgot the scrub owed")
                if state == "done" and _copies(bytes(after.data)):
                    raise AssertionError("the secret erased, a copy left, and no scrub owed")
                lines = []
                mqtt.spend_product_secret(info, {"log": lines.append})
                if state != "done" and not any(line.startswith("dynreg: free flash scrubbed") for line in lines):
                    raise AssertionError("no scrub at the next login: %s" % lines)
                _mount(fs, after)
                _check_board(credential)
                if _copies(bytes(after.data)):
                    raise AssertionError("the secret is still in the image")
            except Exception as e:
                failures.append("%s, cut at write %d of %d: %s: %s" % (fs[0], cut, total, type(e).__name__, e))
        counts = " ".join("%s: %d" % s for s in sorted(states.items()))
        print("scrub: %-26s %3d cut points, %s" % (fs[0], total, counts))
    assert not failures, failures[:5]

# MicroPython only (real littlefs2 through vfs.VfsLfs2): power is cut at every write of a
# full credential save, for every credential kind. After each cut the filesystem is mounted
# again from what reached the "flash": the device must hold either the complete new
# credential or be cleanly unregistered, and then register (save) successfully.
import vfs

from support import RAMBlockDevice
from power_cut_kinds import KINDS, PEM_CERT, PEM_KEY, expected, info_text
from dynreg import store, gateway

MOUNT = "/pl"
SUBDEVICES = {"a1SubProd01/sensor-%04d" % i: {"device_secret": "%032x" % (i * 7919), "iot_id": "i%d" % i,
                                               "topo": False} for i in range(8)}
totals = {"cuts": 0, "failures": 0}


BLOCK_SIZES = (512, 128)  # smaller blocks split each save into more writes, so more cut points
# How much of the write at the cut reaches flash: none of it, its first half, or all of it.
TORN = (0, 1, 2)
_block_size = [512]


class PowerCutDevice(RAMBlockDevice):
    # Write number `cut` is torn (`torn` halves of it reach flash); nothing after it does.
    def __init__(self, image, cut=None, torn=1):
        size = _block_size[0]
        super().__init__(size, len(image) // size)
        self.data[:] = image
        self.cut = cut
        self.torn = torn
        self.writes = 0

    def writeblocks(self, block, buf, offset=None):
        self.writes += 1
        if self.cut is not None and self.writes >= self.cut:
            if self.writes == self.cut and self.torn:
                super().writeblocks(block, bytes(buf[:len(buf) * self.torn // 2]), offset)
            return -5  # EIO to littlefs: the power is gone
        super().writeblocks(block, buf, offset)
        return 0


def _mount(device):
    try:
        vfs.umount(MOUNT)
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(device), MOUNT)


def _fresh_image(info_text):
    device = RAMBlockDevice(_block_size[0], 65536 // _block_size[0])
    vfs.VfsLfs2.mkfs(device)
    _mount(device)
    with open(MOUNT + "/device_info.json", "w") as f:
        f.write(info_text)
    vfs.umount(MOUNT)
    return bytes(device.data)


def _check_after_cut(image, credential):
    # Remount what reached flash: the complete new credential, or clean and able to register.
    _mount(PowerCutDevice(image))
    info = store.load(MOUNT + "/device_info.json")
    if info.needs_registration:
        info.save_credential(credential)
        info = store.load(MOUNT + "/device_info.json")
    assert info.credential == expected(credential), info.credential
    if "cert" in credential:
        assert info.read_credential_file("cert_file") == PEM_CERT.encode()
        assert info.read_credential_file("key_file") == PEM_KEY.encode()


def _cut_everywhere(image, save, check):
    dry = PowerCutDevice(image)
    _mount(dry)
    save()
    total_writes = dry.writes
    assert total_writes > 0
    for cut in range(1, total_writes + 1):
        for torn in TORN:
            device = PowerCutDevice(image, cut, torn)
            _mount(device)
            try:
                save()
            except Exception:
                pass  # StorageError or OSError: the save was cut short
            totals["cuts"] += 1
            try:
                check(bytes(device.data))
            except Exception as e:
                totals["failures"] += 1
                print("power cut at write %d of %d (%d/2 of it written): %s" % (cut, total_writes, torn, e))
    return total_writes * len(TORN)


def test_power_cut_at_every_write_of_every_credential_kind():
    for size in BLOCK_SIZES:
        _block_size[0] = size
        for name, fields, credential in KINDS:
            image = _fresh_image(info_text(fields))
            writes = _cut_everywhere(image, lambda: store.load(MOUNT + "/device_info.json").save_credential(credential),
                                     lambda data: _check_after_cut(data, credential))
            print("power loss: %-30s %3d cut points (%d-byte blocks)" % (name, writes, size))
    assert totals["failures"] == 0, totals


def test_power_cut_at_every_write_of_gateway_subdevice_secrets():
    path = MOUNT + "/" + gateway.SUBDEVICES_FILE

    def check(data):
        _mount(PowerCutDevice(data))
        devices = gateway.load(path)
        assert devices in ({}, SUBDEVICES), "half-written sub-device secrets"

    before = totals["failures"]
    for size in BLOCK_SIZES:
        _block_size[0] = size
        image = _fresh_image(info_text({"cloud": "aliyun", "product_key": "a1GwProd001", "api": "https",
                                         "credential": {"device_secret": "x" * 32}}))
        writes = _cut_everywhere(image, lambda: gateway._save(path, SUBDEVICES), check)
        print("power loss: %-30s %3d cut points (%d-byte blocks)" % ("gateway sub-device secrets", writes, size))
    print("power loss: %d cut points tried, %d failures" % (totals["cuts"], totals["failures"]))
    assert totals["failures"] == before

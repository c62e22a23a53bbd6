# MicroPython only (real littlefs2 through vfs.VfsLfs2, real FatFs through vfs.VfsFat): power
# is cut at every write of a full credential save, for every credential kind, and of the
# ProductSecret's erase. After each cut the filesystem is mounted again from what reached
# the "flash": the device must hold the old state or the complete new one (a save: the new
# credential, or cleanly unregistered and then able to save; the erase: the credential
# intact, the secret there or gone). Then the next writes a device does (the info rewritten,
# another file) must leave every file intact: on FAT some damage shows only then (a cut
# inside a rename leaves two names on one cluster chain; the next write frees it under one).
import vfs

from support import RAMBlockDevice
from power_cut_kinds import ERASE, KINDS, PEM_CERT, PEM_KEY, SECRET, expected, info_text
from dynreg import store, gateway

MOUNT = "/pl"
PATH = MOUNT + "/device_info.json"
CA = bytes(range(256)) * 3  # a file that no save touches, beside the info
SUBDEVICES = {"a1SubProd01/sensor-%04d" % i: {"device_secret": "%032x" % (i * 7919), "iot_id": "i%d" % i,
                                               "topo": False} for i in range(8)}
# How much of the write at the cut reaches flash: none of it, its first half, or all of it.
# FAT counts each sector as one write, so its "all" is the next cut point's "none".
TORN = (0, 1, 2)
# (name, filesystem, block size, blocks, how much of the cut write lands, files before the
# info: they move its directory entries across a FAT directory sector's 16 slots)
FILESYSTEMS = (
    ("littlefs2", vfs.VfsLfs2, 512, 128, TORN, (0,)),
    ("littlefs2", vfs.VfsLfs2, 128, 512, TORN, (0,)),
    ("FAT", vfs.VfsFat, 512, 128, (0, 1), tuple(range(16))),
    ("FAT", vfs.VfsFat, 4096, 64, (0, 1), (0, 7)),
)
totals = {"cuts": 0, "failures": 0}
_fs = [FILESYSTEMS[0]]


class PowerCutDevice(RAMBlockDevice):
    # Block write number `cut` is torn (`torn` halves of it reach flash); nothing after it
    # does. FAT writes whole sectors, several in one call: each sector counts as one write.
    def __init__(self, image, cut=None, torn=1):
        size = _fs[0][2]
        super().__init__(size, len(image) // size)
        self.data[:] = image
        self.cut = cut
        self.torn = torn
        self.writes = 0

    def writeblocks(self, block, buf, offset=None):
        step = len(buf) if offset is not None else self.block_size
        done = 0
        while done < len(buf):
            self.writes += 1
            if self.cut is not None and self.writes >= self.cut:
                if self.writes == self.cut and self.torn:
                    super().writeblocks(block, bytes(buf[done:done + step * self.torn // 2]), offset)
                # The power is gone: EIO to littlefs. FAT's writes are dropped unseen (the image
                # is the same), since a FAT file that failed to close retries from its
                # finaliser, where an error could only be printed.
                return -5 if offset is not None else 0
            super().writeblocks(block, buf[done:done + step], offset)
            block += 1
            done += step
        return 0


def _mount(device):
    try:
        vfs.umount(MOUNT)
    except OSError:
        pass
    vfs.mount(_fs[0][1](device), MOUNT)


def _fresh_image(text, padding):
    size, blocks = _fs[0][2], _fs[0][3]
    device = RAMBlockDevice(size, blocks)
    _fs[0][1].mkfs(device)
    _mount(device)
    for i in range(padding):
        _write(MOUNT + "/p%d" % i, b"")
    _write(MOUNT + "/ca.der", CA)
    _write(PATH, text.encode())
    vfs.umount(MOUNT)
    return bytes(device.data)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _check_after_cut(image, credential, action):
    # Remount what reached flash and classify it: "old", "new", or "clean" (unregistered);
    # finish the action, do a device's next writes, remount, and check every file.
    device = PowerCutDevice(image)
    _mount(device)
    info = store.load(PATH)
    if action == ERASE:
        assert not info.needs_registration, "the credential is lost"
        assert info.credential == expected(credential), "another credential"
        state = "old" if info.product_secret == SECRET else "new"
        info.erase_product_secret()
        assert SECRET.encode() not in _read(PATH), "the ProductSecret is still on flash"
    elif info.needs_registration:
        state = "clean"
        assert info.product_secret == SECRET, "the ProductSecret is lost"
        info.save_credential(credential)
    else:
        state = "new"
    # The next writes, each on a fresh mount (FatFs then allocates from the first free cluster):
    # the info again (an erase, say), then another file.
    _mount(device)
    store.write_atomic(PATH, _read(PATH))
    _mount(device)
    store.write_atomic(MOUNT + "/" + gateway.SUBDEVICES_FILE, b"{}" + b" " * 1500)
    _mount(device)
    info = store.load(PATH)
    assert info.credential == expected(credential), \
        "after the next writes: %s" % ("no credential" if info.needs_registration else "another credential")
    assert info.product_secret == (None if action == ERASE else SECRET), "after the next writes: the secret"
    if "cert" in credential:
        assert info.read_credential_file("cert_file") == PEM_CERT.encode(), "certificate damaged"
        assert info.read_credential_file("key_file") == PEM_KEY.encode(), "key damaged"
    assert _read(MOUNT + "/ca.der") == CA, "another file damaged"
    return state


def _cut_everywhere(image, action, check, label):
    # Every cut point of `action` on `image`; returns how many there were.
    dry = PowerCutDevice(image)
    _mount(dry)
    try:
        action()
    except Exception as e:
        totals["failures"] += 1
        print("%s: without a cut: %s: %s" % (label, type(e).__name__, e))
        return 0
    total_writes = dry.writes
    assert total_writes > 0
    states = {}
    for cut in range(1, total_writes + 1):
        for torn in _fs[0][4]:
            device = PowerCutDevice(image, cut, torn)
            _mount(device)
            try:
                action()
            except Exception:
                pass  # StorageError or OSError: the save was cut short
            totals["cuts"] += 1
            try:
                state = check(bytes(device.data))
                states[state] = states.get(state, 0) + 1
            except Exception as e:
                totals["failures"] += 1
                print("power cut at write %d of %d (%d/2 of it written), %s: %s: %s"
                      % (cut, total_writes, torn, label, type(e).__name__, e))
    cuts = total_writes * len(_fs[0][4])
    print("power loss: %-40s %3d cut points %s" % (label, cuts, " ".join("%s %d" % s for s in sorted(states.items()))))
    return cuts


def _act(credential, action):
    if action == ERASE:
        return lambda: store.load(PATH).erase_product_secret()
    return lambda: store.load(PATH).save_credential(credential)


def test_power_cut_at_every_write_of_every_credential_kind():
    before = totals["failures"]
    for fs in FILESYSTEMS:
        _fs[0] = fs
        for name, fields, credential, action in KINDS:
            for padding in fs[5]:
                image = _fresh_image(info_text(fields), padding)
                _cut_everywhere(image, _act(credential, action),
                                lambda data: _check_after_cut(data, credential, action),
                                "%s, %s %d-byte blocks%s" % (name, fs[0], fs[2], ", +%d" % padding if padding else ""))
    assert totals["failures"] == before, totals


# AWS: the certificate and key saved as DER with the thing name, and the claim's two files
# erased after the first login (lib/dynreg/store.py).
AWS_DOC = {"dynreg": 1, "cloud": "aws", "template": "FleetTemplate", "device_name": "dev01",
           "mqtt_url": "mqtts://a1b2c3-ats.iot.eu-west-1.amazonaws.com:8883", "claim_cert": "claim.crt",
           "claim_key": "claim.key", "credential": {}}
AWS_CERT = b"0\x82\x03\x20" + bytes(range(256)) * 3
AWS_KEY = b"0\x82\x04\xa4" + bytes(range(255, -1, -1)) * 4
AWS_SAVED = {"cert_file": "dev01_cert.crt", "key_file": "dev01_private.key", "thing_name": "Fleet_dev01"}


def _aws_image(saved):
    import json

    device = RAMBlockDevice(_fs[0][2], _fs[0][3])
    device.data[:] = _fresh_image(json.dumps(AWS_DOC), 0)
    _mount(device)
    _write(MOUNT + "/claim.crt", b"the claim certificate " * 30)
    _write(MOUNT + "/claim.key", b"the claim key " * 60)
    if saved:
        _aws_save()
    vfs.umount(MOUNT)
    return bytes(device.data)


def _aws_save():
    store.load(PATH).save_credential({"cert": AWS_CERT, "key": AWS_KEY, "thing_name": "Fleet_dev01"})


def _aws_check(action):
    def check(data):
        device = PowerCutDevice(data)
        _mount(device)
        info = store.load(PATH)
        if action == ERASE:
            assert info.credential == AWS_SAVED, "the credential is lost"
            state = "old" if info.product_secret else "new"
            info.erase_product_secret()  # what the next login does
        elif info.needs_registration:
            state = "clean"
            assert info.product_secret == "claim.key" and _read(MOUNT + "/claim.key"), "the claim is lost"
            _aws_save()
        else:
            state = "new"
        _mount(device)  # as the next boot finds it
        import os

        info = store.load(PATH)
        assert info.credential == AWS_SAVED, "no credential after the next writes"
        assert info.read_credential_file("cert_file") == AWS_CERT, "certificate damaged"
        assert info.read_credential_file("key_file") == AWS_KEY, "key damaged"
        claim = [n for n in os.listdir(MOUNT) if n.startswith("claim")]
        if action == ERASE:
            assert claim == [] and "claim_key" not in info.doc and "claim_cert" not in info.doc, "the claim is left"
        else:
            assert sorted(claim) == ["claim.crt", "claim.key"], "the claim went before the first login"
        assert _read(MOUNT + "/ca.der") == CA, "another file damaged"
        return state

    return check


def test_power_cut_at_every_write_of_an_aws_save_and_of_the_claims_erasure():
    before = totals["failures"]
    for fs in FILESYSTEMS:
        _fs[0] = fs
        for action, saved, act in (("save", False, _aws_save), (ERASE, True, _act(None, ERASE))):
            _cut_everywhere(_aws_image(saved), act, _aws_check(action),
                            "aws %s, %s %d-byte blocks" % ("erase of the claim" if saved else "certificate save",
                                                           fs[0], fs[2]))
    assert totals["failures"] == before, totals


def test_power_cut_at_every_write_of_gateway_subdevice_secrets():
    path = MOUNT + "/" + gateway.SUBDEVICES_FILE

    def check(data):
        _mount(PowerCutDevice(data))
        devices = gateway.load(path)
        assert devices in ({}, SUBDEVICES), "half-written sub-device secrets"
        return "new" if devices else "old"

    before = totals["failures"]
    for fs in FILESYSTEMS:
        _fs[0] = fs
        image = _fresh_image(info_text({"cloud": "aliyun", "product_key": "a1GwProd001", "api": "https",
                                        "credential": {"device_secret": "x" * 32}}), 0)
        _cut_everywhere(image, lambda: gateway._save(path, SUBDEVICES), check,
                        "gateway sub-device secrets, %s %d-byte blocks" % (fs[0], fs[2]))
    print("power loss: %d cut points tried, %d failures" % (totals["cuts"], totals["failures"]))
    assert totals["failures"] == before

# The erased ProductSecret on the emulated Pico W's own flash: the rp2 flash driver and littlefs
# on the image's geometry (4 KiB sectors, 256-byte pages: an info under 512 bytes lives inline
# in the root's metadata pair, whose old commits keep every earlier version). The board's
# writes as it makes them (the info provisioned, the credential saved, the secret erased at
# the login, dynreg.mqtt.spend_product_secret), then the whole 2 MiB flash is searched: the
# secret is there before the scrub and nowhere after it; a power cut inside the scrub leaves a
# filler that the next boot empties, and the next login scrubs again. The first boot against
# the cloud is in test_host_pico.py.
import json
import os
import sys

import pytest

from e2e import ROOT

sys.path.insert(0, os.path.join(ROOT, "pico_emulator"))
import pico  # noqa: E402

SECRET = "Pico7Scrub2Qv9Xk4Lp8Zt3W"
INFO = {"dynreg": 1, "cloud": "tencent", "product_id": "S3EUVBRJLB", "product_secret": SECRET,
        "device_name_from": "unique_id", "register_url": "https://localhost:12345",
        "mqtt_url": "mqtts://localhost:23456", "ca": "ca.der", "credential": {"psk": ""}}
SAVE = ("from dynreg import store\ninfo = store.load('device_info.json')\ninfo.device_name = 'e66138524459a1b2'\n"
        "info.save_credential({'psk': 'lDZ6Uqt+I9E0wW7rvDUs7Q=='})\n")
LOGIN = """
import os, time
from dynreg import mqtt, store
info = store.load('device_info.json')
print('OWED', info.unscrubbed, 'FILLER', os.stat(store.FILL)[6] if store.FILL in os.listdir() else None)
t = time.ticks_ms()
mqtt.spend_product_secret(info, {'log': print})
print('MS', time.ticks_diff(time.ticks_ms(), t))
info = store.load('device_info.json')
ok = info.credential == {'psk': 'lDZ6Uqt+I9E0wW7rvDUs7Q=='}
print('AFTER', info.product_secret is None, ok, sorted(os.listdir()))
"""


def copies(flash):
    # Offsets of the secret, or of either half of it (a copy across a page), in the whole flash.
    with open(flash, "rb") as f:
        image = f.read()
    found = []
    for form in (SECRET[:12], SECRET[12:]):
        i = image.find(form.encode())
        while i >= 0:
            found.append(i)
            i = image.find(form.encode(), i + 1)
    return sorted(found)


def operations(stderr):
    for line in stderr.splitlines():
        if "flash operations in the last script:" in line:
            return int(line.rsplit(":", 1)[1])
    raise AssertionError("the runner did not count flash operations:\n" + stderr[-1500:])


def run(*scripts, **kw):
    proc = pico.run(*scripts, **kw)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert SECRET not in proc.stdout
    return proc


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    # A board provisioned (the info and the CA put on its flash) and registered: the
    # credential saved, the ProductSecret still there (the first login not yet made).
    problem = pico.check_ready()
    if problem:
        pytest.fail("the emulated Pico W cannot run: " + problem)
    folder = tmp_path_factory.mktemp("pico-scrub")
    info, ca = folder / "product_info.json", folder / "ca.der"
    info.write_text(json.dumps(INFO))
    ca.write_bytes(bytes(range(256)) * 3)
    flash = str(folder / "registered.bin")
    run(SAVE, puts=[(str(info), "/device_info.json"), (str(ca), "/ca.der")], flash_save=flash)
    assert copies(flash), "the provisioned secret is not on the flash: the search cannot work"
    return flash


def test_after_the_first_login_no_copy_of_the_secret_is_left_on_the_chip(registered, tmp_path):
    erased = str(tmp_path / "erased.bin")
    run("from dynreg import store\nassert store.load('device_info.json').erase_product_secret()\n",
        flash_load=registered, flash_save=erased)
    left = copies(erased)
    assert left, "erased, not scrubbed: the copies are still on the flash (or the search finds nothing)"
    after = str(tmp_path / "after.bin")
    proc = run(LOGIN, flash_load=erased, flash_save=after)
    assert "OWED True FILLER 0" in proc.stdout  # the erase marked the scrub as owed
    assert "dynreg: free flash scrubbed (" in proc.stdout, proc.stdout
    assert "AFTER True True ['ca.der', 'device_info.json']" in proc.stdout, proc.stdout
    assert copies(after) == []
    ms = [line for line in proc.stdout.splitlines() if line.startswith("MS ")][-1][3:]
    written = [line for line in proc.stderr.splitlines() if "flash written to" in line][-1]
    print("scrub on the Pico W's flash: copies before at offsets %s (sectors %s); %d flash operations (%s); "
          "%s ms on the chip's clock" % (left, sorted(set(i // 4096 for i in left)), operations(proc.stderr),
                                         written.split("(")[-1].rstrip(")"), ms))


def test_a_power_cut_in_the_scrub_is_mended_by_the_next_boot_and_login(registered, tmp_path):
    erased = str(tmp_path / "erased.bin")
    run("from dynreg import store\nassert store.load('device_info.json').erase_product_secret()\n",
        flash_load=registered, flash_save=erased)
    dry = run(LOGIN, flash_load=erased)
    total = operations(dry.stderr)
    for k in (2, total // 3, 2 * total // 3, total - 1):
        cut = str(tmp_path / ("cut%d.bin" % k))
        stopped = pico.run(LOGIN, flash_load=erased, flash_save=cut, cut_at=k, torn=True)
        assert stopped.returncode == pico.CUT, (k, stopped.stderr[-800:])
        after = str(tmp_path / ("after%d.bin" % k))
        proc = run(LOGIN, flash_load=cut, flash_save=after)
        # The filler emptied at the boot (store.load), before anything else is written.
        assert "OWED True FILLER 0" in proc.stdout, (k, proc.stdout)
        assert "dynreg: free flash scrubbed (" in proc.stdout, (k, proc.stdout)
        assert "AFTER True True ['ca.der', 'device_info.json']" in proc.stdout, (k, proc.stdout)
        assert copies(after) == [], k

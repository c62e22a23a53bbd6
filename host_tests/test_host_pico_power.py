# Power cuts on the emulated Pico W's own flash: the rp2 flash driver and littlefs on the
# image's real flash geometry. For every credential kind, the save (and the ProductSecret's
# erase) is run once to count its flash operations (page programs and sector erases); then,
# for every k, the chip is stopped at the k-th one, with it not landed or torn (half landed),
# and booted again from the flash as it was left. A save must leave the complete new
# credential, or a cleanly unregistered board that then saves it; the erase, the credential
# intact with the secret there ("old") or gone ("new"), and then erased. Figures: docs/RELIABILITY.md.
import json
import os
import sys

import pytest

from e2e import ROOT
from power_cut_kinds import ERASE, KINDS, action_code, expected, info_text

sys.path.insert(0, os.path.join(ROOT, "pico_emulator"))
import pico  # noqa: E402

FOLDER = "/pc"
CHECK = """
from dynreg import store
path = %(path)r
info = store.load(path)
ok = True
if %(erase)s:
    state = "old" if info.product_secret else "new"
    ok = not info.needs_registration
    info.erase_product_secret()
    info = store.load(path)
    ok = ok and info.product_secret is None
else:
    state = "new"
    if info.needs_registration:
        state = "clean"
        info.save_credential(%(credential)s)
        info = store.load(path)
ok = ok and info.credential == %(expected)s
if ok and "cert_file" in info.credential:
    ok = info.read_credential_file("cert_file") == %(cert)r and info.read_credential_file("key_file") == %(key)r
print("CUTCHECK", state, ok)
"""


def operations(stderr):
    for line in stderr.splitlines():
        if "flash operations in the last script:" in line:
            return int(line.rsplit(":", 1)[1])
    raise AssertionError("the runner did not count flash operations:\n" + stderr[-1500:])


@pytest.fixture(scope="module")
def totals():
    problem = pico.check_ready()
    if problem:
        pytest.fail("the emulated Pico W cannot run: " + problem)
    counts = {"cuts": 0, "failures": 0, "new": 0, "clean": 0, "old": 0}
    yield counts
    print("power cuts on the Pico W's flash: %(cuts)d cut points, %(failures)d failures "
          "(%(new)d left the new state, %(clean)d a clean unregistered board, "
          "%(old)d the ProductSecret not yet erased)" % counts)


@pytest.mark.parametrize("name,fields,credential,action", KINDS, ids=[k[0] for k in KINDS])
def test_power_cut_at_every_flash_operation_of_a_credential_save(tmp_path, totals, name, fields, credential, action):
    info_file = tmp_path / "device_info.json"
    info_file.write_text(info_text(fields))
    base = str(tmp_path / "base.bin")
    path = FOLDER + "/device_info.json"
    made = pico.run("import os\nprint(os.listdir(%r))" % FOLDER, puts=[(str(info_file), path)], flash_save=base)
    assert made.returncode == 0 and "device_info.json" in made.stdout, made.stderr
    save = action_code(path, credential, action)
    dry = pico.run(save, flash_load=base)
    assert dry.returncode == 0, dry.stderr
    count = operations(dry.stderr)
    assert count >= 2  # at least a program and an erase: the save reached the flash
    check = CHECK % {"path": path, "erase": action == ERASE, "credential": json.dumps(credential),
                     "expected": json.dumps(expected(credential)),
                     "cert": credential.get("cert", "").encode(), "key": credential.get("key", "").encode()}
    failures = []
    for k in range(1, count + 1):
        for torn in (False, True):
            cut = str(tmp_path / "cut.bin")
            stopped = pico.run(save, flash_load=base, flash_save=cut, cut_at=k, torn=torn)
            assert stopped.returncode == pico.CUT, (k, stopped.stderr[-800:])
            after = pico.run(check, flash_load=cut)
            verdict = [line.split() for line in after.stdout.splitlines() if line.startswith("CUTCHECK")]
            totals["cuts"] += 1
            if after.returncode != 0 or verdict[-1][2] != "True":
                failures.append("cut at operation %d of %d%s: %s" % (k, count, " (torn)" if torn else "",
                                                                     (after.stdout + after.stderr)[-300:]))
            else:
                totals[verdict[-1][1]] += 1
    totals["failures"] += len(failures)
    print("power cuts on the Pico W's flash: %-28s %3d operations, %3d cut points" % (name, count, 2 * count))
    assert not failures, failures[:3]

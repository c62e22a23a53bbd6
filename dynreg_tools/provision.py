"""dynreg provision: boards provisioned over their serial ports with mpremote: the product
identity (dynreg's device_info.json), every file the info names (the CA, the broker's CA,
certificate and key files) and, optionally, the application and site settings. Many boards
at once, one per port.

    DYNREG_PRODUCT_SECRET=... dynreg provision --ports /dev/ttyUSB0,/dev/ttyACM0 \\
        --info device_info.json --ca ca.der [--app firmware] [--site site.json]
    dynreg provision --ports auto --info device_info.json --secret-file secret.txt ...

The ProductSecret comes from --secret-file, the environment (DYNREG_PRODUCT_SECRET) or the
info file itself, never from the command line, and every line printed is masked. An AWS info
has none: its claim certificate and key are files it names, copied beside it like the CA.
Each file is copied to a temporary name and renamed on the board (atomic on littlefs), then
its SHA-256 is computed on the board and compared with the local copy.

Before any board is touched, the info and every file it names go through
`dynreg check`'s checks, and a fixed device_name is refused for more than one board.
Then every board is read, nothing written: its platform, its chip id, its dynreg version,
what its info holds. A DeviceName that two boards would share, or a site file a board would
crash at boot without (site_check), refuses the whole batch. A board without dynreg
(or with an older one) is refused; one whose info holds a credential is skipped, or reported
broken when its info names a file that is not on its flash; --force overwrites a credential
only once confirmed (y/N on a terminal, else --force-wipe-credential). Exit status: 0 when no
board failed (skipped ones included), 1 when one did, 2 when the batch was refused.
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

from dynreg_tools import check, library_version, site_check

INFO = "device_info.json"
SITE = "site.json"
SECRET_ENV = check.SECRET_ENV
MASK = "****"
KINDS = {"rp2": "rp2", "esp32": "esp32", "linux": "unix"}  # sys.platform -> site_check's board kind
INSTALL = ("install it (mpremote connect PORT mip install ./package.json, boards/README.md \"Without building "
           "firmware\") or flash our image")

# Run on the board, ahead of the scripts that use it (here and dynreg_tools/board.py): what an
# info document holds and which files it needs, in either format. No value is printed.
HELD = """
import json, os, sys
def obj(doc, key):
    value = doc.get(key)
    return value if isinstance(value, dict) else {}
def held(doc):
    values = list(obj(doc, "credential").values())
    values.append(obj(doc, "key_deviceinfo").get("deviceSecret"))
    values.append(obj(doc, "cert_deviceinfo").get("devCertFile"))
    return any(isinstance(v, str) and v not in %(placeholders)r for v in values)
def logged_in(doc):
    # recorded at the first login, which also erases the ProductSecret (unless kept), or AWS's claim
    return doc.get("logged_in") is True or not (doc.get("product_secret") or doc.get("productSecret")
                                                 or doc.get("group_key") or doc.get("claim_key"))
def needs(doc):
    # AWS's claim files only while there is no credential: the board spends them to register
    c, s = obj(doc, "credential"), obj(doc, "cert_deviceinfo")
    claim = () if held(doc) else (doc.get("claim_cert"), doc.get("claim_key"))
    names = []
    for n in (doc.get("ca"), doc.get("mqtt_ca"), c.get("cert_file"), c.get("key_file"), s.get("devCertFile"),
              s.get("devPrivateKeyFile")) + claim:
        if isinstance(n, str) and n not in %(placeholders)r and n not in names:
            names.append(n)
    return names
def lacks(doc):
    out = []
    for n in needs(doc):
        try:
            if not os.stat(n)[6]:
                out.append(n + " empty")
        except OSError:
            out.append(n + " missing")
    return out
def read_info():
    try:
        with open(%(info)r) as f:
            return json.load(f)
    except OSError:
        return None
    except ValueError:
        return False
def dynreg_version():
    try:
        import dynreg
    except ImportError:
        return None
    except Exception as e:
        return "!" + type(e).__name__
    return getattr(dynreg, "__version__", "")
def name(rule):
    # the DeviceName as the firmware derives it (firmware/board.py device_name)
    try:
        try:
            import board
            return board.device_name(rule)
        except ImportError:
            pass
        from binascii import hexlify
        if sys.platform == "linux":
            return os.getenv("DYNREG_UNIQUE_ID") or "unix0001"
        if rule == "mac":
            import network
            return hexlify(network.WLAN(network.STA_IF).config("mac")).decode()
        import machine
        return hexlify(machine.unique_id()).decode()
    except Exception:
        return "-"
""" % {"placeholders": check.PLACEHOLDERS, "info": INFO}

# Run on the board: what provisioning must know before it writes anything.
PROBE = """
doc = read_info()
doc = doc if isinstance(doc, dict) else {}
print("PROVISION " + json.dumps({"platform": sys.platform, "credential": held(doc), "logged_in": logged_in(doc),
                                 "lacks": lacks(doc), "name": name(%(rule)r), "chip": name("unique_id"),
                                 "holder": doc.get("device_name") or doc.get("deviceName") or "",
                                 "dynreg": dynreg_version()}))
"""

# Run on the board after the copies: rename each temporary file over its final name, hash
# the results, and name the device as the firmware will.
FINALIZE = """
import hashlib, binascii
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
names = %(names)r
for n in names:
    put(n)
print("PROVISION " + json.dumps({"sha256": {n: sha256(n) for n in names},
                                 "device": %(device)r or name(%(rule)r), "chip": name("unique_id")}))
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
        return check.given_secret(args.secret_file)
    if not hasattr(args, "stdin_secret"):
        args.stdin_secret = check.given_secret("-")
    return args.stdin_secret


def read_secret(args, info_doc, field="product_secret"):
    secret = given_secret(args)
    if secret is None:
        secret = info_doc.get(field)
    if not secret:
        raise ProvisionError("no ProductSecret: give --secret-file FILE or set %s "
                             "(never on the command line)" % SECRET_ENV)
    return secret


def version_key(text):
    try:
        return tuple(int(part) for part in text.split("."))
    except (AttributeError, ValueError):
        return None


def named_files(doc, info_path, ca_path):
    # [(field, local path, name on the board)] of every file the info names; on the board each
    # lies beside the info, under its own file name ("ca.der" for a --ca the info does not name).
    view = check.View(doc)
    files = []
    for field, local in check.named_files(view, info_path, ca_path):
        value = doc.get(field) if "." not in field else doc[field.split(".")[0]][field.split(".")[1]]
        files.append((field, local, os.path.basename(value) if isinstance(value, str) and value else "ca.der"))
    taken = {}
    for field, local, name in files:
        other = taken.setdefault(name, (field, local))
        if os.path.abspath(other[1]) != os.path.abspath(local):
            raise ProvisionError("fields %s and %s name different files that would both be %s on the board: "
                                 "rename one" % (other[0], field, name))
        if name in (INFO, SITE):
            raise ProvisionError("field %s names %s, a file provisioning writes itself: rename it" % (field, name))
    return files


def build_payload(args, scratch):
    """(files, secrets, info): the files to put on every board as [(local path, name on the
    board)], the secrets to mask, and the info as it goes to the boards."""
    with open(args.info) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or (doc.get("dynreg") != 1 and "productId" not in doc):
        raise ProvisionError("%s is neither dynreg's info format ({\"dynreg\": 1, ...}) nor the Tencent "
                             "C SDK's" % args.info)
    view = check.View(doc)
    sdk = view.sdk  # the Tencent C SDK's own file, written back in its own keys
    product_field, secret_field = view.names["product"], view.names["secret"]
    if not doc.get(product_field):
        raise ProvisionError("%s names no %s" % (args.info, product_field))
    if view.cloud == "aws":
        secret = None  # the claim: two of the files the info names
    else:
        secret = read_secret(args, doc, secret_field)
        doc[secret_field] = secret
    if not sdk:
        doc.setdefault("credential", {})
    files = []
    for field, local, name in named_files(doc, args.info, args.ca):
        if "." in field:
            outer, inner = field.split(".")
            doc[outer][inner] = name
        else:
            doc[field] = name
        if name not in [n for _, n in files]:
            files.append((local, name))
    info_path = os.path.join(scratch, INFO)
    fd = os.open(info_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    if os.path.getsize(info_path) > check.MAX_INFO:
        raise ProvisionError("the info %sis larger than %d bytes, which the library refuses: remove what the "
                             "board does not need" % ("" if secret is None else "with the ProductSecret filled in ",
                                                      check.MAX_INFO))
    secrets = [secret]
    if args.site:
        with open(args.site) as f:
            site = json.load(f)
        secrets.append(site.get("wifi_password") if isinstance(site, dict) else None)
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
        self.result = {"port": port, "chip": "-", "device": "?", "dynreg": "-", "result": "", "credential": "-",
                       "sha256": "-", "seconds": 0.0}
        self.found = None  # what the probe read
        self.spent = 0.0

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

    def timed(self, step, *args):
        start = time.monotonic()
        try:
            return step(*args)
        finally:
            self.spent += time.monotonic() - start
            self.result["seconds"] = round(self.spent, 1)

    def probe(self, doc):
        # Reads the board, writes nothing: self.found, or a failed result.
        result = self.result
        try:
            self.console.say(self.port, "checking the board")
            rule = doc.get("device_name_from") or "unique_id"
            found = self.mpremote("check the board", "exec", HELD + PROBE % {"rule": rule})
            found["name"] = doc.get("device_name") or doc.get("deviceName") or found["name"]
            result["chip"], result["device"] = found["chip"], found.get("holder") or found["name"]
            result["dynreg"] = found["dynreg"] or "none"
            if found["credential"]:
                result["credential"] = "held (%s)" % ("logged in" if found["logged_in"] else "not logged in")
            self.found = found
            self.console.say(self.port, "%s, dynreg %s, chip %s, DeviceName %s%s" % (
                found["platform"], result["dynreg"], found["chip"], found["name"],
                ", holds a credential" if found["credential"] else ""))
        except (ProvisionError, KeyError, TypeError, ValueError) as e:
            self.fail("failed: %s" % e)

    def fail(self, text):
        self.result["result"] = text
        self.console.say(self.port, text)

    def decide(self, wanted):
        # Before any write: True when this board is to be written; else its result is set.
        found = self.found
        version = found["dynreg"]
        if version is None:
            self.fail("refused: no dynreg on the board (ImportError): %s" % INSTALL.replace("PORT", self.port))
        elif version.startswith("!"):
            self.fail("refused: dynreg on the board fails to import (%s): %s" % (version[1:],
                                                                                  INSTALL.replace("PORT", self.port)))
        elif version_key(version) is None or version_key(version) < version_key(wanted):
            self.fail("refused: dynreg %s on the board, older than %s, which this provisioning needs: %s"
                      % (version or "without __version__", wanted, INSTALL.replace("PORT", self.port)))
        elif found["credential"] and not self.args.force:
            if found["lacks"]:
                self.fail("broken: holds a credential but cannot log in: %s; copy each file the board's info names "
                          "(mpremote connect %s fs cp FILE :NAME), or overwrite it with --force"
                          % (", ".join(found["lacks"]), self.port))
            else:
                self.result["result"] = SKIPPED
                self.console.say(self.port, SKIPPED + ": left alone (--force overwrites it)")
        else:
            return True
        return False

    def write(self, files, doc):
        result = self.result
        wiping = bool(self.found["credential"])
        try:
            self.console.say(self.port, "copying %d files (%s)" % (len(files), self.found["platform"]))
            commands = []
            for local, name in files:
                commands += ["fs", "cp", local, ":%s.tmp" % name, "+"]
            names = [name for _, name in files]
            commands += ["exec", HELD + FINALIZE % {
                "names": names, "device": doc.get("device_name") or doc.get("deviceName"),
                "rule": doc.get("device_name_from") or "unique_id"}]
            final = self.mpremote("copy %d files, rename and hash them" % len(files), *commands)
            result["device"] = final["device"]
            result["chip"] = final.get("chip") or result["chip"]
            wrong = [name for local, name in files if final["sha256"].get(name) != sha256_of(local)]
            result["sha256"] = "MISMATCH: " + ", ".join(wrong) if wrong else "ok (%d files)" % len(files)
            result["result"] = "failed" if wrong else "provisioned"
            if wiping:
                result["credential"] = "wiped (%s)" % ("had logged in" if self.found["logged_in"]
                                                       else "had not logged in")
        except (ProvisionError, KeyError, TypeError, ValueError) as e:
            result["result"] = "failed: %s" % e
            if wiping:
                result["credential"] = "unknown (dynreg status tells)"
        self.console.say(self.port, "%s; sha256 %s" % (result["result"], result["sha256"]))


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


REPORT_COLUMNS = ("port", "chip", "device", "dynreg", "result", "credential", "sha256", "seconds")


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
    parser = check.OptionNamesOnlyParser(prog="dynreg provision", description=__doc__.split("\n\n")[0],
                                              allow_abbrev=False,
                                              epilog="ProductSecret: --secret-file or $%s, never an argument."
                                              % SECRET_ENV)
    parser.add_argument("--ports", required=True, help="comma-separated serial ports, or auto")
    parser.add_argument("--info", required=True,
                        help="the product's info, in dynreg's format or the Tencent C SDK's (device_info.json)")
    parser.add_argument("--ca", help="the cloud's CA certificate (DER or PEM), stored as the info's 'ca'")
    parser.add_argument("--secret-file", help="file holding the ProductSecret (- reads it from stdin)")
    parser.add_argument("--site", help="site.json (WiFi, topic) to put beside the info")
    parser.add_argument("--app", help="folder whose .py files go to the board's root (e.g. firmware)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite an info that holds a credential, once confirmed (y/N on a terminal)")
    parser.add_argument("--force-wipe-credential", action="store_true",
                        help="with --force: confirms the wipe without a terminal (a device that has logged in "
                             "can register again only after a reset in the cloud's console)")
    parser.add_argument("--resume", action="store_true",
                        help="no soft reset before each step (mpremote resume; needed by the virtual board)")
    parser.add_argument("--mpremote", default=default_mpremote(), help="the mpremote command")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per mpremote step on each board")
    parser.add_argument("--report", help="write the batch's record (port, chip id, DeviceName, dynreg version, "
                                         "result, credential wiped or not, time) to this file: .csv, or .json")
    args = parser.parse_args(argv)
    args.force = args.force or args.force_wipe_credential
    return args


def format_problems(doc, info_path):
    if "dynreg" in doc or "productId" in doc:
        return []  # dynreg's format or the Tencent C SDK's; a wrong version is check's
    return ["%s is neither dynreg's info format ({\"dynreg\": 1, ...}) nor the Tencent C SDK's "
            "(docs/CLOUDS.md \"Device info\")" % info_path]


def shared_name_problems(doc, info_path, ports):
    # A DeviceName the info gives every board alike: all but the first board would fail.
    if len(ports) < 2 or not (doc.get("device_name") or doc.get("deviceName")):
        return []
    return ["device_name is fixed in %s and %d ports are given: every board would get the same DeviceName "
            "and all but the first fail with DeviceAlreadyActivated; use device_name_from (unique_id or mac), "
            "or provision one board per run" % (info_path, len(ports))]


def info_problems(args, secret):
    # The info, the CA and every file the info names, checked before any board is touched.
    doc, _ = check.read_info(args.info)
    extra = format_problems(doc, args.info) if doc is not None else []
    found = extra + check.problems(args.info, args.ca, secret)
    if args.site and not os.path.isfile(args.site):
        found.append("the site file %s (--site) does not exist: give the path of site.json" % args.site)
    elif args.site:  # what is wrong for every kind of board (the unix port's needs no WiFi)
        found += site_check.site_problems(args.site, "unix")
    return found


def port_problems(args, ports):
    if not ports:
        return ["no port given: --ports PORT[,PORT...] or --ports auto"]
    doc, _ = check.read_info(args.info)
    return shared_name_problems(doc, args.info, ports) if doc is not None else []


def batch_problems(boards, site):
    # Read from the boards, before any write: a DeviceName two boards would share, and a site
    # file that a kind of board would crash at boot without.
    found = []
    by_name = {}
    for b in boards:
        if b.found["name"] not in ("-", "?", ""):
            by_name.setdefault(b.found["name"], []).append(b.port)
    for name, ports in by_name.items():
        if len(ports) > 1:
            found.append("DeviceName %s would be given to %d boards (%s): their chips report the same id (a cloned "
                         "or mis-burned id?) and all but the first would fail with DeviceAlreadyActivated; provision "
                         "them apart once their ids differ" % (name, len(ports), ", ".join(ports)))
    by_kind = {}
    for b in boards:
        by_kind.setdefault(KINDS.get(b.found["platform"]), []).append(b.port)
    for kind, ports in by_kind.items():
        for problem in site_check.site_problems(site, kind):
            found.append("%s (%s: %s)" % (problem, kind or "board of unknown kind", ", ".join(ports)))
    return found


def info_secret(info_path):
    # The info's own ProductSecret, to mask; None when it has none or cannot be read.
    doc, _ = check.read_info(info_path)
    secret = doc and (doc.get("product_secret") or doc.get("productSecret") or doc.get("group_key"))
    return secret if isinstance(secret, str) else None


def refuse(found, mask, out, read=False):
    for problem in found:
        out(mask("provision: problem: %s" % problem))
    if read:
        out("provision: %d problem(s): the boards were read, nothing was written" % len(found))
    else:
        out("provision: %d problem(s): no board was touched (dynreg check checks an info alone)" % len(found))
    return 2


def wipe_confirmed(boards, args, out, cloud):
    # --force on boards that hold a credential: what it costs, then y/N on a terminal, or the
    # second flag. True when confirmed. Tencent and Alibaba register a device again until its
    # first login, never after (PROTOCOLS.md 1); Azure's DPS provisions it again at any time.
    for b in boards:
        if cloud == "azure":
            cost = "wiped, the board provisions again at its next boot (DPS allows it)"
        elif cloud == "aws":
            cost = ("wiped, the board provisions again with the claim at its next boot: a new certificate, and the "
                    "old one stays active in the account until you revoke it")
        elif b.found["logged_in"]:
            cost = "logged in: wiped, that device can never register again until it is reset in the cloud's console"
        else:
            cost = "not yet logged in: wiped, the board registers again at its next boot"
        out("[%s] holds a credential for %s, %s" % (b.port, b.found.get("holder") or b.found["name"], cost))
    if args.force_wipe_credential:
        out("provision: --force-wipe-credential: wiping %d credential(s)" % len(boards))
        return True
    if args.secret_file != "-" and sys.stdin.isatty():
        answer = input("wipe %d credential(s)? [y/N] " % len(boards))
        return answer.strip().lower() in ("y", "yes")
    out("provision: --force would wipe %d credential(s) and no terminal can confirm it: add "
        "--force-wipe-credential to confirm" % len(boards))
    return False


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


def in_parallel(boards, work, out=None, total=0, results=None):
    # work(board) on every board at once; with `out`, a progress line as each finishes.
    if not boards:
        return
    with ThreadPoolExecutor(max_workers=len(boards)) as pool:
        pending = {pool.submit(work, b): b for b in boards}
        for future in as_completed(pending):
            future.result()
            if out:
                results.append(pending[future].result)
                out(progress(len(results), total, results))


def provision_all(ports, args, console, files, doc, out):
    """(status, results): every board read, the batch checked, then the boards written;
    status 2 when the batch was refused (nothing written), else None."""
    boards = [Board(port, args, console) for port in ports]
    in_parallel(boards, lambda b: b.timed(b.probe, doc))
    read = [b for b in boards if b.found is not None]
    found = batch_problems(read, args.site)
    if found:
        return refuse(found, console.mask, out, read=True), None
    done = []
    wanted = library_version()
    to_write = []
    for b in boards:
        if b.found is not None and b.decide(wanted):
            to_write.append(b)
        else:
            done.append(b.result)
            out(progress(len(done), len(ports), done))
    wiping = [b for b in to_write if b.found["credential"]]
    if wiping and not wipe_confirmed(wiping, args, out, doc.get("cloud")):
        out("provision: no credential was wiped, nothing was written")
        return 2, None
    in_parallel(to_write, lambda b: b.timed(b.write, files, doc), out, len(ports), done)
    return None, [b.result for b in boards]


def outcome(results, out):
    ok = sum(r["result"] == "provisioned" for r in results)
    skipped = sum(r["result"] == SKIPPED for r in results)
    failed = len(results) - ok - skipped
    out("%d of %d board(s) provisioned, %d %s, %d failed" % (ok, len(results), skipped, SKIPPED, failed))
    wiped = [r["port"] for r in results if r["credential"].startswith("wiped")]
    if wiped:
        out("%d credential(s) wiped (%s): a device the cloud has seen log in registers again only after a reset in "
            "the cloud's console" % (len(wiped), ", ".join(wiped)))
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
        for note in check.notes(args.info):
            out(mask("provision: note: %s" % note))
        files, secrets, doc = build_payload(args, scratch)
        mask = Masker(secrets)
        console = Console(mask, out)
        out("provisioning %d board(s): %s" % (len(ports), ", ".join(name for _, name in files)))
        refused, results = provision_all(ports, args, console, files, doc, out)
        if refused:
            return refused
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

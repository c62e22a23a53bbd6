"""`status` and `erase` for one board over mpremote: what its flash holds, never a value."""

import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import info_check  # noqa: E402
import provision  # noqa: E402

STORE_FILES = ("device_info.json", "device_info.json.tmp", "subdevices.json", "subdevices.json.tmp")
STEP_SECONDS = 60

# Run on the board after provision.HELD: which files are there, and what the info holds.
STATUS = """
import json, os
def exists(name):
    try:
        os.stat(name)
        return True
    except OSError:
        return False
def info():
    try:
        with open("device_info.json") as f:
            doc = json.load(f)
    except OSError:
        return None
    except ValueError:
        return {"readable": False}
    return {"readable": True, "cloud": doc.get("cloud", "tencent"),
            "product": doc.get("product_id") or doc.get("product_key") or doc.get("id_scope") or doc.get("productId"),
            "device": doc.get("device_name") or doc.get("deviceName")
                      or "<named by %%s>" %% doc.get("device_name_from"),
            "credential": held(doc),
            "product_secret": bool(doc.get("product_secret") or doc.get("productSecret") or doc.get("group_key"))}
print("BOARD " + json.dumps({"files": [n for n in %(files)r if exists(n)], "info": info()}))
"""
ERASE = """
import os
for name in %(names)r:
    try:
        os.remove(name)
    except OSError:
        pass
print("BOARD erased")
"""


class BoardError(Exception):
    pass


def run_on_board(mpremote, port, resume, step, code):
    argv = [mpremote, "connect", port] + (["resume"] if resume else []) + ["exec", code]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_SECONDS)
    except subprocess.TimeoutExpired:
        raise BoardError("step '%s' hung: mpremote did not finish within %d s" % (step, STEP_SECONDS))
    except OSError as e:
        raise BoardError("cannot run %s (%s)" % (mpremote, e.strerror))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BOARD "):
            return line[len("BOARD "):]
    last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
    raise BoardError("step '%s' failed: %s" % (step, last))


def status(mpremote, port, resume=False):
    code = provision.HELD + STATUS % {"files": STORE_FILES + ("ca.der", "ca.pem", "site.json")}
    return json.loads(run_on_board(mpremote, port, resume, "read the board", code))


def describe(found):
    info = found["info"]
    if info is None:
        return "no device_info.json: not provisioned (tools/provision.py)"
    if not info["readable"]:
        return "device_info.json is not valid JSON: provision the board again"
    state = ("holds a credential: it connects, never registers again" if info["credential"]
             else "no credential yet: registers on its next boot")
    secret = "ProductSecret on flash" if info["product_secret"] else "ProductSecret erased"
    return "%s %s/%s: %s; %s; files: %s" % (info["cloud"], info["product"], info["device"], state, secret,
                                            ", ".join(found["files"]))


def erase(mpremote, port, resume=False, force=False):
    """Removes the info and the sub-device store. A board holding a credential is left alone
    unless `force`: the cloud will not register an activated device again."""
    found = status(mpremote, port, resume)
    info = found["info"]
    if info and info.get("credential") and not force:
        raise BoardError("the board holds a credential: erased, the device cannot register again until it is "
                         "reset in the console (--force erases anyway)")
    run_on_board(mpremote, port, resume, "erase", ERASE % {"names": [n for n in STORE_FILES if n in found["files"]]})
    return found


def parser_for(verb):
    parser = info_check.OptionNamesOnlyParser(prog="python -m dynreg_tools " + verb, allow_abbrev=False,
                                              description=__doc__)
    parser.add_argument("port", help="the board's serial port (e.g. /dev/ttyACM0)")
    parser.add_argument("--mpremote", default=provision.default_mpremote(), help="the mpremote command")
    parser.add_argument("--resume", action="store_true", help="no soft reset first (needed by the virtual board)")
    if verb == "erase":
        parser.add_argument("--yes", action="store_true", help="really erase (without it, only says what would go)")
        parser.add_argument("--force", action="store_true", help="erase even a credential")
    return parser


def main_status(argv, out=print):
    args = parser_for("status").parse_args(argv)
    try:
        out("%s: %s" % (args.port, describe(status(args.mpremote, args.port, args.resume))))
    except BoardError as e:
        out("%s: %s" % (args.port, e))
        return 1
    return 0


def main_erase(argv, out=print):
    args = parser_for("erase").parse_args(argv)
    try:
        if not args.yes:
            found = status(args.mpremote, args.port, args.resume)
            names = [n for n in STORE_FILES if n in found["files"]]
            out("%s: would erase %s; run again with --yes" % (args.port, ", ".join(names) or "nothing"))
            return 0
        found = erase(args.mpremote, args.port, args.resume, args.force)
    except BoardError as e:
        out("%s: %s" % (args.port, e))
        return 1
    out("%s: erased %s" % (args.port, ", ".join(n for n in STORE_FILES if n in found["files"]) or "nothing"))
    return 0

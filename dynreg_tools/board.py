"""`dynreg status` and `dynreg erase` for one board over mpremote: what its flash holds, never a value."""

import json
import subprocess

from dynreg_tools import check, provision

STORE_FILES = ("device_info.json", "device_info.json.tmp", "subdevices.json", "subdevices.json.tmp")
STEP_SECONDS = 60

# Run on the board after provision.HELD: which files are there, what the info holds and which
# of the files it names are missing, and the dynreg version.
STATUS = """
def exists(name):
    try:
        os.stat(name)
        return True
    except OSError:
        return False
def info(doc):
    if doc is None:
        return None
    if doc is False:
        return {"readable": False}
    return {"readable": True, "cloud": doc.get("cloud", "tencent"),
            "product": doc.get("product_id") or doc.get("product_key") or doc.get("id_scope") or doc.get("productId"),
            "device": doc.get("device_name") or doc.get("deviceName")
                      or "<named by %%s>" %% doc.get("device_name_from"),
            "credential": held(doc), "logged_in": logged_in(doc), "lacks": lacks(doc),
            "product_secret": bool(doc.get("product_secret") or doc.get("productSecret") or doc.get("group_key"))}
doc = read_info()
names = list(%(files)r) + [n for n in (needs(doc) if isinstance(doc, dict) else []) if n not in %(files)r]
print("BOARD " + json.dumps({"files": [n for n in names if exists(n)], "info": info(doc),
                             "dynreg": dynreg_version()}))
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
    """(line, ok): what the board holds and can do; ok is False when its info names a file
    that is not on its flash."""
    info = found["info"]
    version = found.get("dynreg")
    library = ("dynreg %s" % (version or "without __version__") if version is not None and not version.startswith("!")
               else "no dynreg that imports: %s" % provision.INSTALL)
    if info is None:
        return "no device_info.json: not provisioned (dynreg provision); %s" % library, True
    if not info["readable"]:
        return "device_info.json is not valid JSON: provision the board again; %s" % library, True
    lacks = ", ".join(info["lacks"])
    if info["credential"] and lacks:
        state = ("holds a credential but cannot log in: %s; copy each file its info names (mpremote connect PORT "
                 "fs cp FILE :NAME)" % lacks)
    elif info["credential"]:
        state = ("holds a credential, logged in: it connects, never registers again" if info["logged_in"] else
                 "holds a credential, not yet logged in: its first accepted login records it (a refused one "
                 "registers once more)")
    elif lacks:
        state = "no credential yet, but its info names what its flash lacks: %s; provision it again " \
                "(dynreg provision) before it boots" % lacks
    else:
        state = "no credential yet: registers on its next boot"
    secret = "ProductSecret on flash" if info["product_secret"] else "ProductSecret erased"
    return "%s %s/%s: %s; %s; %s; files: %s" % (info["cloud"], info["product"], info["device"], state, secret,
                                                library, ", ".join(found["files"])), not lacks


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
    parser = check.OptionNamesOnlyParser(prog="dynreg " + verb, allow_abbrev=False, description=__doc__)
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
        line, ok = describe(status(args.mpremote, args.port, args.resume))
    except BoardError as e:
        out("%s: %s" % (args.port, e))
        return 1
    out("%s: %s" % (args.port, line.replace("connect PORT", "connect " + args.port)))
    return 0 if ok else 1


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

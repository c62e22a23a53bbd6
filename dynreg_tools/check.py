"""dynreg check: a device info file and its CA certificate checked offline, before any board
is touched.

    dynreg check product_info.json [--ca ca.der] [--secret-file FILE]
    dynreg check [product_info.json] --site site.json --board rp2|esp32|unix

Lists every problem, one line each with its fix, and exits 1; or prints "ok: ..." and a
one-line summary (cloud, product, device naming) and exits 0. Both formats the library
reads are checked: dynreg's ({"dynreg": 1, ...}) and the Tencent C SDK's ("productId", ...).
The rules are the library's (lib/dynreg/store.py, tencent.py, aliyun.py, aws.py, codec.py) and the
clouds' (PROTOCOLS.md): where a cloud is stricter than the library, the cloud's rule is
checked. No value of any field is ever printed: an identity in the wrong field may be a
secret. The ProductSecret is the info's, or --secret-file's, or $DYNREG_PRODUCT_SECRET's (AWS:
the claim, its certificate and key files beside the info),
as `dynreg provision` takes it; provision runs the same checks (problems()). --site checks a
site.json too (site_check; docs/SITE.md), for the board --board names. Needs nothing but the
standard library: certificates are read by dynreg_tools.der.
"""
import argparse
import json
import os
import re
import sys
from datetime import datetime, timezone

from dynreg_tools import der, site_check

MAX_INFO = 8192  # bytes: lib/dynreg/store.py MAX_INFO; the library refuses a larger info or CA
SECRET_ENV = "DYNREG_PRODUCT_SECRET"
PLACEHOLDERS = ("", "YOUR_IOT_PSK", "YOUR_DEVICE_CERT_FILE_NAME", "YOUR_DEVICE_PRIVATE_KEY_FILE_NAME")
NAME_RULES = ("unique_id", "mac")  # firmware/board.py device_name(rule)
API_PATHS = ("/device/register", "/register/dev", "/auth/register/device")
APIS = {"tencent": ("current", "legacy"), "aliyun": ("https", "mqtt", "regnwl"), "azure": ("mqtt",), "aws": ("mqtt",)}
ALGORITHMS = {"tencent": ("hmacsha256", "hmacsha1"), "aliyun": ("hmacsha256", "hmacsha1", "hmacmd5"),
              "azure": ("hmacsha256",), "aws": ("hmacsha256",)}
PRODUCT_RULES = {  # PROTOCOLS.md: what the consoles issue
    "tencent": (re.compile(r"[A-Z0-9]{10}"), "10 uppercase letters and digits"),
    "aliyun": (re.compile(r"[A-Za-z0-9]{11}"), "11 letters and digits"),
    "azure": (re.compile(r"[A-Za-z0-9]{4,32}"), "4 to 32 letters and digits, such as 0ne00000A0A"),
    "aws": (re.compile(r"[0-9A-Za-z_-]{1,36}"), "1 to 36 of 0-9 A-Z a-z _ -"),  # CreateProvisioningTemplate
}
DEVICE_NAME_RULES = {  # PROTOCOLS.md 2.4; lib/dynreg/aliyun.py check_device_name
    "tencent": (re.compile(r"[A-Za-z0-9:_-]{1,48}"), "1 to 48 of A-Z a-z 0-9 : _ -"),
    "aliyun": (re.compile(r"[A-Za-z0-9_@.:-]{4,32}"), "4 to 32 of A-Z a-z 0-9 - _ @ . :"),
    # DPS registration ids: lib/dynreg/azure.py check_registration_id
    "azure": (re.compile(r"[A-Za-z0-9._:-]{0,127}[A-Za-z0-9-]"), "1 to 128 of A-Z a-z 0-9 - . _ :, ending in a "
              "letter, digit or -"),
    # The SerialNumber parameter, the claim connection's client id: a thing name's rule (lib/dynreg/aws.py)
    "aws": (re.compile(r"[A-Za-z0-9:_-]{1,128}"), "1 to 128 of A-Z a-z 0-9 : _ -"),
}
CLAIM_FILES = ("claim_cert", "claim_key")  # AWS: the batch's claim, its certificate and key (DER or PEM)
AZURE_KEY_BYTES = (16, 64)  # a group key: base64 of this many bytes (the portal makes 64)
TENCENT_SECRET_LENGTH = 16  # its first 16 characters are the AES-128 key of the cloud's answer


# -- the info as the library reads it ---------------------------------------------------------

class View:
    # The fields of either format under one set of names, and the names the file uses for them.
    def __init__(self, doc):
        self.doc = doc
        self.sdk = "dynreg" not in doc
        if self.sdk:
            self.cloud = "tencent"
            self.names = {"product": "productId", "secret": "productSecret", "device_name": "deviceName"}
        else:
            self.cloud = doc.get("cloud")
            product = {"aliyun": "product_key", "azure": "id_scope", "aws": "template"}.get(self.cloud, "product_id")
            secret = {"azure": "group_key", "aws": "claim_key"}.get(self.cloud, "product_secret")
            self.names = {"product": product, "secret": secret, "device_name": "device_name"}
        self.product = doc.get(self.names["product"])
        self.secret = doc.get(self.names["secret"])
        self.device_name = doc.get(self.names["device_name"])
        self.device_name_from = None if self.sdk else doc.get("device_name_from")

    @property
    def format_name(self):
        return "Tencent C SDK format" if self.sdk else "dynreg format"

    def default_api(self):
        return {"tencent": "current", "azure": "mqtt", "aws": "mqtt"}.get(self.cloud, "https")

    def api(self):
        return "current" if self.sdk else self.doc.get("api", self.default_api())


def read_info(info_path):
    # (doc, problems): the JSON object, or None and why not.
    if not os.path.isfile(info_path):
        return None, ["%s: no such file: give the path of the product's info (device_info.json)" % info_path]
    size = os.path.getsize(info_path)
    if size > MAX_INFO:
        return None, ["%s: %d bytes, larger than the %d the library reads: remove what the board does not need"
                      % (info_path, size, MAX_INFO)]
    try:
        with open(info_path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeError) as e:
        return None, ["%s: not valid JSON (%s): fix the file, or export it again"
                      % (info_path, json_error_place(e))]
    if not isinstance(doc, dict):
        return None, ["%s: not a JSON object: an info is {...} with its fields" % info_path]
    return doc, []


def json_error_place(error):
    # Where the JSON is broken, never the text there.
    if isinstance(error, json.JSONDecodeError):
        return "line %d, column %d" % (error.lineno, error.colno)
    return "not UTF-8"


# -- the checks, one area each: every function returns a list of problems ----------------------

def format_problems(view):
    doc = view.doc
    if view.sdk and "productId" not in doc:
        return ["neither dynreg's format (no \"dynreg\": 1) nor the Tencent C SDK's (no productId): "
                "add \"dynreg\": 1 and \"cloud\", or use the SDK's keys"]
    if not view.sdk and doc.get("dynreg") != 1:
        return ["field dynreg must be 1 (the format's version)"]
    return []


def cloud_problems(view):
    if view.cloud in APIS:
        return []
    return ["field cloud must be tencent (with product_id), aliyun (with product_key), azure (with id_scope) "
            "or aws (with template)"]


def product_problems(view):
    field = view.names["product"]
    if not isinstance(view.product, str) or not view.product:
        return ["field %s is missing or empty: copy it from the product's page in the console" % field]
    pattern, rule = PRODUCT_RULES[view.cloud]
    if not pattern.fullmatch(view.product):
        return ["field %s is not a %s %s (%s): copy it from the console" % (field, cloud_title(view.cloud),
                                                                          product_title(view.cloud), rule)]
    return []


def cloud_title(cloud):
    return {"tencent": "Tencent", "azure": "Azure", "aws": "AWS"}.get(cloud, "Alibaba")


def product_title(cloud):
    return {"tencent": "ProductId", "azure": "ID scope", "aws": "provisioning template"}.get(cloud, "ProductKey")


def secret_problems(view, secret):
    field = view.names["secret"]
    if view.cloud == "aws":
        return claim_problems(view)
    if secret is None or secret == "":
        return ["no ProductSecret (field %s is missing or empty): add it to the info, or give it to "
                "dynreg provision with --secret-file FILE or $%s (never on the command line)" % (field, SECRET_ENV)]
    if not isinstance(secret, str):
        return ["field %s is not a string: write the ProductSecret in quotes" % field]
    found = []
    if secret != secret.strip():
        found.append("the ProductSecret starts or ends with white space: copy it again from the console")
    if view.cloud == "tencent" and len(secret) < TENCENT_SECRET_LENGTH:
        found.append("the ProductSecret has %d characters, fewer than %d: Tencent's is at least 16, and its "
                     "first 16 are the AES-128 key that decrypts the cloud's answer; copy the whole "
                     "ProductSecret from the console" % (len(secret), TENCENT_SECRET_LENGTH))
    if not secret.isascii():
        found.append("the ProductSecret holds characters outside ASCII: copy it again from the console")
    elif view.cloud == "azure" and not group_key_ok(secret):
        found.append("the group key is not the base64 of %d to %d bytes: copy the enrollment group's primary "
                     "key again from the portal" % AZURE_KEY_BYTES)
    return found


def claim_problems(view):
    # AWS's claim names two files; whether they exist and hold a certificate is checked with the
    # other files the info names (claim_file_problems).
    return ["no claim: field %s must name the claim's %s file beside the info (DER or PEM), as the console or "
            "`python -m cloud_emulator aws-add-claim` wrote it" % (field, "certificate" if field == "claim_cert" else "key")
            for field in CLAIM_FILES if not isinstance(view.doc.get(field), str) or not view.doc.get(field)]


def group_key_ok(key):
    import base64
    import binascii

    try:
        raw = base64.b64decode(key, validate=True)
    except (ValueError, binascii.Error):
        return False
    return AZURE_KEY_BYTES[0] <= len(raw) <= AZURE_KEY_BYTES[1]


def device_name_problems(view):
    field = view.names["device_name"]
    name = view.device_name
    if name is not None and name != "":
        if not isinstance(name, str):
            return ["field %s is not a string" % field]
        pattern, rule = DEVICE_NAME_RULES[view.cloud]
        if not pattern.fullmatch(name):
            return ["field %s breaks %s's DeviceName rule (%s): rename the device"
                    % (field, cloud_title(view.cloud), rule)]
        return []
    if view.sdk:
        return ["no DeviceName (field deviceName): the SDK format names the device itself; set deviceName, "
                "or use dynreg's format with device_name_from"]
    rule = view.device_name_from
    if rule is None:
        return ["no DeviceName: set device_name, or device_name_from to %s (the firmware derives it from the chip)"
                % " or ".join(NAME_RULES)]
    if rule not in NAME_RULES:
        return ["field device_name_from must be %s (the rules firmware/board.py knows)" % " or ".join(NAME_RULES)]
    return []


def flag_problems(doc):
    # dynreg's flags, in either format (lib/dynreg/store.py reads them from both).
    return ["field %s must be true or false" % name for name in ("keep_product_secret", "plain_http", "logged_in")
            if not isinstance(doc.get(name, False), bool)]


def option_problems(view):
    if view.sdk:
        mode = view.doc.get("auth_mode", "KEY")
        return flag_problems(view.doc) + ([] if mode in ("KEY", "CERT") else ["field auth_mode must be KEY or CERT"])
    doc, cloud = view.doc, view.cloud
    found = flag_problems(doc)
    if doc.get("api", view.default_api()) not in APIS[cloud]:
        found.append("field api must be one of %s for %s" % (", ".join(APIS[cloud]), cloud))
    if doc.get("algorithm", "hmacsha256") not in ALGORITHMS[cloud]:
        found.append("field algorithm must be one of %s for %s" % (", ".join(ALGORITHMS[cloud]), cloud))
    if doc.get("auth", "key") not in (("key", "cert") if cloud == "tencent" else ("key",)):
        found.append("field auth must be %s for %s" % ("key or cert" if cloud == "tencent" else "key", cloud))
    parameters = doc.get("parameters", {})
    if cloud == "aws" and not (isinstance(parameters, dict) and all(isinstance(v, str) for v in parameters.values())):
        found.append("field parameters must be an object of names to strings (the template's fixed parameters; "
                     "SerialNumber is the DeviceName)")
    if doc.get("api") == "regnwl" and not doc.get("instance_id"):
        found.append("api regnwl (pre-registration-free) needs instance_id: copy the instance's id from the console")
    if not isinstance(doc.get("credential") or {}, dict):
        found.append("field credential must be an object: {} for a device that registers")
    return found


# -- URLs -----------------------------------------------------------------------------------

def url_parts(url):
    # (scheme, hostport, path) of "scheme://host[:port]/path", as lib/dynreg/codec.py splits it.
    scheme, sep, rest = url.partition("://")
    hostport, slash, path = rest.partition("/")
    return (scheme if sep else ""), hostport, slash + path


def url_problems(field, url, schemes, why=""):
    if not isinstance(url, str) or not url:
        return ["field %s must be a URL, %s://host[:port]" % (field, schemes[-1])]
    scheme, hostport, path = url_parts(url)
    if scheme not in schemes:
        return ["field %s must start with %s%s" % (field, " or ".join(s + "://" for s in schemes), why)]
    if "@" in hostport:
        return ["field %s holds a user name or password: remove it (the device signs with its own credential)" % field]
    host, _, port = hostport.partition(":")
    if not host:
        return ["field %s has no host: write %s://host[:port]" % (field, scheme)]
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return ["field %s has a port that is not a number from 1 to 65535" % field]
    if field == "register_url":
        return register_path_problems(path.rstrip("/"))
    if path.rstrip("/"):
        return ["field %s has a path: drop it, the broker is scheme://host[:port]" % field]
    return []


def register_path_problems(path):
    if not path:
        return []
    if path in API_PATHS:
        return []  # taken as its base by dynreg: a note (notes()), not a problem
    return ["field register_url has a path the API does not use: it is a base URL, scheme://host[:port]; "
            "drop the path"]


def endpoint_problems(view):
    doc, aliyun = view.doc, view.cloud == "aliyun"
    found = []
    if view.cloud == "azure":
        for field in ("register_url", "mqtt_url"):
            if field in doc:
                found += url_problems(field, doc[field], ("mqtts",), " (DPS and IoT Hub take MQTT over TLS only)")
        return found
    if view.cloud == "aws":
        if "mqtt_url" not in doc:
            return ["field mqtt_url is missing: the account's data endpoint, "
                    "mqtts://<prefix>-ats.iot.<region>.amazonaws.com:8883 (AWS IoT console, Settings)"]
        return url_problems("mqtt_url", doc["mqtt_url"], ("mqtts",), " (the claim and the board's certificate "
                                                                     "authenticate over TLS only)")
    if "register_url" in doc:
        why = " (Alibaba's answer carries the DeviceSecret in clear: HTTPS only)" if aliyun else ""
        problems = url_problems("register_url", doc["register_url"], ("https",) if aliyun else ("http", "https"), why)
        if not problems and url_parts(doc["register_url"])[0] == "http" and doc.get("plain_http") is not True:
            problems = ["field register_url is plain http://: use https://, or opt in with \"plain_http\": true "
                        "(Tencent's answer is encrypted but not authenticated: on the line, another device's "
                        "answer can be handed to the board)"]
        found += problems
    if "mqtt_url" in doc:
        # Alibaba's logins and a Tencent client certificate need TLS (lib/dynreg: ConfigError).
        cert = doc.get("auth_mode" if view.sdk else "auth") in ("CERT", "cert")
        why = " (Alibaba's brokers take TLS only)" if aliyun else \
            " (a client certificate authenticates over TLS only)" if cert else ""
        found += url_problems("mqtt_url", doc["mqtt_url"], ("mqtts",) if aliyun or cert else ("mqtt", "mqtts"), why)
    return found


# -- CA certificates ------------------------------------------------------------------------

def ca_file(view, info_path, ca_path, field="ca"):
    # The CA file to check: --ca, else the info's field relative to the info's folder.
    if field == "ca" and ca_path:
        return ca_path
    name = view.doc.get(field)
    if not isinstance(name, str) or not name:
        return None
    return name if os.path.isabs(name) else os.path.join(os.path.dirname(info_path), name)


def ca_problems(view, info_path, ca_path):
    # No CA is no problem: the firmware's built-in roots verify the clouds' own endpoints
    # (warnings() says which, and whether one expires soon).
    found = []
    if "ca" in view.doc and not isinstance(view.doc["ca"], str):
        found.append("field ca must be a file name (the CA certificate beside the info)")
    path = ca_file(view, info_path, ca_path)
    if path is not None:
        found += certificate_problems(path, "--ca" if ca_path else "field ca")
    mqtt_ca = ca_file(view, info_path, None, "mqtt_ca")
    if mqtt_ca:
        found += certificate_problems(mqtt_ca, "field mqtt_ca")
    return found


def credential_files(view):
    # (field, name) of each certificate or key file the info names: Tencent certificate auth's,
    # set in a template that carries a device certificate; AWS's claim.
    outer, inner = ("cert_deviceinfo", ("devCertFile", "devPrivateKeyFile")) if view.sdk else \
        ("credential", ("cert_file", "key_file"))
    found = [("%s.%s" % (outer, name), view.doc[outer][name]) for name in inner if is_value(view.doc.get(outer), name)]
    if view.cloud == "aws":
        found += [(field, view.doc[field]) for field in CLAIM_FILES if is_value(view.doc, field)]
    return found


def named_files(view, info_path, ca_path=None):
    """[(field, path on this computer)] of every file the info names, which go to the board
    beside it: the CA (--ca's, else the info's), the broker's CA, certificate and key files."""
    found = [(field, ca_file(view, info_path, ca_path, field)) for field in ("ca", "mqtt_ca")]
    for field, name in credential_files(view):
        found.append((field, name if os.path.isabs(name) else os.path.join(os.path.dirname(info_path), name)))
    return [(field, path) for field, path in found if path]


def credential_file_problems(view, info_path):
    found = []
    for field, path in named_files(view, info_path):
        if field in ("ca", "mqtt_ca"):
            continue
        if not os.path.isfile(path):
            found.append("the file %s (field %s) does not exist: put it beside the info, or empty the field"
                         % (path, field))
        elif os.path.getsize(path) > MAX_INFO:
            found.append("the file %s (field %s) has more than the %d bytes the library reads" % (path, field, MAX_INFO))
        elif field == "claim_cert":
            found += claim_certificate_problems(path)
    return found


def claim_certificate_problems(path):
    # The claim certificate only: its key is never read here (nothing of it could be shown).
    with open(path, "rb") as f:
        data = f.read()
    try:
        certificates = der.certificates(data)
    except ValueError as e:
        return ["the claim certificate %s (field claim_cert) is not a certificate (%s): give the claim's "
                "certificate, DER or PEM" % (path, e)]
    now = datetime.now(timezone.utc)
    return ["the claim certificate %s (field claim_cert) expired on %s: make a new claim in the console"
            % (path, c.expires.date()) for c in certificates if c.expires < now]


def certificate_problems(path, given_by):
    what = "the CA file %s (%s)" % (path, given_by)
    if not os.path.isfile(path):
        return ["%s does not exist: give the path of the cloud's root certificate (DER or PEM)" % what]
    size = os.path.getsize(path)
    if size > MAX_INFO:
        return ["%s has %d bytes, more than the %d the library reads: keep only the root that signs the server"
                % (what, size, MAX_INFO)]
    with open(path, "rb") as f:
        data = f.read()
    try:
        certificates = der.certificates(data)
    except ValueError as e:
        return ["%s is not a certificate (%s): give the cloud's root CA certificate, DER or PEM" % (what, e)]
    return expiry_problems(what, certificates)


def expiry_problems(what, certificates):
    now = datetime.now(timezone.utc)
    return ["%s holds a certificate that expired on %s: get the cloud's current root" % (what, c.expires.date())
            for c in certificates if c.expires < now]


# -- the public functions -------------------------------------------------------------------

def problems(info_path, ca_path=None, product_secret=None):
    """Every problem of the info at info_path and its CA, each with its fix; [] when it is fine.
    ca_path: the CA to check instead of the info's "ca" (provision's --ca).
    product_secret: the ProductSecret to check instead of the info's (--secret-file, $DYNREG_PRODUCT_SECRET)."""
    doc, found = read_info(info_path)
    if doc is None:
        return found
    view = View(doc)
    found = format_problems(view) + cloud_problems(view)
    if found:
        return found
    secret = view.secret if product_secret is None else product_secret
    return (product_problems(view) + secret_problems(view, secret) + device_name_problems(view)
            + option_problems(view) + endpoint_problems(view) + ca_problems(view, info_path, ca_path)
            + credential_file_problems(view, info_path))


def notes(info_path):
    """What is worth knowing but not wrong: a credential already in the info."""
    doc, found = read_info(info_path)
    if doc is None:
        return []
    found = []
    url = doc.get("register_url")
    path = url.partition("://")[2].partition("/")[2] if isinstance(url, str) else ""
    if "/" + path.rstrip("/") in API_PATHS:
        found.append("field register_url ends in the API path /%s: dynreg takes it as its base URL "
                     "(scheme://host[:port]) and adds the path itself" % path.rstrip("/"))
    held = held_credential_fields(View(doc))
    if held:
        found.append("the info already holds a credential (%s): a board given it connects with it and never "
                     "registers; for a new device, empty it" % ", ".join(held))
    return found


def warnings(info_path, ca_path=None, now=None, days=365):
    """What may stop a board later: a built-in root the info relies on that expires within
    `days`, and a CA file that is none of the cloud's known roots (right for the emulator or a
    private broker, wrong for the cloud itself)."""
    from dynreg_tools import roots

    doc, found = read_info(info_path)
    if doc is None:
        return []
    view = View(doc)
    if view.cloud not in roots.CLOUDS:
        return []
    found = []
    if ca_path:
        doc = dict(doc, ca=ca_path)
        view = View(doc)
    for bundle, what in roots.bundles_of(view):
        for name, expires in roots.expiring(view.cloud, bundle, days, now):
            found.append("the built-in root %s, which verifies %s, expires on %s: keep the firmware's roots "
                         "up to date (dynreg roots)" % (name, what, expires))
    known = {value for value in roots.built_in(view.cloud).values() if isinstance(value, bytes)}
    for field in ("ca", "mqtt_ca"):
        path = ca_file(view, info_path, ca_path if field == "ca" else None, field)
        if not path or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        try:
            ders = [c.der for c in der.certificates(data)]
        except ValueError:
            continue
        if not known.intersection(ders):
            found.append("the %s file %s is none of %s's known roots (dynreg roots lists them): "
                         "right for the local emulator or a private broker; for the cloud itself, drop %s and "
                         "the built-in roots apply" % (field, path, cloud_title(view.cloud), field))
    return found


def held_credential_fields(view):
    doc = view.doc
    if view.sdk:
        fields = [("key_deviceinfo", "deviceSecret"), ("cert_deviceinfo", "devCertFile")]
        return ["%s.%s" % (outer, inner) for outer, inner in fields
                if is_value(doc.get(outer), inner)]
    credential = doc.get("credential")
    return ["credential.%s" % name for name in sorted(credential or {}) if is_value(credential, name)] \
        if isinstance(credential, dict) else []


def is_value(container, name):
    value = container.get(name) if isinstance(container, dict) else None
    return isinstance(value, str) and value not in PLACEHOLDERS


def summary(info_path, ca_path=None):
    """One line naming the cloud, the product and the device naming; never a secret."""
    doc, _ = read_info(info_path)
    view = View(doc)
    if view.device_name:
        naming = "fixed DeviceName %s" % view.device_name
    else:
        naming = "DeviceName from the chip (%s)" % view.device_name_from
    ca = ca_file(view, info_path, ca_path)
    return "%s (%s): %s %s %s, %s, %s API, CA %s" % (
        info_path, view.format_name, cloud_title(view.cloud), product_title(view.cloud), view.product, naming,
        view.api(), ca or "built in (dynreg roots)")


# -- command line ---------------------------------------------------------------------------

class OptionNamesOnlyParser(argparse.ArgumentParser):
    # argparse's errors quote what was typed ("unrecognized arguments: --secret VALUE"): a
    # mistyped option may carry a secret, so the message keeps option names and drops values.
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, "%s: error: %s\n" % (self.prog, names_only(message)))


def names_only(message):
    kind, _, detail = message.partition(": ")
    if kind == "unrecognized arguments":
        names = " ".join(n for n in map(option_name, detail.split()) if n)
        return "unrecognized arguments%s (values not shown)" % (": " + names if names else "")
    message = re.split("['\"]", message)[0]  # argparse quotes every value it names
    return re.sub(r"(?<!\S)-\S+?(?=[:,]?(\s|$))", lambda m: option_name(m.group()) or "(value)",
                  message).rstrip(": ")


def option_name(token):
    # "--secret=VALUE" -> "--secret"; anything not shaped like an option name -> None.
    name = token.split("=", 1)[0]
    return name if re.fullmatch(r"--?[a-z][a-z0-9-]{0,30}", name) else None


def given_secret(secret_file):
    """The ProductSecret from `secret_file` ("-": stdin), else $DYNREG_PRODUCT_SECRET; None
    when neither gives one. OSError when the file cannot be read."""
    if secret_file == "-":
        return sys.stdin.read().strip() or None
    if secret_file:
        with open(secret_file) as f:
            return f.read().strip()
    return os.environ.get(SECRET_ENV) or None


def parse_args(argv):
    parser = OptionNamesOnlyParser(prog="dynreg check", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("info", nargs="?", help="the info file (dynreg's format or the Tencent C SDK's)")
    parser.add_argument("--ca", help="the CA certificate to check instead of the info's 'ca' (DER or PEM)")
    parser.add_argument("--secret-file", help="file holding the ProductSecret, when the info has none")
    parser.add_argument("--site", help="a site.json to check (WiFi, NTP, online options: docs/SITE.md)")
    parser.add_argument("--board", choices=site_check.BOARDS,
                        help="the board the site is for: rp2 and esp32 need WiFi settings (without --site: "
                             "says so when the board needs a site file)")
    args = parser.parse_args(argv)
    if not args.info and not args.site:
        parser.error("give an info file, --site FILE, or both")
    return args


def main(argv=None, out=print):
    args = parse_args(argv)
    found = []
    if args.info:
        try:
            secret = given_secret(args.secret_file)
        except OSError:
            out("problem: cannot read the secret file %s: give the file holding the ProductSecret" % args.secret_file)
            return 1
        found = problems(args.info, args.ca, secret)
        for note in notes(args.info):
            out("note: " + note)
        if not found:
            for warning in warnings(args.info, args.ca):
                out("warning: " + warning)
    site_found = site_check.site_problems(args.site, args.board) if args.site or args.board else []
    for problem in found + site_found:
        out("problem: " + problem)
    if found or site_found:
        return 1
    if args.info:
        out("ok: " + summary(args.info, args.ca))
    if args.site:
        out("ok: %s: every setting known and in range%s" % (args.site, " for a%s board" % site_check.TITLES[args.board]
                                                             if args.board else " (no --board: WiFi not required)"))
    return 0

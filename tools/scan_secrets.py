# Fails when a secret shows up where it must not. The secrets are collected from the run's
# own files: every emulator state.json (product secrets, issued psk, DeviceSecret, tokens,
# private keys) and every device_info.json / subdevices.json (product secrets, credentials);
# and every private key file, PEM or DER (AWS: the claim's key, the keys CreateKeysAndCertificate
# minted, as dynreg and the vendor SDK store them; Tencent's certificate devices' keys). AWS's
# ownership tokens are nowhere to collect: the emulator keeps only their SHA-256, and its log
# hides them.
# Searched: what the test suite, the demo and the devices printed (the files given), and
# every file under the roots that is not a store file: request logs, emulator output, ...
#   scan_secrets.py --roots build/pytest-tmp build/demo --outputs build/pytest.out ...
import base64
import json
import os
import sys

from dynreg_tools.check import OptionNamesOnlyParser

# product_info.json: the identity `dynreg provision` writes onto boards (it holds the
# ProductSecret); *.bin: an emulated Pico W's whole flash, which holds its store.
STORE_FILES = {"state.json", "device_info.json", "subdevices.json", "device_info.json.tmp",
               "state.json.tmp", "subdevices.json.tmp", "product_info.json"}
STORE_ENDINGS = (".crt", ".key", ".img", ".bin", ".der", ".pem", ".lock", ".mpy")
SECRET_FIELDS = {"product_secret", "productSecret", "secret", "psk", "deviceSecret", "device_secret",
                 "device_token", "deviceToken", "key_pem", "clientKey", "key", "group_key", "device_key"}
MIN_LENGTH = 12  # shorter values would match by chance
KEY_ENDINGS = (".key", ".pem", ".der")  # store files that may hold a private key
MAX_KEY_FILE = 65536


def key_parts(body):
    # A private key's base64 lines (a PEM's body): its first and its middle line, either enough
    # to spot the key printed whole or in part.
    lines = [line for line in body if len(line) >= MIN_LENGTH]
    return {lines[0], lines[len(lines) // 2]} if lines else set()


def pem_lines(value):
    return [line.strip() for line in value.splitlines() if line.strip() and not line.startswith("-----")]


def is_der_private_key(data):
    # A SEQUENCE whose first element is INTEGER 0 (PKCS#1, PKCS#8) or 1 (SEC1 EC): a
    # certificate's first element is a SEQUENCE.
    if len(data) < 8 or data[0] != 0x30:
        return False
    start = 2 + (data[1] & 0x7F if data[1] & 0x80 else 0)
    return data[start:start + 3] in (b"\x02\x01\x00", b"\x02\x01\x01")


def key_file_secrets(path, found):
    # A private key's parts, whether the file holds it as PEM or as DER (which a PEM of it
    # would print as the same base64 lines).
    try:
        if os.path.getsize(path) > MAX_KEY_FILE:
            return
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    text = data.decode("latin-1")
    if "PRIVATE KEY-----" in text:
        for block in text.split("-----BEGIN ")[1:]:
            if block.split("-----", 1)[0].endswith("PRIVATE KEY"):
                found |= key_parts(pem_lines(block.split("-----", 1)[1].split("-----END", 1)[0]))
    elif is_der_private_key(data):
        encoded = base64.b64encode(data).decode()
        found |= key_parts([encoded[i:i + 64] for i in range(0, len(encoded), 64)])


def secrets_in(value, found, field=None):
    if isinstance(value, dict):
        for name, item in value.items():
            secrets_in(item, found, name)
    elif isinstance(value, list):
        for item in value:
            secrets_in(item, found, field)
    elif isinstance(value, str) and field in SECRET_FIELDS and len(value) >= MIN_LENGTH:
        if value.startswith("-----BEGIN"):  # a PEM key
            found |= key_parts(pem_lines(value))
        elif value not in ("YOUR_IOT_PSK", "YOUR_PRODUCT_SECRET"):
            found.add(value)


def walk(roots):
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                yield os.path.join(folder, name), name


def main():
    # Its errors name options, never the values typed (a mistyped option may carry a secret).
    parser = OptionNamesOnlyParser()
    parser.add_argument("--roots", nargs="*", default=[])
    parser.add_argument("--outputs", nargs="*", default=[])
    args = parser.parse_args()
    secrets = set()
    searched = []
    for path, name in walk(args.roots):
        if name in STORE_FILES:
            try:
                with open(path) as f:
                    secrets_in(json.load(f), secrets)
            except (ValueError, UnicodeDecodeError, OSError):
                pass
        elif name.endswith(KEY_ENDINGS):
            key_file_secrets(path, secrets)
        elif not name.endswith(STORE_ENDINGS) and not name.startswith("secret"):
            # (secret* files hold the ProductSecret that `dynreg provision` reads: a store too)
            searched.append(path)
    searched += [p for p in args.outputs if os.path.exists(p)]
    hits = []
    for path in searched:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        for secret in secrets:
            if secret in text:
                hits.append((path, len(secret)))
    print("secrets scan: %d secrets from the run's stores, %d files searched (%d printed outputs), %d hits"
          % (len(secrets), len(searched), len([p for p in args.outputs if os.path.exists(p)]), len(hits)))
    for path, length in hits[:20]:
        print("  a secret of %d characters appears in %s" % (length, path))
    return 1 if hits or not secrets else 0


if __name__ == "__main__":
    sys.exit(main())

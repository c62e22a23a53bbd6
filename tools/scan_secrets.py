# Fails when a secret shows up where it must not. The secrets are collected from the run's
# own files: every emulator state.json (product secrets, issued psk, DeviceSecret, tokens,
# private keys) and every device_info.json / subdevices.json (product secrets, credentials).
# Searched: what the test suite, the demo and the devices printed (the files given), and
# every file under the roots that is not a store file: request logs, emulator output, ...
#   scan_secrets.py --roots build/pytest-tmp build/demo --outputs build/pytest.out ...
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


def secrets_in(value, found, field=None):
    if isinstance(value, dict):
        for name, item in value.items():
            secrets_in(item, found, name)
    elif isinstance(value, list):
        for item in value:
            secrets_in(item, found, field)
    elif isinstance(value, str) and field in SECRET_FIELDS and len(value) >= MIN_LENGTH:
        if value.startswith("-----BEGIN"):  # a PEM key: its first line of base64 is enough
            lines = value.splitlines()
            value = lines[1] if len(lines) > 1 else value
        if value not in ("YOUR_IOT_PSK", "YOUR_PRODUCT_SECRET"):
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

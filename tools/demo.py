# `make demo`: a fresh device registers against the local cloud emulator, on the MicroPython
# unix port booting from a littlefs2 image, then boots again without registering.
# Prints the story step by step; exits 0 only if every step happened as told. No secret is
# printed: the output is checked for them before the verdict.
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
from cloud_emulator.testing import running_emulator  # noqa: E402

WORK = os.path.join(ROOT, "build", "demo")
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
RUN_BOARD = os.path.join(ROOT, "boards", "unix", "run.py")
MICROPYPATH = ":".join(os.path.join(ROOT, p) for p in ("firmware", "lib", "build/deps"))
PRODUCT_ID = "DEMO000001"
PRODUCT_SECRET = "dEm0-Pr0duct-S3cret-f0r-l0cal-use"
UNIQUE_ID = "3c71bf0a1b2c"  # what machine.unique_id() gives this virtual board, in hex

printed = []


def say(text=""):
    printed.append(text)
    print(text, flush=True)


def step(n, total, text):
    say("\n[%d/%d] %s" % (n, total, text))


def board(image, *args):
    env = dict(os.environ, MICROPYPATH=MICROPYPATH, DYNREG_UNIQUE_ID=UNIQUE_ID)
    proc = subprocess.run([MICROPYTHON, RUN_BOARD, image] + list(args), capture_output=True, text=True,
                          env=env, timeout=120)
    for line in (proc.stdout + proc.stderr).splitlines():
        say("      | " + line)
    return proc.returncode


def read_from_image(image, name):
    code = "import sys, vfs; sys.path.insert(0, %r); from blockdev import FileBlockDevice; " \
           "vfs.mount(vfs.VfsLfs2(FileBlockDevice(%r)), '/flash'); print(open('/flash/%s').read())" % (
               os.path.dirname(RUN_BOARD), image, name)
    return subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True, check=True).stdout


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    total = 7
    checks = []

    def check(what, ok):
        checks.append((what, ok))
        say("      %s %s" % ("ok  " if ok else "FAIL", what))

    step(1, total, "Starting the local cloud emulator (HTTPS registration, MQTT broker over TLS)")
    with running_emulator(os.path.join(WORK, "cloud")) as cloud:
        say("      registration https://localhost:%d, MQTT mqtts://localhost:%d, test CA %s"
            % (cloud.https_port, cloud.mqtts_port, os.path.relpath(cloud.ca_der_path, ROOT)))

        step(2, total, "Creating product %s in the cloud: key auth, dynamic registration on, auto-create" % PRODUCT_ID)
        cloud.add_product(PRODUCT_ID, PRODUCT_SECRET, auth="key", dynreg=True, mode="autocreate", limit=1000)

        step(3, total, "Flashing a fresh device: littlefs2 image with the product identity, an empty secret and the CA")
        info = {"dynreg": 1, "cloud": "tencent", "product_id": PRODUCT_ID, "product_secret": PRODUCT_SECRET,
                "device_name_from": "unique_id", "register_url": "https://localhost:%d" % cloud.https_port,
                "mqtt_url": "mqtts://localhost:%d" % cloud.mqtts_port, "ca": "ca.der", "credential": {"psk": ""}}
        info_file = os.path.join(WORK, "device_info.json")
        with open(info_file, "w") as f:
            json.dump(info, f)
        site_file = os.path.join(WORK, "site.json")
        with open(site_file, "w") as f:
            json.dump({"boot_attempts": 1}, f)
        image = os.path.join(WORK, "device.img")
        board(image, "--format", "--put", info_file, "device_info.json", "--put", cloud.ca_der_path, "ca.der",
              "--put", site_file, "site.json", "--no-main")
        os.remove(info_file)  # the identity now lives on the device's flash only
        say("      %s: 256 KiB littlefs2, files: device_info.json (no secret), ca.der, site.json"
            % os.path.relpath(image, ROOT))
        device = UNIQUE_ID  # DeviceName derived from the chip id on the board

        step(4, total, "First boot: the device registers, stores its credential, connects and publishes")
        rc1 = board(image)
        log = cloud.log()
        regs = [e for e in log if e.get("api", "").startswith("tencent") and e.get("device") == device]
        check("exit status 0", rc1 == 0)
        check("the cloud saw one registration of %s, answered ok" % device,
              [e["result"] for e in regs] == ["ok"])
        stored = json.loads(read_from_image(image, "device_info.json"))
        psk = stored.get("credential", {}).get("psk", "")
        check("the credential is on the device's flash (psk of %d characters, matching the one the cloud issued)"
              % len(psk), bool(psk) and cloud.device(PRODUCT_ID, device).get("psk") == psk)
        cloud.wait_for_log(lambda e: e.get("api") == "mqtt-publish" and e.get("device") == device, timeout=5)
        pubs = [e for e in cloud.log() if e.get("api") == "mqtt-publish" and e.get("device") == device]
        check("the broker accepted its MQTT login and received %s" % (
            "%s on %s" % (pubs[0]["payload"], pubs[0]["topic"]) if pubs else "no message"), len(pubs) == 1)

        step(5, total, "Second boot: the credential is on flash, so no registration, straight to MQTT")
        rc2 = board(image)
        log = cloud.log()
        regs = [e for e in log if e.get("api", "").startswith("tencent") and e.get("device") == device]
        logins = [e for e in log if e.get("api") == "mqtt-connect" and e.get("device") == device]
        check("exit status 0", rc2 == 0)
        check("the cloud's log still holds exactly one registration of %s" % device, len(regs) == 1)
        check("the broker saw a second login, accepted", [e["result"] for e in logins] == ["ok", "ok"])

        step(6, total, "The cloud's view of the device")
        view = cloud.device(PRODUCT_ID, device)
        say("      %s/%s: status %s, registrations %s" % (PRODUCT_ID, device, view["status"], view["registrations"]))
        check("status is activated after one registration", view["status"] == "activated" and view["registrations"] == 1)

    step(7, total, "Stopped the emulator; checking that no secret was printed")
    leaked = [s for s in (PRODUCT_SECRET, psk) if s and any(s in line for line in printed)]
    check("no secret in this output", not leaked)
    failed = [what for what, ok in checks if not ok]
    say("\nDEMO %s: %d of %d checks passed" % ("PASSED" if not failed else "FAILED", len(checks) - len(failed), len(checks)))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())

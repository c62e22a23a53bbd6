# `make demo`: fresh devices register against the local cloud emulator on the MicroPython unix
# port, each booting firmware/main.py from its own littlefs2 image, then boot again without
# registering: a Tencent device (HTTPS registration), an Alibaba device (MQTT registration),
# an Alibaba gateway that registers two sub-devices, an Azure device (DPS group enrollment) and an
# AWS device (fleet provisioning by claim). Each boot stays online (keepalive pings) for
# ONLINE_MS, then leaves: site.json "online_ms", 0 (forever) on a real board.
# Prints the story step by step; exits 0 only if every step happened as told. No secret is
# printed: the output is checked for every secret before the verdict.
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloud_emulator.testing import running_emulator
from runtime import MICROPYTHON, ROOT, micropypath  # beside this file

WORK = os.path.join(ROOT, "build", "demo")

RUN_BOARD = os.path.join(ROOT, "boards", "unix", "run.py")
MICROPYPATH = micropypath("firmware")
SECRETS = {"tencent": "dEm0-Pr0duct-S3cret-f0r-l0cal-use", "aliyun": "aLiDem0Pr0dS3cret9",
           "gateway": "gAtewayDem0S3cret7", "sub": "sUbDev1ceDem0S3cr",
           "azure": "ZEVtMC1ncm91cC1rZXktZjByLWwwY2FsLXVzZS0wMTIzNDU2Nzg5YWJjZGVm"}  # base64 of 45 bytes
TENCENT_PRODUCT = "DEMO000001"
ALIYUN_PRODUCT = "a1DemoOven1"
GATEWAY_PRODUCT = "a1DemoGatew"
SUB_PRODUCT = "a1DemoSensr"
SUB_DEVICES = [[SUB_PRODUCT, "sensor-0001"], [SUB_PRODUCT, "sensor-0002"]]
AZURE_GROUP, AZURE_SCOPE, AZURE_HUB = "demo-line", "0ne00DEMO01", "demo-hub.azure-devices.net"
AZURE_CHIP = "a4cf12f0e1d2"
AWS_TEMPLATE, AWS_PREFIX, AWS_CHIP = "DemoFleet", "demo-", "e8db84a0b1c2"
AWS_PARAMETERS, AWS_CONFIG = {"Model": "oven-v2"}, {"ReportEveryMinutes": "5"}
ONLINE_MS, PING_MS = 1500, 500  # each boot stays online this long, pinging (site.json)

printed = []
checks = []


def say(text=""):
    printed.append(text)
    print(text, flush=True)


def check(what, ok):
    checks.append((what, ok))
    say("      %s %s" % ("ok  " if ok else "FAIL", what))


def board(image, *args, unique_id="3c71bf0a1b2c"):
    env = dict(os.environ, MICROPYPATH=MICROPYPATH, DYNREG_UNIQUE_ID=unique_id)
    proc = subprocess.run([MICROPYTHON, RUN_BOARD, image] + list(args), capture_output=True, text=True,
                          env=env, timeout=120)
    for line in (proc.stdout + proc.stderr).splitlines():
        say("      | " + line)
    return proc.returncode, proc.stdout + proc.stderr


def on_image(image, statement):
    # What `statement` prints, run with the board's flash mounted at /flash.
    code = ("import sys, os, vfs, binascii; sys.path.insert(0, %r); from blockdev import FileBlockDevice; "
            "vfs.mount(vfs.VfsLfs2(FileBlockDevice(%r)), '/flash'); %s" % (os.path.dirname(RUN_BOARD), image, statement))
    return subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True, check=True).stdout


def read_from_image(image, name):
    return json.loads(on_image(image, "print(open('/flash/%s').read())" % name))


def bytes_from_image(image, name):
    return bytes.fromhex(on_image(image, "print(binascii.hexlify(open('/flash/%s', 'rb').read()).decode())" % name))


def flash(name, cloud, info, site=None, extra=()):
    # A fresh board: a littlefs2 image with the identity (no secret), the CA, site settings and
    # `extra` files, (host path, name on the board).
    folder = os.path.join(WORK, name)
    os.makedirs(folder)
    files = {"device_info.json": info,
             "site.json": dict({"boot_attempts": 1, "online_ms": ONLINE_MS, "ping_ms": PING_MS}, **(site or {}))}
    puts = ["--put", cloud.ca_der_path, "ca.der"]
    for path, file_name in extra:
        puts += ["--put", str(path), file_name]
    for file_name, doc in files.items():
        path = os.path.join(folder, file_name)
        with open(path, "w") as f:
            json.dump(doc, f)
        puts += ["--put", path, file_name]
    image = os.path.join(folder, "flash.img")
    board(image, "--format", "--no-main", *puts)
    for file_name in files:
        os.remove(os.path.join(folder, file_name))  # the identity now lives on the board's flash only
    say("      %s: littlefs2 image with device_info.json (no secret), ca.der, %ssite.json (online %d ms)"
        % (os.path.relpath(image, ROOT), "".join(file_name + ", " for _, file_name in extra), ONLINE_MS))
    return image


def events(cloud, device, apis):
    return [e for e in cloud.log() if e.get("device") == device and e.get("api") in apis]


def boot_once(image, **board_args):
    status, output = board(image, **board_args)
    check("exit status 0", status == 0)
    check("stayed online (online_ms %d) in one session, then left" % ONLINE_MS,
          "leaving after 1 session" in output and "offline after" not in output)


def _status(topic):
    # The board's own status message, not a gateway's, DPS's or AWS's provisioning requests.
    return "/thing/" not in topic and not topic.startswith("$")


def two_boots(cloud, image, device, registration_apis, answered=("ok",), login=("mqtt-connect", None), **board_args):
    # `answered`: the results of the first boot's registration requests; `login`: the log's api
    # of a login, and the name the board logs in as, if not `device` (AWS: its thing's).
    login_api, client = login[0], login[1] or device
    say("    First boot:")
    boot_once(image, **board_args)
    check("the cloud saw one registration of %s, answered %s" % (device, ", ".join(answered)),
          [e["result"] for e in events(cloud, device, registration_apis)] == list(answered))
    try:
        cloud.wait_for_log(lambda e: e.get("api") == "mqtt-publish" and e.get("device") == client
                           and _status(e["topic"]), timeout=5)
    except Exception:
        pass
    pubs = [e for e in events(cloud, client, ("mqtt-publish",)) if _status(e["topic"])]
    check("the broker accepted its login%s and received %s" % (
        " as %s" % client if client != device else "",
        "%s on %s" % (pubs[0]["payload"], pubs[0]["topic"]) if pubs else "nothing"), len(pubs) == 1)
    say("    Second boot:")
    boot_once(image, **board_args)
    check("still exactly one registration of %s in the cloud's log" % device,
          len(events(cloud, device, registration_apis)) == len(answered))
    check("a second login, accepted", [e["result"] for e in events(cloud, client, (login_api,))] == ["ok", "ok"])


def pem_line(der):
    # The first line of base64 a PEM of these bytes would print: enough to spot a key.
    return base64.b64encode(der).decode()[:64]


def aws_board(cloud, issued):
    # Fleet provisioning by claim: the batch's claim certificate and key on a fresh board buy it
    # a certificate, a key and a thing, then the claim is erased. Returns the claim's secret.
    say("\n[6/7] AWS: fleet provisioning template %s (things named %s<serial>); the operator's claim "
        "certificate and key, minted by the emulator for it, on a fresh board whose serial comes from its "
        "chip id: it trades the claim for a certificate, a key and a thing over MQTT (mutual TLS), logs in "
        "as the thing, then erases the claim" % (AWS_TEMPLATE, AWS_PREFIX))
    cloud.add_aws_template(AWS_TEMPLATE, ("SerialNumber", "Model"), thing_name_prefix=AWS_PREFIX,
                           device_configuration=AWS_CONFIG)
    claim = cloud.add_aws_claim(AWS_TEMPLATE, folder=os.path.join(WORK, "aws-claim"))
    image = flash("aws", cloud, {"dynreg": 1, "cloud": "aws", "template": AWS_TEMPLATE,
                                 "device_name_from": "unique_id", "parameters": AWS_PARAMETERS,
                                 "mqtt_url": "mqtts://localhost:%d" % cloud.aws_mqtts_port, "ca": "ca.der",
                                 "claim_cert": "claim.crt", "claim_key": "claim.key", "credential": {}},
                  extra=((claim.cert_pem, "claim.crt"), (claim.key_pem, "claim.key")))
    thing = AWS_PREFIX + AWS_CHIP
    two_boots(cloud, image, AWS_CHIP, ("aws-create-keys", "aws-register-thing"), answered=("ok", "ok"),
              login=("aws-login", thing), unique_id=AWS_CHIP)
    stored = read_from_image(image, "device_info.json")
    credential = stored["credential"]
    cert = x509.load_der_x509_certificate(bytes_from_image(image, credential.get("cert_file", "")))
    key_der = bytes_from_image(image, credential.get("key_file", ""))
    issued.append(pem_line(key_der))
    row = cloud.aws_certificate(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()) or {}
    check("the certificate and key on flash (DER) are a pair, the certificate %s in the cloud for thing %s"
          % (row.get("status"), row.get("thing")),
          serialization.load_der_private_key(key_der, None).public_key().public_numbers()
          == cert.public_key().public_numbers() and row.get("status") == "ACTIVE" and row.get("thing") == thing
          and credential.get("thing_name") == thing)
    check("the thing's parameters are the chip's serial and the batch's, its configuration on flash",
          (cloud.aws_thing(thing) or {}).get("parameters") == dict(AWS_PARAMETERS, SerialNumber=AWS_CHIP)
          and stored.get("device_configuration") == AWS_CONFIG)
    files = on_image(image, "print(' '.join(sorted(os.listdir('/flash'))))").split()
    check("the claim is gone from the flash (%s) and from the info" % ", ".join(files),
          "claim.crt" not in files and "claim.key" not in files and "claim_cert" not in stored
          and "claim_key" not in stored)
    with open(claim.key_der, "rb") as f:
        return [pem_line(f.read())]


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    issued = []
    say("[1/7] Starting the local cloud emulator (HTTPS registration, MQTT broker over TLS, AWS IoT Core's "
        "endpoint with client certificates)")
    with running_emulator(os.path.join(WORK, "cloud")) as cloud:
        https = "https://localhost:%d" % cloud.https_port
        mqtts = "mqtts://localhost:%d" % cloud.mqtts_port
        say("      registration %s, MQTT %s, AWS mqtts://localhost:%d, test CA %s"
            % (https, mqtts, cloud.aws_mqtts_port, os.path.relpath(cloud.ca_der_path, ROOT)))

        say("\n[2/7] Tencent: product %s (key auth, dynamic registration, auto-create); a fresh board whose "
            "DeviceName comes from its chip id" % TENCENT_PRODUCT)
        cloud.add_product(TENCENT_PRODUCT, SECRETS["tencent"], auth="key", dynreg=True, mode="autocreate", limit=1000)
        image = flash("tencent", cloud, {"dynreg": 1, "cloud": "tencent", "product_id": TENCENT_PRODUCT,
                                         "product_secret": SECRETS["tencent"], "device_name_from": "unique_id",
                                         "register_url": https, "mqtt_url": mqtts, "ca": "ca.der",
                                         "credential": {"psk": ""}})
        device = "3c71bf0a1b2c"
        two_boots(cloud, image, device, ("tencent-v2", "tencent-legacy"))
        psk = read_from_image(image, "device_info.json")["credential"].get("psk", "")
        issued.append(psk)
        check("the psk on flash (%d characters) is the one the cloud issued" % len(psk),
              bool(psk) and cloud.device(TENCENT_PRODUCT, device).get("psk") == psk)

        say("\n[3/7] Alibaba: product %s, device oven-0042 pre-registered in the console; the board registers "
            "over MQTT (TLS) and receives its DeviceSecret on /ext/register" % ALIYUN_PRODUCT)
        cloud.add_product(ALIYUN_PRODUCT, SECRETS["aliyun"], cloud="aliyun")
        cloud.add_device(ALIYUN_PRODUCT, "oven-0042")
        image = flash("aliyun", cloud, {"dynreg": 1, "cloud": "aliyun", "product_key": ALIYUN_PRODUCT,
                                        "product_secret": SECRETS["aliyun"], "device_name": "oven-0042",
                                        "api": "mqtt", "mqtt_url": mqtts, "ca": "ca.der", "credential": {}})
        two_boots(cloud, image, "oven-0042", ("aliyun-mqtt-register", "aliyun-https-register"))
        secret = read_from_image(image, "device_info.json")["credential"].get("device_secret", "")
        issued.append(secret)
        check("the DeviceSecret on flash is the one the cloud issued",
              bool(secret) and cloud.device(ALIYUN_PRODUCT, "oven-0042").get("device_secret") == secret)

        say("\n[4/7] Alibaba gateway: gateway gw-0001 registers over HTTPS, then registers two sub-devices "
            "through its MQTT session and adds them to its topology")
        cloud.add_product(GATEWAY_PRODUCT, SECRETS["gateway"], cloud="aliyun", gateway=True)
        cloud.add_product(SUB_PRODUCT, SECRETS["sub"], cloud="aliyun", subdevice=True)
        cloud.add_device(GATEWAY_PRODUCT, "gw-0001")
        for pk, dn in SUB_DEVICES:
            cloud.add_device(pk, dn)
        image = flash("gateway", cloud, {"dynreg": 1, "cloud": "aliyun", "product_key": GATEWAY_PRODUCT,
                                         "product_secret": SECRETS["gateway"], "device_name": "gw-0001",
                                         "api": "https", "register_url": https, "mqtt_url": mqtts, "ca": "ca.der",
                                         "credential": {}}, site={"subdevices": SUB_DEVICES})
        two_boots(cloud, image, "gw-0001", ("aliyun-https-register",))
        issued.append(read_from_image(image, "device_info.json")["credential"].get("device_secret", ""))
        stored = read_from_image(image, "subdevices.json")["devices"]
        issued += [entry["device_secret"] for entry in stored.values()]
        check("both sub-device secrets are on the gateway's flash and match the cloud's",
              all(stored.get("%s/%s" % (pk, dn), {}).get("device_secret") == cloud.device(pk, dn).get("device_secret")
                  for pk, dn in SUB_DEVICES))
        check("the cloud's topology: %s" % ", ".join(sorted(cloud.device(GATEWAY_PRODUCT, "gw-0001")["sub_devices"])),
              sorted(cloud.device(GATEWAY_PRODUCT, "gw-0001")["sub_devices"]) == sorted("%s/%s" % tuple(s) for s in SUB_DEVICES))
        check("sub-devices registered once although the gateway booted twice",
              len(events(cloud, "gw-0001", ("aliyun-sub-register",))) == 1)

        say("\n[5/7] Azure: DPS enrollment group %s (symmetric key) in ID scope %s, assigning to %s; a fresh "
            "board whose registration id comes from its chip id provisions over MQTT (TLS), polls until "
            "assigned, then logs in to the hub with its derived key" % (AZURE_GROUP, AZURE_SCOPE, AZURE_HUB))
        cloud.add_product(AZURE_GROUP, SECRETS["azure"], cloud="azure", id_scope=AZURE_SCOPE, hub=AZURE_HUB,
                          assign_seconds=1)
        image = flash("azure", cloud, {"dynreg": 1, "cloud": "azure", "id_scope": AZURE_SCOPE,
                                       "group_key": SECRETS["azure"], "device_name_from": "unique_id",
                                       "register_url": mqtts, "mqtt_url": mqtts, "ca": "ca.der", "credential": {}})
        two_boots(cloud, image, AZURE_CHIP, ("azure-dps-register",), answered=("assigning",), unique_id=AZURE_CHIP)
        check("DPS assigned it after polling the operation",
              [e["result"] for e in events(cloud, AZURE_CHIP, ("azure-dps-status",))][-1:] == ["ok"])
        stored = read_from_image(image, "device_info.json")
        key = stored["credential"].get("device_key", "")
        issued.append(key)
        check("the hub and the derived device key on flash are the cloud's; the group key is gone",
              stored["credential"].get("hub") == AZURE_HUB and bool(key)
              and cloud.device(AZURE_GROUP, AZURE_CHIP).get("device_key") == key and "group_key" not in stored)

        secrets = list(SECRETS.values()) + aws_board(cloud, issued)

    say("\n[7/7] Stopped the emulator; checking that no secret was printed")
    leaked = [s for s in secrets + issued if s and any(s in line for line in printed)]
    check("none of the %d secrets (products' and issued) in this output" % (len(secrets) + len(issued)), not leaked)
    failed = [what for what, ok in checks if not ok]
    say("\nDEMO %s: %d of %d checks passed" % ("PASSED" if not failed else "FAILED", len(checks) - len(failed), len(checks)))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())

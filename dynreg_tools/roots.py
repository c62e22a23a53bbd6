"""dynreg roots [--cloud C] [--days N]: the root CA certificates the firmware
trusts for each cloud and endpoint when an info names no `ca`: subject, SHA-256 fingerprint of
the DER, expiry and days left. They are built into the library (lib/dynreg/roots_<cloud>.py,
written by tools/gen_roots.py from shared/spec/cloud-roots/, whose README gives the evidence;
this package carries them as dynreg_tools/device_lib);
`ca` and `mqtt_ca` in an info replace them. Exits 1 when a bundle holds no root valid for N
more days (default 365).
"""
import argparse
import hashlib
import os
import runpy
from datetime import datetime, timezone

from dynreg_tools import DEVICE_LIB, der

# cloud -> (title, [(constant, PEM file in shared/spec/cloud-roots)], [(bundle, constants, endpoint)])
# The device picks a bundle in its cloud's module (`roots(info, port)`); test_host_roots.py checks
# that both agree and that the constants hold exactly these files.
CLOUDS = {
    "tencent": (
        "Tencent Cloud IoT Hub / IoT Explorer",
        [("IOTHUB", "tencent-iothub-root.pem"), ("DIGICERT_G1", "digicert-global-root-ca.pem"),
         ("DIGICERT_G2", "digicert-global-root-g2.pem")],
        [("MQTT", ("IOTHUB",), "the broker, <ProductId>.iotcloud.tencentdevices.com:8883: Tencent's own root"),
         ("GATEWAY", ("DIGICERT_G1", "DIGICERT_G2"),
          "the registration gateway, <region>.gateway.tencentdevices.com:443: DigiCert G1, moving to G2"),
         ("LEGACY", ("IOTHUB", "DIGICERT_G1", "DIGICERT_G2"),
          "the legacy API's gateway.tencentdevices.com:443: the sources disagree, so all three")],
    ),
    "aliyun": (
        "Alibaba Cloud IoT Platform",
        [("ALIYUN_S1", "aliyun-iot-root-s1.pem"), ("GLOBALSIGN_R1", "globalsign-root-r1.pem"),
         ("GLOBALSIGN_R6", "globalsign-root-r6.pem"), ("GLOBALSIGN_R46", "globalsign-root-r46.pem"),
         ("GLOBALSIGN_E46", "globalsign-root-e46.pem")],
        [("MQTT_8883", ("ALIYUN_S1",), "the brokers on 8883: Alibaba's own root (S1)"),
         ("GLOBALSIGN", ("GLOBALSIGN_R1", "GLOBALSIGN_R6", "GLOBALSIGN_R46", "GLOBALSIGN_E46"),
          "iot-auth.<region>.aliyuncs.com:443 and the brokers' TLS on 1883 and 443: GlobalSign R1"
          " (expires 2028-01-28) and its successors")],
    ),
    "azure": (
        "Azure IoT Hub Device Provisioning Service and IoT Hub",
        [("DIGICERT_G2", "digicert-global-root-g2.pem"), ("MICROSOFT_RSA_2017", "microsoft-rsa-root-2017.pem")],
        [("DPS_AND_HUBS", ("DIGICERT_G2", "MICROSOFT_RSA_2017"),
          "global.azure-devices-provisioning.net:8883 and *.azure-devices.net:8883")],
    ),
    "aws": (
        "AWS IoT Core",
        [("AMAZON_ROOT_CA_1", "amazon-root-ca-1.pem"), ("AMAZON_ROOT_CA_3", "amazon-root-ca-3.pem")],
        [("ATS", ("AMAZON_ROOT_CA_1", "AMAZON_ROOT_CA_3"),
          "the data endpoints <prefix>-ats.iot.<region>.amazonaws.com:8883, fleet provisioning included")],
    ),
}


def built_in(cloud):
    """{constant: DER} of the roots built into the library for `cloud` (a module of data only)."""
    names = runpy.run_path(os.path.join(DEVICE_LIB, "roots_%s.py" % cloud))
    return {name: value for name, value in names.items() if name.isupper()}


def bundles_of(view):
    """[(bundle, endpoint)] the info relies on: every TLS connection for which it names no CA.
    `view` is dynreg_tools.check's View. Mirrors each cloud module's roots(info, port)."""
    doc = view.doc
    cloud = view.cloud
    own_ca = bool(doc.get("ca"))
    broker_ca = own_ca or bool(doc.get("mqtt_ca"))
    table = {name: what for name, _, what in CLOUDS.get(cloud, ("", [], []))[2]}
    wanted = []
    mqtt = doc.get("mqtt_url")
    mqtt_tls = not mqtt or (isinstance(mqtt, str) and mqtt.startswith("mqtts://"))
    port = _port(mqtt, 8883) if mqtt_tls else None
    if cloud in ("azure", "aws"):  # one bundle for both connections
        if not own_ca or not broker_ca:
            wanted.append("DPS_AND_HUBS" if cloud == "azure" else "ATS")
    elif cloud == "aliyun":
        if view.api() == "https" and not own_ca:
            wanted.append("GLOBALSIGN")
        if mqtt_tls and (not broker_ca or (view.api() != "https" and not own_ca)):
            wanted.append("MQTT_8883" if port == 8883 else "GLOBALSIGN")
    else:
        register = doc.get("register_url")
        if not own_ca and (not register or (isinstance(register, str) and register.startswith("https://"))):
            wanted.append("LEGACY" if view.api() == "legacy" else "GATEWAY")
        if mqtt_tls and not broker_ca:
            wanted.append("MQTT")
    result = []
    for name in wanted:
        if name not in [n for n, _ in result]:
            result.append((name, table[name]))
    return result


def _port(url, default):
    if not url:
        return default
    hostport = url.partition("://")[2].partition("/")[0]
    port = hostport.rpartition(":")[2] if ":" in hostport else ""
    return int(port) if port.isdigit() else (1883 if url.startswith("mqtt://") else default)


def describe(data, now=None):
    """(subject, SHA-256 fingerprint as AA:BB:..., expiry datetime, days left)."""
    cert = der.certificate(data)
    now = now or datetime.now(timezone.utc)
    fingerprint = hashlib.sha256(data).hexdigest().upper()
    fingerprint = ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2))
    return cert.subject, fingerprint, cert.expires, (cert.expires - now).days


def expiring(cloud, bundle, days, now=None):
    """The bundle's roots that expire within `days`, as [(constant, expiry date)]."""
    certs = built_in(cloud)
    members = dict((name, m) for name, m, _ in CLOUDS[cloud][2])[bundle]
    soon = []
    for name in members:
        _, _, expires, left = describe(certs[name], now)
        if left < days:
            soon.append((name, expires.date()))
    return soon


def main(argv=None, out=print):
    parser = argparse.ArgumentParser(prog="dynreg roots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cloud", choices=sorted(CLOUDS), help="only this cloud")
    parser.add_argument("--days", type=int, default=365, help="warn about roots expiring within this many days")
    args = parser.parse_args(argv)
    now = datetime.now(timezone.utc)
    weak = 0
    for cloud, (title, _, bundles) in CLOUDS.items():
        if args.cloud and cloud != args.cloud:
            continue
        certs = built_in(cloud)
        out("%s (%s)" % (cloud, title))
        for bundle, members, what in bundles:
            out("  %s: %s" % (bundle, what))
            valid = 0
            for name in members:
                subject, fingerprint, expires, left = describe(certs[name], now)
                flag = "" if left >= args.days else ("  EXPIRED" if left < 0 else "  expires within %d days" % args.days)
                valid += left >= args.days
                out("    %-18s %s" % (name, subject))
                out("    %-18s sha256 %s" % ("", fingerprint))
                out("    %-18s expires %s (%d days left)%s" % ("", expires.date(), left, flag))
            if not valid:
                weak += 1
                out("  problem: no root of %s stays valid for %d more days" % (bundle, args.days))
    return 1 if weak else 0

# The root CA certificates built into the library (lib/dynreg/roots_<cloud>.py): exactly the
# files of shared/spec/cloud-roots/, bundled per endpoint as its README maps them, with the
# fingerprints its README prints; the device picks the bundle the host tools say it relies on;
# `dynreg roots` lists them, read by the tools' own certificate reader (dynreg_tools.der).
import datetime
import glob
import hashlib
import os
import re
import ssl
import subprocess
import sys

import pytest

from dynreg import aliyun, aws, azure, store, tencent
from dynreg_tools import check, der, roots

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SPEC = os.path.join(ROOT, "..", "shared", "spec", "cloud-roots")
DYNREG = os.path.join(ROOT, ".venv", "bin", "dynreg")

# The README's endpoint rows (by their first words) -> the bundle that serves them. Where two
# rows share a bundle, it holds the roots of both.
ROWS = {
    "Tencent MQTT": ("tencent", "MQTT"),
    "Tencent registration": ("tencent", "GATEWAY"),
    "Tencent legacy": ("tencent", "LEGACY"),
    "Alibaba MQTT on 8883": ("aliyun", "MQTT_8883"),
    "Alibaba MQTT over TLS on the old ports": ("aliyun", "GLOBALSIGN"),
    "Alibaba registration": ("aliyun", "GLOBALSIGN"),
    "Azure DPS": ("azure", "DPS_AND_HUBS"),
    "AWS IoT Core data endpoints": ("aws", "ATS"),
}


SHORT = {"G2": "digicert-global-root-g2.pem", "R6": "globalsign-root-r6.pem", "R46": "globalsign-root-r46.pem"}


def spec_readme():
    with open(os.path.join(SPEC, "README.md")) as f:
        return f.read()


def der_of(name):
    with open(os.path.join(SPEC, name)) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def endpoint_rows():
    # {row start: [PEM files named in its roots column]} from "Which roots each endpoint needs".
    rows = {}
    for line in spec_readme().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith(tuple(ROWS)):
            key = next(k for k in ROWS if cells[0].startswith(k))
            files = re.findall(r"`([a-z0-9-]+\.pem)`", cells[1])
            # Successors named in words ("(+ G2)", "then R6 / R46") belong to the bundle too.
            files += [SHORT[word] for word in re.findall(r"\b(G2|R6|R46)\b", cells[1])]
            rows[key] = sorted(set(files))
    return rows


def test_each_bundle_holds_exactly_the_roots_the_spec_maps_to_its_endpoints():
    rows = endpoint_rows()
    assert sorted(rows) == sorted(ROWS), rows  # every row of the README was found
    wanted = {}
    for row, files in rows.items():
        assert files, row
        wanted.setdefault(ROWS[row], set()).update(hashlib.sha256(der_of(f)).hexdigest() for f in files)
    for (cloud, bundle), digests in wanted.items():
        built = getattr(__import__("dynreg.roots_" + cloud, None, None, ["x"]), bundle)
        assert type(built) is tuple
        assert {hashlib.sha256(value).hexdigest() for value in built} == digests, (cloud, bundle)
        assert len(built) == len(digests)  # no root twice


def test_the_built_in_roots_have_the_fingerprints_the_spec_prints():
    printed = {}
    for line in spec_readme().splitlines():
        m = re.match(r"\|\s*`([a-z0-9-]+\.pem)`.*\|\s*([0-9A-F:]{95})\s*\|\s*$", line)
        if m:
            printed[m.group(1)] = m.group(2).replace(":", "").lower()
    assert len(printed) == 13, printed
    for cloud, (_, certs, _) in roots.CLOUDS.items():
        built = roots.built_in(cloud)
        for name, pem in certs:
            assert hashlib.sha256(built[name]).hexdigest() == printed[pem], (cloud, name)


def test_the_tools_read_subject_and_expiry_as_cryptography_does():
    # dynreg_tools.der (what `dynreg check` and `dynreg roots` print, with the standard library
    # alone) against cryptography's parser: every root of the spec, then a certificate whose
    # subject needs RFC 4514's escapes, a multi-valued RDN and an attribute without a short name.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pems = sorted(glob.glob(os.path.join(SPEC, "*.pem")))
    assert len(pems) == 13
    ders = []
    for path in pems:
        with open(path, "rb") as f:
            ders.append(x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, '#a+b, "c"; <d> \\e '),
                                                      x509.NameAttribute(NameOID.USER_ID, "line-07")]),
                      x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@example.com")]),
                      x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")])])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    made = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(start).not_valid_after(start.replace(year=2049, month=12, day=31))
            .sign(key, hashes.SHA256()))
    ders.append(made.public_bytes(serialization.Encoding.DER))
    for data in ders:
        theirs = x509.load_der_x509_certificate(data)
        [mine] = der.certificates(data)
        assert (mine.der, mine.subject, mine.expires) == (data, theirs.subject.rfc4514_string(),
                                                          theirs.not_valid_after_utc)
    assert mine.subject.startswith("C=CN,1.2.840.113549.1.9.1=ops@example.com,")
    assert r'\#a\+b\, \"c\"\; \<d\> \\e\ ' in mine.subject, mine.subject


def info(doc):
    doc = dict({"dynreg": 1, "product_secret": "p" * 16, "device_name": "dev-0001", "credential": {}}, **doc)
    return store.Info("device_info.json", doc), check.View(doc)


def bundle_name(cloud, der_tuple):
    for name, value in roots.built_in(cloud).items():
        if value == der_tuple and type(value) is tuple:
            return name
    raise AssertionError("not a bundle of %s" % cloud)


@pytest.mark.parametrize("doc, register, broker", [
    ({"cloud": "tencent", "product_id": "ASJ3GXJXGX"}, "GATEWAY", "MQTT"),
    ({"cloud": "tencent", "product_id": "ASJ3GXJXGX", "api": "legacy"}, "LEGACY", "MQTT"),
    ({"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "https"}, "GLOBALSIGN", "MQTT_8883"),
    ({"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "mqtt",
      "mqtt_url": "mqtts://a1IoK3f7xyz.iot-as-mqtt.cn-shanghai.aliyuncs.com:1883"}, None, "GLOBALSIGN"),
    ({"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "regnwl", "instance_id": "iot-06z00x"},
     None, "MQTT_8883"),
    ({"cloud": "azure", "id_scope": "0ne00000A0A", "group_key": "a2V5"}, "DPS_AND_HUBS", "DPS_AND_HUBS"),
    ({"cloud": "aws", "template": "FleetTemplate", "claim_key": "claim.key",
      "mqtt_url": "mqtts://a1b2c3-ats.iot.eu-west-1.amazonaws.com:8883"}, "ATS", "ATS"),
], ids=["tencent", "tencent-legacy", "aliyun-https", "aliyun-mqtt-1883", "aliyun-regnwl", "azure", "aws"])
def test_the_device_and_the_host_tools_pick_the_same_bundle(doc, register, broker):
    device, view = info(doc)
    module = {"tencent": tencent, "aliyun": aliyun, "azure": azure, "aws": aws}[device.cloud]
    url = device.mqtt_url
    port = int(url.rsplit(":", 1)[1]) if url else 8883
    picked = []
    if register:
        picked.append(bundle_name(device.cloud, module.roots(device)))
    picked.append(bundle_name(device.cloud, module.roots(device, port)))
    assert picked[0] == (register or broker) and picked[-1] == broker
    assert [name for name, _ in roots.bundles_of(view)] == list(dict.fromkeys(picked))


def test_roots_lists_every_endpoint_with_fingerprint_and_expiry():
    proc = subprocess.run([DYNREG, "roots"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for cloud, (_, certs, bundles) in roots.CLOUDS.items():
        assert cloud in text
        for bundle, _, _ in bundles:
            assert "  %s: " % bundle in text
    # Independent of our modules: the spec's fingerprint and expiry of two roots.
    assert "EB:D4:10:40:E4:BB:3E:C7:42:C9:E3:81:D3:1E:F2:A4:1A:48:B6:68:5C:96:E7:CE:F3:C1:DF:6C:D4:33:1C:99" in text
    assert "expires 2028-01-28" in text and "expires 2032-11-23" in text
    assert "CN=GlobalSign Root CA" in text


def test_roots_fails_when_a_bundle_would_hold_no_root_valid_long_enough():
    proc = subprocess.run([DYNREG, "roots", "--cloud", "tencent", "--days", "3000"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    # Tencent's own root (2032-11-23) is the only root of its broker bundle: within 3000 days.
    assert proc.returncode == 1, proc.stdout
    assert "problem: no root of MQTT stays valid for 3000 more days" in proc.stdout, proc.stdout
    assert "GATEWAY stays" not in proc.stdout  # DigiCert G2 runs to 2038


def test_an_info_of_a_cloud_the_image_left_out_is_a_config_error(monkeypatch):
    # A one-cloud image (manifest.py clouds=tencent) has no dynreg.aliyun: an Alibaba info on it
    # is refused by name, not with an ImportError.
    import dynreg
    from dynreg import flow

    monkeypatch.delattr(dynreg, "aliyun", raising=False)
    monkeypatch.setitem(sys.modules, "dynreg.aliyun", None)
    device, _ = info({"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "https"})
    with pytest.raises(dynreg.ConfigError, match="this firmware has no aliyun support"):
        flow.cloud_of(device)

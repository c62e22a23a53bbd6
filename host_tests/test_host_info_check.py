# dynreg check: an info file and its CA checked offline, every problem listed with its fix, in
# both formats the library reads; no secret in any output.
import base64
import datetime
import json
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dynreg_tools import check as info_check

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DYNREG = os.path.join(ROOT, ".venv", "bin", "dynreg")
SECRET = "Bench2Secret-0123456789"
ALIYUN_SECRET = "6vEu5Qlj5S0abcd1"


def make_ca(days=365):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "info_check test root")])
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(days=max(1, -days) + 1)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "ca.der").write_bytes(make_ca().public_bytes(serialization.Encoding.DER))
    return tmp_path


def tencent(**fields):
    doc = {"dynreg": 1, "cloud": "tencent", "product_id": "BENCH00001", "product_secret": SECRET,
           "device_name_from": "unique_id", "register_url": "https://localhost:8443",
           "mqtt_url": "mqtts://localhost:8883", "ca": "ca.der", "credential": {"psk": ""}}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def aliyun(**fields):
    doc = {"dynreg": 1, "cloud": "aliyun", "product_key": "a1IoK3f7xyz", "product_secret": ALIYUN_SECRET,
           "device_name": "OvenDevice01", "api": "https", "ca": "ca.der", "credential": {}}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


AZURE_KEY = "ZXhhbXBsZWdyb3Vwa2V5MDEyMzQ1Njc4OWFiY2RlZg=="  # base64 of 31 bytes


def azure(**fields):
    doc = {"dynreg": 1, "cloud": "azure", "id_scope": "0ne00000A0A", "group_key": AZURE_KEY,
           "device_name_from": "unique_id", "register_url": "mqtts://localhost:8883",
           "mqtt_url": "mqtts://localhost:8883", "ca": "ca.der", "credential": {}}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def sdk(**fields):
    doc = {"auth_mode": "KEY", "productId": "S3EUVBRJLB", "productSecret": SECRET, "deviceName": "device_1234",
           "key_deviceinfo": {"deviceSecret": "YOUR_IOT_PSK"}, "ca": "ca.der"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def check(folder, doc, ca=None, secret=None, name="device_info.json"):
    path = folder / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    found = info_check.problems(str(path), ca, secret)
    text = "\n".join(found + info_check.notes(str(path)))
    for value in (SECRET, ALIYUN_SECRET, AZURE_KEY, secret):
        assert not value or value not in text, text
    return found


def one(found, *words):
    # Exactly one problem holds every word.
    hits = [p for p in found if all(w in p for w in words)]
    assert len(hits) == 1, found
    return hits[0]


def cli(*args, env=None):
    proc = subprocess.run([DYNREG, "check"] + list(args), capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})))
    assert SECRET not in proc.stdout + proc.stderr and ALIYUN_SECRET not in proc.stdout + proc.stderr
    return proc


# -- the command line ---------------------------------------------------------------------------

def test_a_good_info_is_ok_with_a_summary_naming_cloud_product_and_device_naming(folder):
    (folder / "device_info.json").write_text(json.dumps(tencent()))
    proc = cli(str(folder / "device_info.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The test CA beside the info is none of Tencent's roots: said once, as a warning.
    [warning, line] = proc.stdout.splitlines()
    assert warning.startswith("warning: the ca file ") and "none of Tencent's known roots" in warning, warning
    assert line.startswith("ok: ") and "Tencent ProductId BENCH00001" in line and "unique_id" in line, line


def test_every_problem_is_one_line_and_the_exit_status_is_1(folder):
    doc = tencent(product_id="bench1", product_secret="short-secret", device_name_from="serial")
    (folder / "device_info.json").write_text(json.dumps(doc))
    proc = cli(str(folder / "device_info.json"))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("problem: ") for line in lines), lines
    assert "short-secret" not in proc.stdout + proc.stderr


def test_the_cli_takes_the_secret_from_a_file_or_the_environment(folder, tmp_path):
    (folder / "device_info.json").write_text(json.dumps(tencent(product_secret=None)))
    assert cli(str(folder / "device_info.json")).returncode == 1
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    assert cli(str(folder / "device_info.json"), "--secret-file", str(tmp_path / "secret.txt")).returncode == 0
    assert cli(str(folder / "device_info.json"), env={info_check.SECRET_ENV: SECRET}).returncode == 0


def test_a_mistyped_option_of_the_cli_never_prints_its_value(folder):
    proc = cli(str(folder / "device_info.json"), "--secret", SECRET)
    assert proc.returncode == 2 and "--secret" in proc.stderr


# -- the file itself ----------------------------------------------------------------------------

def test_a_missing_file_is_named(folder):
    [problem] = info_check.problems(str(folder / "nothing.json"))
    assert "no such file" in problem


@pytest.mark.parametrize("text, words", [
    ('{"dynreg": 1, "cloud": "tencent", "product_secret": "%s"' % SECRET, ("not valid JSON", "line 1")),
    ('["%s"]' % SECRET, ("not a JSON object",)),
    (json.dumps(dict(tencent(), padding="x" * 8200)), ("larger than the 8192",)),
], ids=["not-json", "not-an-object", "too-large"])
def test_a_file_the_library_cannot_read_is_refused_with_why(folder, text, words):
    [problem] = check(folder, text)
    assert all(w in problem for w in words), problem


def test_a_file_in_neither_format_is_named_so(folder):
    [problem] = check(folder, {"product_id": "BENCH00001", "product_secret": SECRET})
    assert "neither dynreg's format" in problem and "Tencent C SDK" in problem


def test_an_unknown_cloud_is_refused(folder):
    [problem] = check(folder, tencent(cloud="gcp"))
    assert "cloud must be tencent" in problem


# -- identity -------------------------------------------------------------------------------------

def test_a_good_alibaba_info_and_a_good_sdk_info_pass(folder):
    assert check(folder, aliyun()) == []
    assert check(folder, sdk()) == []


@pytest.mark.parametrize("doc, words", [
    (tencent(product_id="bench00001"), ("product_id", "10 uppercase letters and digits")),
    (tencent(product_id="BENCH0001"), ("product_id", "10 uppercase")),
    (tencent(product_id=None), ("product_id is missing",)),
    (aliyun(product_key="a1IoK3f7xy"), ("product_key", "11 letters and digits")),
    (aliyun(product_key="a1IoK3f7-yz"), ("product_key", "11 letters")),
    (sdk(productId="S3EUVBRJL"), ("productId", "10 uppercase")),
], ids=["tencent-lowercase", "tencent-9", "tencent-missing", "aliyun-10", "aliyun-dash", "sdk"])
def test_the_product_id_follows_the_clouds_format(folder, doc, words):
    one(check(folder, doc), *words)


def test_a_short_tencent_secret_is_refused_with_the_aes_key_explained(folder):
    problem = one(check(folder, tencent(product_secret="Bench2Secret-01")), "ProductSecret")
    assert "15 characters, fewer than 16" in problem and "AES-128 key" in problem
    problem = one(check(folder, sdk(productSecret="Bench2Secret-01")), "ProductSecret")
    assert "AES-128 key" in problem
    assert check(folder, aliyun(product_secret="short-but-fine")) == []  # Alibaba's rule is not Tencent's


def test_a_missing_secret_names_where_to_give_it(folder):
    problem = one(check(folder, tencent(product_secret="")), "no ProductSecret")
    assert "--secret-file" in problem and info_check.SECRET_ENV in problem
    one(check(folder, sdk(productSecret=None)), "no ProductSecret", "productSecret")


def test_a_secret_given_apart_is_checked_instead_of_the_infos(folder):
    assert check(folder, tencent(product_secret=None), secret=SECRET) == []
    one(check(folder, tencent(), secret="tooShort-0123"), "fewer than 16")


@pytest.mark.parametrize("doc, words", [
    (tencent(device_name_from="serial"), ("device_name_from must be unique_id or mac",)),
    (tencent(device_name_from=None), ("no DeviceName", "device_name_from")),
    (tencent(device_name="dev 01"), ("Tencent's DeviceName rule", "1 to 48")),
    (tencent(device_name="d" * 49), ("1 to 48",)),
    (aliyun(device_name="ab1"), ("Alibaba's DeviceName rule", "4 to 32")),
    (aliyun(device_name="oven#1"), ("4 to 32",)),
    (sdk(deviceName=None), ("no DeviceName", "deviceName")),
    (sdk(deviceName="bad/name"), ("deviceName", "1 to 48")),
], ids=["unknown-rule", "none", "tencent-space", "tencent-49", "aliyun-3", "aliyun-hash", "sdk-none", "sdk-slash"])
def test_the_device_name_follows_the_clouds_rules_or_a_rule_the_firmware_knows(folder, doc, words):
    one(check(folder, doc), *words)


def test_names_the_firmware_derives_and_names_the_clouds_allow_pass(folder):
    assert check(folder, tencent(device_name_from="mac")) == []
    assert check(folder, tencent(device_name_from=None, device_name="dev:01_a-b")) == []
    assert check(folder, aliyun(device_name="oven@line.2:a_b-c")) == []


def test_options_outside_the_clouds_values_are_refused(folder):
    found = check(folder, tencent(api="mqtt", algorithm="hmacmd5", auth="token"))
    one(found, "api must be one of current, legacy")
    one(found, "algorithm must be one of")
    one(found, "auth must be")
    one(check(folder, aliyun(api="regnwl", mqtt_url="mqtts://localhost:8883")), "instance_id")
    one(check(folder, tencent(credential="psk")), "credential must be an object")


# -- URLs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("doc, words", [
    (tencent(register_url="ftp://localhost"), ("register_url must start with http:// or https://",)),
    (tencent(register_url="localhost:8443"), ("register_url must start with",)),
    (tencent(register_url="https://:8443"), ("register_url has no host",)),
    (tencent(register_url="https://localhost:port"), ("register_url has a port",)),
    (tencent(mqtt_url="https://localhost"), ("mqtt_url must start with mqtt:// or mqtts://",)),
    (tencent(mqtt_url="mqtts://"), ("mqtt_url has no host",)),
    (tencent(register_url="https://user:%s@localhost" % SECRET), ("user name or password",)),
    (aliyun(register_url="http://localhost:8080"), ("https://", "DeviceSecret in clear")),
    (aliyun(api="mqtt", mqtt_url="mqtt://localhost:1883"), ("mqtts://", "TLS only")),
], ids=["scheme", "no-scheme", "no-host", "port", "mqtt-scheme", "mqtt-no-host", "userinfo", "aliyun-http",
        "aliyun-mqtt"])
def test_urls_must_be_well_formed(folder, doc, words):
    one(check(folder, doc), *words)


@pytest.mark.parametrize("doc, path", [
    (tencent(register_url="https://ap-guangzhou.gateway.tencentdevices.com/device/register"), "/device/register"),
    (tencent(api="legacy", register_url="https://gateway.tencentdevices.com/register/dev/"), "/register/dev"),
    (aliyun(register_url="https://iot-auth.cn-shanghai.aliyuncs.com/auth/register/device"), "/auth/register/device"),
])
def test_a_register_url_ending_in_the_api_path_is_a_note_not_a_problem(folder, doc, path):
    # dynreg takes such a URL as its base (lib/dynreg/codec.base_url): worth saying, not wrong.
    assert check(folder, doc) == []
    (folder / "device_info.json").write_text(json.dumps(doc))
    [note] = [n for n in info_check.notes(str(folder / "device_info.json")) if "register_url" in n]
    assert path.rstrip("/") in note and "base URL" in note


def test_a_register_url_with_another_path_is_refused(folder):
    one(check(folder, tencent(register_url="https://localhost:8443/api/v1")), "base URL", "drop the path")


# -- the CA ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("doc", [
    tencent(), tencent(register_url="http://localhost:8080", plain_http=True),
    tencent(register_url=None, mqtt_url="mqtt://localhost:1883"),
    aliyun(api="mqtt", mqtt_url="mqtts://localhost:8883"), sdk(),
], ids=["https", "mqtts", "default-endpoint", "aliyun-mqtt", "sdk"])
def test_tls_without_a_ca_relies_on_the_built_in_roots(folder, doc):
    # The firmware carries each cloud's roots: an info for the real cloud needs no CA.
    doc = dict(doc)
    del doc["ca"]
    assert check(folder, doc) == []
    lines = []
    assert info_check.main([str(folder / "device_info.json")], out=lines.append) == 0
    assert lines[-1].startswith("ok: ") and "CA built in" in lines[-1], lines


SPEC_ROOTS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "spec", "cloud-roots")


def warnings_of(folder, doc, now, ca=None):
    path = folder / "device_info.json"
    path.write_text(json.dumps(doc))
    return info_check.warnings(str(path), ca, now=now)


def test_a_built_in_root_that_expires_within_a_year_is_warned(folder):
    # GlobalSign R1, one of the roots of Alibaba's iot-auth host, expires on 2028-01-28
    # (shared/spec/cloud-roots/README.md).
    doc = aliyun(ca=None)
    soon = datetime.datetime(2027, 3, 1, tzinfo=datetime.timezone.utc)
    [warning] = warnings_of(folder, doc, soon)
    assert "GLOBALSIGN_R1" in warning and "2028-01-28" in warning and "iot-auth" in warning, warning
    assert warnings_of(folder, doc, datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)) == []
    # An info that names its own CA relies on no built-in root.
    assert [w for w in warnings_of(folder, aliyun(), soon) if "expires" in w] == []
    # Tencent's roots all run past 2031.
    assert warnings_of(folder, tencent(ca=None, register_url=None, mqtt_url=None), soon) == []


def test_a_ca_that_is_none_of_the_clouds_roots_is_named(folder):
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    amazon = os.path.join(SPEC_ROOTS, "amazon-root-ca-1.pem")
    digicert = os.path.join(SPEC_ROOTS, "digicert-global-root-ca.pem")
    [warning] = warnings_of(folder, tencent(register_url=None), now, ca=amazon)
    assert "none of Tencent's known roots" in warning and "amazon-root-ca-1.pem" in warning, warning
    assert warnings_of(folder, tencent(register_url=None), now, ca=digicert) == []  # Tencent's gateway root
    assert "none of" in warnings_of(folder, tencent(), now)[0]  # the test root beside the info


def test_plain_connections_need_no_ca(folder):
    doc = tencent(register_url="http://localhost:8080", plain_http=True, mqtt_url="mqtt://localhost:1883", ca=None)
    assert check(folder, doc) == []


@pytest.mark.parametrize("doc, words", [
    (tencent(register_url="http://localhost:8080"), ('"plain_http": true', "https://", "another device")),
    (tencent(register_url="http://localhost:8080", plain_http=False), ('"plain_http": true',)),
    (sdk(register_url="http://localhost:8080"), ('"plain_http": true',)),
    (tencent(auth="cert", mqtt_url="mqtt://localhost:1883"), ("mqtt_url must start with mqtts://", "certificate")),
    (sdk(auth_mode="CERT", mqtt_url="mqtt://localhost:1883"), ("mqtt_url must start with mqtts://", "certificate")),
    (tencent(plain_http="yes"), ("plain_http must be true or false",)),
    (tencent(logged_in=1), ("logged_in must be true or false",)),
    (sdk(keep_product_secret="no"), ("keep_product_secret must be true or false",)),
], ids=["http", "http-opt-out", "sdk-http", "cert-mqtt", "sdk-cert-mqtt", "plain_http", "logged_in", "sdk-keep"])
def test_plain_transports_are_opted_into_or_refused_as_the_library_does(folder, doc, words):
    one(check(folder, doc), *words)


def test_the_opt_in_to_plain_http_and_the_login_record_pass(folder):
    assert check(folder, tencent(register_url="http://localhost:8080", plain_http=True)) == []
    assert check(folder, sdk(register_url="http://localhost:8080/device/register", plain_http=True)) == []
    assert check(folder, tencent(logged_in=True, keep_product_secret=True)) == []


def test_the_ca_is_found_beside_the_info_or_given_apart(folder, tmp_path):
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    one(check(sub, tencent()), "ca.der", "does not exist")  # relative to the info's folder, not the cwd
    assert check(sub, tencent(), ca=str(folder / "ca.der")) == []  # --ca wins over the info's
    problem = one(check(folder, tencent(), ca=str(folder / "no-such-ca.der")), "does not exist")
    assert "(--ca)" in problem


def test_pem_bundles_and_der_parse(folder):
    pem = make_ca().public_bytes(serialization.Encoding.PEM) + make_ca().public_bytes(serialization.Encoding.PEM)
    (folder / "bundle.pem").write_bytes(b"# roots\n" + pem)
    assert check(folder, tencent(ca="bundle.pem")) == []
    assert check(folder, tencent(ca="ca.der")) == []


def a_key_der():
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def as_pem_certificate(data):
    return b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(data) + b"-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("content, words", [
    (json.dumps(tencent(product_secret="")).encode(), ("not a certificate", "JSON")),  # an info, no secret in it
    (b"\x30\x82\x01\x00 not der at all", ("not a certificate", "neither PEM nor DER")),
    (make_ca().public_bytes(serialization.Encoding.DER)[:-1], ("not a certificate", "neither PEM nor DER")),
    (a_key_der(), ("not a certificate", "neither PEM nor DER")),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ("not a certificate",)),
    (as_pem_certificate(a_key_der()), ("not a certificate", "does not parse as X.509")),
    (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
     ("not a certificate", "other than CERTIFICATE")),
    (b"x" * 9000, ("more than the 8192",)),
], ids=["json", "garbage", "cut-short", "key-der", "bad-pem", "key-in-pem", "key", "too-large"])
def test_a_ca_that_is_not_a_usable_certificate_is_refused(folder, content, words):
    (folder / "bad.ca").write_bytes(content)
    one(check(folder, tencent(ca="bad.ca")), *words)
    one(check(folder, tencent(), ca=str(folder / "bad.ca")), *words)


def test_an_expired_ca_is_refused(folder):
    (folder / "old.pem").write_bytes(make_ca(days=-1).public_bytes(serialization.Encoding.PEM))
    one(check(folder, tencent(ca="old.pem")), "expired")


def test_a_broken_mqtt_ca_is_reported_too(folder):
    one(check(folder, tencent(mqtt_ca="missing.der")), "field mqtt_ca", "does not exist")


# -- notes and the whole list ---------------------------------------------------------------------

def test_a_credential_already_present_is_a_note_not_a_problem(folder, tmp_path):
    psk = "lDZ6Uqt+I9E0wW7rvDUs7Q=="
    assert check(folder, tencent(credential={"psk": psk})) == []
    [note] = info_check.notes(str(folder / "device_info.json"))
    assert "already holds a credential (credential.psk)" in note and psk not in note
    assert check(folder, sdk(key_deviceinfo={"deviceSecret": psk})) == []
    assert "key_deviceinfo.deviceSecret" in info_check.notes(str(folder / "device_info.json"))[0]
    assert check(folder, tencent()) == [] and info_check.notes(str(folder / "device_info.json")) == []  # "" is none
    proc = cli(str(folder / "device_info.json"))
    assert proc.returncode == 0
    (folder / "device_info.json").write_text(json.dumps(tencent(credential={"psk": psk})))
    proc = cli(str(folder / "device_info.json"))
    assert proc.returncode == 0 and proc.stdout.startswith("note: ") and psk not in proc.stdout


def test_every_problem_is_listed_at_once_and_no_value_is_printed(folder):
    doc = tencent(product_id="leaked-" + SECRET, product_secret="short", device_name=SECRET + "!",
                  register_url="https://localhost/api/v1", mqtt_url="tcp://" + SECRET, ca="ca.json")
    (folder / "ca.json").write_text("{}")
    found = check(folder, doc)
    assert len(found) == 6, found
    text = "\n".join(found)
    for value in ("leaked-", "short", SECRET):
        assert value not in text


# -- Azure ----------------------------------------------------------------------------------------

def test_a_good_azure_info_passes(folder):
    assert check(folder, azure()) == []
    assert check(folder, azure(device_name="sn-007-888-abc", device_name_from=None)) == []


@pytest.mark.parametrize("doc, words", [
    (azure(group_key="bm90LWEta2V5"), ("group key is not the base64 of 16 to 64 bytes",)),
    (azure(group_key=None), ("no ProductSecret", "group_key")),
    (azure(id_scope="0n"), ("id_scope", "ID scope", "4 to 32")),
    (azure(register_url="https://localhost:8443"), ("register_url", "mqtts://", "TLS only")),
    (azure(mqtt_url="mqtt://localhost:1883"), ("mqtt_url", "mqtts://")),
    (azure(device_name="ends-with-dot.", device_name_from=None), ("device_name", "Azure", "ending in a")),
    (azure(api="https"), ("field api must be one of mqtt for azure",)),
], ids=["short-key", "no-key", "scope", "https-dps", "plain-hub", "name", "api"])
def test_bad_azure_infos_are_refused(folder, doc, words):
    one(check(folder, doc), *words)


# -- AWS ------------------------------------------------------------------------------------------

CLAIM_KEY_TEXT = "-----BEGIN RSA PRIVATE KEY-----\nclaim-key-material-never-shown\n-----END RSA PRIVATE KEY-----\n"


def aws(**fields):
    doc = {"dynreg": 1, "cloud": "aws", "template": "FleetTemplate", "claim_cert": "claim.crt",
           "claim_key": "claim.key", "parameters": {"Color": "red"}, "device_name_from": "unique_id",
           "mqtt_url": "mqtts://a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com:8883", "credential": {}}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.fixture
def claim(folder):
    (folder / "claim.crt").write_bytes(make_ca().public_bytes(serialization.Encoding.PEM))
    (folder / "claim.key").write_text(CLAIM_KEY_TEXT)
    return folder


def test_a_good_aws_info_passes_and_its_claim_goes_to_the_board(claim):
    assert check(claim, aws()) == []
    view = info_check.View(aws())
    named = dict(info_check.named_files(view, str(claim / "device_info.json")))
    assert named["claim_cert"] == str(claim / "claim.crt") and named["claim_key"] == str(claim / "claim.key")
    (claim / "device_info.json").write_text(json.dumps(aws()))
    assert "AWS provisioning template FleetTemplate" in info_check.summary(str(claim / "device_info.json"))


@pytest.mark.parametrize("doc, words", [
    (aws(template="has space"), ("template", "1 to 36")),
    (aws(template="t" * 37), ("template", "1 to 36")),
    (aws(claim_key=None), ("no claim", "claim_key")),
    (aws(claim_cert=None), ("no claim", "claim_cert")),
    (aws(claim_cert="absent.crt"), ("absent.crt", "claim_cert", "does not exist")),
    (aws(claim_cert="claim.key"), ("claim_cert", "not a certificate")),
    (aws(mqtt_url=None), ("mqtt_url is missing", "-ats.iot.")),
    (aws(mqtt_url="mqtt://localhost:1883"), ("mqtt_url", "mqtts://")),
    (aws(parameters={"Color": 7}), ("parameters", "strings")),
    (aws(device_name="has space", device_name_from=None), ("device_name", "AWS", "1 to 128")),
], ids=["template-space", "template-long", "no-claim-key", "no-claim-cert", "claim-cert-missing",
        "claim-cert-not-a-certificate", "no-endpoint", "plain-endpoint", "parameters", "name"])
def test_bad_aws_infos_are_refused_and_the_claim_key_is_never_shown(claim, doc, words):
    found = check(claim, doc)
    one(found, *words)
    assert "claim-key-material" not in "\n".join(found)

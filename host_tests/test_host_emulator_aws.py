"""Tests of the cloud emulator's AWS IoT Core part (cloud_emulator/aws.py): fleet provisioning by
claim over MQTT 3.1.1 with mutual TLS, on the emulator's AWS listener.

The emulator runs as a subprocess (cloud_emulator.testing), with its real amqtt broker and TLS
listener. The device side is CPython's ssl (load_cert_chain with the claim's, then the minted,
certificate) and a raw-socket MQTT client; every expected value is computed here with the
standard library (the certificateId is the SHA-256 of the DER, checked against the PEM the
answer carries) or is AWS's published shape (PROTOCOLS.md section 6). On the `cbor` topics the
device side encodes and decodes with cbor2, an independent CBOR implementation; the emulator's own
decoder (cloud_emulator/cbor.py) is checked against RFC 8949's Appendix A bytes.
"""

import hashlib
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cloud_emulator import cbor
from cloud_emulator.testing import running_emulator
from raw_mqtt import RawMqtt

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "LineA_Template-1"
PREFIX = "dev-"
ALLOW = "SN[0-9]{4}"
CONFIGURATION = {"fleet": "line-a", "telemetry": "60"}
CREATE = "$aws/certificates/create/json"
REGISTER = "$aws/provisioning-templates/%s/provision/json"
CREATE_CBOR = "$aws/certificates/create/cbor"
REGISTER_CBOR = "$aws/provisioning-templates/%s/provision/cbor"
ERROR_KEYS = {"statusCode", "errorCode", "errorMessage"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_aws_template(TEMPLATE, ["SerialNumber", "Batch"], thing_name_prefix=PREFIX, allow=ALLOW,
                               device_configuration=CONFIGURATION)
        yield cloud


@pytest.fixture(scope="module")
def claim(cloud, tmp_path_factory):
    return cloud.add_aws_claim(TEMPLATE, tmp_path_factory.mktemp("claim"))


def context(cloud, cert=None, key=None, maximum=None):
    ctx = ssl.create_default_context(cafile=cloud.ca_pem_path)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def connect(cloud, client_id, cert=None, key=None):
    """(client, CONNACK code), or (None, None) when the connection closed without a CONNACK."""
    try:
        client, code = RawMqtt.connect(cloud.aws_mqtts_port, client_id, tls=context(cloud, cert, key))
    except (ConnectionError, ssl.SSLError):
        return None, None
    if code is None:
        client.sock.close()
        return None, None
    return client, code


def claim_session(cloud, claim, client_id, template=TEMPLATE, subscribe=True, formats=("json",)):
    client, code = connect(cloud, client_id, claim.cert_pem, claim.key_pem)
    assert code == 0
    if subscribe:
        for fmt in formats:
            for topic in ("$aws/certificates/create/" + fmt, f"$aws/provisioning-templates/{template}/provision/{fmt}"):
                assert client.subscribe(topic + "/accepted", 1) == 1
                assert client.subscribe(topic + "/rejected", 1) == 1
    return client


def is_cbor(topic):
    return topic.endswith(("/cbor", "/cbor/accepted", "/cbor/rejected"))


def request(client, topic, doc):
    """Publish `doc` in the format of the topic (cbor2 for CBOR); the answer's topic and decoded payload."""
    client.publish(topic, cbor2.dumps(doc) if is_cbor(topic) else json.dumps(doc).encode())
    return next_answer(client)


def next_answer(client):
    answer, payload, _ = client.next_publish(timeout=10)
    return answer, cbor2.loads(payload) if is_cbor(answer) else json.loads(payload)


def write_credentials(folder, name, created):
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    cert.write_text(created["certificatePem"])
    key.write_text(created["privateKey"])
    return cert, key


def closed_without_answer(client):
    """True when the broker closes the connection before sending anything more."""
    client.sock.settimeout(10)
    try:
        return client.sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True


def test_claim_provisions_a_thing_whose_certificate_then_logs_in(cloud, claim, tmp_path):
    client = claim_session(cloud, claim, "SN0001")
    topic, created = request(client, CREATE, {})
    assert topic == CREATE + "/accepted"
    assert set(created) == {"certificateId", "certificatePem", "privateKey", "certificateOwnershipToken"}
    der = ssl.PEM_cert_to_DER_cert(created["certificatePem"])
    assert created["certificateId"] == hashlib.sha256(der).hexdigest()
    assert created["privateKey"].startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(created["privateKey"].encode(), password=None)
    certificate = x509.load_der_x509_certificate(der)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert certificate.public_key() == key.public_key()
    root = x509.load_pem_x509_certificate(Path(cloud.ca_pem_path).read_bytes())
    certificate.verify_directly_issued_by(root)
    assert len(created["certificateOwnershipToken"]) >= 200
    assert cloud.aws_certificate(created["certificateId"])["status"] == "PENDING_ACTIVATION"

    cert, key_file = write_credentials(tmp_path, "device", created)
    assert connect(cloud, PREFIX + "SN0001", cert, key_file) == (None, None)  # pending: refused

    topic, registered = request(client, REGISTER % TEMPLATE, {
        "certificateOwnershipToken": created["certificateOwnershipToken"],
        "parameters": {"SerialNumber": "SN0001", "Batch": "7"}})
    client.close()
    assert topic == REGISTER % TEMPLATE + "/accepted"
    assert registered == {"deviceConfiguration": CONFIGURATION, "thingName": PREFIX + "SN0001"}
    assert cloud.aws_certificate(created["certificateId"])["status"] == "ACTIVE"
    assert cloud.aws_thing(PREFIX + "SN0001")["certificates"] == [created["certificateId"]]

    device, code = connect(cloud, PREFIX + "SN0001", cert, key_file)
    assert code == 0
    device.publish(PREFIX + "SN0001/data", b"hello", qos=1)
    device.close()
    assert connect(cloud, "SN0001", cert, key_file) == (None, None)  # the client id must be the thing name

    logins = [e for e in cloud.log() if e["api"] == "aws-login" and e.get("certificate") == created["certificateId"]]
    assert [e["result"] for e in logins] == ["certificate-pending-activation", "ok", "client-id-not-thing-name"]
    [created_record] = [e for e in cloud.log() if e["api"] == "aws-create-keys"
                        and e.get("certificate") == created["certificateId"]]
    print("CreateKeysAndCertificate accepted answer: %d bytes" % created_record["answer_bytes"])
    # Neither the private key nor the token reaches the request log or the emulator's output.
    secret_parts = (created["certificateOwnershipToken"], created["privateKey"].splitlines()[5])
    for text in (Path(cloud.state_dir / "requests.log").read_text(), cloud.output()):
        assert not any(part in text for part in secret_parts)


def test_a_tls_handshake_without_a_client_certificate_fails(cloud, tmp_path):
    with socket.create_connection(("127.0.0.1", cloud.aws_mqtts_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            context(cloud, maximum=ssl.TLSVersion.TLSv1_2).wrap_socket(raw, server_hostname="localhost")
    # TLS 1.3: the client's handshake ends before the server checks; no CONNACK ever comes.
    assert connect(cloud, "SN0002") == (None, None)
    # A certificate of another CA fails the same way.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "stranger")])
    now = x509.load_pem_x509_certificate(Path(cloud.ca_pem_path).read_bytes()).not_valid_before_utc
    stranger = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now.replace(year=now.year + 1))
                .sign(key, hashes.SHA256()))
    (tmp_path / "s.pem").write_bytes(stranger.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "s.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                                       serialization.NoEncryption()))
    assert connect(cloud, "SN0002", tmp_path / "s.pem", tmp_path / "s.key") == (None, None)
    assert not [e for e in cloud.log() if e["api"] == "aws-login" and e.get("client_id") == "SN0002"]


def test_a_disabled_claim_is_refused_at_connect_until_enabled(cloud, tmp_path):
    claim = cloud.add_aws_claim(TEMPLATE, tmp_path)
    cloud.disable_aws_claim(claim.certificate_id[:12])
    assert connect(cloud, "SN0003", claim.cert_pem, claim.key_pem) == (None, None)
    assert cloud.aws_certificate(claim.certificate_id)["status"] == "INACTIVE"
    cloud.enable_aws_claim(claim.certificate_id)
    client, code = connect(cloud, "SN0003", claim.cert_pem, claim.key_pem)
    assert code == 0
    client.close()
    results = [e["result"] for e in cloud.log()
               if e["api"] == "aws-login" and e.get("certificate") == claim.certificate_id]
    assert results == ["claim-disabled", "ok"]


def _token(client):
    _, created = request(client, CREATE, {})
    return created


@pytest.mark.parametrize("serial, doc, status, code", [
    ("SN1001", {"certificateOwnershipToken": "", "parameters": {"SerialNumber": "SN1001", "Batch": "1"}},
     400, "InvalidCertificateOwnershipToken"),
    ("SN1002", {"certificateOwnershipToken": "AAAA" * 100, "parameters": {"SerialNumber": "SN1002", "Batch": "1"}},
     400, "InvalidCertificateOwnershipToken"),
    ("SN1003", {"parameters": {"SerialNumber": "SN1003"}}, 400, "InvalidParameters"),
    ("SN1004", {"parameters": {"SerialNumber": "SN1004", "Batch": "1", "Colour": "red"}}, 400, "InvalidParameters"),
    ("SN1005", {"parameters": {"SerialNumber": 1005, "Batch": "1"}}, 400, "InvalidParameters"),
    ("SN1006", {"parameters": {"SerialNumber": "XX1006", "Batch": "1"}}, 403, "AccessDenied"),  # the hook says no
    ("SN1007", None, 400, "InvalidPayload"),
])
def test_refused_registrations_are_rejected_in_aws_shape_and_change_nothing(cloud, claim, serial, doc, status, code):
    client = claim_session(cloud, claim, serial)
    created = _token(client)
    if doc is None:
        client.publish(REGISTER % TEMPLATE, b"{not json")
        topic, payload, _ = client.next_publish(timeout=10)
        answer = json.loads(payload)
    else:
        topic, answer = request(client, REGISTER % TEMPLATE,
                                {"certificateOwnershipToken": created["certificateOwnershipToken"], **doc})
    assert topic == REGISTER % TEMPLATE + "/rejected"
    assert set(answer) == ERROR_KEYS and (answer["statusCode"], answer["errorCode"]) == (status, code)
    assert isinstance(answer["errorMessage"], str) and answer["errorMessage"]
    assert cloud.aws_certificate(created["certificateId"])["status"] == "PENDING_ACTIVATION"
    assert not [t for t in cloud.aws_things() if t["thing_name"] in (PREFIX + serial, PREFIX + "XX1006")]
    # The token is still good: a right request after the refusal provisions.
    topic, registered = request(client, REGISTER % TEMPLATE, {
        "certificateOwnershipToken": created["certificateOwnershipToken"],
        "parameters": {"SerialNumber": serial, "Batch": "1"}})
    client.close()
    assert topic.endswith("/accepted") and registered["thingName"] == PREFIX + serial


def test_a_token_is_good_once_and_only_for_the_claim_that_minted_it(cloud, claim, tmp_path):
    other = cloud.add_aws_claim(TEMPLATE, tmp_path)
    client = claim_session(cloud, claim, "SN0005")
    created = _token(client)
    thief = claim_session(cloud, other, "SN0006")
    parameters = {"SerialNumber": "SN0006", "Batch": "1"}
    topic, answer = request(thief, REGISTER % TEMPLATE,
                            {"certificateOwnershipToken": created["certificateOwnershipToken"], "parameters": parameters})
    thief.close()
    assert topic.endswith("/rejected") and answer["errorCode"] == "InvalidCertificateOwnershipToken"
    good = {"certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": "SN0005", "Batch": "1"}}
    assert request(client, REGISTER % TEMPLATE, good)[0].endswith("/accepted")
    topic, answer = request(client, REGISTER % TEMPLATE, good)
    client.close()
    assert topic.endswith("/rejected") and (answer["statusCode"], answer["errorCode"]) == (
        400, "InvalidCertificateOwnershipToken")


def test_an_undefined_template_is_not_found(cloud, tmp_path):
    claim = cloud.add_aws_claim("NoSuchTemplate", tmp_path)
    client = claim_session(cloud, claim, "SN0007", template="NoSuchTemplate")
    created = _token(client)
    topic, answer = request(client, REGISTER % "NoSuchTemplate", {
        "certificateOwnershipToken": created["certificateOwnershipToken"], "parameters": {"SerialNumber": "SN0007"}})
    client.close()
    assert topic.endswith("/rejected") and (answer["statusCode"], answer["errorCode"]) == (404, "ResourceNotFound")


def test_answers_go_only_to_the_asker_and_only_after_it_subscribed(cloud, claim):
    quiet = claim_session(cloud, claim, "SN0008", subscribe=False)
    quiet.publish(CREATE, b"{}")
    unheard = cloud.wait_for_log(lambda e: e["api"] == "aws-create-keys" and e["device"] == "SN0008", timeout=10)
    listener = claim_session(cloud, claim, "SN0009")  # subscribed to the same answer topics
    assert quiet.subscribe(CREATE + "/accepted", 1) == 1
    _, heard = request(quiet, CREATE, {})
    # The first answer the device gets is the one to its second request: the first was never sent.
    assert heard["certificateId"] != unheard["certificate"]
    assert cloud.aws_certificate(unheard["certificate"])["status"] == "PENDING_ACTIVATION"
    # The other claim connection, subscribed all along, got neither: its first message is its own answer.
    _, own = request(listener, CREATE, {})
    quiet.close()
    listener.close()
    mine = [e["certificate"] for e in cloud.log() if e["api"] == "aws-create-keys" and e["device"] == "SN0009"]
    assert mine == [own["certificateId"]]


def test_a_cut_between_the_requests_leaves_the_certificate_pending_and_the_claim_starts_over(cloud, claim, tmp_path):
    client = claim_session(cloud, claim, "SN0010")
    first = _token(client)
    client.sock.close()  # the power goes: no RegisterThing, no DISCONNECT
    cert, key = write_credentials(tmp_path, "first", first)
    assert connect(cloud, PREFIX + "SN0010", cert, key) == (None, None)
    client = claim_session(cloud, claim, "SN0010")
    second = _token(client)
    topic, registered = request(client, REGISTER % TEMPLATE, {
        "certificateOwnershipToken": second["certificateOwnershipToken"],
        "parameters": {"SerialNumber": "SN0010", "Batch": "2"}})
    client.close()
    assert registered["thingName"] == PREFIX + "SN0010"
    assert cloud.aws_certificate(first["certificateId"])["status"] == "PENDING_ACTIVATION"  # left in the account
    assert cloud.aws_certificate(second["certificateId"])["status"] == "ACTIVE"
    assert cloud.aws_thing(PREFIX + "SN0010")["certificates"] == [second["certificateId"]]


@pytest.mark.parametrize("action, topic", [
    ("subscribe", "some/other/topic"),
    ("subscribe", "$aws/certificates/create/json/#"),  # would match the requests themselves
    ("publish", REGISTER % "AnotherTemplate"),
    ("publish", CREATE + "/accepted"),  # a forged answer
])
def test_a_claim_outside_the_provisioning_topics_is_disconnected(cloud, claim, action, topic):
    client = claim_session(cloud, claim, "SN0011", subscribe=False)
    if action == "subscribe":
        client.sock.sendall(b"\x82" + bytes([5 + len(topic)]) + b"\x00\x01" + len(topic).to_bytes(2, "big")
                            + topic.encode() + b"\x01")
    else:
        client.publish(topic, b"{}")
    assert closed_without_answer(client)
    client.sock.close()


def test_a_thing_cannot_use_the_provisioning_topics(cloud, claim, tmp_path):
    client = claim_session(cloud, claim, "SN0012")
    created = _token(client)
    request(client, REGISTER % TEMPLATE, {"certificateOwnershipToken": created["certificateOwnershipToken"],
                                          "parameters": {"SerialNumber": "SN0012", "Batch": "3"}})
    client.close()
    cert, key = write_credentials(tmp_path, "thing", created)
    device, code = connect(cloud, PREFIX + "SN0012", cert, key)
    assert code == 0 and device.subscribe(PREFIX + "SN0012/commands", 1) == 1
    device.publish(CREATE, b"{}")
    assert closed_without_answer(device)
    device.sock.close()


def test_a_device_provisions_over_cbor_and_logs_in_with_the_new_certificate(cloud, claim, tmp_path):
    client = claim_session(cloud, claim, "SN0020", formats=("cbor",))
    topic, created = request(client, CREATE_CBOR, {})
    assert topic == CREATE_CBOR + "/accepted"
    assert set(created) == {"certificateId", "certificatePem", "privateKey", "certificateOwnershipToken"}
    assert all(isinstance(value, str) for value in created.values())  # CBOR text strings, as in JSON
    der = ssl.PEM_cert_to_DER_cert(created["certificatePem"])
    assert created["certificateId"] == hashlib.sha256(der).hexdigest()
    key = serialization.load_pem_private_key(created["privateKey"].encode(), password=None)
    assert x509.load_der_x509_certificate(der).public_key() == key.public_key()
    assert cloud.aws_certificate(created["certificateId"])["status"] == "PENDING_ACTIVATION"

    topic, registered = request(client, REGISTER_CBOR % TEMPLATE, {
        "certificateOwnershipToken": created["certificateOwnershipToken"],
        "parameters": {"SerialNumber": "SN0020", "Batch": "4"}})
    client.close()
    assert topic == REGISTER_CBOR % TEMPLATE + "/accepted"
    assert registered == {"deviceConfiguration": CONFIGURATION, "thingName": PREFIX + "SN0020"}
    assert cloud.aws_certificate(created["certificateId"])["status"] == "ACTIVE"
    assert cloud.aws_thing(PREFIX + "SN0020")["parameters"] == {"SerialNumber": "SN0020", "Batch": "4"}

    cert, key_file = write_credentials(tmp_path, "device", created)
    device, code = connect(cloud, PREFIX + "SN0020", cert, key_file)
    assert code == 0
    device.close()
    # The CBOR request is logged with its token hidden; the token and key reach no log or output.
    logged = cloud.wait_for_log(lambda e: e["api"] == "mqtt-publish" and e.get("topic") == REGISTER_CBOR % TEMPLATE
                                and e.get("device") == "SN0020", timeout=10)
    assert logged["payload"].startswith("cbor:") and '"certificateOwnershipToken":"<hidden>"' in logged["payload"]
    secret_parts = (created["certificateOwnershipToken"][:40], created["privateKey"].splitlines()[5])
    for text in (Path(cloud.state_dir / "requests.log").read_text(), cloud.output()):
        assert not any(part in text for part in secret_parts)


def nested(levels):
    """`levels` arrays and maps inside each other: lists around an empty map."""
    value = {}
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize("serial, payload, oracle", [
    ("SN0031", b"\xa2\x61a\x01\x61", None),  # a map of two entries, cut in its second key: cbor2 refuses it too
    ("SN0032", b"\xa1\x61a\xff", None),  # a break where a value must be
    ("SN0033", cbor2.dumps({"a": 1.1}), {"a": 1.1}),  # a float: well-formed, outside the part served
    ("SN0034", cbor2.dumps([1, 2, 3]), [1, 2, 3]),  # an array at the top
    ("SN0035", cbor2.dumps({"a": nested(17)}), {"a": nested(17)}),  # 18 arrays and maps deep
])
def test_malformed_or_unsupported_cbor_is_invalid_payload_in_cbor(cloud, claim, serial, payload, oracle):
    if oracle is None:
        with pytest.raises(cbor2.CBORDecodeError):
            cbor2.loads(payload)
    else:
        assert cbor2.loads(payload) == oracle
    client = claim_session(cloud, claim, serial, formats=("cbor",))
    client.publish(CREATE_CBOR, payload)
    topic, answer = next_answer(client)
    client.close()
    assert topic == CREATE_CBOR + "/rejected"
    assert set(answer) == ERROR_KEYS and (answer["statusCode"], answer["errorCode"]) == (400, "InvalidPayload")
    assert isinstance(answer["errorMessage"], str) and answer["errorMessage"]
    record = cloud.wait_for_log(lambda e: e["api"] == "aws-create-keys" and e["device"] == serial
                                and e.get("status") == 400, timeout=10)
    assert record["reason"] == "bad-cbor" and "certificate" not in record  # nothing minted


def test_a_refused_registration_over_cbor_is_rejected_in_cbor_in_aws_shape(cloud, claim):
    client = claim_session(cloud, claim, "SN0022", formats=("cbor",))
    _, created = request(client, CREATE_CBOR, {})
    parameters = {"SerialNumber": "SN0022", "Batch": "5"}
    refusals = [
        ({"certificateOwnershipToken": "AAAA" * 100, "parameters": parameters},
         (400, "InvalidCertificateOwnershipToken")),
        # A byte string where AWS wants text: the same parameter check as in JSON.
        ({"certificateOwnershipToken": created["certificateOwnershipToken"],
          "parameters": {"SerialNumber": b"SN0022", "Batch": "5"}}, (400, "InvalidParameters")),
    ]
    for doc, error in refusals:
        topic, answer = request(client, REGISTER_CBOR % TEMPLATE, doc)
        assert topic == REGISTER_CBOR % TEMPLATE + "/rejected"
        assert set(answer) == ERROR_KEYS and (answer["statusCode"], answer["errorCode"]) == error
        assert isinstance(answer["errorMessage"], str) and answer["errorMessage"]
    assert cloud.aws_certificate(created["certificateId"])["status"] == "PENDING_ACTIVATION"
    topic, registered = request(client, REGISTER_CBOR % TEMPLATE, {
        "certificateOwnershipToken": created["certificateOwnershipToken"], "parameters": parameters})
    client.close()
    assert topic.endswith("/cbor/accepted") and registered["thingName"] == PREFIX + "SN0022"


def test_injected_failures_are_rejected_in_aws_shape_in_the_topics_format(cloud, claim):
    client = claim_session(cloud, claim, "SN0013", formats=("json", "cbor"))
    cloud.fault("aws_rejected", status=429)
    topic, answer = request(client, CREATE, {})
    assert topic == CREATE + "/rejected" and (answer["statusCode"], answer["errorCode"]) == (429, "ThrottlingException")
    cloud.fault("aws_rejected", status=503)
    topic, answer = request(client, CREATE_CBOR, {})
    assert topic == CREATE_CBOR + "/rejected" and set(answer) == ERROR_KEYS
    assert (answer["statusCode"], answer["errorCode"]) == (503, "ServiceUnavailable")
    topic, _ = request(client, CREATE, {})
    client.close()
    assert topic == CREATE + "/accepted"


# RFC 8949 Appendix A: (encoded bytes, value) of the types the emulator serves, the bytes as the RFC
# prints them.
RFC_8949_EXAMPLES = [
    ("00", 0), ("01", 1), ("0a", 10), ("17", 23), ("1818", 24), ("1819", 25), ("1864", 100), ("1903e8", 1000),
    ("1a000f4240", 1000000), ("1b000000e8d4a51000", 1000000000000),
    ("1bffffffffffffffff", 18446744073709551615), ("3bffffffffffffffff", -18446744073709551616),
    ("20", -1), ("29", -10), ("3863", -100), ("3903e7", -1000),
    ("f4", False), ("f5", True), ("f6", None),
    ("40", b""), ("4401020304", b"\x01\x02\x03\x04"),
    ("60", ""), ("6161", "a"), ("6449455446", "IETF"), ("62225c", "\"\\"), ("62c3bc", "\u00fc"),
    ("63e6b0b4", "\u6c34"), ("64f0908591", "\U00010151"),
    ("80", []), ("83010203", [1, 2, 3]), ("8301820203820405", [1, [2, 3], [4, 5]]),
    ("98190102030405060708090a0b0c0d0e0f101112131415161718181819", list(range(1, 26))),
    ("a0", {}), ("a26161016162820203", {"a": 1, "b": [2, 3]}), ("826161a161626163", ["a", {"b": "c"}]),
    ("a56161614161626142616361436164614461656145", {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}),
]


@pytest.mark.parametrize("encoded, value", RFC_8949_EXAMPLES)
def test_the_emulators_cbor_reads_and_writes_rfc_8949s_examples(encoded, value):
    decoded = cbor.decode(bytes.fromhex(encoded))
    assert decoded == value and type(decoded) is type(value)
    assert cbor.encode(value) == bytes.fromhex(encoded)  # the examples are in the shortest form, as the encoder writes


# RFC 8949 Appendix A examples of what the emulator does not serve, and broken input.
@pytest.mark.parametrize("encoded, why", [
    ("c249010000000000000000", "tags"),  # 18446744073709551616, a bignum
    ("c074323031332d30332d32315432303a30343a30305a", "tags"),  # 0("2013-03-21T20:04:00Z")
    ("f90000", "floats"), ("f93e00", "floats"), ("fa47c35000", "floats"), ("fb3ff199999999999a", "floats"),
    ("f7", "simple values"), ("f0", "simple values"), ("f8ff", "simple values"),  # undefined, simple(16), (255)
    ("5f42010243030405ff", "indefinite"), ("7f657374726561646d696e67ff", "indefinite"), ("9fff", "indefinite"),
    ("bf61610161629f0203ffff", "indefinite"),
    ("a201020304", "keys must be text"),  # {1: 2, 3: 4}
    ("ff", "break"), ("1c", "reserved"),
    ("", "truncated"), ("19", "truncated"), ("1a000f42", "truncated"), ("64494554", "truncated"),
    ("830102", "truncated"), ("a26161016162", "truncated"), ("9b0000000100000000", "truncated"),
    ("0001", "after the item"), ("62c328", "not UTF-8"), ("a2616101616102", "duplicate"),
    ("81" * 16 + "80", "deeper than 16"),
])
def test_the_emulators_cbor_refuses_what_it_does_not_serve_with_its_own_error(encoded, why):
    with pytest.raises(cbor.CborError, match=why):
        cbor.decode(bytes.fromhex(encoded))


def test_the_emulators_cbor_depth_limit_is_16_arrays_and_maps():
    for value in (nested(16), {"a": nested(15)}):
        encoded = cbor2.dumps(value)
        assert cbor.decode(encoded) == value and cbor.encode(value) == encoded
    for value in (nested(17), {"a": nested(16)}):
        with pytest.raises(cbor.CborError, match="deeper than 16"):
            cbor.decode(cbor2.dumps(value))
        with pytest.raises(cbor.CborError, match="deeper than 16"):
            cbor.encode(value)
    with pytest.raises(cbor.CborError, match="cannot encode a float"):
        cbor.encode({"a": 1.5})


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cloud_emulator", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_the_command_line_defines_templates_mints_claims_and_lists(cloud, tmp_path):
    state = ["--state", str(cloud.state_dir)]
    made = run_cli("aws-add-template", *state, "--name", "CliTemplate", "--parameter", "SerialNumber",
                   "--thing-name-prefix", "cli-", "--allow", "A.*", "--device-configuration", '{"k": "v"}')
    assert made.returncode == 0, made.stderr
    made = run_cli("aws-add-claim", *state, "--template", "CliTemplate", "--cert-out", str(tmp_path / "claim.pem"),
                   "--key-out", str(tmp_path / "claim-key.pem"))
    assert made.returncode == 0, made.stderr
    files = {name: tmp_path / name for name in ("claim.pem", "claim.der", "claim-key.pem", "claim-key.der")}
    assert all(path.exists() for path in files.values())
    assert stat.S_IMODE(os.stat(files["claim-key.pem"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(files["claim-key.der"]).st_mode) == 0o600
    der = files["claim.der"].read_bytes()
    assert ssl.DER_cert_to_PEM_cert(der).strip() == files["claim.pem"].read_text().strip()
    assert serialization.load_der_private_key(files["claim-key.der"].read_bytes(), None).key_size == 2048
    claim_id = hashlib.sha256(der).hexdigest()
    assert claim_id in made.stdout and "PRIVATE KEY" not in made.stdout + made.stderr
    again = run_cli("aws-add-claim", *state, "--template", "CliTemplate", "--cert-out", str(tmp_path / "claim.pem"),
                    "--key-out", str(tmp_path / "other-key.pem"))
    assert again.returncode == 2 and "not overwritten" in again.stderr

    assert run_cli("aws-disable-claim", *state, "--certificate-id", claim_id[:10]).returncode == 0
    assert connect(cloud, "A1", files["claim.pem"], files["claim-key.pem"]) == (None, None)
    assert run_cli("aws-enable-claim", *state, "--certificate-id", claim_id).returncode == 0
    client, code = connect(cloud, "A1", files["claim.pem"], files["claim-key.pem"])
    assert code == 0
    client.close()
    listed = [json.loads(line) for line in run_cli("aws-certificates", *state, "--json").stdout.splitlines()]
    assert {"certificate_id": claim_id, "kind": "claim", "status": "ACTIVE", "template": "CliTemplate"}.items() <= \
        next(row for row in listed if row["certificate_id"] == claim_id).items()
    templates = run_cli("aws-templates", *state)
    assert "CliTemplate" in templates.stdout and "cli-" in templates.stdout
    assert run_cli("aws-things", *state).returncode == 0
    bad = run_cli("aws-add-template", *state, "--name", "x" * 37, "--parameter", "SerialNumber")
    assert bad.returncode == 2 and "36" in bad.stderr

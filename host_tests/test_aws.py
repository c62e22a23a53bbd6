# dynreg.aws, AWS IoT Core fleet provisioning by claim: the topics and the RegisterThing
# request, the answers in the shapes AWS documents (vectors/aws_answers.json, whose certificate
# and key `cryptography` made and wrote as DER: the oracle), the refusals and what is retried,
# the info's checks, the credential saved as DER and the claim erased, the built-in roots.
# Runs on CPython and MicroPython.
import json

from support import IS_MICROPYTHON, vectors, raises, exact, scratch_dir, write, listdir
from dynreg import aws, store, ConfigError, NetworkError, ProtocolError, RejectedError, StorageError

V = vectors("aws_answers")
TEMPLATE = "FleetTemplate"
URL = "mqtts://a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com:8883"


def info(**fields):
    doc = {"dynreg": 1, "cloud": "aws", "template": TEMPLATE, "mqtt_url": URL, "claim_cert": "claim.crt",
           "claim_key": "claim.key", "device_name": "SN-0042"}
    doc.update(fields)
    return store.Info("device_info.json", doc)


def test_the_request_topics_and_the_register_thing_parameters():
    assert aws.CREATE == b"$aws/certificates/create/json"
    assert aws.provision_topic(TEMPLATE) == b"$aws/provisioning-templates/FleetTemplate/provision/json"
    assert aws.provision_topic("a-b_C" + "9" * 31) == ("$aws/provisioning-templates/a-b_C%s/provision/json"
                                                       % ("9" * 31)).encode()
    device = info(parameters={"Color": "red", "SerialNumber": "from-the-info"})
    assert aws.parameters(device) == {"Color": "red", "SerialNumber": "SN-0042"}  # the chip's name wins
    assert aws.parameters(info()) == {"SerialNumber": "SN-0042"}


def test_the_create_keys_answer_gives_the_der_that_cryptography_wrote():
    doc = aws.answer(True, V["create"]["payload"].encode())
    cert, key = aws.der(doc, "certificatePem"), aws.der(doc, "privateKey")
    assert cert == bytes.fromhex(V["create"]["cert_der"])
    assert key == bytes.fromhex(V["create"]["key_der"])
    assert len(doc["certificateOwnershipToken"]) == 800
    if IS_MICROPYTHON:
        # mbedTLS takes them as the board's own certificate and key (it parses no PEM here).
        from dynreg import net, roots_aws

        assert net.tls_context(roots_aws.ATS, cert, key) is not None
    else:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        pem = json.loads(V["create"]["payload"])
        assert cert == x509.load_pem_x509_certificate(pem["certificatePem"].encode()).public_bytes(
            serialization.Encoding.DER)
        parsed = serialization.load_der_private_key(key, None)
        assert parsed.private_numbers() == serialization.load_pem_private_key(
            pem["privateKey"].encode(), None).private_numbers()


def test_the_register_thing_answer_gives_the_thing_and_its_configuration():
    doc = aws.answer(True, V["register"]["payload"].encode(), 2048)
    assert aws.thing(doc, "SN-0042") == ("ThingPrefix_SN-0042", {"FallbackUrl": "https://x.example",
                                                                 "LocationUrl": "https://y.example"})
    assert aws.thing({}, "SN-0042") == ("SN-0042", {})  # a template that makes no thing
    for bad in ({"thingName": 7}, {"thingName": "t", "deviceConfiguration": ["x"]}):
        raises(ProtocolError, aws.thing, bad, "SN-0042")
    big = json.dumps({"thingName": "t", "deviceConfiguration": {"k": "v" * 2100}}).encode()
    e = raises(ProtocolError, aws.answer, True, big, 2048)
    assert "2048" in str(e)


def test_garbled_answers_are_protocol_errors():
    for payload in (b"not json", b"[1]", b"{" * 200, b" " * 9000):
        raises(ProtocolError, aws.answer, True, payload)
    for doc in ({}, {"certificatePem": 5}, {"certificatePem": "MIIB"}, {"certificatePem": "-----BEGIN X-----\nAAA"}):
        raises(ProtocolError, aws.der, doc, "certificatePem")


def _rejected(v):
    return json.dumps({"statusCode": v["status"], "errorCode": v["code"], "errorMessage": v["message"]}).encode()


def test_refusals_are_rejected_errors_with_the_status_and_the_code():
    for v in V["rejected"]:
        if v["outcome"] not in ("rejected", "final"):
            continue
        e = exact(RejectedError, aws.answer, False, _rejected(v))
        assert e.code == v["status"], v["source"]
        assert e.message == "%s: %s" % (v["code"], v["message"]), v["source"]
        assert e.fixed_in_console == (v["outcome"] == "rejected"), v["source"]
    e = raises(RejectedError, aws.answer, False, _rejected(V["rejected"][1]))
    assert "pre-provisioning hook" in str(e)
    e = raises(RejectedError, aws.answer, False, _rejected(V["rejected"][2]))
    assert "no such provisioning template" in str(e)


def test_throttling_5xx_and_a_token_that_did_not_hold_are_retried():
    seen = set()
    for v in V["rejected"]:
        if v["outcome"] not in ("throttled", "retry"):
            continue
        e = exact(NetworkError, aws.answer, False, _rejected(v))
        assert e.throttled == (v["outcome"] == "throttled"), v["source"]
        assert e.retry_after_ms is None
        assert str(v["status"]) in str(e) and v["code"] in str(e)
        seen.add(v["code"])
    assert seen == {"InvalidCertificateOwnershipToken", "ThrottlingException", "InternalFailure", "ServiceUnavailable"}


def test_the_info_of_an_aws_board():
    device = info()
    assert (device.product, device.secret_field, device.product_secret) == (TEMPLATE, "claim_key", "claim.key")
    assert device.auth == "cert" and device.api == "mqtt"
    assert device.credential_kind() == ("cert_file", "key_file", "thing_name")
    assert device.needs_registration
    raises(ConfigError, store.Info, "device_info.json", {"dynreg": 1, "cloud": "aws", "claim_key": "k"})
    e = raises(ConfigError, info(claim_key=None).check_can_register)
    assert "claim_key" in str(e)


def test_bad_fields_are_config_errors_that_name_the_field_never_the_value():
    for name in ("", "a" * 37, "has space", "dot.ted", "slash/x", "plus+"):
        e = raises(ConfigError, aws.provision_topic, name)
        assert "template" in str(e) and (not name or name not in str(e))
    for device_name in ("", "a" * 129, "has space", "at@x"):
        e = raises(ConfigError, aws.parameters, info(device_name=device_name or None))
        assert "device_name" in str(e)
    for given in (["x"], {"k": 1}, {"k": None}, "text"):
        e = raises(ConfigError, aws.parameters, info(parameters=given))
        assert "parameters" in str(e)
    e = raises(ConfigError, aws.broker, info(mqtt_url=None))
    assert "mqtt_url" in str(e)
    assert aws.broker(info()) is None  # the info's mqtt_url applies
    raises(ConfigError, aws.login, info(), False)  # a client certificate needs TLS


def _board(folder, **fields):
    write(folder + "/claim.crt", "claim certificate")
    write(folder + "/claim.key", "claim key")
    doc = {"dynreg": 1, "cloud": "aws", "template": TEMPLATE, "mqtt_url": URL, "claim_cert": "claim.crt",
           "claim_key": "claim.key", "device_name": "SN-0042", "credential": {}}
    doc.update(fields)
    write(folder + "/device_info.json", json.dumps(doc))
    return store.load(folder + "/device_info.json")


def test_the_credential_is_stored_as_der_and_the_claim_read_from_its_files():
    folder = scratch_dir()
    device = _board(folder)
    assert aws._claim(device, "claim_key") == b"claim key"
    e = raises(ConfigError, aws._claim, info(claim_cert=None), "claim_cert")
    assert "claim_cert" in str(e)
    cert, key = bytes.fromhex(V["create"]["cert_der"]), bytes.fromhex(V["create"]["key_der"])
    # Without the thing name nothing is stored.
    before = listdir(folder)
    raises(StorageError, device.save_credential, {"cert": cert, "key": key})
    assert store.load(folder + "/device_info.json").needs_registration and listdir(folder) == before
    device.save_credential({"cert": cert, "key": key, "thing_name": "ThingPrefix_SN-0042",
                            "device_configuration": {"LocationUrl": "https://y.example"}})
    again = store.load(folder + "/device_info.json")
    assert not again.needs_registration
    assert again.credential["thing_name"] == "ThingPrefix_SN-0042"
    assert again.read_credential_file("cert_file") == cert and again.read_credential_file("key_file") == key
    assert again.doc["device_configuration"] == {"LocationUrl": "https://y.example"}
    assert aws.login(again, True) == ("ThingPrefix_SN-0042", None, None)


def test_the_first_login_erases_the_claim_files_unless_kept():
    folder = scratch_dir()
    device = _board(folder)
    device.save_credential({"cert": b"0\x01c", "key": b"0\x01k", "thing_name": "SN-0042"})
    assert device.erase_product_secret()
    names = listdir(folder)
    assert "claim.crt" not in names and "claim.key" not in names
    doc = store.load(folder + "/device_info.json").doc
    assert "claim_key" not in doc and "claim_cert" not in doc and doc["logged_in"] is True
    kept = _board(scratch_dir(), keep_product_secret=True)
    kept.save_credential({"cert": b"0\x01c", "key": b"0\x01k", "thing_name": "SN-0042"})
    assert not kept.erase_product_secret()
    names = listdir(kept.folder)
    assert "claim.crt" in names and "claim.key" in names


def test_the_built_in_roots_are_amazons():
    import hashlib
    from binascii import hexlify
    from dynreg import roots_aws

    # SHA-256 of the DER, from shared/spec/cloud-roots/README.md's table (written out here).
    assert [hexlify(hashlib.sha256(der).digest()).decode() for der in aws.roots(info())] == [
        "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e",
        "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4"]
    assert aws.roots(info(), 8883) is roots_aws.ATS
    if IS_MICROPYTHON:
        from dynreg import net

        assert net.tls_context(roots_aws.ATS) is not None

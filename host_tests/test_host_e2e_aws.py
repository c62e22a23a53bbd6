# End to end for AWS IoT Core fleet provisioning by claim on the MicroPython unix port (each
# umqtt.simple a user can have) against the emulator's AWS endpoint: the first boot trades the
# claim for a certificate, a key and a thing, logs in with them and erases the claim; the second
# boot logs in straight away; a disabled claim and a refusing template store nothing; a board
# refused half-way starts over next boot, and the certificate it left stays PENDING_ACTIVATION.
import hashlib
import os
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloud_emulator.crypto import ensure_tls_material
from cloud_emulator.testing import running_emulator
from e2e import folder_snapshot, read_json, run_device, write_device_info
from hostile import CONNACK_OK, HostileBroker, publish, read_packet

TEMPLATE = "FleetTemplate"
STRICT = "StrictTemplate"  # its stand-in for a pre-provisioning hook lets only SN-OK-* in
PREFIX = "Fleet_"
CONFIG = {"LocationUrl": "https://config.example/sn"}
FAST = {"attempts": 2, "backoff_ms": 50, "timeout_ms": 15000}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, umqtt):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_aws_template(TEMPLATE, ("SerialNumber", "Color"), thing_name_prefix=PREFIX,
                               device_configuration=CONFIG)
        cloud.add_aws_template(STRICT, ("SerialNumber",), allow="SN-OK-.*")
        cloud.claims = {name: cloud.add_aws_claim(name, name=name.lower()) for name in (TEMPLATE, STRICT)}
        yield cloud


def _device(tmp_path, cloud, serial, template=TEMPLATE, der=False, **fields):
    # A fresh board: the claim's files beside its info (PEM, or the DER twins), the emulator's
    # CA as the server's root.
    folder = tmp_path / serial
    folder.mkdir()
    claim = cloud.claims[template]
    shutil.copy(claim.cert_der if der else claim.cert_pem, folder / "claim.crt")
    shutil.copy(claim.key_der if der else claim.key_pem, folder / "claim.key")
    doc = {"dynreg": 1, "cloud": "aws", "template": template, "device_name": serial,
           "mqtt_url": "mqtts://localhost:%d" % cloud.aws_mqtts_port, "ca": cloud.ca_der_path,
           "claim_cert": "claim.crt", "claim_key": "claim.key", "credential": {}}
    if template == TEMPLATE:
        doc["parameters"] = {"Color": "red"}
    doc.update(fields)
    return write_device_info(folder / "device_info.json", doc)


def _log(cloud, api, device=None):
    return [e for e in cloud.log() if e.get("api") == api and (device is None or e.get("device") == device)]


def _minted(cloud, since=()):
    # The device certificates CreateKeysAndCertificate made, but those whose ids are in `since`.
    return [e for e in cloud.aws_certificates() if e["kind"] == "device" and e["certificate_id"] not in since]


def _ids(rows):
    return {row["certificate_id"] for row in rows}


@pytest.mark.parametrize("der", [False, True], ids=["pem-claim", "der-claim"])
def test_first_boot_provisions_logs_in_and_erases_the_claim_then_the_second_boot_just_logs_in(cloud, tmp_path, der):
    serial = "SN-E2E-%d" % der
    info = _device(tmp_path, cloud, serial, der=der)
    before = _ids(_minted(cloud))
    result = run_device(info, ensure={}, connect={}, publish="dt/%s%s/status" % (PREFIX, serial), modules=True)
    assert result["ok"] and result["connected"], result
    # The log names where the registration went: the account's endpoint, there is no default.
    assert "with aws, mqtt API, mqtts://localhost:%d (attempt 1" % cloud.aws_mqtts_port in result["output"]
    # AWS's module only: no other cloud's, no HTTP, no hints; no built-in roots (the info names a CA).
    assert set(result["modules"]) == {"dynreg", "dynreg.aws", "dynreg.clock", "dynreg.codec", "dynreg.flow",
                                      "dynreg.mqtt", "dynreg.net", "dynreg.store"}, result["modules"]
    doc = read_json(info)
    thing = PREFIX + serial
    assert doc["credential"] == {"cert_file": serial + "_cert.crt", "key_file": serial + "_private.key",
                                 "thing_name": thing}
    assert doc["device_configuration"] == CONFIG
    # The certificate and key as DER (the oracle: cryptography), and the one the cloud activated.
    folder = os.path.dirname(info)
    with open(os.path.join(folder, serial + "_cert.crt"), "rb") as f:
        cert = x509.load_der_x509_certificate(f.read())
    with open(os.path.join(folder, serial + "_private.key"), "rb") as f:
        key = serialization.load_der_private_key(f.read(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    certificate_id = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    row = cloud.aws_certificate(certificate_id)
    assert row["status"] == "ACTIVE" and row["thing"] == thing
    assert cloud.aws_thing(thing)["parameters"] == {"SerialNumber": serial, "Color": "red"}
    assert _ids(_minted(cloud, before)) == {certificate_id}
    # The claim is gone from the flash and from the info: the board's own login was accepted.
    assert "claim.crt" not in os.listdir(folder) and "claim.key" not in os.listdir(folder)
    assert "claim_key" not in doc and "claim_cert" not in doc and doc["logged_in"] is True
    assert "claim erased" in result["output"]
    assert [e["result"] for e in _log(cloud, "aws-login", thing)][-1] == "ok"
    # The second boot: no provisioning at all.
    again = run_device(info, ensure={}, connect={})
    assert again["connected"] and "no registration" in again["output"], again
    assert _ids(_minted(cloud, before)) == {certificate_id}
    assert [e["result"] for e in _log(cloud, "aws-login", thing)] == ["ok", "ok"]


def test_a_disabled_claim_is_refused_and_nothing_is_stored(cloud, tmp_path):
    info = _device(tmp_path, cloud, "SN-DISABLED", template=STRICT)
    before, minted = folder_snapshot(info), _ids(_minted(cloud))
    cloud.disable_aws_claim(cloud.claims[STRICT].certificate_id)
    try:
        result = run_device(info, ensure=FAST, connect={})
    finally:
        cloud.enable_aws_claim(cloud.claims[STRICT].certificate_id)
    # AWS closes the connection of a disabled certificate without a CONNACK.
    assert not result["ok"] and result["error"] == "NetworkError" and "no CONNACK" in result["message"], result
    assert folder_snapshot(info) == before
    assert _minted(cloud, minted) == []


def test_a_template_that_refuses_stores_nothing_and_the_board_starts_over_next_boot(cloud, tmp_path):
    serial = "SN-LATE-01"
    info = _device(tmp_path, cloud, serial, template=STRICT)
    before, minted = folder_snapshot(info), _ids(_minted(cloud))
    refused = run_device(info, ensure=FAST)
    assert not refused["ok"] and refused["error"] == "RejectedError" and refused["code"] == 403, refused
    assert "pre-provisioning hook" in refused["message"]
    assert folder_snapshot(info) == before  # the certificate it was sold is not kept
    assert [c["status"] for c in _minted(cloud, minted)] == ["PENDING_ACTIVATION"]  # what the refusal costs
    # The operator lets the serial in: the next boot mints another certificate and registers.
    cloud.add_aws_template(STRICT, ("SerialNumber",), allow="SN-.*", update=True)
    try:
        result = run_device(info, ensure=FAST, connect={})
    finally:
        cloud.add_aws_template(STRICT, ("SerialNumber",), allow="SN-OK-.*", update=True)
    assert result["ok"] and result["connected"], result
    assert sorted(c["status"] for c in _minted(cloud, minted)) == ["ACTIVE", "PENDING_ACTIVATION"]
    assert read_json(info)["credential"]["thing_name"] == serial


def test_a_busy_cloud_is_retried_with_a_new_request(cloud, tmp_path):
    serial = "SN-OK-BUSY"
    info = _device(tmp_path, cloud, serial, template=STRICT)
    cloud.fault("aws_rejected", status=503)
    result = run_device(info, ensure=FAST)
    assert result["ok"], result
    assert "AWS answered 503 ServiceUnavailable" in result["output"]
    assert [e["result"] for e in _log(cloud, "aws-create-keys") if e.get("fault")][-1] == "ServiceUnavailable"
    assert read_json(info)["credential"]["thing_name"] == serial


def test_an_answer_over_the_packet_limit_ends_the_registration_at_once_with_nothing_stored(cloud, tmp_path):
    # A broker of our own answers CreateKeysAndCertificate with 9000 bytes, over the 8192 that
    # let AWS's ~4 KB answer in: a clear ProtocolError, no retry (a retry mints another
    # certificate and gets the same answer).
    (tmp_path / "tls").mkdir()
    material = ensure_tls_material(tmp_path / "tls")

    def script(conn, stop):
        assert read_packet(conn)[0] >> 4 == 1  # CONNECT
        conn.sendall(CONNACK_OK)
        while not stop.is_set():
            kind, body = read_packet(conn)
            if kind >> 4 == 8:  # SUBSCRIBE: granted
                conn.sendall(b"\x90\x03" + body[:2] + b"\x00")
            elif kind >> 4 == 3:  # the request
                conn.sendall(publish("$aws/certificates/create/json/accepted", b"{" + b" " * 8998 + b"}"))
            elif kind >> 4 == 14:
                return

    with HostileBroker(script, material) as broker:
        info = _device(tmp_path, cloud, "SN-BIG", mqtt_url="mqtts://localhost:%d" % broker.port,
                       ca=str(material.ca_der_path))
        before = folder_snapshot(info)
        result = run_device(info, ensure=FAST)
    assert not result["ok"] and result["error"] == "ProtocolError", result
    assert "MQTT message of 9040 bytes dropped (over max_packet 8192)" in result["message"], result
    assert broker.connections == 1
    assert folder_snapshot(info) == before

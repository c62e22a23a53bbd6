# The emulator's server certificate chains have the real clouds' shapes (cloud_emulator/README.md,
# "Certificate chains"): what each listener sends, seen in the TLS 1.2 handshake by a client that
# trusts only the state's ca.pem; another shape's root refused; a shape chosen again on restart;
# and a Tencent device on the MicroPython unix port registering and logging in over TLS on the
# cheapest and the dearest shape for a chip (the default shape is the rest of the suite's).
import contextlib
import datetime
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from cloud_emulator.crypto import ensure_tls_material
from cloud_emulator.testing import running_emulator
from e2e import SECRET, read_json, registrations, run_device, write_info

# What each shape must send, written out here (not read from the emulator): the leaf's key,
# the intermediate's key (None: the root signs the leaf, and only the leaf is sent), the root's.
RSA_2048, RSA_4096, EC_P256 = ("rsa", 2048), ("rsa", 4096), ("ec", 256)
SHAPES = {
    "ecdsa-p256": (EC_P256, None, EC_P256),
    "rsa2048": (RSA_2048, None, RSA_2048),
    "rsa2048-intermediate": (RSA_2048, RSA_2048, RSA_2048),
    "rsa4096-intermediate": (RSA_2048, RSA_2048, RSA_4096),
}
SHA256_SIGNATURES = {"ec": SignatureAlgorithmOID.ECDSA_WITH_SHA256, "rsa": SignatureAlgorithmOID.RSA_WITH_SHA256}
HANDSHAKE_TIMEOUT = 10
KEY_PRODUCT, CERT_PRODUCT = "CHAINKEY01", "CHAINCERT1"


@pytest.fixture(scope="module")
def cloud_of(tmp_path_factory):
    # One emulator a shape, started when a test first asks for it.
    started, stack = {}, contextlib.ExitStack()

    def get(shape):
        if shape not in started:
            cloud = stack.enter_context(running_emulator(tmp_path_factory.mktemp(shape), chain=shape))
            cloud.add_product(KEY_PRODUCT, SECRET, auth="key", mode="autocreate")
            cloud.add_product(CERT_PRODUCT, SECRET, auth="cert", mode="autocreate")
            started[shape] = cloud
        return started[shape]

    with stack:
        yield get


def key_of(certificate):
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return ("rsa", key.key_size)
    assert isinstance(key, ec.EllipticCurvePublicKey), key
    return ("ec", key.curve.key_size)


def root_of(cloud):
    pem = x509.load_pem_x509_certificate(Path(cloud.ca_pem_path).read_bytes())
    assert pem.public_bytes(serialization.Encoding.DER) == Path(cloud.ca_der_path).read_bytes()
    return pem


def tls12_handshake(port, context):
    """A TLS 1.2 handshake with the listener on `port`, driven through memory BIOs so that the
    server's bytes are kept: in TLS 1.2 its Certificate message travels in the clear. Returns the
    DER certificates it sent, in order; raises what the handshake raised (a verification error)."""
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_TIMEOUT) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed the connection in the handshake")
                received += data
                incoming.write(data)
        sock.sendall(outgoing.read())
    return _certificates_sent(bytes(received))


def _certificates_sent(records):
    # The handshake records' payloads, then the Certificate message (type 11) among them.
    handshake, at = bytearray(), 0
    while at + 5 <= len(records) and records[at] == 22:
        length = int.from_bytes(records[at + 3:at + 5], "big")
        handshake += records[at + 5:at + 5 + length]
        at += 5 + length
    at = 0
    while at + 4 <= len(handshake):
        kind, length = handshake[at], int.from_bytes(handshake[at + 1:at + 4], "big")
        if kind == 11:
            body, certificates = handshake[at + 4:at + 4 + length], []
            end, at = 3 + int.from_bytes(body[:3], "big"), 3
            while at < end:
                size = int.from_bytes(body[at:at + 3], "big")
                certificates.append(bytes(body[at + 3:at + 3 + size]))
                at += 3 + size
            return certificates
        at += 4 + length
    raise AssertionError("no Certificate message in the server's handshake records")


def trusting(ca_pem_path, *, check_hostname=True):
    context = ssl.create_default_context(cafile=ca_pem_path)
    context.check_hostname = check_hostname
    return context


def assert_chain_of_shape(sent, shape, root, host="localhost"):
    leaf_key, intermediate_key, root_key = SHAPES[shape]
    certificates = [x509.load_der_x509_certificate(der) for der in sent]
    assert key_of(root) == root_key
    assert root.public_bytes(serialization.Encoding.DER) not in sent, "the root was sent"
    assert all(c.issuer != c.subject for c in certificates), "a self-signed certificate was sent"
    leaf = certificates[0]
    assert key_of(leaf) == leaf_key
    assert leaf.signature_algorithm_oid == SHA256_SIGNATURES[(intermediate_key or root_key)[0]]
    assert host in leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and (usage.key_encipherment if leaf_key[0] == "rsa" else usage.key_agreement)
    if intermediate_key is None:
        assert len(certificates) == 1
        leaf.verify_directly_issued_by(root)
        return leaf
    assert len(certificates) == 2
    intermediate = certificates[1]
    assert key_of(intermediate) == intermediate_key
    assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert intermediate.signature_algorithm_oid == SHA256_SIGNATURES[root_key[0]]
    intermediate.verify_directly_issued_by(root)
    leaf.verify_directly_issued_by(intermediate)
    return leaf


@pytest.mark.parametrize("listener", ["https", "mqtts"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_listener_sends_the_leaf_and_intermediate_of_its_shape_never_the_root(cloud_of, shape, listener):
    cloud = cloud_of(shape)
    port = cloud.https_port if listener == "https" else cloud.mqtts_port
    sent = tls12_handshake(port, trusting(cloud.ca_pem_path))  # verified: host name and chain to ca.pem
    assert_chain_of_shape(sent, shape, root_of(cloud))
    assert cloud.chain == shape


@pytest.mark.parametrize("listener", ["https", "mqtts"])
@pytest.mark.parametrize("shape,other", [("ecdsa-p256", "rsa4096-intermediate"), ("rsa2048", "ecdsa-p256"),
                                         ("rsa2048-intermediate", "rsa2048"),
                                         ("rsa4096-intermediate", "rsa2048-intermediate")])
def test_a_client_trusting_another_shapes_root_is_refused(cloud_of, shape, other, listener):
    cloud, stranger = cloud_of(shape), cloud_of(other)
    assert Path(cloud.ca_der_path).read_bytes() != Path(stranger.ca_der_path).read_bytes()
    port = cloud.https_port if listener == "https" else cloud.mqtts_port
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        tls12_handshake(port, trusting(stranger.ca_pem_path))


@pytest.mark.parametrize("fault,listener", [("tls_expired", "https"), ("tls_wrong_host", "mqtts")])
def test_the_tls_faults_certificates_are_issued_in_the_active_shape(tmp_path, fault, listener):
    shape = "rsa4096-intermediate"
    with running_emulator(tmp_path / "cloud", chain=shape) as cloud:
        cloud.fault(fault)
        port = cloud.https_port if listener == "https" else cloud.mqtts_port
        context = trusting(cloud.ca_pem_path, check_hostname=False)
        context.verify_mode = ssl.CERT_NONE  # what is sent, however wrong; its signatures checked below
        sent = tls12_handshake(port, context)
        leaf = assert_chain_of_shape(sent, shape, root_of(cloud),
                                     host="wrong-host.invalid" if fault == "tls_wrong_host" else "localhost")
        expired = leaf.not_valid_after_utc < datetime.datetime.now(datetime.timezone.utc)
        assert expired == (fault == "tls_expired")
        assert [e["result"] for e in cloud.log() if e.get("api") == "tls"] == ["fault:" + fault]


@pytest.mark.dynreg_cloud("aliyun", chain="rsa2048")
def test_the_fixtures_marker_picks_the_shape(dynreg_cloud):
    sent = tls12_handshake(dynreg_cloud.emulator.mqtts_port, trusting(dynreg_cloud.ca_pem))
    assert_chain_of_shape(sent, "rsa2048", root_of(dynreg_cloud.emulator))


def test_a_state_keeps_its_shape_and_another_chain_on_restart_makes_a_new_root(tmp_path):
    with running_emulator(tmp_path / "cloud", chain="rsa4096-intermediate") as cloud:
        first_root = Path(cloud.ca_der_path).read_bytes()
        cloud.stop()
        # Without a shape (`serve` without --chain): the state's shape and root, unchanged.
        assert ensure_tls_material(cloud.state_dir).chain == "rsa4096-intermediate"
        assert Path(cloud.ca_der_path).read_bytes() == first_root
        cloud.start(chain="ecdsa-p256")
        assert cloud.chain == "ecdsa-p256"
        assert Path(cloud.ca_der_path).read_bytes() != first_root
        assert not (cloud.state_dir / "intermediate.pem").exists()
        assert_chain_of_shape(tls12_handshake(cloud.https_port, trusting(cloud.ca_pem_path)), "ecdsa-p256",
                              root_of(cloud))
        old_root = tmp_path / "old-root.pem"
        old_root.write_bytes(x509.load_der_x509_certificate(first_root).public_bytes(serialization.Encoding.PEM))
        with pytest.raises(ssl.SSLCertVerificationError):  # a device must be given the new ca.der
            tls12_handshake(cloud.mqtts_port, trusting(str(old_root)))


# -- a device on the MicroPython unix port ------------------------------------------------------

@pytest.mark.parametrize("shape,product", [("ecdsa-p256", KEY_PRODUCT), ("ecdsa-p256", CERT_PRODUCT),
                                           ("rsa4096-intermediate", KEY_PRODUCT),
                                           ("rsa4096-intermediate", CERT_PRODUCT)])
def test_a_tencent_device_registers_over_https_and_logs_in_over_mqtts(cloud_of, tmp_path, shape, product):
    cloud = cloud_of(shape)
    name = "chain-%s-%s" % (shape, product.lower())
    fields = {"auth": "cert"} if product == CERT_PRODUCT else {}
    info = write_info(tmp_path, cloud, product, device_name=name,
                      mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port, **fields)
    assert read_json(info)["ca"] == cloud.ca_der_path  # the root, the one file a device trusts
    result = run_device(info, ensure={}, connect={})
    assert result["ok"] and result["connected"], result
    [registration] = registrations(cloud, name)
    assert registration["result"] == "ok" and registration["transport"] == "https"
    logins = [e for e in cloud.log() if e.get("api") == "mqtt-connect" and e.get("device") == name]
    assert [(e["result"], e["transport"]) for e in logins] == [("ok", "mqtts")]
    assert cloud.device(product, name)["status"] == "activated"
    if product == CERT_PRODUCT:
        # Its certificate comes from the client CA: the root, or where the root signs the server's
        # leaf, a CA of its own (else the MQTTS listener would send the root, checked above).
        issued = x509.load_pem_x509_certificate(cloud.device(product, name)["cert_pem"].encode())
        client_ca = cloud.state_dir / ("client-ca.pem" if SHAPES[shape][1] is None else "ca.pem")
        issued.verify_directly_issued_by(x509.load_pem_x509_certificate(client_ca.read_bytes()))

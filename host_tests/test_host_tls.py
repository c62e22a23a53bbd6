# Every TLS path of the device, on every umqtt.simple a user can have (the `umqtt` fixture),
# on the frozen v1.28.0 unix build: HTTPS registration (Tencent), MQTT registration (Alibaba),
# and the MQTT logins with a psk, a DeviceSecret, a deviceToken and a client certificate.
# Each is pointed at a man in the middle (a TLS server with a certificate for the right host
# name from a CA the device does not trust, which records every byte it is sent), and at the
# emulator serving an expired certificate or one for another host. Each must end in TLSError,
# with nothing stored and not one byte of application data sent. A certificate device must
# present its certificate, and a server that never answers must not hold the device past its
# timeout. umqtt.simple 1.3.4 (PyPI), which cannot verify a certificate on this firmware, is
# refused before any connection.
import datetime
import os
import socket
import ssl
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtendedKeyUsageOID

import e2e
from cloud_emulator.crypto import _create_ca, _new_key
from cloud_emulator.testing import running_emulator
from e2e import SECRET, folder_snapshot, read_json, registrations, run_device, write_aliyun_info, write_azure_info
from e2e import write_info

TENCENT = "TLSKEY0001"
TENCENT_CERT = "TLSCERT001"
ALIYUN = "a1TlsPrdKey"
ALIYUN_FREE = "a1TlsFreeKy"
FAST = {"attempts": 1, "timeout_ms": 3000}
# (path, how the device is set up, what the man in the middle stands in for)
PATHS = ("https-register", "mqtt-register", "psk-login", "secret-login", "token-login", "cert-login")
LOGINS = ("psk-login", "secret-login", "token-login", "cert-login", "hub-login")
AZURE_GROUP, AZURE_SCOPE, AZURE_HUB = "tls-group", "0ne00TLS001", "tls-emu.azure-devices.net"
AZURE_KEY = "dGxzLWdyb3VwLWtleS0wMTIzNDU2Nzg5YWJjZGVm"  # base64 of 30 bytes


def server_context(folder, name, cert, key):
    # A TLS server's context for `cert` and its `key` (written to folder/name.pem and .key).
    cert_path, key_path = os.path.join(folder, name + ".pem"), os.path.join(folder, name + ".key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


class ManInTheMiddle:
    """A TLS server on 127.0.0.1 with a certificate for localhost, issued by a CA of its own.
    It records each connection's outcome and the application bytes it received. With
    stall=True it accepts TCP and never says a word."""

    def __init__(self, folder, stall=False):
        ca = _create_ca()
        key = _new_key()
        cert = ca.issue("localhost", key.public_key(), usage=ExtendedKeyUsageOID.SERVER_AUTH, days=30,
                        san=[DNSName("localhost"), IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))])
        self.context = server_context(folder, "mitm", cert, key)
        self.stall = stall
        self.connections = []  # [{"handshake": "ok" | error text, "received": bytes}]
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._open = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self._open.append(sock)
            threading.Thread(target=self._handle, args=(sock,), daemon=True).start()

    def _handle(self, sock):
        record = {"handshake": None, "received": b""}
        self.connections.append(record)
        sock.settimeout(20)
        if self.stall:
            try:
                while sock.recv(4096):
                    pass
            except OSError:
                pass
            return
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError) as e:
            record["handshake"] = type(e).__name__ + ": " + str(e)
            return
        record["handshake"] = "ok"
        try:
            while True:
                data = tls.recv(4096)
                if not data:
                    break
                record["received"] += data
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self.listener.close()
        for sock in self._open:
            sock.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, umqtt):
    # One emulator per umqtt.simple version (conftest.py): every test here runs on each.
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(TENCENT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=1000)
        cloud.add_product(TENCENT_CERT, SECRET, auth="cert", dynreg=True, mode="autocreate", limit=1000)
        cloud.add_product(ALIYUN, SECRET, cloud="aliyun")
        cloud.add_product(ALIYUN_FREE, SECRET, cloud="aliyun", regnwl=True)
        cloud.add_product(AZURE_GROUP, AZURE_KEY, cloud="azure", id_scope=AZURE_SCOPE, hub=AZURE_HUB,
                          assign_seconds=1)
        yield cloud


@pytest.fixture
def mitm(tmp_path):
    server = ManInTheMiddle(str(tmp_path))
    yield server
    server.close()


def device(cloud, tmp_path, path, tag, umqtt):
    # A device folder for `path`: registered already when the path is a login.
    name = ("%s-%s-%s" % (path.split("-")[0], tag, umqtt.replace(".", "")))[:32]
    folder = tmp_path / name
    folder.mkdir()
    mqtts = "mqtts://localhost:%d" % cloud.mqtts_port
    if path in ("https-register", "psk-login"):
        info = write_info(folder, cloud, TENCENT, device_name=name, mqtt_url=mqtts)
    elif path == "cert-login":
        info = write_info(folder, cloud, TENCENT_CERT, device_name=name, mqtt_url=mqtts, auth="cert")
    elif path in ("dps-register", "hub-login"):
        info = write_azure_info(folder, cloud, AZURE_SCOPE, name, AZURE_KEY)
    elif path in ("mqtt-register", "secret-login"):
        cloud.add_device(ALIYUN, name)
        info = write_aliyun_info(folder, cloud, ALIYUN, name, api="mqtt" if path == "mqtt-register" else "https")
    else:
        info = write_aliyun_info(folder, cloud, ALIYUN_FREE, name, api="regnwl", instance_id="iot-06z00emu")
    if path in LOGINS:
        result = run_device(info, ensure=FAST)
        assert result["ok"], result
    return info, name


def point_at(info, path, port):
    # The endpoint that `path` uses, moved to localhost:port.
    doc = read_json(info)
    if path == "https-register":
        doc["register_url"] = "https://localhost:%d" % port
    else:
        doc["mqtt_url"] = "mqtts://localhost:%d" % port
    with open(info, "w") as f:
        __import__("json").dump(doc, f)


def run(info, path, **connect):
    connect = dict({"timeout_ms": 3000}, **connect)
    return run_device(info, ensure=FAST, connect=connect if path in LOGINS else None)


def secrets_of(info):
    doc = read_json(info)
    values = [doc.get("product_secret")] + [v for k, v in doc.get("credential", {}).items()
                                            if isinstance(v, str) and k != "client_id"]  # the client id is public
    return [v.encode() for v in values if v]


@pytest.mark.parametrize("path", PATHS)
def test_a_man_in_the_middle_gets_no_byte_and_nothing_is_stored(cloud, tmp_path, mitm, umqtt, path):
    info, name = device(cloud, tmp_path, path, "mitm", umqtt)
    point_at(info, path, mitm.port)
    before = folder_snapshot(info)
    mark = len(cloud.log())
    result = run(info, path)
    assert not result["ok"] and result["error"] == "TLSError", result
    assert "not correctly signed by the trusted CA" in result["message"], result
    assert mitm.connections, "the device never reached the man in the middle"
    assert all(c["received"] == b"" for c in mitm.connections)  # not one byte of CONNECT or POST
    assert all(c["handshake"] != "ok" for c in mitm.connections), mitm.connections
    assert folder_snapshot(info) == before
    assert registrations(cloud.log()[mark:], name) == []
    for secret in secrets_of(info):
        assert secret not in result["output"].encode()


@pytest.mark.parametrize("path", PATHS + ("dps-register", "hub-login"))
def test_an_info_without_a_ca_trusts_only_the_built_in_roots(cloud, tmp_path, umqtt, path):
    # The emulator's CA is none of the clouds' roots: a device whose info names no CA (as an
    # info for the real clouds does) refuses it on every path, before a byte of its own.
    info, name = device(cloud, tmp_path, path, "noca", umqtt)
    doc = read_json(info)
    del doc["ca"]
    with open(info, "w") as f:
        __import__("json").dump(doc, f)
    before = folder_snapshot(info)
    mark = len(cloud.log())
    result = run(info, path)
    assert not result["ok"] and result["error"] == "TLSError", result
    assert "not correctly signed by the trusted CA" in result["message"], result
    assert folder_snapshot(info) == before
    assert cloud.log()[mark:] == []  # no request, no CONNECT reached the emulator


def _reissued_roots(folder):
    # Two self-signed roots with one name and one key, as a CA re-issues its root: the first
    # expired in 2020, the second valid to 2040 (GlobalSign R1 expires on 2028-01-28 beside its
    # successors). A server certificate for localhost that either verifies.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dynreg test re-issued root")])

    def root(start, end):
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                .sign(key, hashes.SHA256()))

    utc = datetime.timezone.utc
    expired = root(datetime.datetime(2015, 1, 1, tzinfo=utc), datetime.datetime(2020, 1, 1, tzinfo=utc))
    valid = root(datetime.datetime(2015, 1, 1, tzinfo=utc), datetime.datetime(2040, 1, 1, tzinfo=utc))
    leaf_key = _new_key()
    now = datetime.datetime.now(utc)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    pems = [c.public_bytes(serialization.Encoding.PEM) for c in (expired, valid)]
    return pems, server_context(folder, "leaf", leaf, leaf_key)


def test_a_bundle_verifies_while_one_of_its_roots_is_valid(cloud, tmp_path, mitm, umqtt):
    (expired, valid), mitm.context = _reissued_roots(str(tmp_path))
    cases = (("both", expired + valid), ("valid-first", valid + expired), ("expired-only", expired))
    for label, bundle in cases:
        folder = tmp_path / label
        folder.mkdir()
        (folder / "bundle.pem").write_bytes(bundle)
        info = write_info(folder, cloud, TENCENT, "reissued-" + label, ca="bundle.pem",
                          register_url="https://localhost:%d" % mitm.port)
        seen = len(mitm.connections)
        result = run_device(info, ensure={"attempts": 1, "timeout_ms": 2000})
        [connection] = mitm.connections[seen:]
        if label == "expired-only":
            assert result["error"] == "TLSError" and "expired" in result["message"], result
            assert "is the device's clock right?" in result["message"], result
            assert connection["received"] == b""
        else:
            # Verified by the valid root: the request went out (this server never answers it).
            assert connection["handshake"] == "ok", (label, connection)
            assert connection["received"].startswith(b"POST /device/register HTTP/1.0"), (label, connection)
            assert result["error"] == "NetworkError", (label, result)


@pytest.mark.parametrize("fault,reason", [("tls_expired", "expired"), ("tls_wrong_host", "Common Name")])
@pytest.mark.parametrize("path", PATHS)
def test_expired_or_wrong_host_certificates_are_refused(cloud, tmp_path, umqtt, path, fault, reason):
    info, name = device(cloud, tmp_path, path, fault[4:9], umqtt)
    before = folder_snapshot(info)
    cloud.fault(fault)
    mark = len(cloud.log())
    result = run(info, path)
    assert not result["ok"] and result["error"] == "TLSError" and reason in result["message"], result
    # A validity failure says to look at the clock first (a board a year fast sees every
    # certificate as not yet valid), and never reads as if the server had refused.
    assert ("device's clock" in result["message"]) == (fault == "tls_expired"), result
    assert "refused" not in result["message"], result
    assert folder_snapshot(info) == before
    records = cloud.log()[mark:]
    assert [r["result"] for r in records] == ["fault:" + fault]  # the handshake, and no request or CONNECT
    assert cloud.faults() == []


def test_a_certificate_device_presents_its_certificate(cloud, tmp_path, umqtt):
    info, name = device(cloud, tmp_path, "cert-login", "present", umqtt)
    mark = len(cloud.log())
    result = run(info, "cert-login")
    assert result["ok"] and result["connected"], result
    [login] = [r for r in cloud.log()[mark:] if r.get("api") == "mqtt-connect"]
    assert (login["result"], login.get("algorithm")) == ("ok", "cert"), login


@pytest.mark.parametrize("path", ["https-register", "mqtt-register", "psk-login"])
def test_a_server_that_never_answers_the_handshake_is_left_after_the_timeout(cloud, tmp_path, umqtt, path):
    stalled = ManInTheMiddle(str(tmp_path), stall=True)
    try:
        info, name = device(cloud, tmp_path, path, "stall", umqtt)
        point_at(info, path, stalled.port)
        before = folder_snapshot(info)
        result = run_device(info, ensure={"attempts": 1, "timeout_ms": 1000},
                            connect={"timeout_ms": 1000} if path in LOGINS else None, elapsed=True)
        assert not result["ok"] and result["error"] == "NetworkError", result
        assert result["elapsed_ms"] >= 1000  # it waited for the timeout, then gave up
        assert folder_snapshot(info) == before
    finally:
        stalled.close()


def test_an_old_umqtt_that_cannot_verify_is_refused_before_connecting(cloud, tmp_path, mitm, monkeypatch):
    old = [v for v in __import__("runtime").umqtt_variants(supported_only=False) if v.startswith("pypi-")]
    assert old, "build/umqtt/pypi-1.3.4 is missing (tools/bootstrap.sh fetches it)"
    info, name = device(cloud, tmp_path, "psk-login", "old", "frozen")
    point_at(info, "psk-login", mitm.port)
    monkeypatch.setattr(e2e, "UMQTT", old[0])
    result = run(info, "psk-login")
    assert not result["ok"] and result["error"] == "ConfigError", result
    assert "umqtt.simple is too old" in result["message"] and "mip install umqtt.simple" in result["message"]
    assert mitm.connections == []


def _other_ca_pem():
    return _create_ca().certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("position", ["first", "last"])
def test_every_ca_of_a_pem_bundle_is_trusted(cloud, tmp_path, umqtt, position):
    # A bundle as operators keep them (comments between the blocks), the cloud's CA among
    # others: trusted wherever it stands, for the HTTPS registration and the MQTTS login.
    with open(cloud.ca_pem_path, "rb") as f:
        ours = f.read()
    others = [b"# another root\n" + _other_ca_pem() for _ in range(2)]
    blocks = [b"# the cloud's root\n" + ours] + others if position == "first" else others + [ours]
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"\n".join(blocks))
    info = write_info(tmp_path, cloud, TENCENT, "bundle-" + position, ca=str(bundle),
                      mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port)
    result = run_device(info, ensure=dict(FAST), connect={"timeout_ms": 3000})
    assert result["ok"] and result["connected"], result
    assert [e["api"] for e in registrations(cloud, "bundle-" + position)] == ["tencent-v2"]


def test_a_bundle_without_the_clouds_ca_is_refused(cloud, tmp_path, umqtt):
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(_other_ca_pem() + _other_ca_pem())
    info = write_info(tmp_path, cloud, TENCENT, "bundle-none", ca=str(bundle))
    result = run_device(info, ensure=dict(FAST))
    assert result["error"] == "TLSError", result
    assert registrations(cloud, "bundle-none") == []


def test_registration_and_mqtt_each_use_their_own_ca(cloud, tmp_path, umqtt):
    # "ca" verifies the registration server, "mqtt_ca" the broker: the clouds may use two roots.
    other = tmp_path / "other.pem"
    other.write_bytes(_other_ca_pem())
    mqtts = "mqtts://localhost:%d" % cloud.mqtts_port
    folder = tmp_path / "broker-other"
    folder.mkdir()
    info = write_info(folder, cloud, TENCENT, "ca-split-1", mqtt_url=mqtts, mqtt_ca=str(other))
    result = run_device(info, ensure=dict(FAST), connect={"timeout_ms": 3000})
    assert result["error"] == "TLSError" and "not correctly signed" in result["message"], result
    assert [e["api"] for e in registrations(cloud, "ca-split-1")] == ["tencent-v2"]  # "ca" was used for it
    folder = tmp_path / "register-other"
    folder.mkdir()
    info = write_info(folder, cloud, TENCENT, "ca-split-2", mqtt_url=mqtts, ca=str(other),
                      mqtt_ca=cloud.ca_der_path)
    result = run_device(info, ensure=dict(FAST))
    assert result["error"] == "TLSError", result
    assert registrations(cloud, "ca-split-2") == []
    doc = read_json(info)
    doc.update(credential={"psk": cloud.device(TENCENT, "ca-split-1")["psk"]}, device_name="ca-split-1")
    with open(info, "w") as f:
        __import__("json").dump(doc, f)
    result = run_device(info, connect={"timeout_ms": 3000})  # the broker by mqtt_ca alone
    assert result["ok"] and result["connected"], result

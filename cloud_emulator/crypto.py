"""Test CA, server and device certificates, and the cloud's payload encryption.

EC P-256 everywhere: small, fast to generate, and handled by mbedTLS on the boards.
"""

import base64
import datetime
import hashlib
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .state import write_file_atomically

CA_KEY_FILE = "ca.key"
CA_PEM_FILE = "ca.pem"
CA_DER_FILE = "ca.der"
SERVER_KEY_FILE = "server.key"
SERVER_CERT_FILE = "server.pem"
# Alternative server certificates for the TLS faults (faults.py), issued by the same CA on first use.
FAULT_CERTIFICATES = {
    "tls_expired": ("server-expired.pem", "server-expired.key"),
    "tls_wrong_host": ("server-wrong-host.pem", "server-wrong-host.key"),
}
WRONG_HOST_NAME = "wrong-host.invalid"

PAYLOAD_IV = b"0" * 16  # sixteen ASCII '0' characters, not zero bytes
AES_BLOCK = 16

_CLOCK_SKEW_ALLOWANCE = datetime.timedelta(days=1)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dynreg cloud emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # SEC1 "EC PRIVATE KEY": the form mbedTLS and MicroPython's tls module load most readily.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def issue(
        self,
        common_name: str,
        public_key: ec.EllipticCurvePublicKey,
        *,
        usage: x509.ObjectIdentifier,
        days: int,
        san: list[x509.GeneralName] | None = None,
        not_before: datetime.datetime | None = None,
    ) -> x509.Certificate:
        """Valid from `not_before` (default: a day ago) until `days` days from now (negative: expired)."""
        now = _utc_now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - _CLOCK_SKEW_ALLOWANCE)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_device_certificate(self, common_name: str) -> tuple[str, str, str]:
        """Return (certificate PEM, private key PEM, certificate SHA-256 hex) for a device."""
        key = _new_key()
        certificate = self.issue(common_name, key.public_key(), usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=3650)
        cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        der = certificate.public_bytes(serialization.Encoding.DER)
        return cert_pem, _private_key_pem(key).decode("ascii"), hashlib.sha256(der).hexdigest()


def _create_ca() -> CertificateAuthority:
    key = _new_key()
    now = _utc_now()
    subject = _name("dynreg cloud emulator test CA")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key, certificate)


@dataclass
class TlsMaterial:
    ca: CertificateAuthority
    ca_pem_path: Path
    ca_der_path: Path
    server_cert_path: Path
    server_key_path: Path


def _load_ca(folder: Path) -> CertificateAuthority | None:
    try:
        key = serialization.load_pem_private_key((folder / CA_KEY_FILE).read_bytes(), password=None)
        certificate = x509.load_pem_x509_certificate((folder / CA_PEM_FILE).read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or certificate.public_key() != key.public_key():
        return None
    return CertificateAuthority(key, certificate)


def _server_cert_is_usable(folder: Path, ca: CertificateAuthority) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate((folder / SERVER_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key((folder / SERVER_KEY_FILE).read_bytes(), password=None)
        certificate.verify_directly_issued_by(ca.certificate)
    except Exception:  # missing, unreadable, or not from this CA: issue a fresh one
        return False
    return certificate.public_key() == key.public_key() and certificate.not_valid_after_utc > _utc_now()


def ensure_tls_material(folder: Path) -> TlsMaterial:
    """Create the CA and server certificate on first start; reuse them afterwards."""
    ca = _load_ca(folder)
    if ca is None:
        ca = _create_ca()
        write_file_atomically(folder / CA_KEY_FILE, _private_key_pem(ca.key), mode=0o600)
        write_file_atomically(folder / CA_PEM_FILE, ca.certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    der = ca.certificate.public_bytes(serialization.Encoding.DER)
    if not (folder / CA_DER_FILE).exists() or (folder / CA_DER_FILE).read_bytes() != der:
        write_file_atomically(folder / CA_DER_FILE, der, mode=0o644)
    if not _server_cert_is_usable(folder, ca):
        key = _new_key()
        certificate = ca.issue(
            "localhost",
            key.public_key(),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            days=1825,
            san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )
        write_file_atomically(folder / SERVER_KEY_FILE, _private_key_pem(key), mode=0o600)
        write_file_atomically(
            folder / SERVER_CERT_FILE, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644
        )
    return TlsMaterial(
        ca=ca,
        ca_pem_path=folder / CA_PEM_FILE,
        ca_der_path=folder / CA_DER_FILE,
        server_cert_path=folder / SERVER_CERT_FILE,
        server_key_path=folder / SERVER_KEY_FILE,
    )


def _issue_fault_certificate(ca: CertificateAuthority, kind: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    if kind == "tls_expired":  # right names, valid for thirty days that ended yesterday
        certificate = ca.issue(
            "localhost", key.public_key(), usage=ExtendedKeyUsageOID.SERVER_AUTH, days=-1,
            san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
            not_before=_utc_now() - datetime.timedelta(days=31),
        )
    elif kind == "tls_wrong_host":  # valid, but for a name no device connects to
        certificate = ca.issue(WRONG_HOST_NAME, key.public_key(), usage=ExtendedKeyUsageOID.SERVER_AUTH, days=1825,
                               san=[x509.DNSName(WRONG_HOST_NAME)])
    else:
        raise ValueError(f"no certificate for fault {kind!r}")
    return certificate, key


def _fault_certificate_is_usable(folder: Path, ca: CertificateAuthority, kind: str) -> bool:
    cert_file, key_file = FAULT_CERTIFICATES[kind]
    try:
        certificate = x509.load_pem_x509_certificate((folder / cert_file).read_bytes())
        key = serialization.load_pem_private_key((folder / key_file).read_bytes(), password=None)
        certificate.verify_directly_issued_by(ca.certificate)
    except Exception:
        return False
    if certificate.public_key() != key.public_key():
        return False
    if kind == "tls_expired":
        return certificate.not_valid_after_utc < _utc_now()
    return certificate.not_valid_after_utc > _utc_now()


_fault_contexts: dict[tuple[str, str, bool], ssl.SSLContext] = {}
_fault_contexts_lock = threading.Lock()


def fault_server_context(folder: Path, kind: str, *, client_certificates: bool = False) -> ssl.SSLContext:
    """A server context (TLS 1.2+, as the listeners use) presenting the certificate of a TLS fault
    (`tls_expired`, `tls_wrong_host`); the certificate is issued by the folder's CA on first use,
    stored beside server.pem and reused. With `client_certificates`, client certificates are
    asked for and verified against the CA when sent (as the MQTTS listener does). Contexts are
    cached per folder, kind and flag."""
    folder = Path(folder)
    cache_key = (str(folder), kind, client_certificates)
    with _fault_contexts_lock:
        context = _fault_contexts.get(cache_key)
        if context is not None:
            return context
        ca = _load_ca(folder)
        if ca is None:
            raise ValueError("the state folder holds no CA")
        cert_file, key_file = FAULT_CERTIFICATES[kind]
        if not _fault_certificate_is_usable(folder, ca, kind):
            certificate, key = _issue_fault_certificate(ca, kind)
            write_file_atomically(folder / key_file, _private_key_pem(key), mode=0o600)
            write_file_atomically(folder / cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(folder / cert_file, folder / key_file)
        if client_certificates:
            context.load_verify_locations(cafile=folder / CA_PEM_FILE)
            context.verify_mode = ssl.CERT_OPTIONAL
        _fault_contexts[cache_key] = context
        return context


def encrypt_registration_payload(plaintext: bytes, product_secret: str) -> tuple[str, int]:
    """Encrypt as the cloud does; returns (base64 ciphertext, plaintext length for Len).

    AES-128-CBC, key = first 16 bytes of the ProductSecret, IV = sixteen '0' characters,
    zero bytes up to the next block boundary. A plaintext that already fills whole blocks
    gets no extra block (unconfirmed on the real cloud; Len lets devices handle both).
    """
    key = product_secret.encode("ascii")[:AES_BLOCK]
    padded = plaintext + b"\0" * (-len(plaintext) % AES_BLOCK)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(PAYLOAD_IV)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(ciphertext).decode("ascii"), len(plaintext)

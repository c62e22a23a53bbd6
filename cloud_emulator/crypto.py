"""Test CAs, server and device certificates, and the cloud's payload encryption.

The server's chain has the shape of a real cloud's (CHAIN_SHAPES; which endpoint each stands
for: cloud_emulator/README.md, "Certificate chains"): a root, an intermediate where the shape
has one, and a leaf for localhost and 127.0.0.1. Servers present the leaf and the intermediate,
never the root, which is the one certificate a device trusts (ca.der / ca.pem). SHA-256
signatures everywhere (PKCS#1 v1.5 with RSA keys, as the real chains).

Device certificates are EC P-256, issued by the client CA, which the MQTTS listeners verify
client certificates against: the root, except in the shapes where the root signs the leaf
itself. There it is a CA of its own, because OpenSSL completes a server chain of one
certificate from the store it verifies clients with, and would send the root.
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
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .state import write_file_atomically

CA_KEY_FILE = "ca.key"
CA_PEM_FILE = "ca.pem"
CA_DER_FILE = "ca.der"
INTERMEDIATE_KEY_FILE = "intermediate.key"
INTERMEDIATE_PEM_FILE = "intermediate.pem"
CLIENT_CA_KEY_FILE = "client-ca.key"  # only in the shapes without an intermediate
CLIENT_CA_PEM_FILE = "client-ca.pem"
SERVER_KEY_FILE = "server.key"
SERVER_CERT_FILE = "server.pem"  # the leaf, then the intermediate if the shape has one
# Alternative server certificates for the TLS faults (faults.py), issued as server.pem is, on first use.
FAULT_CERTIFICATES = {
    "tls_expired": ("server-expired.pem", "server-expired.key"),
    "tls_wrong_host": ("server-wrong-host.pem", "server-wrong-host.key"),
}
WRONG_HOST_NAME = "wrong-host.invalid"
# Every file of the TLS material a state folder may hold (a copy of them seeds another folder).
TLS_FILES = (CA_KEY_FILE, CA_PEM_FILE, CA_DER_FILE, INTERMEDIATE_KEY_FILE, INTERMEDIATE_PEM_FILE, CLIENT_CA_KEY_FILE,
             CLIENT_CA_PEM_FILE, SERVER_KEY_FILE, SERVER_CERT_FILE,
             *(name for pair in FAULT_CERTIFICATES.values() for name in pair))

KeySpec = tuple[str, int]  # ("ec", curve bits) or ("rsa", modulus bits)
EC_P256: KeySpec = ("ec", 256)
RSA_2048: KeySpec = ("rsa", 2048)
RSA_4096: KeySpec = ("rsa", 4096)


@dataclass(frozen=True)
class ChainShape:
    root: KeySpec
    intermediate: KeySpec | None  # None: the root signs the leaf
    leaf: KeySpec


CHAIN_SHAPES = {
    "ecdsa-p256": ChainShape(EC_P256, None, EC_P256),
    "rsa2048": ChainShape(RSA_2048, None, RSA_2048),
    "rsa2048-intermediate": ChainShape(RSA_2048, RSA_2048, RSA_2048),
    "rsa4096-intermediate": ChainShape(RSA_4096, RSA_2048, RSA_2048),
}
DEFAULT_CHAIN = "rsa2048-intermediate"

PAYLOAD_IV = b"0" * 16  # sixteen ASCII '0' characters, not zero bytes
AES_BLOCK = 16

_CLOCK_SKEW_ALLOWANCE = datetime.timedelta(days=1)
_ROOT_NAME = "dynreg cloud emulator test CA"
_INTERMEDIATE_NAME = "dynreg cloud emulator intermediate CA"
_CLIENT_CA_NAME = "dynreg cloud emulator client CA"
_LOCALHOST = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dynreg cloud emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _private_key_pem(key: PrivateKey) -> bytes:
    # SEC1 "EC PRIVATE KEY" (PKCS#1 "RSA PRIVATE KEY"): the forms mbedTLS and MicroPython's tls
    # module load most readily.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _new_key(spec: KeySpec = EC_P256) -> PrivateKey:
    kind, bits = spec
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if spec == EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"no key of kind {spec!r}")


def _key_spec(key: PrivateKey | PublicKey) -> KeySpec | None:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return ("rsa", key.key_size)
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return ("ec", key.curve.key_size)
    return None


def _key_usage(*, signs_certificates: bool = False, rsa_key: bool = False) -> x509.KeyUsage:
    # An RSA leaf's key also encrypts the premaster secret (RSA key exchange); an EC one agrees on it.
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=rsa_key and not signs_certificates,
        data_encipherment=False, key_agreement=not rsa_key and not signs_certificates,
        key_cert_sign=signs_certificates, crl_sign=signs_certificates, encipher_only=False, decipher_only=False,
    )


@dataclass
class CertificateAuthority:
    key: PrivateKey
    certificate: x509.Certificate

    def issue(
        self,
        common_name: str,
        public_key: PublicKey,
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
            .add_extension(_key_usage(rsa_key=isinstance(public_key, rsa.RSAPublicKey)), critical=True)
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


def _create_ca(spec: KeySpec = EC_P256, *, parent: CertificateAuthority | None = None,
               path_length: int | None = 0, name: str | None = None) -> CertificateAuthority:
    """A self-signed root (no `parent`), or an intermediate that `parent` issues; `path_length`
    None: no limit on the CAs below it (a root above an intermediate, as the real roots)."""
    key = _new_key(spec)
    now = _utc_now()
    subject = _name(name or (_ROOT_NAME if parent is None else _INTERMEDIATE_NAME))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if parent is None else parent.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if parent is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False
        )
    return CertificateAuthority(key, builder.sign(key if parent is None else parent.key, hashes.SHA256()))


@dataclass
class TlsMaterial:
    chain: str  # the shape's name in CHAIN_SHAPES
    root: CertificateAuthority  # what devices trust: ca.pem, ca.der
    issuer: CertificateAuthority  # what issues the server certificates: the intermediate, or the root
    ca: CertificateAuthority  # the client CA: issues device certificates, which the MQTTS listeners verify
    ca_pem_path: Path
    ca_der_path: Path
    client_ca_pem_path: Path
    server_cert_path: Path
    server_key_path: Path

    @property
    def intermediates(self) -> list[x509.Certificate]:
        """What a server sends after its leaf."""
        return [] if self.issuer is self.root else [self.issuer.certificate]


def _load_private_key(path: Path) -> PrivateKey:
    # The emulator's own keys: skip OpenSSL's RSA check, which costs 0.3 s for an RSA-4096 key
    # at every start (each key is compared with its certificate's instead).
    return serialization.load_pem_private_key(path.read_bytes(), password=None,  # type: ignore[return-value]
                                              unsafe_skip_rsa_key_validation=True)


def _load_authority(folder: Path, key_file: str, cert_file: str) -> CertificateAuthority | None:
    try:
        key = _load_private_key(folder / key_file)
        certificate = x509.load_pem_x509_certificate((folder / cert_file).read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    if _key_spec(key) is None or certificate.public_key() != key.public_key():
        return None
    return CertificateAuthority(key, certificate)  # type: ignore[arg-type]


def _issued_by(certificate: x509.Certificate, issuer: CertificateAuthority) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer.certificate)
    except Exception:  # another issuer's, or a signature that does not check
        return False
    return True


def _material(folder: Path, chain: str, root: CertificateAuthority, issuer: CertificateAuthority,
              client_ca: CertificateAuthority) -> TlsMaterial:
    client_ca_pem = folder / (CA_PEM_FILE if client_ca is root else CLIENT_CA_PEM_FILE)
    return TlsMaterial(chain, root, issuer, client_ca, folder / CA_PEM_FILE, folder / CA_DER_FILE, client_ca_pem,
                       folder / SERVER_CERT_FILE, folder / SERVER_KEY_FILE)


def _create_client_ca(folder: Path) -> CertificateAuthority:
    client_ca = _create_ca(EC_P256, name=_CLIENT_CA_NAME)
    write_file_atomically(folder / CLIENT_CA_KEY_FILE, _private_key_pem(client_ca.key), mode=0o600)
    write_file_atomically(folder / CLIENT_CA_PEM_FILE, client_ca.certificate.public_bytes(serialization.Encoding.PEM),
                          0o644)
    return client_ca


def _load_material(folder: Path) -> TlsMaterial | None:
    """The folder's root and intermediate, if they make one of CHAIN_SHAPES."""
    root = _load_authority(folder, CA_KEY_FILE, CA_PEM_FILE)
    if root is None:
        return None
    issuer = root
    if (folder / INTERMEDIATE_KEY_FILE).exists() or (folder / INTERMEDIATE_PEM_FILE).exists():
        intermediate = _load_authority(folder, INTERMEDIATE_KEY_FILE, INTERMEDIATE_PEM_FILE)
        if intermediate is None or not _issued_by(intermediate.certificate, root):
            return None
        issuer = intermediate
    found = (_key_spec(root.key), None if issuer is root else _key_spec(issuer.key))
    chain = next((name for name, shape in CHAIN_SHAPES.items() if (shape.root, shape.intermediate) == found), None)
    if chain is None:
        return None
    client_ca = root
    if issuer is root:  # a state of before the client CA gets one
        client_ca = _load_authority(folder, CLIENT_CA_KEY_FILE, CLIENT_CA_PEM_FILE) or _create_client_ca(folder)
    return _material(folder, chain, root, issuer, client_ca)


def _create_material(folder: Path, chain: str) -> TlsMaterial:
    shape = CHAIN_SHAPES[chain]
    root = _create_ca(shape.root, path_length=0 if shape.intermediate is None else None)
    write_file_atomically(folder / CA_KEY_FILE, _private_key_pem(root.key), mode=0o600)
    write_file_atomically(folder / CA_PEM_FILE, root.certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    if shape.intermediate is None:
        for name in (INTERMEDIATE_KEY_FILE, INTERMEDIATE_PEM_FILE):
            (folder / name).unlink(missing_ok=True)
        return _material(folder, chain, root, root, _create_client_ca(folder))
    for name in (CLIENT_CA_KEY_FILE, CLIENT_CA_PEM_FILE):
        (folder / name).unlink(missing_ok=True)
    intermediate = _create_ca(shape.intermediate, parent=root, path_length=0)
    write_file_atomically(folder / INTERMEDIATE_KEY_FILE, _private_key_pem(intermediate.key), mode=0o600)
    write_file_atomically(folder / INTERMEDIATE_PEM_FILE,
                          intermediate.certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return _material(folder, chain, root, intermediate, root)


def _certificate_is_usable(folder: Path, cert_file: str, key_file: str, material: TlsMaterial, *,
                           expired: bool = False) -> bool:
    """The files hold a leaf of the shape's key, issued by the material's issuer and followed by
    its intermediates, valid now (or, `expired`, no longer)."""
    try:
        leaf, *rest = x509.load_pem_x509_certificates((folder / cert_file).read_bytes())
        key = _load_private_key(folder / key_file)
    except Exception:  # missing, unreadable, not PEM: issue a fresh one
        return False
    if (not _issued_by(leaf, material.issuer) or rest != material.intermediates
            or _key_spec(key) != CHAIN_SHAPES[material.chain].leaf or leaf.public_key() != key.public_key()):
        return False
    return (leaf.not_valid_after_utc < _utc_now()) == expired


def _write_server_certificate(folder: Path, cert_file: str, key_file: str, material: TlsMaterial,
                              certificate: x509.Certificate, key: PrivateKey) -> None:
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [certificate, *material.intermediates])
    write_file_atomically(folder / key_file, _private_key_pem(key), mode=0o600)
    write_file_atomically(folder / cert_file, chain, mode=0o644)


def ensure_tls_material(folder: Path, chain: str | None = None) -> TlsMaterial:
    """The folder's root, intermediate and server certificate: reused when they are of the shape
    `chain` (None: whatever shape the folder holds, DEFAULT_CHAIN in a new one), made anew
    otherwise; a new root is a new ca.der, which devices must be given."""
    if chain is not None and chain not in CHAIN_SHAPES:
        raise ValueError(f"no chain shape {chain!r}: one of {', '.join(CHAIN_SHAPES)}")
    material = _load_material(folder)
    if material is None or chain not in (None, material.chain):
        material = _create_material(folder, chain or DEFAULT_CHAIN)
    der = material.root.certificate.public_bytes(serialization.Encoding.DER)
    if not (folder / CA_DER_FILE).exists() or (folder / CA_DER_FILE).read_bytes() != der:
        write_file_atomically(folder / CA_DER_FILE, der, mode=0o644)
    if not _certificate_is_usable(folder, SERVER_CERT_FILE, SERVER_KEY_FILE, material):
        key = _new_key(CHAIN_SHAPES[material.chain].leaf)
        certificate = material.issuer.issue("localhost", key.public_key(), usage=ExtendedKeyUsageOID.SERVER_AUTH,
                                            days=1825, san=_LOCALHOST)
        _write_server_certificate(folder, SERVER_CERT_FILE, SERVER_KEY_FILE, material, certificate, key)
    return material


def _issue_fault_certificate(material: TlsMaterial, kind: str) -> tuple[x509.Certificate, PrivateKey]:
    key = _new_key(CHAIN_SHAPES[material.chain].leaf)
    issuer = material.issuer
    if kind == "tls_expired":  # right names, valid for thirty days that ended yesterday
        certificate = issuer.issue("localhost", key.public_key(), usage=ExtendedKeyUsageOID.SERVER_AUTH, days=-1,
                                   san=_LOCALHOST, not_before=_utc_now() - datetime.timedelta(days=31))
    elif kind == "tls_wrong_host":  # valid, but for a name no device connects to
        certificate = issuer.issue(WRONG_HOST_NAME, key.public_key(), usage=ExtendedKeyUsageOID.SERVER_AUTH,
                                   days=1825, san=[x509.DNSName(WRONG_HOST_NAME)])
    else:
        raise ValueError(f"no certificate for fault {kind!r}")
    return certificate, key


def ensure_fault_certificate(folder: Path, kind: str) -> tuple[Path, Path, Path]:
    """The certificate (with the intermediates) and key files of a TLS fault, issued as the
    server certificate is, on first use, and reused; and the client CA's file."""
    material = _load_material(folder)
    if material is None:
        raise ValueError("the state folder holds no CA")
    cert_file, key_file = FAULT_CERTIFICATES[kind]
    if not _certificate_is_usable(folder, cert_file, key_file, material, expired=kind == "tls_expired"):
        certificate, key = _issue_fault_certificate(material, kind)
        _write_server_certificate(folder, cert_file, key_file, material, certificate, key)
    return folder / cert_file, folder / key_file, material.client_ca_pem_path


_fault_contexts: dict[tuple[str, str, bool], ssl.SSLContext] = {}
_fault_contexts_lock = threading.Lock()


def fault_server_context(folder: Path, kind: str, *, client_certificates: bool = False) -> ssl.SSLContext:
    """A server context (TLS 1.2+, as the listeners use) presenting the certificate of a TLS fault
    (`tls_expired`, `tls_wrong_host`; ensure_fault_certificate). With `client_certificates`,
    client certificates are asked for and verified against the client CA when sent (as the
    MQTTS listener does). Contexts are cached per folder, kind and flag."""
    folder = Path(folder)
    cache_key = (str(folder), kind, client_certificates)
    with _fault_contexts_lock:
        context = _fault_contexts.get(cache_key)
        if context is not None:
            return context
        cert_path, key_path, client_ca_pem_path = ensure_fault_certificate(folder, kind)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_path, key_path)
        if client_certificates:
            context.load_verify_locations(cafile=client_ca_pem_path)
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

# Writes aws_answers.json: AWS IoT fleet provisioning answers in the shapes AWS documents, with
# a certificate and key made here by CPython's `cryptography` (never by dynreg), and the DER
# that `cryptography` writes for them: the expected values of test_aws.py on every runtime.
# The key is a throwaway made for this file; it opens nothing.
# Run: .venv/bin/python host_tests/vectors/generate_aws.py
import base64
import datetime
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = ("AWS IoT developer guide, 'Device provisioning MQTT API' (fleet-provision-api): the payloads of "
          "CreateKeysAndCertificate, RegisterThing and of every rejected answer")


def main():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS IoT Certificate")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=9000)).sign(key, hashes.SHA256()))
    pkcs1 = serialization.PrivateFormat.TraditionalOpenSSL  # "BEGIN RSA PRIVATE KEY", as AWS answers
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    create = {
        "certificateId": cert.fingerprint(hashes.SHA256()).hex(),
        "certificatePem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "privateKey": key.private_bytes(serialization.Encoding.PEM, pkcs1, serialization.NoEncryption()).decode(),
        # Opaque to the device; 800 characters bring the answer to the ~4 KB that
        # espressif/esp-aws-iot#78 reports for AWS's.
        "certificateOwnershipToken": base64.b64encode(os.urandom(600)).decode(),
    }
    vectors = {
        "about": "AWS fleet provisioning answers: shapes from AWS's docs, certificate and key made by "
                 "generate_aws.py with cryptography (a throwaway key).",
        "create": {"source": SHAPES, "payload": json.dumps(create),
                   "cert_der": cert_der.hex(),
                   "key_der": key.private_bytes(serialization.Encoding.DER, pkcs1,
                                                serialization.NoEncryption()).hex()},
        "register": {"source": SHAPES, "payload": json.dumps({"deviceConfiguration": {"FallbackUrl": "https://x.example",
                                                                                       "LocationUrl": "https://y.example"},
                                                                  "thingName": "ThingPrefix_SN-0042"})},
        # statusCode, errorCode, errorMessage; what the device makes of each.
        "rejected": [
            {"source": "aws/aws-iot-device-sdk-js-v2#69 (RegisterThing without a token)", "status": 400,
             "code": "InvalidCertificateOwnershipToken", "message": "Certificate ownership token cannot be empty.",
             "outcome": "retry"},
            {"source": "a pre-provisioning hook's refusal (403 as the SDKs list it)", "status": 403,
             "code": "AccessDenied", "message": "Provisioning denied", "outcome": "rejected"},
            {"source": "no such template (404 as the SDKs list it)", "status": 404, "code": "ResourceNotFound",
             "message": "Template FleetTemplate not found", "outcome": "final"},
            {"source": "a parameter the template refuses", "status": 400, "code": "InvalidParameters",
             "message": "Missing parameter: SerialNumber", "outcome": "rejected"},
            {"source": "throttled (429 as the SDKs list it)", "status": 429, "code": "ThrottlingException",
             "message": "Rate exceeded", "outcome": "throttled"},
            {"source": "throttled in the HTTP API's shape (ThrottlingException is a 400 there)", "status": 400,
             "code": "ThrottlingException", "message": "Rate exceeded", "outcome": "throttled"},
            {"source": "AWS's InternalFailureException", "status": 500, "code": "InternalFailure",
             "message": "Internal failure", "outcome": "retry"},
            {"source": "AWS's ServiceUnavailableException", "status": 503, "code": "ServiceUnavailable",
             "message": "Service unavailable", "outcome": "retry"},
        ],
    }
    with open(os.path.join(HERE, "aws_answers.json"), "w") as f:
        json.dump(vectors, f, indent=1)
        f.write("\n")
    print("wrote aws_answers.json (%d bytes of CreateKeysAndCertificate answer)" % len(vectors["create"]["payload"]))


if __name__ == "__main__":
    main()

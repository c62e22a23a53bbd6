# CPython only: property tests with hypothesis. The library (with the strict cryptolib shim)
# against stdlib hmac and `cryptography` on random inputs. The answers of the cloud are built
# well formed, encrypted with `cryptography` as the oracle, and a fraction of them carries one
# targeted defect; each run counts how far its examples got (the decryption step, a
# credential, which dynreg error) and fails when a stage is reached too rarely to be tested.
import base64
import hmac as std_hmac
import json

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings, strategies as st

import dynreg
from dynreg import NetworkError, ProtocolError, RejectedError, codec, hmac, tencent

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
secrets = st.text(alphabet=B64 + "=", min_size=16, max_size=40)


def _encrypt(plaintext, secret):
    # As the cloud does (PROTOCOLS.md 2.3): zero padding, key = the secret's first 16
    # characters, IV = sixteen ASCII "0".
    data = plaintext + b"\0" * (-len(plaintext) % 16)
    enc = Cipher(algorithms.AES(secret[:16].encode()), modes.CBC(b"0" * 16)).encryptor()
    return enc.update(data) + enc.finalize()


def _b64(data):
    return base64.b64encode(data).decode()


def _encrypt_like_cloud(plaintext, secret):
    return _b64(_encrypt(plaintext, secret))


@settings(max_examples=300)
@given(key=st.binary(max_size=200), msg=st.binary(max_size=600), name=st.sampled_from(["md5", "sha1", "sha256"]))
def test_hmac_matches_stdlib(key, msg, name):
    assert hmac.digest(key, msg, name) == std_hmac.new(key, msg, name).digest()
    assert hmac.hexdigest(key, msg, name) == std_hmac.new(key, msg, name).hexdigest()


@settings(max_examples=200)
@given(secret=secrets, psk_bytes=st.binary(min_size=1, max_size=48), extra=st.text(max_size=60),
       with_len=st.booleans())
def test_payload_encrypted_by_cloud_decrypts(secret, psk_bytes, extra, with_len):
    psk = base64.b64encode(psk_bytes).decode()
    plaintext = json.dumps({"encryptionType": 2, "psk": psk, "note": extra}).encode()
    payload = _encrypt_like_cloud(plaintext, secret)
    length = len(plaintext) if with_len else None
    assert tencent.decrypt_payload(payload, secret, length) == json.loads(plaintext)
    body = json.dumps({"Response": {"Len": len(plaintext), "Payload": payload, "RequestId": "r"}}).encode()
    assert tencent.parse_response(body, secret) == {"psk": psk}


# -- the cloud's answers, well formed or with one targeted defect ------------------------------

# Outcomes an example must end in: ("credential", what parse_response returns),
# ("error", the dynreg error type), ("rejected", the cloud's code, its message).
PROTOCOL_ERROR = ("error", ProtocolError)
# Text as a cloud may send it: quotes, a backslash, control characters, non-ASCII and a
# character beyond the BMP (a surrogate pair once escaped).
TEXT = "aZ09 -_.:\"\\/\t\n\u00e9\u20ac\u4e2d\U0001f600"


def _pem(label, der):
    text = _b64(der)
    lines = "\n".join(text[i:i + 64] for i in range(0, len(text), 64))
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, lines, label)


def _not_base64(draw, text):
    # One character of the alphabet replaced by one outside it: whatever a lenient decoder
    # skips, the text no longer decodes to whole bytes of its length.
    at = draw(st.integers(0, len(text.rstrip("=")) - 1))
    return text[:at] + draw(st.sampled_from("*!#%&~")) + text[at + 1:]


def _credential(draw, kind):
    # A credential as the cloud issues it: (the plaintext's fields, encryptionType first, and
    # what parse_response must return for them).
    if kind == "psk":
        psk = _b64(draw(st.binary(min_size=1, max_size=48)))
        return {"encryptionType": 2, "psk": psk}, {"psk": psk}
    cert = _pem("CERTIFICATE", draw(st.binary(min_size=1, max_size=300)))
    key = _pem("PRIVATE KEY", draw(st.binary(min_size=1, max_size=200)))
    return {"encryptionType": 1, "clientCert": cert, "clientKey": key}, {"cert": cert, "key": key}


# Unknown fields the cloud may add (ignored); "x-" keys never name a field that counts.
extras = st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10).map(lambda k: "x-" + k),
                         st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(alphabet=TEXT, max_size=20),
                         max_size=3)
request_ids = st.text(alphabet="0123456789abcdef-", min_size=1, max_size=36)


def _serialize(draw, doc):
    # As a cloud may write it: compact or spaced, non-ASCII escaped or as UTF-8.
    spaced = draw(st.booleans())
    return json.dumps(doc, separators=(", ", ": ") if spaced else (",", ":"),
                      ensure_ascii=draw(st.booleans())).encode()


def _answer(api, payload, length, request_id):
    if api == "current":
        return {"Response": {"Len": length, "Payload": payload, "RequestId": request_id}}
    return {"code": 0, "message": "", "len": length, "payload": payload}


# Defects of the envelope (no decryption is needed to refuse them) and of the encrypted
# payload, its length or its key (found at the decryption step or after it).
ENVELOPE_DEFECTS = ["cloud refusal", "cloud busy", "length not an integer", "payload not a string", "payload missing",
                    "payload not base64", "body cut short", "body over 8 KiB", "not an object",
                    "byte not UTF-8", "neither Response nor code"]
CIPHER_DEFECTS = ["not whole AES blocks", "empty payload", "length beyond the data", "length cuts the plaintext",
                  "length takes the zero padding", "wrong ProductSecret", "first block garbled"]


@st.composite
def cloud_answers(draw, defect):
    # (body, ProductSecret, expected outcome): an answer of either Tencent API for either
    # credential, well formed (defect None) or with the one defect named.
    secret = draw(secrets)
    fields, credential = _credential(draw, draw(st.sampled_from(["psk", "cert"])))
    doc = dict(fields)
    doc.update(draw(extras))
    plaintext = _serialize(draw, doc)
    assert plaintext[:16] == b'{"encryptionType'  # the first AES block holds the one key that counts
    api = draw(st.sampled_from(["current", "legacy"]))
    expected = ("credential", credential) if defect is None else PROTOCOL_ERROR
    ciphertext = _encrypt(plaintext, secret)
    length = len(plaintext)
    if defect == "not whole AES blocks":
        ciphertext = ciphertext[:-draw(st.integers(1, 15))]
    elif defect == "empty payload":
        ciphertext = b""
    elif defect == "length beyond the data":
        length = draw(st.integers(len(ciphertext) + 1, len(ciphertext) + 100) | st.integers(-100, -1))
    elif defect == "length cuts the plaintext":
        length = draw(st.integers(0, len(plaintext) - 1))  # no proper prefix of a JSON object is one
    elif defect == "length takes the zero padding":
        # Len covers NULs of the padding; a plaintext of whole blocks has none, and gets a Len
        # one past the data instead.
        length = draw(st.integers(len(plaintext) + 1, len(ciphertext))) if len(plaintext) % 16 else len(ciphertext) + 1
    elif defect == "wrong ProductSecret":
        ciphertext = _encrypt(plaintext, ("B" if secret[0] == "A" else "A") + secret[1:])  # another AES key
    elif defect == "first block garbled":
        # AES is a permutation: the first plaintext block comes out different, and with it the
        # only "encryptionType" key.
        at = draw(st.integers(0, 15))
        ciphertext = ciphertext[:at] + bytes([ciphertext[at] ^ draw(st.integers(1, 255))]) + ciphertext[at + 1:]
    payload = _b64(ciphertext)
    answer = _answer(api, payload, length, draw(request_ids))
    inner = answer["Response"] if api == "current" else answer
    length_field, payload_field = ("Len", "Payload") if api == "current" else ("len", "payload")
    if defect == "cloud refusal":
        message = draw(st.text(alphabet=TEXT, max_size=40))
        if api == "current":
            code = draw(st.sampled_from(["AuthFailure.SignatureFailure", "ResourceNotFound.DeviceNotExist",
                                         "UnauthorizedOperation.DynamicRegisterDisabled", "NoSuchCode.Unlisted"]))
            answer = {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": draw(request_ids)}}
        else:
            code = draw(st.integers(1, 10**6) | st.integers(-10**6, -1))
            answer = {"code": code, "message": message}
        expected = ("rejected", code, message)
    elif defect == "cloud busy":
        # PROTOCOLS.md 2.6: a throttling or failing cloud's code, retried (a NetworkError); the
        # legacy API's numbers, whatever they say, are final (docs/API.md, "Busy or final").
        message = draw(st.text(alphabet=TEXT, max_size=40))
        if api == "current":
            code = draw(st.sampled_from(["InternalError", "InternalError.DbError", "RequestLimitExceeded",
                                         "RequestLimitExceeded.UinLimitExceeded", "ServiceUnavailable",
                                         "ResourceUnavailable", "ResourceInsufficient"]))
            answer = {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": draw(request_ids)}}
            expected = ("error", NetworkError)
        else:
            code = draw(st.sampled_from([429, 500, 503, 4400, 6000, 6200]))
            answer = {"code": code, "message": message}
            expected = ("rejected", code, message)
    elif defect == "length not an integer":
        inner[length_field] = draw(st.sampled_from([str(length), float(length), True, False, [length]]))
    elif defect == "payload not a string":
        inner[payload_field] = draw(st.sampled_from([None, 12, True, [payload], {"b64": payload}]))
    elif defect == "payload missing":
        del inner[payload_field]
    elif defect == "payload not base64":
        inner[payload_field] = _not_base64(draw, payload)
    elif defect == "not an object":
        answer = draw(st.sampled_from([[answer], payload, length] + ([{"Response": [inner]}, {"Response": payload}]
                                                                    if api == "current" else [{"code": [0]}])))
    elif defect == "neither Response nor code":
        answer = draw(st.sampled_from([{"RequestId": "r"}, {"Response": None}, {"Code": 0, "Message": ""}, {}]))
    body = _serialize(draw, answer)
    if defect == "body cut short":
        body = body[:draw(st.integers(0, len(body) - 1))]
    elif defect == "body over 8 KiB":  # docs/API.md "Limits": refused before parsing
        body += b" " * (8193 - len(body) + draw(st.integers(0, 100)))
    elif defect == "byte not UTF-8":
        at = body.index(b'"') + 1
        body = body[:at] + b"\xff" + body[at:]
    return body, secret, expected


# Defects of the decrypted plaintext itself, the answer around it well formed: for both
# credentials, for one of them, or of the document.
TYPE_DEFECTS = ["encryptionType unknown", "encryptionType as text", "encryptionType true", "encryptionType a float",
                "encryptionType null", "encryptionType missing"]
PSK_DEFECTS = ["psk empty", "psk not base64", "psk not text", "psk null", "psk missing",
               "certificate fields instead of psk"]
CERT_DEFECTS = ["certificate not PEM", "key not PEM", "certificate missing", "key missing", "key not text",
                "PEM without END line", "PEM body not base64", "PEM body empty", "psk instead of certificate fields"]
DOCUMENT_DEFECTS = ["plaintext a list", "plaintext not JSON", "plaintext not UTF-8", "NUL bytes inside Len"]


@st.composite
def plaintexts(draw, defect):
    # (body, ProductSecret, expected outcome): the answer well formed and encrypted with the
    # right secret, Len the plaintext's length; the plaintext well formed (defect None) or with
    # the one defect named.
    if defect in PSK_DEFECTS:
        kind = "psk"
    elif defect in CERT_DEFECTS:
        kind = "cert"
    else:
        kind = draw(st.sampled_from(["psk", "cert"]))
    secret = draw(secrets)
    fields, credential = _credential(draw, kind)
    expected = ("credential", credential) if defect is None else PROTOCOL_ERROR
    pem_field = "clientCert" if defect in ("certificate not PEM", "PEM without END line") else "clientKey"
    if defect in ("PEM body not base64", "PEM body empty"):
        pem_field = draw(st.sampled_from(["clientCert", "clientKey"]))
    if defect == "encryptionType unknown":
        fields["encryptionType"] = draw(st.sampled_from([0, 3, -2, 12010126]))
    elif defect == "encryptionType as text":
        fields["encryptionType"] = str(fields["encryptionType"])
    elif defect == "encryptionType true":
        fields["encryptionType"] = True  # true == 1 in Python: its type is what refuses it
    elif defect == "encryptionType a float":
        fields["encryptionType"] = float(fields["encryptionType"])
    elif defect == "encryptionType null":
        fields["encryptionType"] = None
    elif defect == "encryptionType missing":
        del fields["encryptionType"]
    elif defect == "psk empty":
        fields["psk"] = ""
    elif defect == "psk not base64":
        fields["psk"] = _not_base64(draw, fields["psk"])
    elif defect == "psk not text":
        fields["psk"] = draw(st.sampled_from([12345, True, [fields["psk"]], {"b64": fields["psk"]}]))
    elif defect == "psk null":
        fields["psk"] = None
    elif defect == "psk missing":
        del fields["psk"]
    elif defect == "certificate fields instead of psk":
        del fields["psk"]
        fields["clientCert"] = _pem("CERTIFICATE", b"\x30\x03\x02\x01\x01")
        fields["clientKey"] = _pem("PRIVATE KEY", b"\x30\x03\x02\x01\x01")
    elif defect in ("certificate not PEM", "key not PEM"):
        pem = fields[pem_field]
        fields[pem_field] = draw(st.sampled_from(["", "certificate", pem.split("\n")[1],
                                                  pem.replace("-----BEGIN", "BEGIN")]))
    elif defect == "certificate missing":
        del fields["clientCert"]
    elif defect == "key missing":
        del fields["clientKey"]
    elif defect == "key not text":
        fields["clientKey"] = draw(st.sampled_from([42, None, True, [fields["clientKey"]]]))
    elif defect == "PEM without END line":
        fields[pem_field] = fields[pem_field].split("-----END")[0]
    elif defect == "PEM body not base64":
        begin, rest = fields[pem_field].split("\n", 1)
        body, end = rest.split("-----END", 1)
        fields[pem_field] = begin + "\n" + _not_base64(draw, body.replace("\n", "")) + "\n-----END" + end
    elif defect == "PEM body empty":
        begin = fields[pem_field].split("\n", 1)[0]
        fields[pem_field] = begin + "\n" + begin.replace("BEGIN", "END") + "\n"
    elif defect == "psk instead of certificate fields":
        del fields["clientCert"], fields["clientKey"]
        fields["psk"] = "lDZ6Uqt+I9E0wW7rvDUs7Q=="
    doc = fields
    doc.update(draw(extras))
    if defect == "plaintext a list":
        doc = [doc]
    plaintext = _serialize(draw, doc)
    if defect == "plaintext not JSON":
        plaintext = plaintext[:-1]  # the closing brace
    elif defect == "plaintext not UTF-8":
        plaintext = plaintext[:2] + b"\xff" + plaintext[2:]  # inside the first key
    elif defect == "NUL bytes inside Len":
        plaintext += b"\0" * draw(st.integers(1, 15))
    api = draw(st.sampled_from(["current", "legacy"]))
    body = _serialize(draw, _answer(api, _encrypt_like_cloud(plaintext, secret), len(plaintext), draw(request_ids)))
    return body, secret, expected


class Stages:
    # How far each example got in tencent.parse_response: the decryption step reached
    # (codec.decrypt_cbc called), the AES decryption done (it returned), a credential
    # returned, or the dynreg error that ended it. Any other exception fails the test.
    def __init__(self, name):
        self.name = name
        self.examples = 0
        self.counts = {"decrypt reached": 0, "decrypted": 0, "credential": 0}
        self.errors = {}
        self._reached = self._decrypted = False

    def __enter__(self):
        self._real = codec.decrypt_cbc

        def spy(*args, **kwargs):
            self._reached = True
            plain = self._real(*args, **kwargs)
            self._decrypted = True
            return plain

        codec.decrypt_cbc = spy
        return self

    def __exit__(self, *exc):
        codec.decrypt_cbc = self._real

    def parse(self, body, secret):
        # ("credential", the result) or ("error", the dynreg.Error raised).
        self.examples += 1
        self._reached = self._decrypted = False
        try:
            outcome = ("credential", tencent.parse_response(body, secret))
        except dynreg.Error as e:
            self.errors[type(e).__name__] = self.errors.get(type(e).__name__, 0) + 1
            outcome = ("error", e)
        finally:
            self.counts["decrypt reached"] += self._reached
            self.counts["decrypted"] += self._decrypted
        self.counts["credential"] += outcome[0] == "credential"
        return outcome

    def run(self, strategy, defects, examples):
        # Hypothesis draws `examples[defect]` examples of each defect (None: well formed), so
        # that every defect is tried however the draws cluster; each must end as expected. No
        # example database: the runs of all defects are one function to it.
        for defect in defects:
            @settings(max_examples=examples[defect], database=None)
            @given(example=strategy(defect))
            def ends_as_expected(example):
                body, secret, expected = example
                outcome = self.parse(body, secret)
                if expected[0] == "credential":
                    assert outcome == expected, (defect, outcome)
                elif expected[0] == "rejected":
                    assert outcome[0] == "error" and type(outcome[1]) is RejectedError, (defect, outcome)
                    assert (outcome[1].code, outcome[1].message) == expected[1:], (defect, outcome)
                else:
                    assert outcome[0] == "error" and type(outcome[1]) is expected[1], (defect, outcome)

            ends_as_expected()

    def at_least(self, floors):
        # Prints the shares (pytest -s shows them), then holds each to its floor.
        shares = dict((stage, count / self.examples) for stage, count in self.counts.items())
        shares.update((name, count / self.examples) for name, count in self.errors.items())
        print("properties: %s: %d examples: %s" % (self.name, self.examples, ", ".join(
            "%s %.0f%%" % (stage, 100 * share) for stage, share in sorted(shares.items()))))
        for stage, floor in floors.items():
            assert shares.get(stage, 0) >= floor, "%s: %s in %.0f%% of the examples, below the floor of %.0f%%" % (
                self.name, stage, 100 * shares.get(stage, 0), 100 * floor)


def test_cloud_answers_end_in_the_credential_or_the_right_dynreg_error():
    # 200 well-formed answers and 20 of each of the 18 defects.
    defects = [None] + ENVELOPE_DEFECTS + CIPHER_DEFECTS
    examples = dict((defect, 20) for defect in defects)
    examples[None] = 200
    with Stages("cloud answers") as stages:
        stages.run(cloud_answers, defects, examples)
    stages.at_least({"decrypt reached": 0.5, "decrypted": 0.4, "credential": 0.3, "ProtocolError": 0.3,
                     "RejectedError": 0.03})


def test_decrypted_plaintexts_end_in_the_credential_or_a_protocol_error():
    # 150 well-formed plaintexts and 6 of each of the 25 defects.
    defects = [None] + TYPE_DEFECTS + PSK_DEFECTS + CERT_DEFECTS + DOCUMENT_DEFECTS
    examples = dict((defect, 6) for defect in defects)
    examples[None] = 150
    with Stages("decrypted plaintexts") as stages:
        stages.run(plaintexts, defects, examples)
    stages.at_least({"decrypt reached": 0.95, "decrypted": 0.95, "credential": 0.3, "ProtocolError": 0.3})

"""The two fields of an X.509 certificate the line tools use, its subject and its expiry,
read from DER or PEM with the standard library alone: `dynreg check` and `dynreg roots` run
where nothing else is installed. Only the certificate's outer structure is walked (RFC 5280
4.1); nothing is verified.

    certificates(data) -> [Certificate(der, subject, expires), ...]   ValueError: why not
"""
import base64
import binascii
import re
from collections import namedtuple
from datetime import datetime, timezone

Certificate = namedtuple("Certificate", "der subject expires")

SEQUENCE, SET, INTEGER, BIT_STRING, OID = 0x30, 0x31, 0x02, 0x03, 0x06
UTC_TIME, GENERALIZED_TIME = 0x17, 0x18
EXPLICIT_VERSION = 0xA0
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
# RFC 4514 3: the short names of the attribute types it lists; any other type is its dotted OID.
SHORT_NAMES = {"2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
               "2.5.4.6": "C", "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC",
               "0.9.2342.19200300.100.1.1": "UID"}
STRING_CODECS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be",
                 0x1C: "utf-32-be"}


def certificates(data):
    """Every certificate in `data`: one DER certificate, or PEM with CERTIFICATE blocks only."""
    if data.lstrip()[:1] in (b"{", b"["):
        raise ValueError("it is JSON: the info and the CA swapped?")
    if b"-----BEGIN" not in data:
        try:
            return [certificate(data)]
        except ValueError:
            raise ValueError("neither PEM nor DER X.509")
    blocks = PEM_BLOCK.findall(data)
    if not blocks or {kind for kind, _ in blocks} != {b"CERTIFICATE"}:
        raise ValueError("PEM blocks other than CERTIFICATE")
    try:
        return [certificate(base64.b64decode(b"".join(body.split()), validate=True)) for _, body in blocks]
    except (ValueError, binascii.Error):
        raise ValueError("a PEM block does not parse as X.509")


def certificate(der):
    """The Certificate of one DER certificate; ValueError when it is not one."""
    tag, start, end = element(der, 0, len(der))
    if tag != SEQUENCE or end != len(der):
        raise ValueError("not one DER SEQUENCE")
    outer = children(der, start, end, (SEQUENCE, SEQUENCE, BIT_STRING))  # tbsCertificate, algorithm, signature
    tbs = children(der, outer[0][1], outer[0][2])
    if tbs and tbs[0][0] == EXPLICIT_VERSION:
        tbs = tbs[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, then optional parts
    if [t for t, _, _ in tbs[:6]] != [INTEGER, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE]:
        raise ValueError("not the fields of a tbsCertificate")
    _, not_after = children(der, tbs[3][1], tbs[3][2], (None, None))
    return Certificate(der, name(der, tbs[4][1], tbs[4][2]), utc_time(der, not_after))


def element(data, pos, limit):
    # (tag, start, end) of the value of the DER element at pos, which must end by limit.
    if pos + 2 > limit:
        raise ValueError("cut short")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if tag & 0x1F == 0x1F:
        raise ValueError("a tag number X.509's structure does not use")
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 4 or pos + size > limit:
            raise ValueError("a bad length")
        length = int.from_bytes(data[pos:pos + size], "big")
        pos += size
    if pos + length > limit:
        raise ValueError("cut short")
    return tag, pos, pos + length


def children(data, start, end, tags=None):
    # The elements inside a constructed value, their tags checked against `tags` (None: any).
    found = []
    while start < end:
        found.append(element(data, start, end))
        start = found[-1][2]
    if tags is not None and (len(found) != len(tags) or any(t not in (None, f[0]) for t, f in zip(tags, found))):
        raise ValueError("not the structure of a certificate")
    return found


def name(data, start, end):
    # An X.501 Name as RFC 4514 writes it: the last RDN first, "+" inside a multi-valued one.
    rdns = []
    for tag, rdn_start, rdn_end in children(data, start, end):
        if tag != SET:
            raise ValueError("a Name whose part is not a SET")
        values = []
        for _, pair_start, pair_end in children(data, rdn_start, rdn_end):
            (_, oid_start, oid_end), (kind, value_start, value_end) = children(data, pair_start, pair_end,
                                                                               (OID, None))
            oid = dotted(data[oid_start:oid_end])
            values.append("%s=%s" % (SHORT_NAMES.get(oid, oid), escaped(text(kind, data[value_start:value_end]))))
        rdns.append("+".join(values))
    return ",".join(reversed(rdns))


def dotted(oid):
    # An OBJECT IDENTIFIER's content octets as "2.5.4.3".
    numbers, value = [], 0
    for byte in oid:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    if not numbers:
        raise ValueError("an empty OID")
    first = min(numbers[0] // 40, 2)
    return ".".join(str(n) for n in [first, numbers[0] - 40 * first] + numbers[1:])


def text(kind, raw):
    codec = STRING_CODECS.get(kind)
    if codec is None:
        return "#" + raw.hex()
    try:
        return raw.decode(codec)
    except UnicodeError:
        raise ValueError("a Name's string is not %s" % codec)


def escaped(value):
    # RFC 4514 2.4: the characters a value cannot hold as they are.
    value = re.sub(r'([\\"+,;<>])', r"\\\1", value).replace("\0", "\\00")
    if value.endswith(" "):
        value = value[:-1] + "\\ "
    if value[:1] in ("#", " "):
        value = "\\" + value
    return value


def utc_time(data, field):
    # UTCTime (YYMMDDHHMMSSZ, 1950 to 2049) or GeneralizedTime (YYYYMMDDHHMMSSZ), in UTC.
    tag, start, end = field
    stamp = data[start:end].decode("ascii", "replace")
    if tag == UTC_TIME and re.fullmatch(r"\d{12}Z", stamp):
        century = "19" if int(stamp[:2]) >= 50 else "20"
        stamp = century + stamp
    elif not (tag == GENERALIZED_TIME and re.fullmatch(r"\d{14}Z", stamp)):
        raise ValueError("a validity time that is neither UTCTime nor GeneralizedTime in UTC")
    return datetime.strptime(stamp, "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)

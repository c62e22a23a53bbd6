# Payload decryption against raw AES, on the runtime that runs this file (the MicroPython unix
# port; `make bench` runs it there with MICROPYPATH=lib). The payload is what the Tencent cloud
# sends: AES-128-CBC of the compact JSON credential under the first 16 bytes of the
# ProductSecret, IV sixteen ASCII '0', zero padding, base64. dynreg.tencent.decrypt_payload
# decodes, decrypts, cuts to Len and parses the JSON; the raw figure is only
# cryptolib.aes(key, CBC, iv).decrypt of the same ciphertext (a fresh cipher object each call,
# as CBC needs). Prints figures only.
import gc
import time
from binascii import b2a_base64
from cryptolib import aes

from dynreg import tencent

ROUNDS = 2000
SECRET = "b3nchPr0ductS3cret-0123456789"
KEY = SECRET[:16].encode()
IV = b"0" * 16
PSK = b'{"encryptionType":2,"psk":"eBzqxY7OtlKidzsQts5vxg=="}'
# A certificate answer is larger: a client certificate and key in PEM (filler text: only the size
# and the JSON shape matter here).
_PEM_LINE = "MIIBszCCAVmgAwIBAgIUJ0V2ZXJ5IGxpbmUgb2YgYmFzZTY0IGZpbGxlciB0ZXh0\\n"
CERT = ('{"encryptionType":1,"clientCert":"-----BEGIN CERTIFICATE-----\\n%s-----END CERTIFICATE-----\\n",'
        '"clientKey":"-----BEGIN EC PRIVATE KEY-----\\n%s-----END EC PRIVATE KEY-----\\n"}'
        % (_PEM_LINE * 10, _PEM_LINE * 3)).encode()


def encrypt(plain):
    padded = plain + bytes(-len(plain) % 16)
    return aes(KEY, 2, IV).encrypt(padded)


def timed_us(fn, repeats=7):
    best = None
    for _ in range(repeats):
        gc.collect()
        start = time.ticks_us()
        for _ in range(ROUNDS):
            fn()
        took = time.ticks_diff(time.ticks_us(), start)
        best = took if best is None or took < best else best
    return best / ROUNDS


def main():
    print("%-14s %8s %12s %12s %8s" % ("payload", "bytes", "decrypt us", "raw aes us", "ratio"))
    for name, plain in (("psk", PSK), ("certificate", CERT)):
        data = encrypt(plain)
        payload = b2a_base64(data)[:-1].decode()
        length = len(plain)
        assert tencent.decrypt_payload(payload, SECRET, length) is not None
        full = timed_us(lambda: tencent.decrypt_payload(payload, SECRET, length))
        raw = timed_us(lambda: aes(KEY, 2, IV).decrypt(data))
        print("%-14s %8d %12.2f %12.2f %8.2f" % (name, len(data), full, raw, full / raw))


main()

# CPython stand-in for MicroPython's `cryptolib`, on `cryptography`, as strict as the
# firmware: modes 1 (ECB) and 2 (CBC) only, keys of 16 or 32 bytes, whole blocks only, and an
# object that has encrypted cannot decrypt (or the reverse).
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_MODE_ECB = 1
_MODE_CBC = 2


class aes:
    def __init__(self, key, mode, iv=None):
        key = bytes(key)
        if len(key) not in (16, 32):
            raise ValueError("key must be 16 or 32 bytes")
        if mode == _MODE_CBC:
            if iv is None or len(iv) != 16:
                raise ValueError("CBC needs a 16-byte IV")
            self._cipher = Cipher(algorithms.AES(key), modes.CBC(bytes(iv)))
        elif mode == _MODE_ECB:
            self._cipher = Cipher(algorithms.AES(key), modes.ECB())
        else:
            raise ValueError("mode")
        self._op = None
        self._ctx = None

    def _run(self, op, data):
        data = bytes(data)
        if len(data) % 16:
            raise ValueError("blksize")
        if self._op is None:
            self._op = op
            self._ctx = self._cipher.encryptor() if op == "enc" else self._cipher.decryptor()
        elif self._op != op:
            raise OSError("can't encrypt & decrypt")
        return self._ctx.update(data)

    def encrypt(self, data):
        return self._run("enc", data)

    def decrypt(self, data):
        return self._run("dec", data)

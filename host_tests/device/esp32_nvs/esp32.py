# `esp32` for a device under test on the unix port: only NVS, the one part of an ESP32 that
# firmware/board.py reads the product identity from, stood in here as the radio is on the
# emulated Pico W. Each namespace's blobs live in the JSON file named by DYNREG_NVS_FILE
# ({namespace: {key: hex}}); as on the chip, set_blob and erase_key reach it only at commit().
import json
from binascii import hexlify, unhexlify
from os import getenv

_NOT_FOUND = -0x1102  # ESP_ERR_NVS_NOT_FOUND, as esp32.NVS raises it in an OSError


class NVS:
    def __init__(self, namespace):
        self.namespace = namespace
        with open(getenv("DYNREG_NVS_FILE")) as f:
            self.keys = json.load(f).get(namespace, {})

    def get_blob(self, key, buf):
        if key not in self.keys:
            raise OSError(_NOT_FOUND)
        value = unhexlify(self.keys[key])
        buf[:len(value)] = value
        return len(value)

    def set_blob(self, key, value):
        self.keys[key] = hexlify(value).decode()

    def erase_key(self, key):
        if key not in self.keys:
            raise OSError(_NOT_FOUND)
        del self.keys[key]

    def commit(self):
        path = getenv("DYNREG_NVS_FILE")
        with open(path) as f:
            stored = json.load(f)
        stored[self.namespace] = self.keys
        with open(path, "w") as f:
            json.dump(stored, f)

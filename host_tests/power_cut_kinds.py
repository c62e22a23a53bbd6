# What the power-cut tests cut, on littlefs2 and FAT in RAM (test_mp_power_loss.py, unix
# port) and on the emulated Pico W's own flash (test_host_pico_power.py):
# (name, the info before, the credential, action). SAVE saves the credential into an info
# that needs registration, every credential kind; ERASE erases the ProductSecret from an
# info that already holds the credential (what dynreg.mqtt.connect does after a login).
import json

PSK = "lDZ6Uqt+I9E0wW7rvDUs7Q=="
PEM_CERT = "-----BEGIN CERTIFICATE-----\n" + "MIIB" * 120 + "\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN EC PRIVATE KEY-----\n" + "MHcC" * 30 + "\n-----END EC PRIVATE KEY-----\n"
SECRET = "hzvf5LF9S0isvBhDSauWMaIk"
DEVICE_SECRET = "8d1f0cdab49dd229cf3b75aaaaaaaaaa"
SAVE = "save"
ERASE = "erase"
_SDK_KEY_INFO = ('{"auth_mode":"KEY","productId":"S3EUVBRJLB","productSecret":"%s",'
                 '"deviceName":"dev01","key_deviceinfo":{"deviceSecret":"%s"}}')
# Azure's group key is its ProductSecret (the store reads it as such, whatever it holds).
_AZURE = {"cloud": "azure", "id_scope": "0ne00000A0A", "group_key": SECRET}
_AZURE_CREDENTIAL = {"hub": "myhub.azure-devices.net", "device_id": "dev01", "device_key": PSK}
KINDS = [
    ("tencent psk, SDK format", _SDK_KEY_INFO % (SECRET, "YOUR_IOT_PSK"), {"psk": PSK}, SAVE),
    ("tencent psk", {"cloud": "tencent", "product_id": "S3EUVBRJLB"}, {"psk": PSK}, SAVE),
    ("tencent cert+key", {"cloud": "tencent", "product_id": "S3EUVBRJLB", "auth": "cert"},
     {"cert": PEM_CERT, "key": PEM_KEY}, SAVE),
    ("aliyun deviceSecret", {"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "https"},
     {"device_secret": DEVICE_SECRET}, SAVE),
    ("aliyun clientId+deviceToken", {"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "regnwl"},
     {"client_id": "a1IoK3f7xyz.dev01|x", "device_token": "tok-" + "9" * 40}, SAVE),
    ("azure hub+deviceId+deviceKey", _AZURE, _AZURE_CREDENTIAL, SAVE),
    ("erase ProductSecret, SDK format", _SDK_KEY_INFO % (SECRET, PSK), {"psk": PSK}, ERASE),
    ("erase the Azure group key", dict(_AZURE, credential=_AZURE_CREDENTIAL), _AZURE_CREDENTIAL, ERASE),
    ("erase ProductSecret", {"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "https",
                             "credential": {"device_secret": DEVICE_SECRET}}, {"device_secret": DEVICE_SECRET}, ERASE),
]


def info_text(fields):
    # The info file before the save: the SDK format as written, or dynreg's with `fields`.
    if isinstance(fields, str):
        return fields
    doc = {"dynreg": 1, "product_secret": SECRET, "device_name": "dev01", "credential": {}}
    if "group_key" in fields:  # Azure's field for it
        del doc["product_secret"]
    doc.update(fields)
    return json.dumps(doc)


def expected(credential):
    # What the info holds once `credential` is saved (a certificate goes to files beside it).
    if "cert" in credential:
        return {"cert_file": "dev01_cert.crt", "key_file": "dev01_private.key"}
    return credential


def action_code(path, credential, action):
    # The cut operation as MicroPython source, for a board.
    if action == ERASE:
        return "from dynreg import store\nstore.load(%r).erase_product_secret()\n" % path
    return "from dynreg import store\nstore.load(%r).save_credential(%s)\n" % (path, json.dumps(credential))

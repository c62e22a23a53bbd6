# Every kind of credential a save writes, for the power-cut tests on littlefs in RAM
# (test_mp_power_loss.py, unix port) and on the emulated Pico W's own flash
# (test_host_pico_power.py): (name, the info before the save, the credential saved).
import json

PSK = "lDZ6Uqt+I9E0wW7rvDUs7Q=="
PEM_CERT = "-----BEGIN CERTIFICATE-----\n" + "MIIB" * 120 + "\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN EC PRIVATE KEY-----\n" + "MHcC" * 30 + "\n-----END EC PRIVATE KEY-----\n"
SECRET = "hzvf5LF9S0isvBhDSauWMaIk"
KINDS = [
    ("tencent psk, SDK format", '{"auth_mode":"KEY","productId":"S3EUVBRJLB","productSecret":"%s",'
     '"deviceName":"dev01","key_deviceinfo":{"deviceSecret":"YOUR_IOT_PSK"}}' % SECRET, {"psk": PSK}),
    ("tencent psk", {"cloud": "tencent", "product_id": "S3EUVBRJLB"}, {"psk": PSK}),
    ("tencent cert+key", {"cloud": "tencent", "product_id": "S3EUVBRJLB", "auth": "cert"},
     {"cert": PEM_CERT, "key": PEM_KEY}),
    ("aliyun deviceSecret", {"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "https"},
     {"device_secret": "8d1f0cdab49dd229cf3b75aaaaaaaaaa"}),
    ("aliyun clientId+deviceToken", {"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "regnwl"},
     {"client_id": "a1IoK3f7xyz.dev01|x", "device_token": "tok-" + "9" * 40}),
]


def info_text(fields):
    # The info file before the save: the SDK format as written, or dynreg's with `fields`.
    if isinstance(fields, str):
        return fields
    doc = {"dynreg": 1, "product_secret": SECRET, "device_name": "dev01", "credential": {}}
    doc.update(fields)
    return json.dumps(doc)


def expected(credential):
    # What the info holds once `credential` is saved (a certificate goes to files beside it).
    if "cert" in credential:
        return {"cert_file": "dev01_cert.crt", "key_file": "dev01_private.key"}
    return credential

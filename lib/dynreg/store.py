# The device info on flash: product identity, options and the credential once registered.
# Two formats are read and written back as they came:
# - the Tencent C SDK's device_info.json ("productId", "key_deviceinfo": {"deviceSecret"}, ...)
# - dynreg's own ({"dynreg": 1, "cloud": ..., "credential": {...}}), for both clouds and every
#   credential kind. See README "Device info".
# Every write is a temporary file renamed over the old one: on littlefs a power cut leaves
# either the old file or the new one, never half of either.
import os
from micropython import const
from dynreg import ConfigError, StorageError

MAX_INFO = const(8192)  # bytes; a larger info file is refused
PLACEHOLDERS = ("", "YOUR_IOT_PSK", "YOUR_DEVICE_CERT_FILE_NAME", "YOUR_DEVICE_PRIVATE_KEY_FILE_NAME")
_SDK_KEY = "key_deviceinfo"
_SDK_CERT = "cert_deviceinfo"


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _dirname(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else ("/" if i == 0 else "")


def join(folder, name):
    if not folder or name.startswith("/"):
        return name
    return folder.rstrip("/") + "/" + name


def read_file(path, limit):
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        raise ConfigError("cannot read %s" % path)
    if len(data) > limit:
        raise ConfigError("%s is larger than %d bytes" % (path, limit))
    return data


def write_atomic(path, data):
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.rename(tmp, path)
        except OSError:
            # FAT cannot rename onto an existing file: move the old one aside first, so a
            # cut in between leaves the .bak that load() falls back to.
            if not exists(path):
                raise
            os.rename(path, path + ".bak")
            os.rename(tmp, path)
            os.remove(path + ".bak")
    except OSError as e:
        raise StorageError("cannot write %s (errno %s)" % (path, e.args[0] if e.args else "?"))


class Info:
    # Normalised view of an info file. `doc` is the file as read; save() writes it back with
    # only the credential changed.

    def __init__(self, path, doc):
        self.path = path
        self.doc = doc
        self.folder = _dirname(path)
        if "dynreg" in doc:
            self.sdk_format = False
            self.cloud = _text(doc, "cloud", ("tencent", "aliyun"))
            self.product = _text(doc, "product_id" if self.cloud == "tencent" else "product_key")
            self.product_secret = _text(doc, "product_secret")
            self.device_name = doc.get("device_name") or None
            self.device_name_from = doc.get("device_name_from")
            self.auth = _text(doc, "auth", ("key", "cert"), "key")
            self.api = _text(doc, "api", ("current", "legacy", "https", "mqtt", "regnwl"),
                             "current" if self.cloud == "tencent" else "https")
            self.algorithm = _text(doc, "algorithm", None, "hmacsha256")
            self.register_url = doc.get("register_url")
            self.mqtt_url = doc.get("mqtt_url")
            self.ca = doc.get("ca")
            self.instance_id = doc.get("instance_id")
            self.region = doc.get("region")
            credential = doc.get("credential") or {}
            if not isinstance(credential, dict):
                raise ConfigError("%s: field credential must be an object" % path)
        else:
            self.sdk_format = True
            self.cloud = "tencent"
            self.product = _text(doc, "productId")
            self.product_secret = _text(doc, "productSecret")
            self.device_name = doc.get("deviceName") or None
            self.device_name_from = None
            self.auth = "cert" if _text(doc, "auth_mode", ("KEY", "CERT"), "KEY") == "CERT" else "key"
            self.api = "current"
            self.algorithm = "hmacsha256"
            self.register_url = self.mqtt_url = self.ca = self.instance_id = self.region = None
            credential = {}
            key_info = doc.get(_SDK_KEY)
            cert_info = doc.get(_SDK_CERT)
            if isinstance(key_info, dict):
                credential["psk"] = key_info.get("deviceSecret")
            if isinstance(cert_info, dict):
                credential["cert_file"] = cert_info.get("devCertFile")
                credential["key_file"] = cert_info.get("devPrivateKeyFile")
        if self.device_name is not None and not isinstance(self.device_name, str):
            raise ConfigError("%s: field device_name must be a string" % path)
        self.credential = self._complete(credential)

    def credential_kind(self):
        # The field names of the credential this device holds once registered.
        if self.cloud == "tencent":
            return ("cert_file", "key_file") if self.auth == "cert" else ("psk",)
        return ("client_id", "device_token") if self.api == "regnwl" else ("device_secret",)

    def _complete(self, credential):
        # The stored credential, or None when the device must register.
        kind = self.credential_kind()
        values = [credential.get(name) for name in kind]
        for value in values:
            if not isinstance(value, str) or value in PLACEHOLDERS:
                return None
        if kind[0] == "cert_file" and not (exists(self.file(values[0])) and exists(self.file(values[1]))):
            return None
        return dict(zip(kind, values))

    @property
    def needs_registration(self):
        return self.credential is None

    def file(self, name):
        return join(self.folder, name)

    def save_credential(self, credential):
        # Persist a credential from the cloud: certificate files first, then the info that
        # names them, so a cut at any point leaves either the old info or the complete new one.
        kind = self.credential_kind()
        if kind[0] == "cert_file":
            stored = {"cert_file": self.device_name + "_cert.crt", "key_file": self.device_name + "_private.key"}
            write_atomic(self.file(stored["cert_file"]), credential["cert"].encode())
            write_atomic(self.file(stored["key_file"]), credential["key"].encode())
        else:
            stored = {}
            for name in kind:
                value = credential.get(name)
                if not isinstance(value, str) or value in PLACEHOLDERS:
                    raise StorageError("credential field %s is missing" % name)
                stored[name] = value
        doc = self.doc
        if self.sdk_format:
            if "psk" in stored:
                doc[_SDK_KEY] = _merged(doc.get(_SDK_KEY), {"deviceSecret": stored["psk"]})
            else:
                doc[_SDK_CERT] = _merged(doc.get(_SDK_CERT), {"devCertFile": stored["cert_file"],
                                                            "devPrivateKeyFile": stored["key_file"]})
            if self.device_name and not doc.get("deviceName"):
                doc["deviceName"] = self.device_name
        else:
            doc["credential"] = stored
            if self.device_name and not doc.get("device_name"):
                doc["device_name"] = self.device_name
        import json

        write_atomic(self.path, json.dumps(doc).encode())
        self.credential = stored

    def read_credential_file(self, name):
        return read_file(self.file(self.credential[name]), MAX_INFO)


def _merged(old, new):
    result = dict(old) if isinstance(old, dict) else {}
    result.update(new)
    return result


def _text(doc, name, allowed=None, default=None):
    value = doc.get(name, default)
    if not isinstance(value, str) or not value:
        raise ConfigError("info field %s is missing or not a string" % name)
    if allowed and value not in allowed:
        raise ConfigError("info field %s must be one of %s" % (name, "/".join(allowed)))
    return value


def read_json(path):
    # A JSON object from flash: ConfigError when missing, too large, not JSON or not an
    # object. Falls back to the .bak a FAT rename left when it was cut between its two steps.
    import json

    if not exists(path) and exists(path + ".bak"):
        data = read_file(path + ".bak", MAX_INFO)
    else:
        data = read_file(path, MAX_INFO)
    try:
        doc = json.loads(data.decode())
    except (ValueError, RuntimeError):
        raise ConfigError("%s is not valid JSON" % path)
    if not isinstance(doc, dict):
        raise ConfigError("%s is not a JSON object" % path)
    return doc


def load(path):
    return Info(path, read_json(path))


def needs_registration(info):
    return info.needs_registration

# The device info on flash: product identity, options and the credential once registered.
# Two formats are read and written back as they came:
# - the Tencent C SDK's device_info.json ("productId", "key_deviceinfo": {"deviceSecret"}, ...)
# - dynreg's own ({"dynreg": 1, "cloud": ..., "credential": {...}}), for both clouds and every
#   credential kind. See docs/CLOUDS.md "Device info".
# Every write goes first to <name>.tmp, closed, and only then to <name> itself, so a power cut
# leaves at least one complete copy: read_json takes a complete .tmp first, else <name>.
# Nothing is renamed: on FAT a rename onto a file removes it first, and a cut
# inside FatFs's rename can leave two names on one cluster chain, which a later write then
# frees under the other (ff.c f_rename's "critical section"). See docs/CLOUDS.md "Atomic saves".
import json
import os
from micropython import const
from dynreg import ConfigError, StorageError

MAX_INFO = const(8192)  # bytes; a larger info file is refused
PLACEHOLDERS = ("", "YOUR_IOT_PSK", "YOUR_DEVICE_CERT_FILE_NAME", "YOUR_DEVICE_PRIVATE_KEY_FILE_NAME")
_SDK_KEY = "key_deviceinfo"
_SDK_CERT = "cert_deviceinfo"
FILL = "dynreg.fill"  # scrub_free_space's filler beside the info; while it exists, a scrub is owed
_MAX_SCRUB = const(16777216)  # bytes free: more is no board's flash (a host disk, a card): not scrubbed


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def join(folder, name):
    if not folder or name.startswith("/"):
        return name
    return folder.rstrip("/") + "/" + name


def read_file(path, limit):
    # The size first: a file over the limit is refused without a buffer for it, and one within
    # it gets a buffer of its own size, not the limit's (a fragmented board heap has 8 KiB
    # free in total more often than in one piece).
    size = _size(path)
    if size > limit:
        raise ConfigError("%s is larger than %d bytes" % (path, limit))
    try:
        with open(path, "rb") as f:
            data = f.read(size + 1)
    except OSError:
        raise ConfigError("cannot read %s" % path)
    if len(data) > limit:
        raise ConfigError("%s is larger than %d bytes" % (path, limit))
    return data


def write_atomic(path, data, mode="wb"):
    # The .tmp copy complete before <path> is opened; it goes once <path> is complete too.
    try:
        _write(path + ".tmp", data)
        _replace(path, data, mode)
    except OSError as e:
        raise StorageError("cannot write %s (errno %s)" % (path, e.args[0] if e.args else "?"))


def _write(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def _replace(path, data, mode="wb"):
    # The second half of a save: <path> itself, then the .tmp that stood in for it goes.
    _write(path, data, mode)
    os.remove(path + ".tmp")


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


class Info:
    # Normalised view of an info file. `doc` is the file as read; save_credential() and
    # erase_product_secret() write it back with only the credential, the login record or the
    # ProductSecret changed.
    unscrubbed = False  # load() found the filler: a scrub is owed (cut short, or not yet run)

    def __init__(self, path, doc):
        self.path = path
        self.doc = doc
        i = path.rfind("/")
        self.folder = path[:i] if i > 0 else ("/" if i == 0 else "")
        get = doc.get
        if "dynreg" in doc:
            self.sdk_format = False
            cloud = self.cloud = _text(doc, "cloud", ("tencent", "aliyun", "azure", "aws"))
            azure = cloud == "azure"
            aws = cloud == "aws"
            self.product = _text(doc, "id_scope" if azure else "template" if aws else
                                 "product_id" if cloud == "tencent" else "product_key")
            # Azure's group key and AWS's claim (named by its key's file) play the ProductSecret's
            # part: one for the batch.
            self.secret_field = "group_key" if azure else "claim_key" if aws else "product_secret"
            self.device_name = get("device_name") or None
            self.device_name_from = get("device_name_from")
            self.auth = "cert" if aws else _text(doc, "auth", ("key", "cert"), "key")
            self.api = _text(doc, "api", ("current", "legacy", "https", "mqtt", "regnwl"),
                             "current" if cloud == "tencent" else "mqtt" if azure or aws else "https")
            self.algorithm = _text(doc, "algorithm", None, "hmacsha256")
            credential = get("credential") or {}
            if not isinstance(credential, dict):
                raise ConfigError("credential must be an object")
        else:
            self.sdk_format = True
            self.cloud = "tencent"
            self.product = _text(doc, "productId")
            self.secret_field = "productSecret"
            self.device_name = get("deviceName") or None
            self.device_name_from = None
            self.auth = "cert" if _text(doc, "auth_mode", ("KEY", "CERT"), "KEY") == "CERT" else "key"
            self.api = "current"
            self.algorithm = "hmacsha256"
            credential = {}
            key_info = get(_SDK_KEY)
            cert_info = get(_SDK_CERT)
            if isinstance(key_info, dict):
                credential["psk"] = key_info.get("deviceSecret")
            if isinstance(cert_info, dict):
                credential["cert_file"] = cert_info.get("devCertFile")
                credential["key_file"] = cert_info.get("devPrivateKeyFile")
        # The ProductSecret, or None once erased (absent or "").
        secret = get(self.secret_field)
        if secret is not None and not isinstance(secret, str):
            raise ConfigError("%s is not a string" % self.secret_field)
        self.product_secret = secret or None
        # dynreg's own keys, in the SDK's format too: the SDK's say nothing of where to register
        # or which CA to trust, and the SDK ignores keys it does not know.
        for name in ("register_url", "mqtt_url", "ca", "mqtt_ca", "instance_id", "region"):
            setattr(self, name, get(name))
        if self.device_name is not None and not isinstance(self.device_name, str):
            raise ConfigError("device_name must be a string")
        # logged_in: the stored credential has been accepted by the broker (written at its
        # first login); plain_http: the user's opt-in to an http:// register_url (Tencent).
        for name in ("keep_product_secret", "plain_http", "logged_in"):
            value = get(name, False)
            if not isinstance(value, bool):
                raise ConfigError("%s must be true or false" % name)
            setattr(self, name, value)
        self.credential = self._complete(credential)

    def credential_kind(self):
        # The field names of the credential this device holds once registered.
        if self.cloud == "tencent":
            return ("cert_file", "key_file") if self.auth == "cert" else ("psk",)
        if self.cloud == "azure":
            return ("hub", "device_id", "device_key")  # the assignment and the derived key
        if self.cloud == "aws":
            return ("cert_file", "key_file", "thing_name")  # the certificate and key as DER
        return ("client_id", "device_token") if self.api == "regnwl" else ("device_secret",)

    def _complete(self, credential):
        # The stored credential, or None when the device must register.
        stored = {}
        for name in self.credential_kind():
            value = credential.get(name)
            if not isinstance(value, str) or value in PLACEHOLDERS:
                return None
            stored[name] = value
        if "cert_file" in stored and not (_size(self.file(stored["cert_file"]))
                                          and _size(self.file(stored["key_file"]))):
            return None  # missing, or emptied by a cut while it was written
        return stored

    @property
    def needs_registration(self):
        return self.credential is None

    def file(self, name):
        return join(self.folder, name)

    def save_credential(self, credential):
        # Persist a credential from the cloud: certificate files first (PEM text, or DER bytes),
        # then the info that names them, so a cut at any point leaves either the old info or
        # the complete new one.
        kind = self.credential_kind()
        files = kind[0] == "cert_file"
        stored = {}
        for name in kind[2:] if files else kind:
            value = credential.get(name)
            if not isinstance(value, str) or value in PLACEHOLDERS:
                raise StorageError("credential has no %s" % name)
            stored[name] = value
        if files:
            stored["cert_file"] = self.device_name + "_cert.crt"
            stored["key_file"] = self.device_name + "_private.key"
            for name in ("cert_file", "key_file"):  # an old pair goes first: never a new cert with an old key
                try:
                    os.remove(self.file(stored[name]))
                except OSError:
                    pass
            for name in ("cert", "key"):
                data = credential[name]
                write_atomic(self.file(stored[name + "_file"]), data.encode() if isinstance(data, str) else data)
        doc = self.doc
        if self.sdk_format:
            # The SDK's section of the credential, its other keys kept.
            name = _SDK_KEY if "psk" in stored else _SDK_CERT
            section = doc.get(name)
            section = doc[name] = dict(section) if isinstance(section, dict) else {}
            if "psk" in stored:
                section["deviceSecret"] = stored["psk"]
            else:
                section["devCertFile"] = stored["cert_file"]
                section["devPrivateKeyFile"] = stored["key_file"]
            name = "deviceName"
        else:
            doc["credential"] = stored
            if "device_configuration" in credential:  # AWS's, from the provisioning template
                doc["device_configuration"] = credential["device_configuration"]
            name = "device_name"
        if self.device_name and not doc.get(name):
            doc[name] = self.device_name
        doc.pop("logged_in", None)  # a new credential has not logged in yet
        self._write_doc(doc)
        self.credential = stored
        self.logged_in = False

    def check_can_register(self):
        # Where registration starts: without a ProductSecret (erased once a credential was
        # in use, or never given) this device cannot register.
        if self.product_secret is None:
            raise ConfigError("no credential and no %s: cannot register" % self.secret_field)

    def read_credential_file(self, name):
        return read_file(self.file(self.credential[name]), MAX_INFO)

    def erase_product_secret(self):
        # The stored credential's first accepted login: one atomic rewrite of the info records
        # it ("logged_in": true) and drops the ProductSecret (the same on every device of the
        # product), unless keep_product_secret; everything else kept. True when the secret
        # went. Nothing is written when the login is recorded already, the secret is gone
        # (nothing could register again anyway) or the credential is incomplete.
        if self.logged_in or self.product_secret is None or self.credential is None \
                or self._complete(self.credential) is None:
            return False
        doc = dict(self.doc)
        doc["logged_in"] = True
        if not self.keep_product_secret:
            try:  # the filler's name marks the scrub as owed until it has run (load())
                _write(self.file(FILL), b"")
            except OSError:
                pass
            if self.sdk_format:
                doc["productSecret"] = ""  # the SDK format keeps the field, empty
            else:
                # AWS's claim is two files: both go before the info stops naming them (a cut
                # between leaves the names, and the next login erases again).
                for name in (self.secret_field, "claim_cert"):
                    path = doc.pop(name, None)
                    if self.cloud == "aws" and isinstance(path, str):
                        try:
                            os.remove(self.file(path))
                        except OSError:
                            pass
        self._write_doc(doc, "r+b")
        self.doc = doc
        self.logged_in = True
        if self.keep_product_secret:
            return False
        self.product_secret = None
        return True

    def _write_doc(self, doc, mode="wb"):
        data = json.dumps(doc).encode()
        if mode == "r+b":
            # Over the old bytes, padded with spaces, never truncated: FatFs frees a truncated
            # file's clusters after it has written the entry, so a cut between leaves them (and
            # the ProductSecret in them) allocated to no file, out of any scrub's reach.
            data += b" " * (_size(self.path) - len(data))
        write_atomic(self.path, data, mode)


def _text(doc, name, allowed=None, default=None):
    value = doc.get(name, default)
    if not isinstance(value, str) or not value:
        raise ConfigError("%s missing or not a string" % name)
    if allowed and value not in allowed:
        raise ConfigError("%s must be one of %s" % (name, "/".join(allowed)))
    return value


def read_json(path, limit=MAX_INFO):
    # A JSON object from flash: ConfigError when missing, over `limit` bytes, not JSON or not an
    # object. write_atomic closes <path>.tmp whole before it touches <path>, and removes it
    # once <path> is whole too: a .tmp that passes the same checks is the newest complete
    # version, so it is used and put in place, even where <path> parses (a cut inside an
    # in-place rewrite can leave half a sector new and half old that still parses, on FAT).
    # A torn .tmp is never used: then <path> is the old version, whole.
    try:
        data = read_file(path + ".tmp", limit)
        doc = _json_object(path, data)
    except ConfigError:
        try:
            return _json_object(path, read_file(path, limit))
        except ConfigError:
            if not exists(path) and not exists(path + ".tmp"):
                raise ConfigError("no %s on this device" % path)
            raise
    try:
        _replace(path, data)
    except OSError as e:
        raise StorageError("cannot restore %s (errno %s)" % (path, e.args[0] if e.args else "?"))
    return doc


def _json_object(path, data):
    try:
        doc = json.loads(data.decode())
    except (ValueError, RuntimeError):
        raise ConfigError("%s is not valid JSON" % path)
    if not isinstance(doc, dict):
        raise ConfigError("%s is not a JSON object" % path)
    return doc


def load(path):
    doc = read_json(path)
    try:
        info = Info(path, doc)
    except ConfigError as e:
        raise ConfigError("%s: %s" % (path, e))
    # The filler's name: a scrub owed to the next login. One a cut left full is emptied at once.
    fill = info.file(FILL)
    info.unscrubbed = exists(fill)
    if _size(fill):
        try:
            _write(fill, b"")
        except OSError:
            pass
    return info


def scrub_free_space(folder):
    # Overwrites what freed blocks still hold (an erased ProductSecret: littlefs and FAT never
    # overwrite in place). littlefs keeps small files inline in the folder's metadata pair,
    # and old commits stay there until each of its two blocks is compacted: first enough small
    # commits (32 bytes or more each) for that, skipped on FAT (the one of the two whose names
    # have no case). Then a filler of zeros over every free block, flushed every 16 (a cut on
    # FAT loses no more clusters), and removed. Returns the bytes filled; None when more than
    # _MAX_SCRUB is free. OSError when the filesystem fails.
    path = join(folder, FILL)
    size, _, _, free = os.statvfs(folder or ".")[:4]
    free *= size
    done = None
    _write(path, b"")
    try:
        if free <= _MAX_SCRUB:
            if not exists(join(folder, FILL.upper())):
                for _ in range(size // 16 + 2):
                    _write(path, b"\0")
            done = 0
            zeros = bytes(size)
            with open(path, "wb") as f:
                while done <= free:  # ENOSPC comes first
                    f.write(zeros)
                    done += size
                    if not done % (16 * size):
                        f.flush()
    except OSError as e:
        if e.args[0] != 28:  # ENOSPC: every free block has been written
            raise
    finally:
        os.remove(path)
    return done

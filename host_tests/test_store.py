# dynreg.store on a real littlefs2 filesystem (MicroPython, RAM block device) and on a
# temporary folder (CPython). Power cuts on littlefs2 and FAT: test_mp_power_loss.py.
import json

from support import scratch_dir, write, read, listdir, exact
from dynreg import gateway, store, ConfigError, StorageError

PSK = "lDZ6Uqt+I9E0wW7rvDUs7Q=="
SECRET = "hzvf5LF9S0isvBhDSauWMaIk"
SDK_KEY_INFO = ('{"auth_mode":"KEY","productId":"S3EUVBRJLB","productSecret":"%s","deviceName":"device_1234",\n'
                ' "key_deviceinfo":{"deviceSecret":"YOUR_IOT_PSK"}}' % SECRET)
SDK_CERT_INFO = json.dumps({
    "auth_mode": "CERT", "productId": "V5YXNNUIF4", "deviceName": "dev02221", "productSecret": SECRET,
    "cert_deviceinfo": {"devCertFile": "YOUR_DEVICE_CERT_FILE_NAME",
                        "devPrivateKeyFile": "YOUR_DEVICE_PRIVATE_KEY_FILE_NAME"},
    "subDev": {"subdev_num": 1, "subdev_list": [{"sub_productId": "WPDA0S6S08", "sub_devName": "dev001"}]},
    "region": "china"})
PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"


def _info(text, name="device_info.json"):
    folder = scratch_dir()
    path = folder + "/" + name
    write(path, text)
    return folder, path


def _own(**fields):
    doc = {"dynreg": 1, "cloud": "tencent", "product_id": "ASJ3GXJXGX", "product_secret": SECRET,
           "device_name": "xyz", "register_url": "https://localhost:8443", "ca": "ca.der"}
    doc.update(fields)
    return json.dumps(doc)


def test_sdk_key_info_placeholder_needs_registration():
    _, path = _info(SDK_KEY_INFO)
    info = store.load(path)
    assert info.cloud == "tencent" and info.product == "S3EUVBRJLB" and info.device_name == "device_1234"
    assert info.product_secret == SECRET and info.auth == "key" and info.sdk_format
    assert info.needs_registration


def test_empty_or_missing_secret_needs_registration():
    for key_info in ('{"deviceSecret":""}', "{}", '""'):
        _, path = _info(SDK_KEY_INFO.replace('{"deviceSecret":"YOUR_IOT_PSK"}', key_info))
        assert store.load(path).needs_registration
    for credential in ({}, {"psk": ""}, {"psk": "YOUR_IOT_PSK"}, {"psk": None}):
        _, path = _info(_own(credential=credential))
        assert store.load(path).needs_registration


def test_sdk_key_save_keeps_every_other_field():
    folder, path = _info(SDK_KEY_INFO)
    info = store.load(path)
    info.save_credential({"psk": PSK})
    doc = json.loads(read(path))
    expected = json.loads(SDK_KEY_INFO)
    expected["key_deviceinfo"]["deviceSecret"] = PSK
    assert doc == expected
    again = store.load(path)
    assert not again.needs_registration and again.credential == {"psk": PSK}
    assert listdir(folder) == ["device_info.json"]  # no temporary file left


def test_sdk_cert_save_writes_files_then_info():
    folder, path = _info(SDK_CERT_INFO)
    info = store.load(path)
    assert info.auth == "cert" and info.needs_registration
    info.save_credential({"cert": PEM_CERT, "key": PEM_KEY})
    doc = json.loads(read(path))
    assert doc["cert_deviceinfo"] == {"devCertFile": "dev02221_cert.crt", "devPrivateKeyFile": "dev02221_private.key"}
    assert doc["subDev"] == json.loads(SDK_CERT_INFO)["subDev"] and doc["region"] == "china"
    assert read(folder + "/dev02221_cert.crt") == PEM_CERT
    assert read(folder + "/dev02221_private.key") == PEM_KEY
    again = store.load(path)
    assert not again.needs_registration
    assert again.read_credential_file("cert_file") == PEM_CERT.encode()
    assert listdir(folder) == ["dev02221_cert.crt", "dev02221_private.key", "device_info.json"]


def test_cert_named_but_file_missing_needs_registration():
    folder, path = _info(SDK_CERT_INFO.replace("YOUR_DEVICE_CERT_FILE_NAME", "c.crt")
                         .replace("YOUR_DEVICE_PRIVATE_KEY_FILE_NAME", "k.key"))
    write(folder + "/c.crt", PEM_CERT)
    assert store.load(path).needs_registration  # the key file is missing
    write(folder + "/k.key", PEM_KEY)
    assert store.load(path).credential == {"cert_file": "c.crt", "key_file": "k.key"}


def test_own_format_round_trip_for_every_credential_kind():
    cases = [
        ({"cloud": "tencent"}, {"psk": PSK}),
        ({"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "https"}, {"device_secret": "8d1f0cdab49dd229cf3b75aaaaaaaaaa"}),
        ({"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "mqtt"}, {"device_secret": "8d1f0cdab49dd229cf3b75aaaaaaaaaa"}),
        ({"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "regnwl"}, {"client_id": "c1|x", "device_token": "tok"}),
    ]
    for fields, credential in cases:
        folder, path = _info(_own(**fields))
        info = store.load(path)
        assert info.needs_registration and info.cloud == fields["cloud"]
        info.save_credential(credential)
        again = store.load(path)
        assert again.credential == credential
        doc = json.loads(read(path))
        assert doc["credential"] == credential and doc["register_url"] == "https://localhost:8443"
        assert doc["ca"] == "ca.der" and doc["dynreg"] == 1


def test_own_format_cert():
    folder, path = _info(_own(auth="cert"))
    store.load(path).save_credential({"cert": PEM_CERT, "key": PEM_KEY})
    info = store.load(path)
    assert info.credential == {"cert_file": "xyz_cert.crt", "key_file": "xyz_private.key"}
    assert info.read_credential_file("key_file") == PEM_KEY.encode()


def test_device_name_given_at_run_time_is_kept():
    _, path = _info(_own(device_name=None, device_name_from="unique_id"))
    info = store.load(path)
    assert info.device_name is None and info.device_name_from == "unique_id"
    info.device_name = "3c71bf0a1b2c"
    info.save_credential({"psk": PSK})
    assert json.loads(read(path))["device_name"] == "3c71bf0a1b2c"


def test_incomplete_credential_is_refused_and_nothing_written():
    _, path = _info(_own())
    before = read(path)
    info = store.load(path)
    exact(StorageError, info.save_credential, {"psk": ""})
    exact(StorageError, info.save_credential, {"device_secret": "x"})
    assert read(path) == before and info.needs_registration


def test_stale_temporary_file_is_ignored_and_replaced():
    folder, path = _info(SDK_KEY_INFO)
    write(path + ".tmp", '{"half wri')  # left by a power cut during an earlier save
    info = store.load(path)
    assert info.needs_registration
    info.save_credential({"psk": PSK})
    assert store.load(path).credential == {"psk": PSK}
    assert listdir(folder) == ["device_info.json"]


def test_complete_tmp_stands_in_for_a_missing_info_and_is_put_in_place():
    text = _own(credential={"psk": PSK})
    folder, _ = _info(text, name="info.json.tmp")  # a cut before the info itself was written
    info = store.load(folder + "/info.json")
    assert info.credential == {"psk": PSK} and info.path == folder + "/info.json"
    assert listdir(folder) == ["info.json"] and read(folder + "/info.json") == text


def test_complete_tmp_stands_in_for_an_info_cut_while_rewritten():
    text = _own(credential={"psk": PSK})
    for torn in ("", text[:40]):  # FAT leaves it empty; anything else unusable counts too
        folder, path = _info(torn)
        write(path + ".tmp", text)
        assert store.load(path).credential == {"psk": PSK}
        assert listdir(folder) == ["device_info.json"] and read(path) == text


def _write_pieces(path, pieces):
    with open(path, "w") as f:
        for piece in pieces:
            f.write(piece)


def _holds(path, pieces):
    # The file is the pieces, read a piece at a time: the test itself needs no block of heap
    # the size of the file (the 9 KiB case below, on the chip's fragmented heap).
    with open(path) as f:
        return all(f.read(len(piece)) == piece for piece in pieces) and f.read(1) == ""


def test_torn_or_invalid_tmp_is_never_used():
    text = _own(credential={"psk": PSK})
    over_the_limit = ['{"pad":"'] + ["x" * 1000] * 9 + ['"}']
    for tmp in ([text[:-1]], [text[:len(text) // 2]], [""], ["[1]"], ['"%s"' % PSK], over_the_limit):
        folder = scratch_dir()
        _write_pieces(folder + "/info.json.tmp", tmp)
        e = exact(ConfigError, store.load, folder + "/info.json")
        assert str(e) == "cannot read %s/info.json" % folder, str(e)  # as for a missing file
        assert listdir(folder) == ["info.json.tmp"] and _holds(folder + "/info.json.tmp", tmp)
        _, path = _info("{")
        _write_pieces(path + ".tmp", tmp)
        e = exact(ConfigError, store.load, path)
        assert "not valid JSON" in str(e) and read(path) == "{" and PSK not in str(e)


def test_a_complete_tmp_wins_over_an_info_that_parses():
    # write_atomic closes the .tmp whole before it touches the info: a complete .tmp is the
    # newer version, whether the cut came before the info's rewrite or inside it (on FAT, half a
    # sector new and half old can still parse: test_mp_power_loss.py found one that lost "dynreg").
    folder, path = _info(_own(credential={"psk": PSK}))
    newer = _own(credential={"psk": "other-" + PSK})
    write(path + ".tmp", newer)
    assert store.load(path).credential == {"psk": "other-" + PSK}
    assert listdir(folder) == ["device_info.json"] and read(path) == newer


def test_backup_file_is_not_read():
    folder, _ = _info(_own(credential={"psk": PSK}), name="info.json.bak")
    exact(ConfigError, store.load, folder + "/info.json")


def test_write_atomic_leaves_one_file():
    folder = scratch_dir()
    store.write_atomic(folder + "/a.json", b'{"n": 1}')
    store.write_atomic(folder + "/a.json", b'{"n": 2}')
    write(folder + "/a.json.tmp", "torn")
    store.write_atomic(folder + "/a.json", b'{"n": 3}')
    assert listdir(folder) == ["a.json"] and store.read_json(folder + "/a.json") == {"n": 3}


def test_gateway_subdevices_file_missing_or_only_a_torn_tmp_is_empty():
    folder = scratch_dir()
    path = folder + "/" + gateway.SUBDEVICES_FILE
    assert gateway.load(path) == {}
    write(path + ".tmp", '{"dynreg_subdevices": 1, "devices": {"a1Sub/s1": {"device_se')
    assert gateway.load(path) == {}
    write(path + ".tmp", '{"dynreg_subdevices": 1, "devices": {"a1Sub/s1": {"device_secret": "s"}}}')
    assert gateway.load(path) == {"a1Sub/s1": {"device_secret": "s"}}
    assert listdir(folder) == [gateway.SUBDEVICES_FILE]
    write(path, "{")
    exact(ConfigError, gateway.load, path)


def test_gateway_subdevices_file_holds_as_many_as_a_gateway_may_have():
    # As many sub-devices as gateway.MAX_SUBDEVICES, with ProductKey and DeviceName as long as
    # Alibaba allows (32 characters each), a 32-character secret and a 26-character iotId as
    # the cloud issues them: written as register_subdevices writes it, read back whole.
    folder = scratch_dir()
    path = folder + "/" + gateway.SUBDEVICES_FILE
    devices = {}
    for n in range(gateway.MAX_SUBDEVICES):
        name = "k" * 28 + "%04d" % n
        devices["a1" + "P" * 30 + "/" + name] = {"device_secret": "s" * 28 + "%04d" % n, "iot_id": "i" * 26,
                                                  "topo": False}
    gateway._save(path, devices)
    assert len(read(path)) > 2 * 8192
    loaded = gateway.load(path)
    assert len(loaded) == gateway.MAX_SUBDEVICES and loaded == devices


def test_empty_certificate_file_needs_registration():
    folder, path = _info(_own(auth="cert", credential={"cert_file": "c.crt", "key_file": "k.key"}))
    write(folder + "/c.crt", PEM_CERT)
    write(folder + "/k.key", "")  # a cut while it was written
    assert store.load(path).needs_registration


def test_cert_save_replaces_an_old_pair_whole():
    folder, path = _info(_own(auth="cert"))
    write(folder + "/xyz_cert.crt", "old certificate")
    store.load(path).save_credential({"cert": PEM_CERT, "key": PEM_KEY})
    assert read(folder + "/xyz_cert.crt") == PEM_CERT and read(folder + "/xyz_private.key") == PEM_KEY
    assert listdir(folder) == ["device_info.json", "xyz_cert.crt", "xyz_private.key"]


class _Writes:
    # Counts store.write_atomic calls (module globals are looked up at call time, on both runtimes).
    def __enter__(self):
        self.calls = []
        self.real = store.write_atomic
        store.write_atomic = lambda path, data, *mode: (self.calls.append(path), self.real(path, data, *mode))
        return self

    def __exit__(self, *exc):
        store.write_atomic = self.real


def test_erase_product_secret_sdk_format_empties_the_field_and_keeps_the_rest():
    text = SDK_KEY_INFO.replace("YOUR_IOT_PSK", PSK)
    folder, path = _info(text)
    info = store.load(path)
    assert info.product_secret == SECRET
    with _Writes() as writes:
        assert info.erase_product_secret() is True
        assert info.product_secret is None
        assert info.erase_product_secret() is False  # already gone: nothing written
    assert writes.calls == [path]
    expected = json.loads(text)
    expected["productSecret"] = ""
    expected["logged_in"] = True  # the login recorded in the same write (the SDK ignores the key)
    assert json.loads(read(path)) == expected and SECRET not in read(path)
    again = store.load(path)
    assert again.product_secret is None and again.credential == {"psk": PSK} and not again.needs_registration
    assert again.logged_in is True and again.unscrubbed is True  # the scrub owed to the login (mqtt)
    with _Writes() as writes:
        assert again.erase_product_secret() is False
    assert writes.calls == [] and listdir(folder) == ["device_info.json", store.FILL]


def test_erase_product_secret_own_format_removes_the_field():
    for fields, credential in (({}, {"psk": PSK}),
                               ({"cloud": "aliyun", "product_key": "a1IoK3f7xyz", "api": "regnwl"},
                                {"client_id": "c1|x", "device_token": "tok"})):
        text = _own(credential=credential, **fields)
        _, path = _info(text)
        assert store.load(path).erase_product_secret() is True
        expected = json.loads(text)
        del expected["product_secret"]
        expected["logged_in"] = True
        assert json.loads(read(path)) == expected
        info = store.load(path)
        assert info.product_secret is None and info.credential == credential and info.logged_in is True


def test_erase_product_secret_cert_device():
    folder, path = _info(_own(auth="cert"))
    store.load(path).save_credential({"cert": PEM_CERT, "key": PEM_KEY})
    assert store.load(path).erase_product_secret() is True
    info = store.load(path)
    assert info.product_secret is None and info.read_credential_file("cert_file") == PEM_CERT.encode()


def test_erase_product_secret_needs_a_credential_and_honours_keep():
    cases = [
        (_own(), "no credential"),
        (_own(credential={"psk": "YOUR_IOT_PSK"}), "placeholder"),
        (_own(auth="cert", credential={"cert_file": "c.crt", "key_file": "k.key"}), "files missing"),
        (_own(credential={"psk": PSK}, keep_product_secret=True, logged_in=True), "keep, login recorded"),
    ]
    for text, why in cases:
        _, path = _info(text)
        info = store.load(path)
        with _Writes() as writes:
            assert info.erase_product_secret() is False, why
        assert writes.calls == [] and read(path) == text and info.product_secret == SECRET, why
    _, path = _info(_own(credential={"psk": PSK}, keep_product_secret=False))
    assert store.load(path).erase_product_secret() is True


def test_with_keep_product_secret_the_first_login_is_recorded_and_the_secret_kept():
    for text in (_own(credential={"psk": PSK}, keep_product_secret=True),
                 SDK_KEY_INFO.replace("YOUR_IOT_PSK", PSK)[:-1] + ',"keep_product_secret":true}'):
        _, path = _info(text)
        info = store.load(path)
        assert info.logged_in is False
        with _Writes() as writes:
            assert info.erase_product_secret() is False  # the secret stays
            assert info.erase_product_secret() is False
        assert writes.calls == [path]  # one write, at the first login; none after
        expected = json.loads(text)
        expected["logged_in"] = True
        assert json.loads(read(path)) == expected
        again = store.load(path)
        assert again.logged_in is True and again.product_secret == SECRET
        with _Writes() as writes:
            assert again.erase_product_secret() is False
        assert writes.calls == []


def test_a_new_credential_has_not_logged_in():
    # A credential saved over one that had logged in (a registration after the console reset
    # the device) starts unrecorded: its own first login is what counts.
    for text in (_own(credential={"psk": ""}, keep_product_secret=True, logged_in=True),
                 SDK_KEY_INFO[:-1] + ',"logged_in":true}'):
        _, path = _info(text)
        info = store.load(path)
        assert info.logged_in is True and info.needs_registration
        info.save_credential({"psk": PSK})
        assert info.logged_in is False and "logged_in" not in json.loads(read(path))
        assert store.load(path).logged_in is False


def test_the_info_flags_must_be_bools():
    for name in ("keep_product_secret", "plain_http", "logged_in"):
        for value in ("yes", 1, "true"):
            _, path = _info(_own(credential={"psk": PSK}, **{name: value}))
            e = exact(ConfigError, store.load, path)
            assert name + " must be true or false" in str(e), str(e)
        _, path = _info(_own(credential={"psk": PSK}))
        assert getattr(store.load(path), name) is False  # absent: false


def test_keep_product_secret_must_be_a_bool():
    for value in ("yes", 1, None, "false"):
        _, path = _info(_own(credential={"psk": PSK}, keep_product_secret=value))
        e = exact(ConfigError, store.load, path)
        assert "keep_product_secret" in str(e)


def test_erase_product_secret_failure_is_storage_error_and_changes_nothing():
    text = _own(credential={"psk": PSK})
    _, path = _info(text)
    info = store.load(path)
    info.path = path + "/no/such/dir/info.json"
    e = exact(StorageError, info.erase_product_secret)
    assert info.product_secret == SECRET and info.doc["product_secret"] == SECRET and read(path) == text
    assert info.logged_in is False and "logged_in" not in info.doc
    assert SECRET not in str(e)


def test_without_product_secret_a_credential_still_loads():
    for text in (_own(product_secret=None, credential={"psk": PSK}), _own(product_secret="", credential={"psk": PSK}),
                 SDK_KEY_INFO.replace(SECRET, "").replace("YOUR_IOT_PSK", PSK)):
        _, path = _info(text.replace('"product_secret": null, ', ""))
        info = store.load(path)
        assert info.product_secret is None and info.credential == {"psk": PSK} and not info.needs_registration


def test_neither_credential_nor_product_secret_cannot_register():
    for text, field in ((_own(product_secret=None), "product_secret"), (_own(product_secret=""), "product_secret"),
                        (SDK_KEY_INFO.replace(SECRET, ""), "productSecret"),
                        (SDK_KEY_INFO.replace('"productSecret":"%s",' % SECRET, ""), "productSecret")):
        _, path = _info(text)
        info = store.load(path)
        assert info.needs_registration and info.product_secret is None
        e = exact(ConfigError, info.check_can_register)
        assert field in str(e) and "register" in str(e), str(e)
    _, path = _info(_own())
    assert store.load(path).check_can_register() is None


def test_config_errors_name_the_field_never_the_secret():
    cases = [
        (SDK_KEY_INFO.replace('"productId":"S3EUVBRJLB",', ""), "productId"),
        (SDK_KEY_INFO.replace('"auth_mode":"KEY"', '"auth_mode":"PSK"'), "auth_mode"),
        (_own(cloud="gcp"), "cloud"),  # no such cloud here (Google retired IoT Core)
        (_own(product_id=None), "product_id"),
        (_own(product_secret=7), "product_secret"),
        (_own(credential=[PSK]), "credential"),
        (_own(device_name=5), "device_name"),
        (_own(cloud="aliyun"), "product_key"),
        (_own(api="soap"), "api"),
    ]
    for text, field in cases:
        _, path = _info(text)
        e = exact(ConfigError, store.load, path)
        assert field in str(e), (field, str(e))
        assert SECRET not in str(e) and PSK not in str(e)


def test_corrupt_missing_or_huge_info_is_config_error():
    folder = scratch_dir()
    exact(ConfigError, store.load, folder + "/absent.json")
    # Nesting 1000 deep within the size limit: the 9 KiB case below is the one over it (a
    # longer string here would need a block of heap the chip's fragmented heap may not have).
    for text in ("", "{", '{"dynreg":1,', "[]", "null", "\xff", '{"a":' * 1000):
        _, path = _info(text)
        exact(ConfigError, store.load, path)
    _, path = _info('{"pad":"')
    with open(path, "ab") as f:  # 9 KiB in pieces: the test itself needs no 9 KiB block of heap
        for _ in range(9):
            f.write(b"x" * 1000)
        f.write(b'"}')
    e = exact(ConfigError, store.load, path)
    assert "larger" in str(e)


def test_write_atomic_failure_is_storage_error():
    folder = scratch_dir()
    e = exact(StorageError, store.write_atomic, folder + "/no/such/dir/info.json", b"{}")
    assert "info.json" in str(e)

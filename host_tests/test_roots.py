# The root CA certificates built into the library, on every runtime (CPython, the unix port,
# the Pico W image): each endpoint's bundle holds the roots that shared/spec/cloud-roots/
# README.md maps to it, by the SHA-256 fingerprints its table prints (written out here, never
# taken from the library), and mbedTLS takes every bundle (MicroPython).
import hashlib
from binascii import hexlify

from support import IS_MICROPYTHON
import dynreg
from dynreg import aliyun, azure, store, tencent

FINGERPRINTS = {  # SHA-256 of the DER, from the README's table "The files"
    "tencent-iothub-root": "3b1fa1e1149e3f3bd3722730dbef9eb72ec4b9fd95553063a9c60ba62778e740",
    "digicert-global-root-ca": "4348a0e9444c78cb265e058d5e8944b4d84f9662bd26db257f8934a443c70161",
    "digicert-global-root-g2": "cb3ccbb76031e5e0138f8dd39a23f9de47ffc35e43c1144cea27d46a5ab1cb5f",
    "aliyun-iot-root-s1": "7ca438a3976b5242d231f861499822da855831382735836b361e7e9715661676",
    "globalsign-root-r1": "ebd41040e4bb3ec742c9e381d31ef2a41a48b6685c96e7cef3c1df6cd4331c99",
    "globalsign-root-r6": "2cabeafe37d06ca22aba7391c0033d25982952c453647349763a3ab5ad6ccf69",
    "globalsign-root-r46": "4fa3126d8d3a11d1c4855a4f807cbad6cf919d3a5a88b03bea2c6372d93c40c9",
    "globalsign-root-e46": "cbb9c44d84b8043e1050ea31a69f514955d7bfd2e2c6b49301019ad61d9f5058",
    "microsoft-rsa-root-2017": "c741f70f4b2a8d88bf2e71c14122ef53ef10eba0cfa5e64cfa20f418853073e0",
}
DIGICERT = ["digicert-global-root-ca", "digicert-global-root-g2"]
GLOBALSIGN = ["globalsign-root-r1", "globalsign-root-r6", "globalsign-root-r46", "globalsign-root-e46"]


def names(bundle):
    by_fingerprint = dict((v, k) for k, v in FINGERPRINTS.items())
    assert type(bundle) is tuple and bundle
    return [by_fingerprint.get(hexlify(hashlib.sha256(der).digest()).decode(), "unknown") for der in bundle]


def info(**doc):
    base = {"dynreg": 1, "product_secret": "p" * 16, "device_name": "dev-0001", "credential": {}}
    base.update(doc)
    return store.Info("device_info.json", base)


def test_tencent_gateway_legacy_gateway_and_broker():
    current = info(cloud="tencent", product_id="ASJ3GXJXGX")
    legacy = info(cloud="tencent", product_id="ASJ3GXJXGX", api="legacy")
    assert names(tencent.roots(current)) == DIGICERT
    assert names(tencent.roots(legacy)) == ["tencent-iothub-root"] + DIGICERT
    assert names(tencent.roots(current, 8883)) == ["tencent-iothub-root"]


def test_alibaba_iot_auth_and_its_brokers_by_port():
    device = info(cloud="aliyun", product_key="a1IoK3f7xyz")
    assert names(aliyun.roots(device)) == GLOBALSIGN
    assert names(aliyun.roots(device, 8883)) == ["aliyun-iot-root-s1"]
    assert names(aliyun.roots(device, 1883)) == GLOBALSIGN
    assert names(aliyun.roots(device, 443)) == GLOBALSIGN


def test_azure_dps_and_hubs():
    device = info(cloud="azure", id_scope="0ne00000A0A", group_key="a2V5")
    assert names(azure.roots(device)) == ["digicert-global-root-g2", "microsoft-rsa-root-2017"]
    assert names(azure.roots(device, 8883)) == ["digicert-global-root-g2", "microsoft-rsa-root-2017"]


def test_an_info_without_a_ca_leaves_the_choice_to_the_built_in_roots():
    assert dynreg.load_ca(info(cloud="tencent", product_id="ASJ3GXJXGX")) is None
    assert dynreg.load_ca(info(cloud="tencent", product_id="ASJ3GXJXGX"), None, "mqtt_ca") is None


def test_mbedtls_takes_every_bundle():
    if not IS_MICROPYTHON:
        return  # no mbedTLS on CPython: the loading is MicroPython's own
    from dynreg import net

    device = info(cloud="tencent", product_id="ASJ3GXJXGX", api="legacy")
    ali = info(cloud="aliyun", product_key="a1IoK3f7xyz")
    az = info(cloud="azure", id_scope="0ne00000A0A", group_key="a2V5")
    for bundle in (tencent.roots(device), tencent.roots(device, 8883), aliyun.roots(ali), aliyun.roots(ali, 8883),
                   azure.roots(az)):
        assert net.tls_context(bundle) is not None

# Alibaba gateway sub-devices over the gateway's connected MQTT client: thing.sub.register,
# every returned secret persisted atomically before anything acts on it, then thing.topo.add.
# Sub-devices that already hold a secret are never registered again (every call issues a
# new secret, so a lost one would lock the sub-device out).
import json
from dynreg import ConfigError, aliyun, clock, codec, mqtt, store

SUBDEVICES_FILE = "subdevices.json"


def load(path):
    # {"pk/dn": {"device_secret": .., "iot_id": .., "topo": bool}}; missing file -> {} (also
    # when only a torn .tmp of the first save is there: read_json never uses it)
    try:
        devices = store.read_json(path).get("devices")
    except ConfigError:
        if store.exists(path):
            raise
        return {}
    if not isinstance(devices, dict):
        raise ConfigError("%s: devices must be an object" % path)
    return devices


def _key(product_key, device_name):
    return product_key + "/" + device_name


def _save(path, devices):
    store.write_atomic(path, json.dumps({"dynreg_subdevices": 1, "devices": devices}).encode())


def _request(client, topic, reply_topic, payload, timeout_ms):
    wanted = reply_topic.encode()
    return mqtt.request(client, topic.encode(), payload, lambda t, message: message if t == wanted else None,
                        timeout_ms, wanted)


def register_subdevices(client, gateway_info, subdevices, path=None, timeout_ms=10000, method="hmacsha256"):
    # subdevices: [(product_key, device_name), ...]. Returns (registered, errors):
    # registered: [(pk, dn)] holding a secret now, errors: {(pk, dn): (code, message)}.
    path = path or gateway_info.file(SUBDEVICES_FILE)
    devices = load(path)
    wanted = [(pk, dn) for pk, dn in subdevices]
    new = [key for key in wanted if _key(*key) not in devices]
    errors = {}
    if new:
        message_id = codec.random_int()
        topic, reply_topic, payload = aliyun.sub_register_message(gateway_info.product, gateway_info.device_name,
                                                                  new, message_id)
        reply = _request(client, topic, reply_topic, payload, timeout_ms)
        secrets, errors = aliyun.parse_sub_register_reply(reply, message_id, new)
        for (pk, dn), secret in secrets.items():
            devices[_key(pk, dn)] = {"device_secret": secret["deviceSecret"], "iot_id": secret["iotId"], "topo": False}
        if secrets:
            _save(path, devices)  # before topo.add or anything else uses them
    pending = [key for key in wanted if key not in errors and not devices[_key(*key)].get("topo")]
    if pending:
        message_id = codec.random_int()
        topic, reply_topic, payload = aliyun.topo_add_message(
            gateway_info.product, gateway_info.device_name,
            [(pk, dn, devices[_key(pk, dn)]["device_secret"]) for pk, dn in pending],
            clock.unix_time() * 1000, message_id, method)
        aliyun.parse_topo_add_reply(_request(client, topic, reply_topic, payload, timeout_ms), message_id)
        for key in pending:
            devices[_key(*key)]["topo"] = True
        _save(path, devices)
    return [key for key in wanted if key not in errors], errors

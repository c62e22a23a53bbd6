# Alibaba gateway sub-devices over the gateway's connected MQTT client: thing.sub.register,
# every returned secret persisted atomically before anything acts on it, then thing.topo.add.
# Sub-devices that already hold a secret are never registered again (every call issues a
# new secret, so a lost one would lock the sub-device out).
import json
from micropython import const
from dynreg import ConfigError, RejectedError, aliyun, clock, codec, mqtt, store

SUBDEVICES_FILE = "subdevices.json"
MAX_SUBDEVICES = const(100)  # per gateway (subdevices.json): more is refused before any request
BATCH = const(10)  # sub-devices per request: a sub/register reply stays near 2 KB, far below max_packet
_MAX_FILE = const(24576)  # bytes: MAX_SUBDEVICES entries with the longest names, and room to spare


def load(path):
    # {"pk/dn": {"device_secret": .., "iot_id": .., "topo": bool}}; missing file -> {} (also
    # when only a torn .tmp of the first save is there: read_json never uses it)
    try:
        devices = store.read_json(path, _MAX_FILE).get("devices")
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


def _request(client, message, timeout_ms):
    # message: (topic, reply topic, payload), as dynreg.aliyun makes them
    topic, reply_topic, payload = message
    wanted = reply_topic.encode()
    return mqtt.request(client, topic.encode(), payload, lambda t, message: message if t == wanted else None,
                        timeout_ms, wanted)


def register_subdevices(client, gateway_info, subdevices, path=None, timeout_ms=10000, method="hmacsha256"):
    # subdevices: [(product_key, device_name), ...]. Returns (registered, errors):
    # registered: [(pk, dn)] holding a secret now, errors: {(pk, dn): (code, message)}, the
    # cloud's refusals, each sub-device's own. Requests of BATCH sub-devices at most, each
    # one's secrets on flash before the next.
    path = path or gateway_info.file(SUBDEVICES_FILE)
    devices = load(path)
    wanted, new = [], []  # new: those without a secret yet
    for pk, dn in subdevices:
        wanted.append((pk, dn))
        if _key(pk, dn) not in devices:
            new.append((pk, dn))
    count = len(devices) + len(new)
    if count > MAX_SUBDEVICES:
        raise ConfigError("%d sub-devices: a gateway holds at most %d" % (count, MAX_SUBDEVICES))
    gateway = gateway_info.product, gateway_info.device_name

    def register(batch):
        message_id = codec.random_int()
        secrets, refused = aliyun.parse_sub_register_reply(
            _request(client, aliyun.sub_register_message(*gateway, batch, message_id), timeout_ms), message_id, batch)
        for (pk, dn), secret in secrets.items():
            devices[_key(pk, dn)] = {"device_secret": secret["deviceSecret"], "iot_id": secret["iotId"], "topo": False}
        if secrets:
            _save(path, devices)  # before topo.add or anything else uses them
        return refused

    def add(batch):
        message_id = codec.random_int()
        message = aliyun.topo_add_message(*gateway, [(pk, dn, devices[_key(pk, dn)]["device_secret"])
                                                     for pk, dn in batch], clock.unix_time() * 1000, message_id, method)
        try:
            aliyun.parse_topo_add_reply(_request(client, message, timeout_ms), message_id)
        except RejectedError as e:
            return dict.fromkeys(batch, (e.code, e.message))
        for key in batch:
            devices[_key(*key)]["topo"] = True
        _save(path, devices)
        return {}

    errors = {}
    _batches(new, register, errors)
    _batches([key for key in wanted if key not in errors and not devices[_key(*key)].get("topo")], add, errors)
    return [key for key in wanted if key not in errors], errors


def _batches(keys, send, errors):
    # send(batch) -> its refusals. Alibaba answers a request with one code: the sub-devices of
    # a refused batch are asked again one by one, so that one's refusal holds back no other.
    for i in range(0, len(keys), BATCH):
        batch = keys[i:i + BATCH]
        refused = send(batch)
        if len(batch) > 1:
            again, refused = refused, {}
            for key in batch:
                if key in again:
                    refused.update(send([key]))
        errors.update(refused)

# One Azure DPS registration attempt, over MQTT with TLS (DPS has no plain port): log in as
# the registration id with a SAS token of the device's key, publish the registration, then
# poll its operation (after the retry-after DPS gives) until DPS names the hub, all within the
# attempt's time. A throttled or failing DPS is a NetworkError the flow retries.
from micropython import const
from dynreg import ConfigError, NetworkError, azure, clock, codec, mqtt, net
from dynreg.config import say

_TOKEN_LIFETIME = const(3600)  # seconds: the vendor SDK's default
_POLL_MS = const(2000)  # between polls when DPS sends no retry-after (the vendor SDK's wait)
_MIN_POLL_MS = const(200)  # a retry-after of 0 is no reason to ask again at once


def device_key(info):
    # A device provisioned before asks again with its stored key (the group key is gone by
    # then); a new one with the key derived from the group key.
    if info.credential:
        return info.credential["device_key"]
    return azure.derive_device_key(info.product_secret, info.device_name)


def endpoint(info):
    if info.register_url:
        scheme, host, port, _ = codec.split_url(info.register_url)
        if scheme != "mqtts":
            raise ConfigError("Azure DPS runs over MQTT with TLS only: use an mqtts:// register_url")
        return host, port
    return azure.DPS_HOST, 8883


def register(info, ca, opts, attempt, timeout_ms):
    host, port = endpoint(info)
    key = device_key(info)
    say(opts, "registering %s with Azure DPS %s (attempt %d of %d)" % (info.device_name, host, attempt, opts["attempts"]))
    client_id, user, password = azure.dps_login(info.product, info.device_name, key,
                                                clock.unix_time() + _TOKEN_LIFETIME)
    deadline = net.deadline_in(timeout_ms)  # the connect and every poll together
    c = mqtt.open_client(client_id, host, port, user, password, net.tls_context(ca), 60, timeout_ms)
    try:
        rid = codec.random_int(16)
        topic, payload = azure.register_message(info.device_name, rid)
        subscribe = azure.RESPONSES.encode()
        while True:
            status, retry_after, body = mqtt.request(c, topic.encode(), payload, _answer(rid),
                                                     max(1, net.left(deadline)), subscribe)
            if status == 429 or status >= 500:
                e = NetworkError("DPS answered %d" % status)
                e.retry_after_ms = retry_after * 1000 if retry_after is not None else None
                raise e
            state, value = azure.parse_answer(status, body)
            if state == "assigned":
                value["device_key"] = key
                return value
            wait = max(_MIN_POLL_MS, retry_after * 1000) if retry_after is not None else _POLL_MS
            if net.left(deadline) <= wait:
                raise NetworkError("DPS still assigning after %d ms" % timeout_ms)
            clock.sleep_ms(wait)
            rid += 1
            topic, payload = azure.status_message(value, rid)
            subscribe = None
    finally:
        mqtt.close(c)


def _answer(rid):
    wanted = str(rid)

    def take(topic, message):
        parsed = azure.response_topic(topic)
        if parsed and parsed[1] == wanted:
            return parsed[0], parsed[2], message
        return None

    return take

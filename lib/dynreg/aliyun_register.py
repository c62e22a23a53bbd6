# One Alibaba registration attempt: over HTTPS, or over MQTT (TLS only) where the result
# arrives as a PUBLISH on /ext/register (pre-registered) or /ext/regnwl (pre-registration-free).
from dynreg import ConfigError, NetworkError, ProtocolError, aliyun, codec, http, mqtt, net
from dynreg.config import say


def register(info, ca, opts, attempt, timeout_ms):
    say(opts, "registering %s/%s with Alibaba (%s, attempt %d of %d)"
        % (info.product, info.device_name, info.api, attempt, opts["attempts"]))
    if info.api == "https":
        return _over_https(info, ca, timeout_ms)
    return _over_mqtt(info, ca, timeout_ms)


def _over_https(info, ca, timeout_ms):
    url, headers, body = aliyun.register_request(info.product, info.device_name, info.product_secret,
                                                 codec.random_int(), info.algorithm,
                                                 info.region or aliyun.DEFAULT_REGION, info.register_url)
    status, answer, retry_after = http.post(url, headers, body, ca, timeout_ms)
    http.check_status(status, retry_after)
    return {"device_secret": http.parsed(status, aliyun.parse_register_response, answer)["deviceSecret"]}


def _over_mqtt(info, ca, timeout_ms):
    host, port, tls = mqtt.endpoint(info)
    if not tls:
        raise ConfigError("Alibaba MQTT registration runs over TLS only: use an mqtts:// mqtt_url")
    mode = "regnwl" if info.api == "regnwl" else "register"
    client_id, user, password = aliyun.mqtt_register_login(info.product, info.device_name, info.product_secret,
                                                           codec.random_int(), info.algorithm, mode,
                                                           info.instance_id)
    received = []
    deadline = net.deadline_in(timeout_ms)  # the connect and the result together
    c = mqtt.open_client(client_id, host, port, user, password, net.tls_context(ca), 60, timeout_ms,
                         lambda topic, message: received.append((topic, message)))
    try:
        if not mqtt.wait_for(c, lambda: received, max(1, net.left(deadline))):
            raise NetworkError("no registration result on /ext/%s within %d ms" % (mode, timeout_ms))
    finally:
        mqtt.close(c)  # the device leaves by itself; one TLS connection at a time
    topic, message = received[0]
    if topic != ("/ext/" + mode).encode():
        raise ProtocolError("registration result on an unexpected topic")
    result = aliyun.parse_register_message(message, mode)
    if mode == "regnwl":
        return {"client_id": result["clientId"], "device_token": result["deviceToken"]}
    return {"device_secret": result["deviceSecret"]}

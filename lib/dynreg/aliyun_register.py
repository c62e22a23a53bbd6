# One Alibaba registration attempt: over HTTPS, or over MQTT (TLS only) where the result
# arrives as a PUBLISH on /ext/register (pre-registered) or /ext/regnwl (pre-registration-free).
from dynreg import ConfigError, NetworkError, ProtocolError, aliyun, http, mqtt
from dynreg.flow import check_status, random_int, say


def register(info, ca, opts, attempt):
    say(opts, "registering %s/%s with Alibaba (%s, attempt %d of %d)"
        % (info.product, info.device_name, info.api, attempt, opts["attempts"]))
    if info.api == "https":
        return _over_https(info, ca, opts)
    return _over_mqtt(info, ca, opts)


def _over_https(info, ca, opts):
    url, headers, body = aliyun.register_request(info.product, info.device_name, info.product_secret,
                                                 random_int(), info.algorithm, info.region or aliyun.DEFAULT_REGION,
                                                 info.register_url)
    status, answer, retry_after = http.post(url, headers, body, ca, opts["timeout_ms"])
    check_status(status, retry_after)
    return {"device_secret": aliyun.parse_register_response(answer)["deviceSecret"]}


def _over_mqtt(info, ca, opts):
    host, port, tls = mqtt.endpoint(info)
    if not tls:
        raise ConfigError("Alibaba MQTT registration runs over TLS only: use an mqtts:// mqtt_url")
    mode = "regnwl" if info.api == "regnwl" else "register"
    client_id, user, password = aliyun.mqtt_register_login(info.product, info.device_name, info.product_secret,
                                                           random_int(), info.algorithm, mode, info.instance_id)
    received = []
    c = mqtt.open_client(client_id, host, port, user, password, http.tls_context(ca), 60, opts["timeout_ms"],
                         lambda topic, message: received.append((topic, message)))
    try:
        if not mqtt.wait_for(c, lambda: received, opts["timeout_ms"]):
            raise NetworkError("no registration result on /ext/%s within %d ms" % (mode, opts["timeout_ms"]))
    finally:
        mqtt.close(c)  # the device leaves by itself; one TLS connection at a time
    topic, message = received[0]
    if topic != ("/ext/" + mode).encode():
        raise ProtocolError("registration result on an unexpected topic")
    result = aliyun.parse_register_message(message, mode)
    if mode == "regnwl":
        return {"client_id": result["clientId"], "device_token": result["deviceToken"]}
    return {"device_secret": result["deviceSecret"]}

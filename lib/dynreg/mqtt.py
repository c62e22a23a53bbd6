# MQTT connection with the stored credential, on umqtt.simple. A refused CONNECT is a
# RejectedError with the CONNACK code, never a retry loop.
from micropython import const
from dynreg import ConfigError, NetworkError, RejectedError, TLSError, store, clock, codec, http
from dynreg.flow import load_ca, options, say

_LOGIN_LIFETIME = const(86400)  # seconds a Tencent login stays valid
DEFAULTS = {"ca": None, "mqtt_url": None, "keepalive": 60, "timeout_ms": 10000, "log": print}


def connid():
    from os import urandom

    return "".join(codec.ALNUM[b % 62] for b in urandom(5))


def endpoint(info, url=None):
    # (host, port, tls) of the broker: the option, the info's mqtt_url, or the cloud's own.
    url = url or info.mqtt_url
    if url:
        scheme, host, port, _ = http.split_url(url)
        return host, port, scheme == "mqtts"
    if info.cloud == "tencent":
        return info.product + ".iotcloud.tencentdevices.com", 8883, True
    if info.instance_id:
        return info.instance_id + ".mqtt.iothub.aliyuncs.com", 8883, True
    from dynreg.aliyun import DEFAULT_REGION

    return "%s.iot-as-mqtt.%s.aliyuncs.com" % (info.product, info.region or DEFAULT_REGION), 8883, True


def login(info, tls):
    # (client id, username, password) for the credential the device holds.
    if info.cloud == "tencent":
        from dynreg import tencent

        expiry = clock.unix_time() + _LOGIN_LIFETIME
        if info.auth == "cert":
            # The client certificate authenticates; the password is not checked.
            client_id = info.product + info.device_name
            return client_id, "%s;12010126;%s;%d" % (client_id, connid(), expiry), ""
        return tencent.mqtt_login(info.product, info.device_name, info.credential["psk"], connid(), expiry)
    from dynreg import aliyun

    if "device_token" in info.credential:
        return aliyun.regnwl_login(info.credential["client_id"], info.product, info.device_name,
                                   info.credential["device_token"])
    return aliyun.mqtt_login(info.product, info.device_name, info.credential["device_secret"],
                             info.product + "." + info.device_name, clock.unix_time() * 1000,
                             info.algorithm, tls)


class _Tls:
    # The `ssl` object umqtt.simple (1.4 and later) hands its TCP socket to, after its connect:
    # the verifying context, with mbedTLS's refusals turned into TLSError.
    def __init__(self, ctx):
        self.ctx = ctx

    def wrap_socket(self, sock, server_hostname=None):
        http.nodelay(sock)  # umqtt writes CONNECT in small pieces: no Nagle wait between them
        return http.wrap(sock, self.ctx, server_hostname)


def open_client(client_id, host, port, user, password, ctx, keepalive=60, timeout_ms=10000, callback=None):
    # A connected umqtt.simple client. Needs umqtt.simple 1.5 or later (an `ssl` object and
    # `connect(timeout=)`): v1.28.0 freezes 1.7.0, mip installs 1.8.0.
    from umqtt.simple import MQTTClient

    c = MQTTClient(client_id, host, port, user, password, keepalive, ssl=_Tls(ctx) if ctx else None)
    if callback:
        c.set_callback(callback)
    connect_client(c, timeout_ms)
    return c


def connect_client(c, timeout_ms):
    from umqtt.simple import MQTTException

    try:
        # The timeout bounds the TCP connect, the TLS handshake and the CONNACK.
        c.connect(timeout=timeout_ms / 1000)
    except TypeError:
        if c.sock is not None:
            raise
        # The call itself was refused: an umqtt.simple older than 1.5, which can neither
        # verify the broker's certificate on this firmware nor bound its waits.
        raise ConfigError("umqtt.simple is too old (no connect timeout): install 1.5 or later "
                          "(mpremote mip install umqtt.simple)")
    except MQTTException as e:
        close(c)
        code = e.args[0] if e.args else None
        raise RejectedError(code, "MQTT CONNECT refused (CONNACK %s)" % code)
    except TLSError:
        close(c)
        raise
    except OSError as e:
        close(c)
        raise NetworkError("MQTT connection failed (%s)" % http.reason(e))
    except IndexError:
        close(c)  # umqtt indexes an empty read when the broker closes the connection
        raise NetworkError("MQTT broker closed the connection")
    # The timeout covered the handshake and the CONNACK; the application's wait_msg() blocks.
    c.sock.setblocking(True)


def wait_for(c, done, timeout_ms):
    # Polls for incoming messages until done() or the timeout; returns done().
    deadline = clock.ticks_add(clock.ticks_ms(), timeout_ms)
    while not done():
        if clock.ticks_diff(deadline, clock.ticks_ms()) < 0:
            return False
        try:
            c.check_msg()
        except (OSError, IndexError):
            raise NetworkError("MQTT connection lost while waiting for a reply")
        clock.sleep_ms(20)
    return True


def close(c):
    try:
        c.sock.close()
    except Exception:
        pass


def tls_context_for(info, ca):
    cert = key = None
    if info.auth == "cert":
        cert = info.read_credential_file("cert_file")
        key = info.read_credential_file("key_file")
    return http.tls_context(load_ca(info, ca), cert, key)


def connect(info_or_path, **given):
    opts = options(given, DEFAULTS)
    info = store.load(info_or_path) if isinstance(info_or_path, str) else info_or_path
    if info.needs_registration:
        raise ConfigError("no credential stored: run dynreg.ensure first")
    host, port, use_tls = endpoint(info, opts["mqtt_url"])
    client_id, user, password = login(info, use_tls)
    ctx = tls_context_for(info, opts["ca"]) if use_tls else None
    say(opts, "connecting to %s:%d as %s (%s)" % (host, port, client_id, "TLS" if use_tls else "plain TCP"))
    c = open_client(client_id, host, port, user, password, ctx, opts["keepalive"], opts["timeout_ms"])
    say(opts, "MQTT connected")
    return c

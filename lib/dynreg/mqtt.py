# MQTT connection with the stored credential, on umqtt.simple. A refused CONNECT is a
# RejectedError with the CONNACK code, never a retry loop.
import sys
from micropython import const
from dynreg import ConfigError, NetworkError, RejectedError, store, clock, http
from dynreg.flow import load_ca, say

_LOGIN_LIFETIME = const(86400)  # seconds a Tencent login stays valid
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
DEFAULTS = {"ca": None, "mqtt_url": None, "keepalive": 60, "log": print}


def _options(given):
    opts = dict(DEFAULTS)
    for name in given:
        if name not in DEFAULTS:
            raise ConfigError("unknown option %s" % name)
        opts[name] = given[name]
    return opts


def connid():
    from os import urandom

    return "".join(_ALNUM[b % 62] for b in urandom(5))


def tencent_login(info):
    from dynreg import tencent

    expiry = clock.unix_time() + _LOGIN_LIFETIME
    if info.auth == "cert":
        # The client certificate authenticates; the password is not checked.
        client_id = info.product + info.device_name
        return client_id, "%s;12010126;%s;%d" % (client_id, connid(), expiry), ""
    return tencent.mqtt_login(info.product, info.device_name, info.credential["psk"], connid(), expiry)


def endpoint(info, url):
    url = url or info.mqtt_url
    if url:
        scheme, host, port, _ = http.split_url(url)
        return host, port, scheme == "mqtts"
    if info.cloud == "tencent":
        return info.product + ".iotcloud.tencentdevices.com", 8883, True
    raise ConfigError("no MQTT endpoint: set mqtt_url in the info")


class _LegacySSL:
    # umqtt.simple 1.3 (PyPI) calls `ussl.wrap_socket(sock, **ssl_params)`; firmware since
    # 1.21 has no `ussl`. This stands in for it with our verifying context.
    def __init__(self, ctx):
        self.ctx = ctx

    def wrap_socket(self, sock, server_hostname=None):
        return http.wrap(sock, self.ctx, server_hostname)


def client(client_id, host, port, user, password, keepalive, ctx):
    from umqtt.simple import MQTTClient

    c = MQTTClient(client_id, host, port, user, password, keepalive)
    if ctx:
        if hasattr(c, "ssl_params"):  # umqtt.simple <= 1.3
            sys.modules["ussl"] = _LegacySSL(ctx)
            c.ssl = True
            c.ssl_params = {"server_hostname": host}
        else:  # umqtt.simple >= 1.4 takes an SSLContext
            c.ssl = ctx
    return c


def connect(info_or_path, **given):
    opts = _options(given)
    info = store.load(info_or_path) if isinstance(info_or_path, str) else info_or_path
    if info.needs_registration:
        raise ConfigError("no credential stored: run dynreg.ensure first")
    host, port, use_tls = endpoint(info, opts["mqtt_url"])
    if info.cloud == "tencent":
        client_id, user, password = tencent_login(info)
    else:
        raise ConfigError("cloud %s is not supported yet" % info.cloud)
    ctx = None
    if use_tls:
        cert = key = None
        if info.auth == "cert":
            cert = info.read_credential_file("cert_file")
            key = info.read_credential_file("key_file")
        ctx = http.tls_context(load_ca(info, opts["ca"]), cert, key)
    say(opts, "connecting to %s:%d as %s (%s)" % (host, port, client_id, "TLS" if use_tls else "plain TCP"))
    c = client(client_id, host, port, user, password, opts["keepalive"], ctx)
    connect_client(c)
    say(opts, "MQTT connected")
    return c


def connect_client(c):
    from umqtt.simple import MQTTException

    try:
        c.connect()
    except MQTTException as e:
        _close(c)
        code = e.args[0] if e.args else None
        raise RejectedError(code, "MQTT CONNECT refused (CONNACK %s)" % code)
    except OSError as e:
        _close(c)
        raise NetworkError("MQTT connection failed (%s)" % (e.args[0] if e.args else e))
    except IndexError:
        _close(c)  # umqtt reads past a closed socket
        raise NetworkError("MQTT broker closed the connection")


def _close(c):
    try:
        c.sock.close()
    except Exception:
        pass

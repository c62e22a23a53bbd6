# dynreg: dynamic registration of MicroPython devices with Tencent, Alibaba, Azure and AWS IoT clouds.
# Importing this package is cheap: it defines the error types, two entry points that import
# the registration flow only when called, and what the modules of the flow share (a call's
# options checked against the caller's DEFAULTS, the console line, the CA).

__version__ = "0.1.0"  # manifest.py's metadata and package.json's "version" say the same


class Error(Exception):
    pass


class ConfigError(Error):
    pass


class ProtocolError(Error):
    pass


class RejectedError(Error):
    # .code and .message as the cloud sent them; with `kind` ("tencent", "aliyun", "azure", "aws", "mqtt") the
    # text adds what a known code means (dynreg.hints, imported only on a refusal).
    # .fixed_in_console: whether the operator can turn this refusal in the cloud's console (a board
    # retries it slowly), or no wait will (a wrong secret, a device activated before: it stops).
    fixed_in_console = True

    def __init__(self, code, message, kind=None):
        text = "cloud rejected the request: %s %s" % (code, message)
        if kind:
            from dynreg.hints import explain

            found, self.fixed_in_console = explain(kind, code, message)
            if found:
                text += " (" + found + ")"
        super().__init__(text)
        self.code = code
        self.message = message


class NetworkError(Error):
    retry_after_ms = None  # set when the cloud said how long to wait (a 429's or 5xx's Retry-After)
    throttled = False  # the cloud is over its rate limit: waiting is the cure, no attempt is spent


def busy(text, retry_after, throttled):
    # The NetworkError of a cloud that answered 429 or 5xx (or its own code for them), with its
    # retry-after in seconds or None.
    e = NetworkError(text)
    e.throttled = throttled
    if retry_after is not None:
        e.retry_after_ms = retry_after * 1000
    return e


class TLSError(NetworkError):
    pass


class StorageError(Error):
    pass


class ClockError(Error):
    pass


def ensure(info_or_path, **options):
    from dynreg.flow import ensure

    return ensure(info_or_path, **options)


def connect(info_or_path, **options):
    from dynreg.flow import connect

    return connect(info_or_path, **options)


def need_tls(tls, who, url="mqtts:// mqtt_url"):
    # Every cloud's login carries a reusable secret or a client certificate (and some answers
    # one): over TLS only, refused before any connection.
    if not tls:
        raise ConfigError("%s needs TLS: an %s" % (who, url))


def options(given, defaults):
    opts = dict(defaults)
    for name in given:
        if name not in defaults:
            raise ConfigError("unknown option %s" % name)
        opts[name] = given[name]
    return opts


def say(opts, text):
    if opts["log"]:
        opts["log"]("dynreg: " + text)


def load_ca(info, given=None, field="ca"):
    # The CA certificates' bytes (DER, PEM or a PEM bundle): given directly, or a file named by
    # the option or by the info's `field` ("ca"; "mqtt_ca" for the broker, when its root
    # differs from the registration server's), relative to the info's folder. None when none
    # is named: the cloud's built-in roots (its module's `roots`) apply.
    from dynreg import store

    ca = given or getattr(info, field) or info.ca
    if isinstance(ca, str):
        ca = store.read_file(info.file(ca), store.MAX_INFO)
    return ca

# dynreg: dynamic registration of MicroPython devices with Tencent, Alibaba and Azure IoT clouds.
# Importing this package is cheap: it defines the error types and two entry points that
# import the registration flow only when called.


class Error(Exception):
    pass


class ConfigError(Error):
    pass


class ProtocolError(Error):
    pass


class RejectedError(Error):
    # .code and .message as the cloud sent them; with `kind` ("tencent", "aliyun", "azure", "mqtt") the
    # text adds what a known code means (dynreg.hints, imported only on a refusal).
    def __init__(self, code, message, kind=None):
        text = "cloud rejected the request: %s %s" % (code, message)
        if kind:
            from dynreg.hints import hint

            found = hint(kind, code, message)
            if found:
                text += " (" + found + ")"
        super().__init__(text)
        self.code = code
        self.message = message


class NetworkError(Error):
    pass


class TLSError(NetworkError):
    pass


class StorageError(Error):
    pass


class ClockError(Error):
    pass


def ensure(info_path, **options):
    from dynreg.flow import ensure

    return ensure(info_path, **options)


def connect(info_or_path, **options):
    from dynreg.flow import connect

    return connect(info_or_path, **options)

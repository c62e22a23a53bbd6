# What the modules of the flow share, in a leaf that imports none of them: a call's options
# checked against the caller's DEFAULTS, and the console line.
from dynreg import ConfigError


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
    # differs from the registration server's), relative to the info's folder.
    from dynreg import store

    ca = given or getattr(info, field) or info.ca
    if isinstance(ca, str):
        ca = store.read_file(info.file(ca), store.MAX_INFO)
    return ca

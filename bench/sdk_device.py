# A desktop device running a cloud's own CPython SDK against the local emulator: the reference
# for the boot-time ratios. One JSON argument:
#   {"sdk": "tencent" | "aliyun", "mode": "https" | "mqtt" | "login" (Alibaba: a later boot with
#    the DeviceSecret the first stored in "info"), "info": path, "product", "device",
#    "secret", "https_port", "mqtts_port", "ca_pem", "connect": bool}
# Prints "T start|stored|connected <ns>" (wall clock, comparable with the parent's) and last
# "RESULT ok" or "RESULT <error>". Never prints a secret.
#
# What is overridden to reach the emulator, and nothing else (see bench/README.md):
# - TLS: the SDKs carry the real clouds' root CAs; here they trust the emulator's CA instead
#   (linkkit: its own config_mqtt(cadata=...); tencent-iot-device has no option, so its
#   Codec.Ssl.create_content is replaced by a verifying client context, which it also needs
#   because its own context is a server-side one that Python >= 3.10 refuses for a client).
# - Where: the registration URL is fixed in both SDKs (ap-guangzhou.gateway.tencentdevices.com,
#   iot-auth.<region>.aliyuncs.com); urllib.request.urlopen is wrapped to send the same request
#   to https://localhost:<port> with the original Host header (Tencent signs over that host).
#   MQTT goes to localhost through linkkit's config_mqtt(endpoint=..., port=...).
import json
import sys
import time

print("T start", time.time_ns(), flush=True)


def redirect_urlopen(https_port):
    import urllib.parse
    import urllib.request

    real = urllib.request.urlopen

    def urlopen(request, data=None, *args, **kwargs):
        if isinstance(request, str):
            request = urllib.request.Request(request, data=data)
            data = None
        parts = urllib.parse.urlsplit(request.full_url)
        if not request.has_header("Host"):
            request.add_header("Host", parts.hostname)
        request.full_url = urllib.parse.urlunsplit(
            (parts.scheme, "localhost:%d" % https_port, parts.path, parts.query, ""))
        return real(request, data, *args, **kwargs)

    urllib.request.urlopen = urlopen


def tencent(spec):
    import ssl

    redirect_urlopen(spec["https_port"])
    import hub.utils.codec as codec
    from hub.hub import QcloudHub

    with open(spec["ca_pem"]) as f:
        ca = f.read()
    codec.Codec.Ssl.create_content = lambda self, cadata=None: ssl.create_default_context(cadata=ca)
    # The SDK's own device_info.json format, with its placeholder secret.
    with open(spec["info"], "w") as f:
        json.dump({"auth_mode": "KEY", "productId": spec["product"], "productSecret": spec["secret"],
                   "deviceName": spec["device"], "key_deviceinfo": {"deviceSecret": "YOUR_DEVICE_SECRET"},
                   "cert_deviceinfo": {"devCaFile": "", "devCertFile": "", "devPrivateKeyFile": ""},
                   "region": "china"}, f)
    hub = QcloudHub(spec["info"], tls=True).hub
    rc, _ = hub.dynregDevice()  # writes the psk into the info file itself
    if rc != 0:
        return "dynregDevice returned %s" % rc
    print("T stored", time.time_ns(), flush=True)
    return "ok"  # MQTT: not measurable against the emulator (bench/README.md)


def aliyun(spec):
    import threading

    redirect_urlopen(spec["https_port"])
    from linkkit import linkkit

    with open(spec["ca_pem"]) as f:
        ca = f.read()
    events = {"secret": threading.Event(), "connected": threading.Event()}
    got = {}

    def start(device_secret, product_secret, auth_type):
        kit = linkkit.LinkKit(host_name="cn-shanghai", product_key=spec["product"], device_name=spec["device"],
                              device_secret=device_secret, product_secret=product_secret, auth_type=auth_type)
        kit.config_mqtt(port=spec["mqtts_port"], endpoint="localhost", cadata=ca)

        def on_register(rc, value, userdata):
            got["register_rc"] = rc
            if rc == 0:
                with open(spec["info"], "w") as f:  # what an application does with the secret
                    json.dump({"productKey": spec["product"], "deviceName": spec["device"], "deviceSecret": value}, f)
                got["secret"] = value
                print("T stored", time.time_ns(), flush=True)
            events["secret"].set()

        def on_connect(session_flag, rc, userdata):
            got["connect_rc"] = rc
            if rc == 0 and auth_type != "register":  # a login, not the registration connection
                print("T connected", time.time_ns(), flush=True)
                events["connected"].set()

        kit.on_device_dynamic_register = on_register
        kit.on_connect = on_connect
        kit.connect_async()
        return kit

    if spec["mode"] == "login":  # a later boot: the DeviceSecret is stored
        with open(spec["info"]) as f:
            start(json.load(f)["deviceSecret"], None, None)
    elif spec["mode"] == "https":
        # No auth_type: linkkit registers over HTTPS, then logs in with the DeviceSecret itself.
        start("", spec["secret"], None)
        if not events["secret"].wait(20) or "secret" not in got:
            return "no DeviceSecret (%s)" % got.get("register_rc")
    else:
        start("", spec["secret"], "register")  # MQTT registration: result on /ext/register
        if not events["secret"].wait(20) or "secret" not in got:
            return "no DeviceSecret (%s)" % got.get("register_rc")
        if spec.get("connect"):
            start(got["secret"], None, None)  # the application logs in with what it stored
    if (spec.get("connect") or spec["mode"] == "login") and not events["connected"].wait(20):
        return "no CONNACK 0 (%s)" % got.get("connect_rc")
    return "ok"


def main():
    spec = json.loads(sys.argv[1])
    try:
        result = tencent(spec) if spec["sdk"] == "tencent" else aliyun(spec)
    except Exception as e:  # report, never a traceback with request details
        result = "%s %s" % (type(e).__name__, str(e)[:200])
    print("RESULT", result, flush=True)


main()
sys.stdout.flush()
import os  # noqa: E402

os._exit(0)  # the SDKs' worker threads are not daemons

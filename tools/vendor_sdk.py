# A desktop device running a cloud's own CPython SDK against the local emulator: the vendors'
# independent clients for the conformance tests (host_tests/test_host_vendor_sdks.py) and the
# reference for the boot-time ratios (bench/timing.py). Runs in the SDKs' own virtualenv
# (build/vendor-sdks, made by tools/bootstrap.sh from tools/vendor_sdks.txt). One JSON argument:
#   {"sdk": "tencent" | "aliyun" | "azure" | "aws", "mode": see below, "info": path, "product",
#    "device", "secret", "https_port", "mqtts_port", "ca_pem", "connect": bool, "wait": seconds,
#    "protocol": linkkit's MQTT version, "MQTTv311" (its default) or "MQTTv31";
#    AWS: "template", "parameters" (name to string), "claim_cert", "claim_key" (PEM paths),
#    "aws_mqtts_port"}
# Modes. Tencent: "https" (dynregDevice), "login" (a later boot: MQTT with the psk the SDK
# wrote into "info"). Alibaba: "https" (HTTPS registration, then linkkit logs in by itself),
# "mqtt" (authType=register), "regnwl" (pre-registration-free), "login" (DeviceSecret from
# "info"), "connwl" (the clientId, username and token that regnwl stored in "info"). Azure:
# "dps" (the provisioning client; "product" is the ID scope, "secret" the group key). AWS:
# "provision" (awsiotsdk's fleet provisioning by claim over its MQTT 3.1.1 client; "device" is
# the claim connection's client id; "info" gets the thing name, its certificate and key files
# go beside it), "login" (a later boot: the thing logs in with what "provision" stored).
# "connect": after a registration, log in with what it gave (as the next boot would).
# Prints "T start|stored|connected <ns>" (wall clock, comparable with the parent's) and last
# "RESULT ok", "RESULT refused <why>" (the SDK was told no: for AWS "<statusCode> <errorCode>"
# of a rejected answer, or "CONNECT: <awscrt error>" for a login closed without a CONNACK) or
# "RESULT <what went wrong>".
# Never prints a secret.
#
# What is overridden to reach the emulator, and nothing else (the SDKs' registration and login
# code runs unchanged):
# - TLS: the SDKs carry the real clouds' root CAs; here they trust the emulator's CA instead
#   (linkkit: its own config_mqtt(cadata=...); tencent-iot-device has no option, so its
#   Codec.Ssl.create_content is replaced by a verifying client context, which it also needs
#   because its own context is a server-side one that Python >= 3.10 refuses for a client;
#   awsiotsdk: its builder's ca_filepath).
# - Where: the registration URL is fixed in both SDKs (ap-guangzhou.gateway.tencentdevices.com,
#   iot-auth.<region>.aliyuncs.com); urllib.request.urlopen is wrapped to send the same request
#   to https://localhost:<port> with the original Host header (Tencent signs over that host).
#   MQTT: linkkit's config_mqtt(endpoint=..., port=...); tencent-iot-device fixes its broker
#   (<ProductId>.iotcloud.tencentdevices.com:8883), so paho's connect_async is pointed at
#   localhost:<mqtts_port> instead; so does azure-iot-device (port 8883 is fixed in its
#   mqtt_transport), whose user names and SAS tokens still name the real hosts. awsiotsdk: its
#   own builder's endpoint and port arguments, localhost:<aws_mqtts_port>.
import json
import sys
import threading
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


def redirect_paho(mqtts_port):
    import paho.mqtt.client as paho

    real = paho.Client.connect_async

    def connect_async(self, host, port=1883, *args, **kwargs):
        return real(self, "localhost", mqtts_port, *args, **kwargs)

    paho.Client.connect_async = connect_async


def tencent(spec):
    import ssl

    redirect_urlopen(spec["https_port"])
    redirect_paho(spec["mqtts_port"])
    import hub.utils.codec as codec
    from hub.hub import QcloudHub

    with open(spec["ca_pem"]) as f:
        ca = f.read()
    codec.Codec.Ssl.create_content = lambda self, cadata=None: ssl.create_default_context(cadata=ca)
    if spec["mode"] == "https":
        # The SDK's own device_info.json format, with its placeholder secret.
        with open(spec["info"], "w") as f:
            json.dump({"auth_mode": "KEY", "productId": spec["product"], "productSecret": spec["secret"],
                       "deviceName": spec["device"], "key_deviceinfo": {"deviceSecret": "YOUR_DEVICE_SECRET"},
                       "cert_deviceinfo": {"devCaFile": "", "devCertFile": "", "devPrivateKeyFile": ""},
                       "region": "china"}, f)
        rc, message = QcloudHub(spec["info"], tls=True).hub.dynregDevice()  # writes the psk into the file
        if rc != 0:
            return "refused dynregDevice returned %s: %s" % (rc, str(message)[:120])
        print("T stored", time.time_ns(), flush=True)
        if not spec.get("connect"):
            return "ok"
    connected = threading.Event()
    got = {}

    def on_connect(session_flag, rc, userdata):
        got["rc"] = rc
        if rc == 0:
            connected.set()

    hub = QcloudHub(spec["info"], tls=True).hub  # a later boot: the psk is in the file now
    hub.registerMqttCallback(on_connect, lambda *a: None, lambda *a: None, lambda *a: None, lambda *a: None,
                             lambda *a: None)
    hub.connect()
    if not connected.wait(spec.get("wait", 20)):
        return "no CONNACK 0 (%s)" % got.get("rc")
    print("T connected", time.time_ns(), flush=True)
    return "ok"


def aliyun(spec):
    redirect_urlopen(spec["https_port"])
    from linkkit import linkkit

    with open(spec["ca_pem"]) as f:
        ca = f.read()
    wait = spec.get("wait", 20)
    events = {"secret": threading.Event(), "connected": threading.Event()}
    got = {}

    def store(doc):
        with open(spec["info"], "w") as f:  # what an application does with what it was given
            json.dump(dict({"productKey": spec["product"], "deviceName": spec["device"]}, **doc), f)
        got["secret"] = True
        print("T stored", time.time_ns(), flush=True)
        events["secret"].set()

    def start(auth_type=None, product_secret=None, device_secret="", **login):
        kit = linkkit.LinkKit(host_name="cn-shanghai", product_key=spec["product"], device_name=spec["device"],
                              device_secret=device_secret, product_secret=product_secret, auth_type=auth_type,
                              **login)
        kit.config_mqtt(port=spec["mqtts_port"], endpoint="localhost", cadata=ca,
                        protocol=spec.get("protocol", "MQTTv311"))  # linkkit's own option: MQTTv31 too

        def on_register(rc, value, userdata):
            got["register_rc"] = rc
            if rc == 0:
                store({"deviceSecret": value})
            else:
                got["refused"] = str(value)[:120]
                events["secret"].set()

        def on_register_nwl(rc, client_id, username, password):
            got["register_rc"] = rc
            if rc == 0:
                store({"clientId": client_id, "username": username, "password": password})

        def on_connect(session_flag, rc, userdata):
            got["connect_rc"] = rc
            if rc == 0 and auth_type is None:  # a login, not a registration connection
                print("T connected", time.time_ns(), flush=True)
                events["connected"].set()

        kit.on_device_dynamic_register = on_register
        kit.on_device_dynamic_register_nwl_reply = on_register_nwl
        kit.on_connect = on_connect
        kit.connect_async()
        return kit

    def log_in_with_what_is_stored():
        with open(spec["info"]) as f:
            stored = json.load(f)
        if "deviceSecret" in stored:
            start(device_secret=stored["deviceSecret"])
        else:  # connwl: what regnwl gave
            start(client_id=stored["clientId"], username=stored["username"], password=stored["password"])

    mode = spec["mode"]
    if mode in ("login", "connwl"):  # a later boot: what the registration gave is stored
        log_in_with_what_is_stored()
    else:
        # "https": no auth_type, linkkit registers over HTTPS, then logs in with the DeviceSecret itself.
        start(auth_type={"https": None, "mqtt": "register", "regnwl": "regnwl"}[mode], product_secret=spec["secret"])
        if not events["secret"].wait(wait):
            return "no registration result (%s)" % got.get("register_rc")
        if "refused" in got:
            return "refused %s" % got["refused"]
        if spec.get("connect") and mode != "https":
            log_in_with_what_is_stored()
    if (spec.get("connect") or mode in ("login", "connwl")) and not events["connected"].wait(wait):
        return "no CONNACK 0 (%s)" % got.get("connect_rc")
    return "ok"


def azure(spec):
    # DPS with a symmetric-key enrollment group: the device key is derived from the group key
    # by the SDK's own SymmetricKeySigningMechanism (HMAC-SHA256, base64), as its group
    # enrollment sample derives it; then its ProvisioningDeviceClient registers, and with
    # "connect" its IoTHubDeviceClient logs in to the assigned hub and sends one message.
    # "info" gets the assignment (not the key).
    from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient, exceptions
    from azure.iot.device.common.auth.signing_mechanism import SymmetricKeySigningMechanism

    redirect_paho(spec["mqtts_port"])  # the SDK connects to <host>:8883, its fixed port
    with open(spec["ca_pem"]) as f:
        ca = f.read()
    key = SymmetricKeySigningMechanism(spec["secret"]).sign(spec["device"])
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host="global.azure-devices-provisioning.net", registration_id=spec["device"],
        id_scope=spec["product"], symmetric_key=key, server_verification_cert=ca)
    try:
        result = client.register()
    except exceptions.CredentialError:
        return "refused CONNACK"
    except exceptions.ClientError as e:
        return "refused %s" % (e.__cause__ or e)
    if result.status != "assigned":
        return "refused status %s" % result.status
    state = result.registration_state
    with open(spec["info"], "w") as f:
        json.dump({"hub": state.assigned_hub, "device_id": state.device_id}, f)
    print("T stored", time.time_ns(), flush=True)
    if not spec.get("connect"):
        return "ok"
    hub = IoTHubDeviceClient.create_from_symmetric_key(symmetric_key=key, hostname=state.assigned_hub,
                                                       device_id=state.device_id, server_verification_cert=ca,
                                                       connection_retry=False)
    try:
        hub.connect()
        print("T connected", time.time_ns(), flush=True)
        hub.send_message(Message("hello from the vendor SDK"))
    except exceptions.CredentialError:
        return "refused CONNACK at the hub"
    finally:
        hub.shutdown()
    return "ok"


def aws(spec):
    # Fleet provisioning by claim as the SDK's samples/fleetprovisioning.py runs it: its MQTT
    # 3.1.1 client (mqtt_connection_builder.mtls_from_path) logs in with the claim, then the
    # IotIdentityClient subscribes to the accepted and rejected topics of
    # CreateKeysAndCertificate and RegisterThing (waiting for each SUBACK), publishes the two
    # requests at QoS 1 and waits for the answers. What an application then keeps goes into the
    # folder of "info" (the certificate and key as files, as AWS's console names them). With
    # "connect", or in mode "login", a later boot: the same builder logs in with the new
    # certificate, as the thing.
    import os

    from awscrt import mqtt
    from awsiot import iotidentity, mqtt_connection_builder

    wait = spec.get("wait", 20)
    folder = os.path.dirname(spec["info"])
    cert, key = os.path.join(folder, "certificate.pem.crt"), os.path.join(folder, "private.pem.key")

    def connection(cert_file, key_file, client_id):
        return mqtt_connection_builder.mtls_from_path(
            endpoint="localhost", port=spec["aws_mqtts_port"], cert_filepath=cert_file, pri_key_filepath=key_file,
            ca_filepath=spec["ca_pem"], client_id=client_id, clean_session=False, keep_alive_secs=30)

    def connected(conn):
        try:
            conn.connect().result(wait)
        except Exception as e:  # the emulator closes a refused login without a CONNACK
            return "refused CONNECT: %s" % getattr(e, "name", type(e).__name__)
        return None

    def log_in(thing):
        own = connection(cert, key, thing)
        refused = connected(own)
        if refused:
            return refused + " with the new certificate"
        print("T connected", time.time_ns(), flush=True)
        own.publish(topic="dt/%s/hello" % thing, payload="hello from the vendor SDK",
                    qos=mqtt.QoS.AT_LEAST_ONCE)[0].result(wait)
        own.disconnect().result(wait)
        return "ok"

    if spec["mode"] == "login":
        with open(spec["info"]) as f:
            return log_in(json.load(f)["thingName"])
    claim = connection(spec["claim_cert"], spec["claim_key"], spec["device"])
    refused = connected(claim)
    if refused:
        return refused
    identity = iotidentity.IotIdentityClient(claim)
    answers = {}
    arrived = {"keys": threading.Event(), "thing": threading.Event()}

    def on(step, outcome):
        def callback(response):
            answers[step] = (outcome, response)
            arrived[step].set()
        return callback

    keys = iotidentity.CreateKeysAndCertificateSubscriptionRequest()
    thing = iotidentity.RegisterThingSubscriptionRequest(template_name=spec["template"])
    for subscribe, request, step, outcome in (
            (identity.subscribe_to_create_keys_and_certificate_accepted, keys, "keys", "accepted"),
            (identity.subscribe_to_create_keys_and_certificate_rejected, keys, "keys", "rejected"),
            (identity.subscribe_to_register_thing_accepted, thing, "thing", "accepted"),
            (identity.subscribe_to_register_thing_rejected, thing, "thing", "rejected")):
        subscribe(request=request, qos=mqtt.QoS.AT_LEAST_ONCE, callback=on(step, outcome))[0].result(wait)

    def answer(step, publish):
        publish.result(wait)
        if not arrived[step].wait(wait):
            return None, "no answer"
        outcome, response = answers[step]
        if outcome == "rejected":
            return None, "refused %s %s" % (response.status_code, response.error_code)
        return response, None

    created, refused = answer("keys", identity.publish_create_keys_and_certificate(
        request=iotidentity.CreateKeysAndCertificateRequest(), qos=mqtt.QoS.AT_LEAST_ONCE))
    if refused:
        return refused
    registered, refused = answer("thing", identity.publish_register_thing(iotidentity.RegisterThingRequest(
        template_name=spec["template"], certificate_ownership_token=created.certificate_ownership_token,
        parameters=spec["parameters"]), mqtt.QoS.AT_LEAST_ONCE))
    claim.disconnect().result(wait)
    if refused:
        return refused
    with open(cert, "w") as f:
        f.write(created.certificate_pem)
    with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(created.private_key)
    with open(spec["info"], "w") as f:
        json.dump({"thingName": registered.thing_name, "certificateId": created.certificate_id,
                   "deviceConfiguration": registered.device_configuration}, f)
    print("T stored", time.time_ns(), flush=True)
    return log_in(registered.thing_name) if spec.get("connect") else "ok"


def main():
    spec = json.loads(sys.argv[1])
    try:
        result = {"tencent": tencent, "aliyun": aliyun, "azure": azure, "aws": aws}[spec["sdk"]](spec)
    except Exception as e:  # report, never a traceback with request details
        result = "%s %s" % (type(e).__name__, str(e)[:200])
    print("RESULT", result, flush=True)


main()
sys.stdout.flush()
import os  # noqa: E402

os._exit(0)  # the SDKs' worker threads are not daemons

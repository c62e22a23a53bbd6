# A device that stays online: the board application (firmware/main.py, on dynreg.online) on the
# MicroPython v1.28.0 unix port with dynreg and umqtt.simple frozen, against the local cloud
# emulator (real HTTPS, a real amqtt broker over TLS). The device registers once at boot, then
# stays connected: keepalive pings, and on every loss a reconnect with backoff and a fresh
# login. Each scenario ends with the device connected again with the same credential and with
# no second registration in the emulator's log; a refused login stops it. Waits are for events
# (the emulator's log, the device's console, its exit), with generous bounds; no duration is
# asserted.
import base64
import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys
import time

import pytest

import e2e
import runtime
from cloud_emulator import registry
from cloud_emulator.testing import running_emulator
from e2e import MICROPYTHON, ROOT, SECRET, read_json, registrations, write_aliyun_info, write_info
from hostile import ScriptedBroker, publish, publish_qos1
from raw_mqtt import RawMqtt

TENCENT = "ONLINETC01"
ALIYUN = "a1OnlineDev"
APP = os.path.join(ROOT, "firmware")  # the board application under test: its main.py and board.py
DAY = 86400
# Fast enough for tests, slow enough for any machine: pings every 300 ms, reconnects within 1 s.
FAST = {"ping_ms": 300, "pong_ms": 5000, "timeout_ms": 5000, "reconnect_min_ms": 100, "reconnect_max_ms": 1000,
        "boot_attempts": 1}
WAIT = 60  # seconds: the bound of every wait, far above what any step needs


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, umqtt):
    # One emulator per umqtt.simple version (conftest.py): every test here runs on each.
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(TENCENT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=1000)
        cloud.add_product(ALIYUN, SECRET, cloud="aliyun")
        yield cloud


class Device:
    # firmware/main.py running in its own folder (device_info.json, site.json), its console in
    # console.txt, its wall clock moved by writing clock_offset (host_tests/device/clock_offset).
    def __init__(self, folder, cloud, kind, name, product=None, **site):
        self.folder, self.cloud, self.kind, self.name = folder, cloud, kind, name
        folder.mkdir()
        if kind == "tencent":
            self.product = TENCENT
            self.info = write_info(folder, cloud, TENCENT, device_name=name,
                                   mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port)
            self.topic = "%s/%s/data" % (TENCENT, name)
        else:
            self.product = product or ALIYUN
            cloud.add_device(self.product, name)
            self.info = write_aliyun_info(folder, cloud, self.product, name, api="https")
            self.topic = "/%s/%s/user/update" % (self.product, name)
        (folder / "site.json").write_text(json.dumps(dict(FAST, **site)))
        self.clock_file = folder / "clock_offset"
        self.set_clock_offset(0)
        self.console_path = folder / "console.txt"
        env = dict(os.environ, DYNREG_CLOCK_OFFSET_FILE=str(self.clock_file),
                   MICROPYPATH=runtime.micropypath("host_tests/device/clock_offset", "firmware", umqtt=e2e.UMQTT))
        with open(self.console_path, "w") as console:
            self.process = subprocess.Popen([MICROPYTHON, os.path.join(APP, "main.py")], cwd=str(folder), env=env,
                                            stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        transcript = os.environ.get("DYNREG_TRANSCRIPT")
        if transcript:  # every device's output, for the secrets scan of `make test`
            with open(transcript, "a") as f:
                f.write(self.console())

    def console(self):
        return self.console_path.read_text(errors="replace")

    def set_clock_offset(self, seconds):
        # Atomically: the device reads the file at every time() call.
        temporary = self.folder / "clock_offset.tmp"
        temporary.write_text(str(seconds))
        os.replace(temporary, self.clock_file)

    def finish(self, timeout=WAIT):
        # The device leaves by itself (site "sessions", or a refused login): its exit status.
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the device did not leave:\n" + self.console())

    def events(self, api, result=None):
        return [e for e in self.cloud.log() if e.get("api") == api and e.get("device") == self.name
                and (result is None or e.get("result") == result)]

    def logins(self):
        return [e["result"] for e in self.events("mqtt-connect")]

    def publishes(self):
        return [e for e in self.events("mqtt-publish") if e.get("topic") == self.topic]

    def wait(self, what, condition, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("%s did not happen; device console:\n%s\nemulator log of the device:\n%s"
                                     % (what, self.console(), "\n".join(json.dumps(e) for e in self.cloud.log()
                                                                        if e.get("device") == self.name)))
            if self.process.poll() is not None and not condition():
                time.sleep(0.5)  # a last look: broker events reach the log asynchronously
                if not condition():
                    raise AssertionError("the device ended (status %s) before %s:\n%s"
                                         % (self.process.returncode, what, self.console()))
            time.sleep(0.05)

    def wait_online(self, sessions):
        # Connected and its status published by that many sessions.
        self.wait("session %d" % sessions, lambda: len(self.publishes()) >= sessions)

    def credential(self):
        return read_json(self.info)["credential"]


def credential_of(cloud, device):
    issued = cloud.device(device.product, device.name)
    return {"psk": issued["psk"]} if device.kind == "tencent" else {"device_secret": issued["device_secret"]}


def assert_back_online(device, credential, sessions=2):
    # The device left by itself after its last session; every session logged in with the one
    # credential it registered for, and it registered exactly once.
    assert device.finish() == 0, device.console()
    device.wait("the publish of session %d" % sessions, lambda: len(device.publishes()) == sessions)
    console = device.console()
    assert device.logins() == ["ok"] * sessions, (device.logins(), console)
    assert len(registrations(device.cloud, device.name)) == 1, console
    same = device.credential() == credential == credential_of(device.cloud, device)  # no secret in a failure
    assert same, "the credential on flash or in the cloud changed:\n" + console
    assert console.count("published status on %s" % device.topic) == sessions, console
    assert console.count("offline after") == sessions - 1, console
    assert "leaving after %d sessions" % sessions in console, console
    leaked = SECRET in console or list(credential.values())[0] in console
    assert not leaked, "a secret in the console"


def first_session(device):
    device.wait_online(1)
    assert device.logins() == ["ok"]
    [registration] = registrations(device.cloud, device.name)
    assert registration["result"] == "ok"
    return device.credential()


# -- 1. the broker restarts --------------------------------------------------------------------

def test_reconnects_after_a_broker_restart_without_registering(cloud, tmp_path):
    with Device(tmp_path / "dev", cloud, "tencent", "restart-01", sessions=2) as device:
        credential = first_session(device)
        cloud.restart()  # every connection closed, then the same ports and the same state folder
        assert_back_online(device, credential)


# -- 2. the broker drops the TCP connection ------------------------------------------------------

@pytest.mark.parametrize("kind", ["tencent", "aliyun"])
@pytest.mark.parametrize("how", ["reset", "silence"])
def test_reconnects_after_a_dropped_connection(cloud, tmp_path, kind, how):
    # reset: an RST at once; silence: the connection stays open and is never answered again, so
    # only the missing PINGRESP tells the device.
    name = "drop-%s-%s" % (how, kind[:2])
    with Device(tmp_path / "dev", cloud, kind, name, sessions=2) as device:
        credential = first_session(device)
        dropped = cloud.drop_connection(device.product, name, how=how)
        assert dropped["result"] == "ok" and dropped["connections"] == 1, dropped
        assert_back_online(device, credential)
        if how == "silence":
            assert "no PINGRESP within 5000 ms" in device.console(), device.console()


# -- 3. a day later ---------------------------------------------------------------------------

def tencent_login(product, name, psk, expiry, connid="StaLe"):
    # As PROTOCOLS.md 2.4 has it, independently of the device library.
    username = "%s%s;12010126;%s;%d" % (product, name, connid, expiry)
    digest = hmac.new(base64.b64decode(psk), username.encode(), hashlib.sha256).hexdigest()
    return product + name, username, digest + ";hmacsha256"


def login_code(cloud, login):
    client, code = RawMqtt.connect(cloud.mqtt_port, *login)
    client.sock.close()
    return code


def test_reconnects_a_day_later_with_a_fresh_login(cloud, tmp_path):
    # A Tencent login carries its expiry, 24 h after it was made: the reconnect a day later must
    # log in anew. The device's clock and the emulator's both move a day (and a minute) ahead
    # after the first session, then the broker drops the connection.
    name = "day-later-01"
    ahead = DAY + 60
    try:
        with Device(tmp_path / "dev", cloud, "tencent", name, sessions=2) as device:
            credential = first_session(device)
            first_login = device.events("mqtt-connect", "ok")[0]
            device.set_clock_offset(ahead)
            cloud.set_clock_offset(ahead)
            assert cloud.drop_connection(TENCENT, name)["connections"] == 1
            assert_back_online(device, credential)
        # The first session's login is refused by now: one made at its time expires at most a day
        # after the broker logged it (the device made its own before), and the broker's clock is
        # past that. The same login is accepted on the host's clock, and a fresh one on the new.
        stale = tencent_login(TENCENT, name, credential["psk"], int(first_login["ts"]) + DAY)
        assert login_code(cloud, stale) == 4
        assert device.logins()[-1] == "expired"
        fresh = tencent_login(TENCENT, name, credential["psk"], int(time.time()) + ahead + DAY, connid="FrEsh")
        assert login_code(cloud, fresh) == 0
        cloud.set_clock_offset(0)
        assert login_code(cloud, stale) == 0
        assert device.logins()[-3:] == ["expired", "ok", "ok"]
        assert len(registrations(cloud, name)) == 1
    finally:
        cloud.set_clock_offset(0)


# -- a refused login on reconnect stops the device ----------------------------------------------

@pytest.mark.parametrize("kind,refusal", [("tencent", "reset"), ("aliyun", "reset"), ("tencent", "clock")])
def test_a_refused_login_on_reconnect_stops_without_a_loop_or_a_registration(cloud, tmp_path, kind, refusal):
    # reset: the operator revoked the credential (CONNACK 5, not-registered); clock: the
    # broker's clock is two days ahead of the device's, so its fresh login has expired on
    # arrival (CONNACK 4). Either way the cloud said no: reported once, the application stops.
    name = "refused-%s-%s" % (refusal, kind[:2])
    try:
        with Device(tmp_path / "dev", cloud, kind, name) as device:  # no "sessions": it would stay forever
            first_session(device)
            if refusal == "reset":
                cloud.reset_device(device.product, name)
                reason, code = "not-registered", 5
            else:
                cloud.set_clock_offset(2 * DAY)
                reason, code = "expired", 4
            assert cloud.drop_connection(device.product, name)["connections"] == 1
            assert device.finish() == 0, device.console()  # it ended by itself
            console = device.console()
        assert device.logins() == ["ok", reason], (device.logins(), console)
        assert console.count("stopped: cloud rejected the request: %d MQTT CONNECT refused" % code) == 1, console
        assert console.count("reconnecting in") == 1 and "leaving after" not in console, console
        assert len(registrations(cloud, name)) == 1, console
        assert "registering" not in console.split("offline after", 1)[1], console
    finally:
        cloud.set_clock_offset(0)


# -- keepalive --------------------------------------------------------------------------------

def test_pings_keep_an_idle_session_open(cloud, tmp_path):
    # The emulator closes a connection silent for 1.5 keepalive intervals (6 s here), as the
    # clouds do. The device stays online for 14 s with nothing to say but its pings (every 2 s,
    # half the keepalive): one session, never closed by the broker.
    name = "pinger-01"
    site = {"keepalive": 4, "ping_ms": 0, "online_ms": 14000}
    with Device(tmp_path / "dev", cloud, "tencent", name, **site) as device:
        assert device.finish() == 0, device.console()
        console = device.console()
    assert device.logins() == ["ok"] and device.events("mqtt-keepalive") == [], console
    assert "offline after" not in console and "leaving after 1 session" in console, console


def test_without_pings_the_broker_closes_the_idle_session(cloud, tmp_path):
    # The control for the test above: pings far apart, so the broker's keepalive check closes
    # the session; the device sees the loss and comes back with a fresh login.
    name = "no-pinger-01"
    with Device(tmp_path / "dev", cloud, "tencent", name, keepalive=2, ping_ms=600000, sessions=2) as device:
        credential = first_session(device)
        device.wait("the broker's keepalive close", lambda: device.events("mqtt-keepalive"))
        assert_back_online(device, credential)
    [closed] = device.events("mqtt-keepalive")
    assert closed["result"] == "closed" and closed["keepalive"] == 2


# -- the emulator's side, from its command line ---------------------------------------------------

def test_emulator_clock_offset_and_drop_from_the_command_line(tmp_path):
    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "cloud_emulator"] + list(args) + ["--state", str(cloud.state_dir)],
                              capture_output=True, text=True, timeout=WAIT, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    psk = base64.b64encode(os.urandom(16)).decode()
    with running_emulator(tmp_path / "cloud") as cloud:
        cloud.add_product(TENCENT, SECRET)
        cloud.add_device(TENCENT, "cli-01")
        with cloud.store.transaction() as state:  # as a registration would have issued it
            registry.record_issued_secret(registry.get_device(state, TENCENT, "cli-01"), {"psk": psk})
        login = tencent_login(TENCENT, "cli-01", psk, int(time.time()) + 3600)
        assert login_code(cloud, login) == 0
        assert "+7200" in cli("clock", "--offset", "7200")
        assert login_code(cloud, login) == 4 and cloud.log()[-1]["result"] == "expired"
        assert "+0" in cli("clock", "--offset", "0") and login_code(cloud, login) == 0

        client, code = RawMqtt.connect(cloud.mqtt_port, *login)
        assert code == 0
        assert "mqtt-drop" in cli("drop", "--product-id", TENCENT, "--device-name", "cli-01")
        record = cloud.wait_for_log(lambda e: e.get("api") == "mqtt-drop", timeout=WAIT)
        assert record["result"] == "ok" and record["connections"] == 1 and record["how"] == "reset"
        client.sock.settimeout(WAIT)
        with pytest.raises(ConnectionResetError):  # an RST, not a clean close
            client.sock.recv(1)
        client.sock.close()
        assert cloud.drop_connection(TENCENT, "cli-01")["result"] == "not-connected"


def test_the_site_files_max_packet_reaches_the_connection(cloud, tmp_path):
    # site.json's max_packet is dynreg.online's: set below a CONNACK's 2 bytes, no connect holds.
    with Device(tmp_path / "dev", cloud, "tencent", "max-packet-01", max_packet=1, online_ms=1500) as device:
        assert device.finish() == 0, device.console()
        console = device.console()
    assert "dynreg: connect failed (MQTT packet of 2 bytes over the limit of 1)" in console, console
    assert "leaving after 0 sessions" in console, console


def test_a_gateway_stays_online_when_the_cloud_refuses_one_of_its_sub_devices(cloud, tmp_path):
    # The board application with site.json's sub-devices, one of them not in the cloud (6100):
    # that one is reported on its own at every connect, the other registered once, and the
    # gateway stays online (before: RejectedError out of stay_online, "stopped", every boot).
    gateway, sub = "a1OnlineGw1", "a1OnlineSub"
    cloud.add_product(gateway, SECRET, cloud="aliyun", gateway=True)
    cloud.add_product(sub, SECRET, cloud="aliyun", subdevice=True)
    cloud.add_device(sub, "sensor-01")
    subdevices = [[sub, "sensor-01"], [sub, "sensor-99"]]
    with Device(tmp_path / "dev", cloud, "aliyun", "gw-online-01", product=gateway, subdevices=subdevices,
                sessions=2) as device:
        device.wait("the first session's sub-devices", lambda: "sensor-99: refused" in device.console())
        assert cloud.drop_connection(gateway, "gw-online-01")["connections"] == 1
        assert device.finish() == 0, device.console()
        console = device.console()
    assert "stopped" not in console and "leaving after 2 sessions" in console, console
    assert console.count("sub-device %s/sensor-99: refused by the cloud (6100 device not found)" % sub) == 2, console
    assert console.count("sub-device %s/sensor-01: secret on flash, in the gateway's topology" % sub) == 2, console
    assert cloud.device(sub, "sensor-01")["gateway"] == "%s/gw-online-01" % gateway
    registered = [e for e in cloud.log() if e.get("api") == "aliyun-sub-register" and e.get("result") == "ok"]
    assert [e["sub_devices"] for e in registered] == ["%s/sensor-01" % sub], registered  # once


# -- 6. a board whose info is missing, cut short or names its device by the chip ------------------

def _boot_board(folder):
    # firmware/main.py once, to its end: (console, what it printed of its stop).
    env = dict(os.environ, DYNREG_UNIQUE_ID="c0ffee01",
               MICROPYPATH=runtime.micropypath("firmware", umqtt=e2e.UMQTT))
    proc = subprocess.run([MICROPYTHON, os.path.join(APP, "main.py")], cwd=str(folder), env=env,
                          capture_output=True, text=True, timeout=WAIT)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("content, expected", [
    (None, "stopped: bad configuration: no device_info.json on this device (fix the info, then provision again: "
           "dynreg provision)"),
    ('{"dynreg": 1, "cloud": "tencent", "product_id": "AB', "stopped: bad configuration: device_info.json is not "
                                                           "valid JSON (fix the info, then provision again"),
    ('{"dynreg": 1, "cloud": "tencent", "device_name": "x1", "credential": {}}',
     "stopped: bad configuration: device_info.json: product_id missing or not a string (fix the info"),
])
def test_a_board_without_a_usable_info_says_so_once_and_stops(tmp_path, content, expected):
    # Named once, with its fix: no retries (the info will not change by waiting), no traceback.
    folder = tmp_path / "board"
    folder.mkdir()
    (folder / "site.json").write_text(json.dumps(dict(FAST, retry_ms=2000)))
    if content is not None:
        (folder / "device_info.json").write_text(content)
    console = _boot_board(folder)
    assert console.count(expected) == 1, console
    assert "Traceback" not in console and "boot attempt" not in console, console


def test_a_device_named_by_its_chip_registers_under_that_name(cloud, tmp_path):
    # device_name_from: dynreg derives the name through the board (the firmware reads no info).
    folder = tmp_path / "board"
    folder.mkdir()
    write_info(folder, cloud, TENCENT, device_name=None, device_name_from="unique_id",
               mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port)
    (folder / "site.json").write_text(json.dumps(dict(FAST, sessions=1)))
    console = _boot_board(folder)
    assert "published status on %s/c0ffee01/data" % TENCENT in console, console
    assert [e["result"] for e in registrations(cloud, "c0ffee01")] == ["ok"]


# -- 7. whose error is it: the connection's or the application's (dynreg.online, a scripted broker) --

# The application of host_tests/device/run_device.py ("online"): it subscribes to TOPIC in its
# on_connect and records every message; a payload of b"fail" hits a bug of its own (IndexError).
TOPIC = "/a1ScriptPk1/scripted-01/user/get"
QUICK = {"ping_ms": 500, "pong_ms": 3000, "timeout_ms": 3000, "reconnect_min_ms": 100, "reconnect_max_ms": 200}


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    from cloud_emulator.crypto import ensure_tls_material

    return ensure_tls_material(tmp_path_factory.mktemp("scripted-tls"))


def scripted_device(tmp_path, broker, qos=0, **options):
    # An Alibaba device that holds its credential, online with the scripted broker until it
    # leaves (online_ms or sessions) or an error ends stay_online: run_device's result.
    folder = tmp_path / "scripted"
    folder.mkdir()
    doc = {"dynreg": 1, "cloud": "aliyun", "product_key": "a1ScriptPk1", "device_name": "scripted-01",
           "api": "https", "mqtt_url": "mqtts://localhost:%d" % broker.port, "ca": str(broker.material.ca_der_path),
           "credential": {"device_secret": "Zm9vYmFyYmF6cXV4cXV1eDAxMjM0NTY3"}}
    (folder / "device_info.json").write_text(json.dumps(doc))
    return e2e.run_device(str(folder / "device_info.json"), online=dict(QUICK, **options), subscribe=[TOPIC, qos],
                          timeout=WAIT)


@pytest.mark.parametrize("payload, error", [(b"fail", "IndexError"), (b"fail-os", "OSError")])
def test_an_error_of_the_applications_on_message_is_its_own_not_a_network_loss(tmp_path, material, umqtt,
                                                                              payload, error):
    # The message that hits the application's bug would come again after every reconnect:
    # taken for a lost connection it makes a reconnect loop that hides the bug. It ends
    # stay_online, raised as it is, once, with the connection closed.
    with ScriptedBroker(material, {"send": [publish(TOPIC, payload)]}) as broker:
        result = scripted_device(tmp_path, broker, online_ms=4000)
    assert result.get("error") == error, result
    assert result["messages"] == [[TOPIC, len(payload)]], result
    assert broker.connections == 1 and "reconnecting" not in result["output"], result["output"]
    assert "dynreg: the application's on_connect or on_message raised %s" % error in result["output"], result["output"]


@pytest.mark.parametrize("first", [{"suback": 0x80}, {"cut": True}], ids=["refused", "cut-short"])
def test_a_suback_refused_or_cut_short_in_on_connect_is_a_network_loss(tmp_path, material, umqtt, first):
    # umqtt raises MQTTException for a SUBACK of 0x80 and IndexError for one cut short, from
    # the application's subscribe: errors of the connection, so stay_online reconnects.
    with ScriptedBroker(material, first, {}) as broker:
        result = scripted_device(tmp_path, broker, sessions=2)
    assert result["ok"] and result["sessions"] == 2, result
    assert broker.connections == 2, result["output"]
    assert result["output"].count("offline after") == 1 and "raised" not in result["output"], result["output"]


def test_a_message_over_max_packet_is_dropped_and_the_session_goes_on(tmp_path, material, umqtt):
    # QoS 0: 9000 bytes over the default 8192 are read and discarded, one line says so, and
    # the message after it arrives on the same connection.
    big = publish(TOPIC, b"x" * 9000)
    with ScriptedBroker(material, {"send": [big, publish(TOPIC, b"small")]}) as broker:
        result = scripted_device(tmp_path, broker, online_ms=2500)
    assert result["ok"] and result["sessions"] == 1, result
    assert result["messages"] == [[TOPIC, 5]], result
    assert broker.connections == 1 and "offline after" not in result["output"], result["output"]
    assert result["output"].count("dynreg: MQTT message of %d bytes dropped (over max_packet 8192)"
                                  % (len(big) - 3)) == 1, result["output"]


def test_a_qos1_message_over_max_packet_is_acknowledged_so_that_it_is_not_sent_again(tmp_path, material, umqtt):
    # Unacknowledged, a QoS 1 message comes again (Azure: until its TTL): the PUBACK of the
    # dropped one goes out like umqtt's own for the one after it.
    sends = [publish_qos1(TOPIC, b"x" * 9000, 0x1234), publish_qos1(TOPIC, b"small", 0x1235)]
    with ScriptedBroker(material, {"send": sends}) as broker:
        result = scripted_device(tmp_path, broker, qos=1, online_ms=2500)
    assert result["ok"] and result["messages"] == [[TOPIC, 5]], result
    assert broker.pubacks == [0x1234, 0x1235] and broker.connections == 1, (broker.pubacks, result["output"])


def test_max_packet_is_an_online_option(tmp_path, material, umqtt):
    # Azure sends cloud-to-device messages of up to 64 KiB: a device that wants them says so.
    big = publish(TOPIC, b"x" * 20000)
    with ScriptedBroker(material, {"send": [big]}) as broker:
        result = scripted_device(tmp_path, broker, online_ms=2500, max_packet=32768)
    assert result["ok"] and result["messages"] == [[TOPIC, 20000]], result
    assert "dropped" not in result["output"], result["output"]

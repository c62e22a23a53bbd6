# Helpers for the end-to-end tests: a device (run_device.py) on the MicroPython v1.28.0 unix
# port with dynreg and umqtt.simple frozen, against the local cloud emulator, with its info in a
# plain folder or a littlefs2 image; the test servers around it (SNTP) and a CA no server uses.
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import runtime  # noqa: E402
from cloud_emulator.testing import device_info, registrations, write_device_info  # noqa: E402,F401 (registrations: for the tests)

MICROPYTHON = runtime.MICROPYTHON
_STALE = runtime.check_built()
if _STALE:
    raise RuntimeError(_STALE)
SECRET = "hzvf5LF9S0isvBhDSauWMaIk"
# The umqtt.simple the devices run: the frozen one, or a label of runtime.umqtt_variants();
# set per test by the `umqtt` fixture (conftest.py).
UMQTT = runtime.FROZEN_UMQTT


def device_env(**extra):
    env = dict(os.environ, MICROPYPATH=runtime.micropypath("host_tests/device", "firmware", umqtt=UMQTT))
    env.update(extra)
    return env


def write_info(folder, cloud, product_id, device_name="dev001", secret=SECRET, scheme="https", **fields):
    # A fresh Tencent device's info pointed at the running emulator (the emulator's own
    # device_info, which its pytest fixture hands out too); scheme "http" comes with the info's
    # opt-in to plain HTTP.
    if scheme == "http":
        fields = dict({"register_url": "http://localhost:%d" % cloud.http_port, "plain_http": True}, **fields)
    return _write(folder, device_info(cloud, "tencent", product_id, secret, device_name, **fields))


def write_aliyun_info(folder, cloud, product_key, device_name, secret=SECRET, api="https", **fields):
    return _write(folder, device_info(cloud, "aliyun", product_key, secret, device_name, api=api, **fields))


def write_azure_info(folder, cloud, id_scope, registration_id, group_key, **fields):
    # An Azure device of a symmetric-key enrollment group: DPS and the hub on the emulator's
    # MQTTS listener.
    return _write(folder, device_info(cloud, "azure", id_scope, group_key, registration_id, **fields))


def _write(folder, doc):
    return write_device_info(os.path.join(str(folder), "device_info.json"), doc)


def run_device(info, ensure=None, connect=None, publish=None, timeout=60, heap=None, **spec):
    spec.update({"info": info, "ensure": dict({"log": None}, **(ensure or {})), "connect": connect,
                 "publish": publish})
    if spec["ensure"]["log"] is None:
        del spec["ensure"]["log"]
    heap_option = ["-X", "heapsize=%d" % heap] if heap else []
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="spec-", delete=False) as f:
        json.dump(spec, f)  # a file: the unix port dies on an argument of 256 characters or more
    try:
        proc = subprocess.run([MICROPYTHON] + heap_option
                              + [os.path.join(ROOT, "host_tests", "device", "run_device.py"), f.name],
                              capture_output=True, text=True, timeout=timeout, env=device_env(), cwd=ROOT)
    finally:
        os.remove(f.name)
    transcript = os.environ.get("DYNREG_TRANSCRIPT")
    if transcript:  # every device's output, for the secrets scan of `make test`
        with open(transcript, "a") as f:
            f.write(proc.stdout + proc.stderr)
    lines = proc.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("RESULT "):
        raise AssertionError("device did not finish: rc=%s\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    result = json.loads(lines[-1][len("RESULT "):])
    result["output"] = proc.stdout + proc.stderr
    return result


def read_json(path):
    with open(path) as f:
        return json.load(f)


NTP_FROM_1900 = 2208988800  # 1970-01-01 in NTP seconds


class NtpServer:
    # An SNTP server on loopback (RFC 4330, server mode): each query answered with now(), or,
    # with answer=False, read and never answered, or, with nonsense=True, answered with a
    # client's packet (mode 3: not a server's answer). The queries are kept. on_answer() runs
    # before each answer goes out.
    def __init__(self, now=time.time, answer=True, on_answer=None, nonsense=False):
        self.now, self.answer, self.queries, self.on_answer = now, answer, [], on_answer
        self.nonsense = nonsense
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopped.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            self.queries.append(query)
            if not self.answer or len(query) < 48:
                continue
            if self.on_answer:
                self.on_answer()
            if self.nonsense:
                self.sock.sendto(bytes([0x1B]) + bytes(47), peer)
                continue
            t = self.now() + NTP_FROM_1900
            reply = bytearray(48)
            reply[0] = 0x24  # leap 0, version 4, mode 4: a server's answer
            reply[1] = 1  # stratum 1
            for at in (16, 32, 40):  # reference, receive and transmit times
                struct.pack_into("!II", reply, at, int(t) & 0xFFFFFFFF, int(t % 1 * 2 ** 32))
            reply[24:32] = query[40:48]  # originate: the query's transmit time
            self.sock.sendto(bytes(reply), peer)

    def close(self):
        self.stopped.set()
        self.thread.join()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def other_ca(path):
    # A self-signed CA certificate (DER, written to `path`) that vouches for no server here:
    # the CA a device must refuse. Returns the path as a string.
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the server's root")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return str(path)


def replace_credential(info, field, value):
    # The info with one field of its stored credential replaced; returns the file's new text.
    doc = read_json(info)
    doc["credential"][field] = value
    with open(info, "w") as f:
        json.dump(doc, f)
    return open(info).read()


def retry_waits(output):
    # The waits (ms) the device announced between attempts ("... retrying in N ms").
    import re

    return [int(ms) for ms in re.findall(r"retrying in (\d+) ms", output)]


def folder_snapshot(info):
    # The device's folder as {file name: bytes}: compare before and after to prove nothing was stored.
    folder = os.path.dirname(info)
    snapshot = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            snapshot[name] = f.read()
    return snapshot

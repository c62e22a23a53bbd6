# The board's clock (firmware/board.py sync_clock, through firmware/main.py) on the MicroPython
# v1.28.0 unix port: real SNTP exchanges with servers this test runs on loopback, names that
# never resolve (RFC 6761 reserves .invalid), a server that never answers, and the device's
# wall clock moved before the firmware's build date (host_tests/device/clock_offset). The unix
# board keeps the host's clock, but asks the servers site.json names as a board does; the
# default servers by cloud are checked as the spec lists them.
import calendar
import json
import os
import subprocess
import time

import pytest

import runtime
from cloud_emulator.testing import running_emulator
from e2e import MICROPYTHON, ROOT, SECRET, NtpServer, registrations, write_info

APP = os.path.join(ROOT, "firmware")
PRODUCT = "CLOCKTC001"
WAIT = 60  # seconds: the bound of every run, far above what any needs


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100)
        yield cloud


def build_day():
    # 00:00 UTC of the unix port's build date, read from its own sys.version.
    version = subprocess.run([MICROPYTHON, "-c", "import sys; print(sys.version)"], capture_output=True,
                             text=True, timeout=WAIT).stdout.strip()
    y, m, d = (int(n) for n in version.rsplit(" on ", 1)[1].split("-"))
    return calendar.timegm((y, m, d, 0, 0, 0))


def boot(folder, cloud, name, clock_offset=0, **site):
    # firmware/main.py once, to its end, with a fresh Tencent info and the wall clock moved by
    # clock_offset seconds: (exit status, console).
    folder.mkdir()
    write_info(folder, cloud, PRODUCT, device_name=name, mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port)
    proc = start(folder, clock_offset, **site)
    proc.wait(WAIT)
    return proc.returncode, console_of(folder)


def start(folder, clock_offset=0, **site):
    # firmware/main.py in `folder` (its info there), started: its console goes to console.txt.
    (folder / "site.json").write_text(json.dumps(dict({"boot_attempts": 1, "sessions": 1}, **site)))
    set_clock(folder, clock_offset)
    env = dict(os.environ, DYNREG_CLOCK_OFFSET_FILE=str(folder / "clock_offset"),
               MICROPYPATH=runtime.micropypath("host_tests/device/clock_offset", "firmware"))
    with open(folder / "console.txt", "w") as console:
        return subprocess.Popen([MICROPYTHON, os.path.join(APP, "main.py")], cwd=str(folder), env=env,
                                stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def set_clock(folder, offset):
    # The device's wall clock, `offset` seconds from the host's: atomically, it reads the file at
    # every time() call.
    (folder / "clock_offset.tmp").write_text(str(int(offset)))
    os.replace(folder / "clock_offset.tmp", folder / "clock_offset")


def console_of(folder):
    console = (folder / "console.txt").read_text(errors="replace")
    transcript = os.environ.get("DYNREG_TRANSCRIPT")
    if transcript:  # for the secrets scan of `make test`
        with open(transcript, "a") as f:
            f.write(console)
    return console


def contacted(cloud, name):
    # Every request or CONNECT of the device that reached the emulator.
    return [e for e in cloud.log() if e.get("device") == name]


def test_default_ntp_servers_by_cloud(tmp_path):
    # The spec (docs/CLOUDS.md "The clock"): Chinese servers first for Tencent and Alibaba, the cloud's
    # own first of all; the pool and Cloudflare elsewhere; site.json's list replaces them. The
    # Tencent C SDK's info format, which names no cloud, is Tencent's.
    code = """
import board
from dynreg import store
for cloud in ("tencent", "aliyun", "azure"):
    print(cloud, " ".join(board.ntp_servers({}, cloud)))
print("sdk", " ".join(board.ntp_servers({}, store.load("sdk_info.json").cloud)))
print("site", " ".join(board.ntp_servers({"ntp_servers": ["ntp.example.org", "10.0.0.1"]}, "tencent")))
print("one", " ".join(board.ntp_servers({"ntp_servers": "ntp.example.org"}, "aliyun")))
"""
    (tmp_path / "sdk_info.json").write_text(json.dumps({
        "auth_mode": "KEY", "productId": "SDKPROD001", "productSecret": "sdk-product-secret-01", "deviceName": "sdk-01",
        "key_deviceinfo": {"deviceSecret": "YOUR_IOT_PSK"}}))
    proc = subprocess.run([MICROPYTHON, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, timeout=WAIT,
                          env=dict(os.environ, MICROPYPATH=runtime.micropypath("firmware")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "tencent ntp.tencent.com ntp.aliyun.com cn.pool.ntp.org pool.ntp.org",
        "aliyun ntp.aliyun.com ntp.tencent.com cn.pool.ntp.org pool.ntp.org",
        "azure pool.ntp.org time.cloudflare.com",
        "sdk ntp.tencent.com ntp.aliyun.com cn.pool.ntp.org pool.ntp.org",
        "site ntp.example.org 10.0.0.1",
        "one ntp.example.org",
    ]


def test_no_socket_left_for_sntp_is_a_server_that_failed(tmp_path):
    # lwIP raises ENOMEM from socket() when its sockets are all taken: one server failed, named
    # with the errno, not an OSError out of sync_clock (which the online part calls too). The
    # host's clock is right: the board carries on.
    code = """
import socket, sys
class NoSockets:
    AF_INET, SOCK_DGRAM = socket.AF_INET, socket.SOCK_DGRAM
    getaddrinfo = socket.getaddrinfo
    def socket(self, *args):
        raise OSError(12)
sys.modules["socket"] = NoSockets()
import board
board.sync_clock({"ntp_servers": ["127.0.0.1:123"]}, print, "tencent")
print("synced")
"""
    proc = subprocess.run([MICROPYTHON, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, timeout=WAIT,
                          env=dict(os.environ, MICROPYPATH=runtime.micropypath("firmware")))
    transcript = os.environ.get("DYNREG_TRANSCRIPT")
    if transcript:  # for the secrets scan and the errors doc's check of `make test`
        with open(transcript, "a") as f:
            f.write(proc.stdout + proc.stderr)
    assert proc.stdout.splitlines() == ["clock: 127.0.0.1:123: no socket (errno 12)",
                                        "clock: no NTP server answered; the clock kept its time, past the firmware's "
                                        "build date", "synced"], proc.stdout + proc.stderr


def test_no_server_answering_before_the_build_date_is_a_clock_error_naming_each(cloud, tmp_path):
    # Two names that do not resolve and a server that never answers, on a board whose clock
    # reads two days before the firmware's build date: each boot attempt ends in a ClockError
    # that names every server and what failed, retried with the backoff; nothing reaches the
    # cloud (nothing was signed).
    with NtpServer(answer=False) as silent:
        servers = ["ntp-a.invalid", "ntp-b.invalid", silent.address]
        offset = build_day() - 2 * 86400 - time.time()
        status, console = boot(tmp_path / "board", cloud, "clock-before", offset, ntp_servers=servers,
                               boot_attempts=2, retry_ms=100)
        queries = list(silent.queries)
    assert status == 0 and "Traceback" not in console, console  # main() returned: the board gave up
    failures = ["ntp-a.invalid: DNS failed (", "ntp-b.invalid: DNS failed (",
                silent.address + ": no answer (timed out)"]
    for failure in failures:
        assert console.count("clock: " + failure) == 2, console  # logged as each was tried
    attempts = [line for line in console.splitlines() if line.startswith("boot attempt")]
    assert len(attempts) == 2, console
    for n, line in enumerate(attempts, 1):
        assert line.startswith("boot attempt %d of 2 failed: ClockError: clock not set and before the firmware's "
                               "build date; no NTP server answered: ntp-a.invalid: DNS failed (" % n), console
        assert all(failure in line for failure in failures), line
    assert 50 <= int(attempts[0].rsplit("; retrying in ", 1)[1][:-len(" ms")]) <= 100, console  # jittered
    assert "retrying" not in attempts[1], console
    # A real SNTP request reached the silent server on each attempt: 48 bytes, version 3, client.
    assert [(len(q), q[0] >> 3 & 7, q[0] & 7) for q in queries] == [(48, 3, 3)] * 2, queries
    assert contacted(cloud, "clock-before") == [] and "registering" not in console, console


def test_the_first_server_with_a_plausible_answer_is_taken_and_the_board_registers(cloud, tmp_path):
    # A name that does not resolve, a server that answers 2001 (before the build date: not
    # taken), then one that answers the time: a real exchange, after which the board registers
    # and publishes.
    with NtpServer(now=lambda: 978307200.0) as wrong, NtpServer() as right:
        servers = ["ntp.invalid", wrong.address, right.address]
        status, console = boot(tmp_path / "board", cloud, "clock-answered", ntp_servers=servers)
        asked = len(wrong.queries), len(right.queries)
    assert status == 0, console
    assert "clock: ntp.invalid: DNS failed (" in console, console
    assert "clock: %s: answered a time before the firmware's build date" % wrong.address in console, console
    assert "clock: %s answered (the unix port keeps the host's clock)" % right.address in console, console
    assert asked == (1, 1), console
    assert "published status on %s/clock-answered/data" % PRODUCT in console, console
    assert [r["result"] for r in registrations(cloud, "clock-answered")] == ["ok"], console


def test_no_server_answering_with_a_clock_past_the_build_date_carries_on(cloud, tmp_path):
    # An RTC that kept the time: the board says no server answered, and registers on its clock.
    status, console = boot(tmp_path / "board", cloud, "clock-kept", ntp_servers=["ntp.invalid"])
    assert status == 0, console
    assert "clock: ntp.invalid: DNS failed (" in console, console
    assert "clock: no NTP server answered; the clock kept its time, past the firmware's build date" in console
    assert "published status on %s/clock-kept/data" % PRODUCT in console, console
    assert "ClockError" not in console, console


def test_a_registered_board_whose_clock_is_not_set_syncs_it_again_until_it_can_log_in(cloud, tmp_path):
    # A site-wide power cut: the WiFi is back before the uplink, so no NTP server answers, and
    # the board (no battery-backed RTC) reads 2021. It holds its credential: nothing to
    # register, but every login signs with the clock (Tencent's expiry). The failed login is
    # retried like a lost connection, each attempt after a new clock sync; once the server
    # answers (and the clock is set: what machine.RTC does on a board, done here by the test,
    # as the unix port keeps the host's clock), the board logs in with the credential it has.
    folder = tmp_path / "board"
    status, console = boot(folder, cloud, "clock-lost")  # first boot, clock right: registers
    assert status == 0 and "published status on %s/clock-lost/data" % PRODUCT in console, console
    with NtpServer(answer=False, on_answer=lambda: set_clock(folder, 0)) as ntp:
        board = start(folder, calendar.timegm((2021, 6, 1, 0, 0, 0)) - time.time(), ntp_servers=[ntp.address],
                      reconnect_min_ms=100, reconnect_max_ms=400)
        try:
            deadline = time.monotonic() + WAIT
            while len(ntp.queries) < 3:  # the boot's sync, then two after failed logins
                assert board.poll() is None and time.monotonic() < deadline, console_of(folder)
                time.sleep(0.05)
            ntp.answer = True
            board.wait(WAIT)
        finally:
            if board.poll() is None:
                board.kill()
                board.wait()
        queries = len(ntp.queries)
    console = console_of(folder)
    assert board.returncode == 0 and "Traceback" not in console and "stopped" not in console, console
    assert "clock: clock not set and before the firmware's build date; no NTP server answered: %s: no answer " \
           "(timed out) (the credential is stored: synced again before the login)" % ntp.address in console, console
    # The first login fails on the clock (nothing signed, nothing sent); each attempt after it
    # syncs first, and fails there while the server is silent.
    assert console.count("dynreg: connect failed (clock not set: sync it by SNTP first)") == 1, console
    silent = console.count("clock: %s: no answer (timed out)" % ntp.address)
    resynced = console.count("dynreg: connect failed (clock not set and before the firmware's build date; no NTP "
                             "server answered: %s: no answer (timed out))" % ntp.address)
    assert resynced == silent - 1 >= 2 and queries == silent + 1, (queries, console)
    assert "clock: %s answered" % ntp.address in console, console
    assert "published status on %s/clock-lost/data" % PRODUCT in console, console
    assert [e["result"] for e in contacted(cloud, "clock-lost") if e.get("api") == "mqtt-connect"] == ["ok", "ok"]
    assert [r["result"] for r in registrations(cloud, "clock-lost")] == ["ok"], console

# What docs/ERRORS.md says the board prints, printed by the board: firmware/main.py on the
# MicroPython v1.28.0 unix port, once per failure the guide quotes that no other test's device
# prints (a bad info, a clock never set, a network that stays down, a broker certificate that
# fails after registering, a 404, a flash that cannot be written, NTP servers that refuse or
# answer nonsense). Each test checks its console against the guide's own quote, so a quote
# that drifts from the board fails here; tools/check_errors_doc.py then checks, over every
# device's output of `make test` (DYNREG_TRANSCRIPT), that each quote was printed by a test.
# Also the checker itself, on a made-up guide.
import calendar
import datetime
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import runtime
from cloud_emulator.testing import running_emulator
from e2e import MICROPYTHON, ROOT, SECRET, NtpServer, other_ca, registrations, write_info

sys.path.insert(0, os.path.join(ROOT, "tools"))
import check_errors_doc  # noqa: E402

APP = os.path.join(ROOT, "firmware")
PRODUCT = "MSGDOCTC01"
WAIT = 120  # seconds: the bound of every boot, far above what any needs
with open(check_errors_doc.DOC) as _f:
    GUIDE = _f.read()


def quote(start):
    # The guide's one quoted message that starts with `start`.
    found = [m for m in check_errors_doc.messages(GUIDE) if m.startswith(start)]
    assert len(found) == 1, (start, found)
    return found[0]


def prints(console, start):
    # The console's lines that hold the guide's quote starting with `start`, joined.
    regex = check_errors_doc.pattern(quote(start))
    lines = [line for line in console.splitlines() if regex.search(line)]
    assert lines, "docs/ERRORS.md quotes `%s`; the board printed:\n%s" % (quote(start), console)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100)
        yield cloud


def boot(folder, site=None, clock_offset=0):
    # firmware/main.py once, to its end, in `folder` (its flash): (exit status, console). Run
    # as a board runs it, main.py's own return value is not the process's exit status.
    (folder / "site.json").write_text(json.dumps(dict({"boot_attempts": 1, "sessions": 1}, **(site or {}))))
    (folder / "clock_offset").write_text(str(int(clock_offset)))
    env = dict(os.environ, DYNREG_CLOCK_OFFSET_FILE=str(folder / "clock_offset"),
               MICROPYPATH=runtime.micropypath("host_tests/device/clock_offset", "firmware"))
    proc = subprocess.run([MICROPYTHON, os.path.join(APP, "main.py")], cwd=str(folder), env=env,
                          capture_output=True, text=True, timeout=WAIT)
    console = proc.stdout + proc.stderr
    transcript = os.environ.get("DYNREG_TRANSCRIPT")
    if transcript:  # tools/check_errors_doc.py reads it, and the secrets scan of `make test`
        with open(transcript, "a") as f:
            f.write(console)
    assert SECRET not in console
    return proc.returncode, console


def device(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    return folder


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- stopped: the info ----------------------------------------------------------------------

def test_no_info_stops_with_a_bad_configuration(tmp_path):
    _, console = boot(device(tmp_path, "none"))
    line = prints(console, "stopped: bad configuration:")
    assert "no device_info.json on this device" in line
    prints(console, "no device_info.json")


def test_an_info_that_is_not_json(tmp_path):
    folder = device(tmp_path, "torn")
    (folder / "device_info.json").write_text('{"dynreg": 1, "cloud": "tencent", "product_id": ')
    _, console = boot(folder)
    assert "device_info.json is not valid JSON" in prints(console, "stopped: bad configuration:")
    prints(console, "is not valid JSON")


def test_a_register_url_with_a_path_that_is_not_the_apis(tmp_path, cloud):
    folder = device(tmp_path, "path")
    write_info(folder, cloud, PRODUCT, device_name="msg-path",
               register_url="https://localhost:%d/iot/register" % cloud.https_port)
    _, console = boot(folder)
    assert "must be a base URL" in prints(console, "stopped: bad configuration:")
    prints(console, "must be a base URL")
    assert registrations(cloud, "msg-path") == []


# -- retried: the clock, the network, the answer, the flash --------------------------------

def test_a_clock_never_set_is_the_librarys_clock_error(tmp_path, cloud):
    # The unix port asks no NTP server unless site.json names one: the library's own check.
    folder = device(tmp_path, "clock")
    write_info(folder, cloud, PRODUCT, device_name="msg-clock")
    build = subprocess.run([MICROPYTHON, "-c", "import sys; print(sys.version)"], capture_output=True,
                           text=True, timeout=WAIT).stdout.strip().rsplit(" on ", 1)[1]
    before = calendar.timegm(datetime.date.fromisoformat(build).timetuple()) - 86400
    _, console = boot(folder, clock_offset=before - int(time.time()))
    assert "boot attempt 1 of 1 failed: ClockError: " in console, console
    prints(console, "clock not set: sync it")
    assert registrations(cloud, "msg-clock") == []


def test_a_registration_server_that_never_answers(tmp_path, cloud):
    folder = device(tmp_path, "down")
    write_info(folder, cloud, PRODUCT, device_name="msg-down", register_url="https://localhost:%d" % closed_port())
    _, console = boot(folder)
    assert "registration failed after 4 attempts" in prints(console, "boot attempt N of M failed: NetworkError")


class NotFound(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body>404 Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_404_is_a_protocol_error_retried_and_ntp_servers_that_fail(tmp_path):
    # A register_url that is no registration API answers 404 with a page: a ProtocolError
    # naming the status, retried by the boot's backoff. Before it, the clock: one server the
    # port refuses to send to (a broadcast address), one that answers nonsense.
    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ntp = NtpServer(nonsense=True)
    try:
        folder = device(tmp_path, "notfound")
        (folder / "device_info.json").write_text(json.dumps(
            {"dynreg": 1, "cloud": "tencent", "product_id": PRODUCT, "product_secret": SECRET,
             "device_name": "msg-404", "register_url": "http://127.0.0.1:%d" % server.server_address[1],
             "plain_http": True, "credential": {"psk": ""}}))
        _, console = boot(folder, {"boot_attempts": 2, "retry_ms": 50, "ntp_servers": ["255.255.255.255", ntp.address]})
    finally:
        server.shutdown()
        server.server_close()
        ntp.close()
    assert "clock: 255.255.255.255: failed (errno 13)" in prints(console, "clock: <server>: failed")  # EACCES
    assert ntp.address in prints(console, "clock: <server>: no valid answer")
    prints(console, "clock: no NTP server answered;")
    first = prints(console, "boot attempt N of M failed: <type>")
    assert first.startswith("boot attempt 1 of 2 failed: ProtocolError: HTTP 404, and ") and "\n" not in first, first
    assert 25 <= int(first.rsplit("; retrying in ", 1)[1][:-len(" ms")]) <= 50, first  # retry_ms, jittered
    assert "boot attempt 2 of 2 failed: ProtocolError: HTTP 404, and " in prints(
        console, "boot attempt N of M failed: ProtocolError")
    prints(console, "HTTP <status>")


def test_a_flash_that_cannot_be_written(tmp_path, cloud):
    # The info torn and its .tmp complete, as a cut mid-save leaves them: the board puts the
    # .tmp in place, and here that write fails (a folder stands where the file goes).
    folder = device(tmp_path, "flash")
    write_info(folder, cloud, PRODUCT, device_name="msg-flash")
    os.rename(folder / "device_info.json", folder / "device_info.json.tmp")
    (folder / "device_info.json").mkdir()
    _, console = boot(folder)
    assert "cannot restore device_info.json (errno " in prints(console, "boot attempt N of M failed: StorageError")


# -- stopped: a broker whose certificate the board cannot verify ---------------------------

def test_a_broker_certificate_that_fails_after_registering_stops_the_board(tmp_path, cloud):
    folder = device(tmp_path, "broker")
    write_info(folder, cloud, PRODUCT, device_name="msg-broker", mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port,
               mqtt_ca=other_ca(folder / "other-ca.der"))
    _, console = boot(folder)
    assert "credential stored" in console
    assert "localhost" in prints(console, "stopped: TLSError: TLS")
    assert len(registrations(cloud, "msg-broker")) == 1


# -- the checker ----------------------------------------------------------------------------

MADE_UP = """# guide

| type | the board prints | what happened | what to do |
|---|---|---|---|
| `AError` | `stopped: A failed (code N)` | the thing (`a sub-message here`) | run `python -m tool x` |

A transient failure is logged: `boot attempt N of M failed: <type>:
<message>; retrying in <ms> ms`, and `not a console line` is not a message.
"""


def test_the_checker_finds_the_quotes_and_reads_placeholders():
    assert check_errors_doc.messages(MADE_UP) == [
        "stopped: A failed (code N)", "a sub-message here",
        "boot attempt N of M failed: <type>: <message>; retrying in <ms> ms"]
    transcript = "x\nstopped: A failed (code 12)\nboot attempt 2 of 3 failed: NetworkError: down; retrying in 80 ms\n"
    assert check_errors_doc.missing(MADE_UP, transcript) == ["a sub-message here"]
    assert check_errors_doc.missing(MADE_UP, transcript + "err: a sub-message here\n") == []
    assert check_errors_doc.missing(MADE_UP, transcript.replace("(code 12)", "(code x)")) == [
        "stopped: A failed (code N)", "a sub-message here"]


def test_the_checker_fails_on_a_quote_no_device_printed(tmp_path):
    transcript = tmp_path / "out.log"
    transcript.write_text("nothing the guide quotes\n")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "check_errors_doc.py"), str(transcript)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "which no device printed" in proc.stdout
    assert "`stopped: bad configuration: " in proc.stdout

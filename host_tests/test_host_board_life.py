# A board never stays dead: the board application (firmware/main.py) on the MicroPython v1.28.0
# unix port, against the local cloud emulator, through what passes and what does not.
# - A cloud out of reach for longer than the old three boot attempts: retried for ever with a
#   capped backoff, the board registers once it is back.
# - A refusal the console can fix (dynamic registration off): asked again slowly, the board
#   registers by itself once the product is fixed through the emulator's admin API (the console).
# - A certificate the CA does not vouch for: asked again as slowly, nothing sent.
# - A refusal no wait changes (a wrong ProductSecret): one line, stopped, the watchdog disarmed
#   (the process's REPL still answers long after the watchdog's timeout).
# - An exception the application did not expect: the board resets (on the unix port its process
#   ends with watchdog.RESET_EXIT, which these tests take for a reset and boot the board again),
#   counted on flash; the third crash in a row makes the next boot a safe boot; a boot that lasts
#   clears the count.
# - A DNS lookup that never returns (an LD_PRELOAD shim compiled here blocks getaddrinfo for the
#   registration server on the first boot only): the watchdog's stand-in resets the board, and
#   the next boot registers; nothing registers twice.
# Waits are for events (the console, the process's end, the emulator's log), with generous
# bounds; no duration is asserted.
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import runtime
from cloud_emulator import admin
from cloud_emulator.testing import running_emulator
from e2e import MICROPYTHON, ROOT, SECRET, other_ca, registrations, write_info
from hostile import TrickleProxy

sys.path.insert(0, os.path.join(ROOT, "firmware"))
import watchdog  # noqa: E402  (firmware/watchdog.py: only its RESET_EXIT is read here)

APP = os.path.join(ROOT, "firmware")
PRODUCT = "LIFETC0001"
OFF = "LIFETC0002"  # dynamic registration off, until the test turns it on
WAIT = 120  # seconds: the bound of every wait, far above what any step needs
BOOTS = 6  # resets a test lets a board go through before it calls it a loop


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product(PRODUCT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100)
        cloud.add_product(OFF, SECRET, auth="key", dynreg=False, mode="autocreate", limit=100)
        yield cloud


class Board:
    # firmware/main.py in `folder` (its flash: device_info.json, site.json), one process per
    # boot, its console appended to console.txt.
    def __init__(self, folder, site, env=None, interactive=False):
        self.folder, self.env, self.interactive = folder, env or {}, interactive
        self.set_site(site)
        self.console_path = folder / "console.txt"
        self.process = None

    def set_site(self, site):
        (self.folder / "site.json").write_text(json.dumps(site))

    def power_on(self):
        env = dict(os.environ, MICROPYPATH=runtime.micropypath("firmware"), **self.env)
        self.mark = len(self.console())
        with open(self.console_path, "a") as console:
            self.process = subprocess.Popen([MICROPYTHON] + (["-i"] if self.interactive else [])
                                            + [os.path.join(APP, "main.py")], cwd=str(self.folder), env=env,
                                            stdout=console, stderr=subprocess.STDOUT,
                                            stdin=subprocess.PIPE if self.interactive else subprocess.DEVNULL)
        return self

    def ends(self):
        # This boot's exit status, once the process ended by itself.
        try:
            return self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError("the board did not end:\n" + self.console())

    def boot(self):
        # One boot to its end: (exit status, its console).
        status = self.power_on().ends()
        return status, self.console()[self.mark:]

    def boots(self):
        # Boots again after each reset, as a board does: [(exit status, console)], the last one
        # not a reset.
        done = []
        while not done or done[-1][0] == watchdog.RESET_EXIT:
            assert len(done) < BOOTS, "the board kept resetting:\n" + self.console()
            done.append(self.boot())
        return done

    def console(self):
        return self.console_path.read_text(errors="replace") if self.console_path.exists() else ""

    def wait(self, what, condition):
        deadline = time.monotonic() + WAIT
        while not condition(self.console()[self.mark:]):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError("%s did not happen (exit %s):\n%s" % (what, self.process.poll(), self.console()))
            time.sleep(0.05)

    def close(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        transcript = os.environ.get("DYNREG_TRANSCRIPT")
        if transcript:  # tools/check_errors_doc.py reads it, and the secrets scan of `make test`
            with open(transcript, "a") as f:
                f.write(self.console())
        assert SECRET not in self.console()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def device(tmp_path, cloud, name, product=PRODUCT, **fields):
    folder = tmp_path / name
    folder.mkdir()
    write_info(folder, cloud, product, device_name=name, mqtt_url="mqtts://localhost:%d" % cloud.mqtts_port,
               **fields)
    return folder


def boot_lines(console):
    return [line for line in console.splitlines() if line.startswith("boot attempt")]


class Outage(TrickleProxy):
    # The cloud's HTTPS endpoint behind a gate: while `down`, every connection is closed at once
    # (a cloud out of reach); then relayed as it comes.
    down = True

    def __init__(self, upstream):
        super().__init__(upstream, 0)

    def _accepted(self, device):
        if self.down:
            device.close()
        else:
            super()._accepted(device)


# -- what passes is waited out ------------------------------------------------------------------

def test_a_cloud_out_of_reach_longer_than_three_boot_attempts_is_waited_out(cloud, tmp_path):
    # Before: three boot attempts (boot_attempts 3), then the REPL for good. Now the default is
    # for ever, each wait announced, doubling from retry_min_ms and capped at retry_max_ms.
    with Outage(cloud.https_port) as gate:
        folder = device(tmp_path, cloud, "outage-01", register_url="https://localhost:%d" % gate.port)
        with Board(folder, {"retry_min_ms": 100, "retry_max_ms": 400, "sessions": 1}) as board:
            board.power_on()
            board.wait("a fourth failed boot attempt", lambda text: "boot attempt 4 failed: " in text)
            assert registrations(cloud, "outage-01") == []
            gate.down = False
            assert board.ends() == 0
            console = board.console()
    lines = boot_lines(console)
    assert len(lines) >= 4 and all(" of " not in line for line in lines), console
    for number, line in enumerate(lines, 1):
        assert line.startswith("boot attempt %d failed: NetworkError: registration failed after 4 attempts" % number)
        wait = int(line.rsplit("; retrying in ", 1)[1].split()[0])
        top = min(100 << (number - 1), 400)  # doubled per failure, capped; a random point in its upper half
        assert top // 2 <= wait <= top, line
    assert "published status on %s/outage-01/data" % PRODUCT in console, console
    assert [e["result"] for e in registrations(cloud, "outage-01")] == ["ok"]


def test_a_refusal_the_console_can_fix_is_asked_again_until_fixed(cloud, tmp_path):
    # Dynamic registration off for the product: before, "stopped" and a power cycle after the fix.
    # Now the board asks again every refused_retry_ms (here 1 s) and registers once the operator
    # turned it on in the console (the emulator's admin API, as its CLI `product --update` does).
    folder = device(tmp_path, cloud, "console-01", product=OFF)
    with Board(folder, {"refused_retry_ms": 1000, "sessions": 1}) as board:
        board.power_on()
        board.wait("a second refusal", lambda text: text.count("; asking again in ") >= 2)
        assert "stopped" not in board.console()
        admin.define_product(cloud.store, OFF, update=True, dynreg=True)
        assert board.ends() == 0
        console = board.console()
    refused = [line for line in boot_lines(console) if "RejectedError" in line]
    assert len(refused) >= 2, console
    for line in refused:
        assert "(dynamic registration off); asking again in " in line and line.endswith(
            " ms (once fixed in the console, the board carries on by itself)"), line
        assert 500 <= int(line.rsplit("; asking again in ", 1)[1].split()[0]) <= 1000, line
    assert "published status on %s/console-01/data" % OFF in console, console
    results = [e["result"] for e in registrations(cloud, "console-01")]
    assert results[-1] == "ok" and len(results) == len(refused) + 1 and "ok" not in results[:-1], results


def test_a_certificate_the_ca_does_not_vouch_for_is_asked_again_slowly(cloud, tmp_path):
    # Not transient (the same server sends the same certificate), not final either: a network
    # that intercepts TLS passes. Asked again every refused_retry_ms, and no request is sent.
    folder = device(tmp_path, cloud, "tls-01")
    doc = json.loads((folder / "device_info.json").read_text())
    doc["ca"] = other_ca(folder / "other-ca.der")
    (folder / "device_info.json").write_text(json.dumps(doc))
    with Board(folder, {"refused_retry_ms": 1000}) as board:
        board.power_on()
        board.wait("a second refusal", lambda text: text.count("; asking again in ") >= 2)
        console = board.console()
    lines = boot_lines(console)
    assert len(lines) >= 2, console
    for n, line in enumerate(lines[:2], 1):
        assert line.startswith("boot attempt %d failed: TLSError: TLS: certificate of localhost failed the check: "
                               % n) and line.endswith(" ms (a network that intercepts TLS, or a wrong CA or "
                                                      "endpoint)"), line
    assert registrations(cloud, "tls-01") == []


def test_a_refusal_no_wait_changes_stops_with_one_line_and_the_repl_stays(cloud, tmp_path):
    # A wrong ProductSecret: one line, no retry; the watchdog disarmed, so the REPL (micropython
    # -i: the port's own, after main.py) still answers after the watchdog's timeout has passed.
    folder = device(tmp_path, cloud, "wrong-01", secret="Wr0ng-Pr0duct-S3cret-00")
    with Board(folder, {"watchdog_ms": 5000}, interactive=True) as board:
        board.power_on()
        board.wait("the stop", lambda text: "stopped: " in text)
        time.sleep(6)  # past the watchdog's timeout: a board still armed would have been reset
        assert board.process.poll() is None, board.console()
        board.process.communicate(b"print('still', 6 * 7)\n", timeout=WAIT)
        console = board.console()
    assert board.process.returncode == 0 and "still 42" in console, console
    assert console.count("stopped: cloud rejected the request: AuthFailure.SignatureFailure") == 1, console
    assert "(wrong ProductSecret)" in console and "asking again" not in console and "watchdog" not in console
    assert [e["result"] for e in registrations(cloud, "wrong-01")] != [] and "ok" not in [
        e["result"] for e in registrations(cloud, "wrong-01")]


# -- what the application did not expect: a reset, then a safe boot ------------------------------

def test_repeated_crashes_make_a_safe_boot_and_a_boot_that_lasts_clears_the_count(cloud, tmp_path):
    # A status topic with three %s (site_check would refuse it): a TypeError at every boot,
    # before the board goes online. Each one resets the board; the third in a row makes the
    # next boot a safe boot.
    folder = device(tmp_path, cloud, "crash-01")
    broken = {"status_topic": "%s/%s/%s", "sessions": 1}
    with Board(folder, broken) as board:
        first, second, third, safe = board.boots()
        for n, (status, console) in enumerate((first, second, third), 1):
            assert status == watchdog.RESET_EXIT, console
            assert "crashed: TypeError: " in console and "Traceback" in console, console
        assert "resetting: crash 1 in a row (a safe boot after 3, each within 300000 ms of its boot)" in first[1]
        assert "resetting: crash 2 in a row" in second[1]
        assert ("crashed 3 times in a row, each within 300000 ms of its boot: the next boot is a safe boot (delete "
                "safe_boot to start the application again)") in third[1], third[1]
        assert safe[0] == 0 and safe[1].strip() == ("safe boot (flag file safe_boot: 3 crashes, each within 300000 "
                                                    "ms of its boot): the application does not start"), safe[1]
        assert [e["result"] for e in registrations(cloud, "crash-01")] == ["ok"]  # the first boot's, once

        # A person deletes the flag: crashes count from nothing again. Two more, then a boot that
        # stays online longer than crash_window_ms, then a crash: the first of a new count.
        os.remove(folder / "safe_boot")
        board.set_site(dict(broken, crash_window_ms=300))
        for n in (1, 2):
            status, console = board.boot()
            assert status == watchdog.RESET_EXIT and "resetting: crash %d in a row" % n in console, console
        board.set_site({"crash_window_ms": 300, "online_ms": 1500})
        status, console = board.boot()
        assert status == 0 and "published status on" in console and "crashed" not in console, console
        assert not (folder / "crashes").exists()
        board.set_site(dict(broken, crash_window_ms=300))
        status, console = board.boot()
        assert status == watchdog.RESET_EXIT and "resetting: crash 1 in a row" in console, console


# -- a hang: the watchdog ------------------------------------------------------------------------

HANG_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* getaddrinfo for HANG_HOST never returns, once: the first caller creates HANG_MARK and waits
   for ever (a DNS lookup without a timeout, as on every port); later ones resolve. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
    const char *host = getenv("HANG_HOST"), *mark = getenv("HANG_MARK");
    if (node && host && mark && strcmp(node, host) == 0) {
        int fd = open(mark, O_CREAT | O_EXCL | O_WRONLY, 0600);
        if (fd >= 0) {
            close(fd);
            for (;;)
                pause();
        }
    }
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT,
                                                                                              "getaddrinfo");
    return real(node, service, hints, res);
}
"""


@pytest.fixture(scope="module")
def hang_shim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shim")
    (folder / "hang.c").write_text(HANG_SHIM)
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "no C compiler (tools/firmware.sh installs build-essential)"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(folder / "hang.so"), str(folder / "hang.c"), "-ldl"],
                   check=True, timeout=WAIT)
    return str(folder / "hang.so")


def test_a_dns_lookup_that_never_returns_ends_in_a_reset_then_a_registration(cloud, tmp_path, hang_shim):
    # The registration server's name never resolves on the first boot: only the watchdog's
    # stand-in can end that boot. watchdog_ms 15000: longer than a registration attempt's own
    # timeout (10 s), the longest wait between two feeds here.
    folder = device(tmp_path, cloud, "hang-01", register_url="https://localhost:%d" % cloud.https_port)
    env = {"LD_PRELOAD": hang_shim, "HANG_HOST": "localhost", "HANG_MARK": str(tmp_path / "hung-once")}
    with Board(folder, {"watchdog_ms": 15000, "sessions": 1}, env=env) as board:
        hung, *others = board.boots()
        assert (tmp_path / "hung-once").exists()
        assert hung[0] == watchdog.RESET_EXIT, hung[1]
        assert "dynreg: registering %s/hang-01" % PRODUCT in hung[1], hung[1]
        assert hung[1].rstrip().endswith("watchdog: not fed for 15000 ms: reset"), hung[1]
        assert "credential stored" not in hung[1]
        status, console = others[-1]
        assert status == 0 and "credential stored" in console and "published status on" in console, console
        again = board.boot()[1]  # and once more: the credential is on flash
    assert "holds a credential: no registration" in again and "registering" not in again, again
    assert [e["result"] for e in registrations(cloud, "hang-01")] == ["ok"]

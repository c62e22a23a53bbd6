# The watchdog on the Pico W image, on the emulated RP2040 (pico_emulator/). rp2040js counts the
# chip's watchdog down as the hardware does and reports its bite; run-pico.mjs turns that into a
# reset (the chip stops, its flash kept, exit pico.RESET) and the test boots the board again
# from that flash. The firmware arms the 8 s hardware watchdog and feeds it from a hard timer
# while watchdog_ms has not passed since the application's last feed (firmware/watchdog.py).
# - The extension itself: the chip outlives the hardware's 8.3 s without a feed while watchdog_ms
#   has not passed, a disarmed watchdog never bites, and one left unfed resets the chip.
# - On the first boot, the registration server's name never resolves (a socket.py on the flash
#   wraps the radio's stand-in, tunnel_socket.py, and waits for ever in getaddrinfo, once): only
#   the watchdog ends that boot; the next one registers, once.
import json
import os
import shutil

import pytest

from e2e import ROOT, registrations
from test_host_pico import SECRET, TENCENT, UNIQUE_ID, cloud, console_until, tencent_info  # noqa: F401 (cloud: the fixture)

import pico

BOOT_TIMEOUT = 600  # wall seconds: the emulated chip runs at 0.15 to 0.45x real time
HANG_ONCE = """# The radio's stand-in, but the first lookup of the registration server never returns.
import os
import time

import tunnel_socket
from tunnel_socket import *  # noqa: F401,F403


def getaddrinfo(host, port, *more):
    if port == %d:
        try:
            os.stat("hung_once")
        except OSError:
            open("hung_once", "w").close()
            while True:
                time.sleep_ms(1000)
    return tunnel_socket.getaddrinfo(host, port, *more)
"""


EXTENSION = """
import time
import watchdog

watchdog.arm(10000)
time.sleep_ms(9000)
print("alive 9 s after the last feed")
watchdog.disarm()
time.sleep_ms(12000)
print("disarmed, alive 12 s later")
watchdog.arm(10000)
start = time.ticks_ms()
while True:
    time.sleep_ms(1000)
    print("unfed for", time.ticks_diff(time.ticks_ms(), start) // 1000, "s")
"""


def test_the_hardware_watchdog_is_extended_to_watchdog_ms_and_can_be_switched_off():
    # Seconds here are the emulated chip's (rp2040js counts its cycles), not the machine's.
    problem = pico.check_ready()
    if problem:
        pytest.fail("the emulated Pico W cannot run: " + problem)
    proc = pico.run(EXTENSION, puts=[(os.path.join(ROOT, "firmware", "watchdog.py"), "/watchdog.py")], timeout=600)
    assert proc.returncode == pico.RESET and "[emu] watchdog reset (timed out)" in proc.stderr, proc.stderr[-2000:]
    assert "alive 9 s after the last feed" in proc.stdout and "disarmed, alive 12 s later" in proc.stdout, proc.stdout
    unfed = [int(line.split()[2]) for line in proc.stdout.splitlines() if line.startswith("unfed for")]
    assert unfed and unfed[-1] >= 9, proc.stdout  # past the hardware's own 8.3 s: watchdog_ms decided


def test_a_dns_lookup_that_never_returns_ends_in_a_watchdog_reset_then_a_registration(cloud, tmp_path):
    files = tmp_path / "flash-files"
    files.mkdir()
    for name in ("boot.py", "main.py", "board.py", "watchdog.py"):
        shutil.copy(os.path.join(ROOT, "firmware", name), files / name)
    shutil.copy(pico.SOCKET_MODULE, files / "tunnel_socket.py")
    (files / "socket.py").write_text(HANG_ONCE % cloud.https_port)
    (files / "device_info.json").write_text(json.dumps(tencent_info(cloud)))
    shutil.copy(cloud.ca_der_path, files / "ca.der")
    # watchdog_ms: longer than a registration attempt (timeout_ms, 10 s), the longest wait
    # between two feeds here.
    (files / "site.json").write_text(json.dumps({"network": "uart-tunnel", "ntp_servers": ["localhost"],
                                                 "watchdog_ms": 20000, "sessions": 1}))
    flash = str(tmp_path / "flash.bin")
    proc = pico.run("pass", puts=[(str(files / n), "/" + n) for n in sorted(os.listdir(files))], flash_save=flash,
                    unique_id=UNIQUE_ID, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    with pico.PicoBoard(flash, unique_id=UNIQUE_ID) as board:
        hung = console_until(board, lambda b: b.process.poll() is not None, timeout=BOOT_TIMEOUT)
        assert board.process.returncode == pico.RESET, hung + board.runner_log()[-2000:]
        assert "[emu] watchdog reset (timed out)" in board.runner_log()
    assert "dynreg: registering %s/%s" % (TENCENT, UNIQUE_ID) in hung, hung
    assert "credential stored" not in hung and registrations(cloud, UNIQUE_ID) == []

    with pico.PicoBoard(flash, unique_id=UNIQUE_ID) as board:  # the reset's boot, from the same flash
        console = console_until(board, lambda b: b"published status on" in b.console or b.process.poll() is not None,
                                timeout=BOOT_TIMEOUT)
    assert "credential stored in device_info.json" in console, console
    assert [e["result"] for e in registrations(cloud, UNIQUE_ID)] == ["ok"]

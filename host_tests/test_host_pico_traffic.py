# Incoming traffic on the Pico W image, on an emulated RP2040: a subscribed board takes in a
# burst of messages over TLS (mbedTLS and umqtt.simple on the chip), through the stand-in for
# its radio (pico_emulator/board/socket.py). A real Pico W holds at most lwIP's receive window
# (TCP_WND, 6400 bytes) of a connection's unread data, and the sender waits for the rest; the
# stand-in does the same with the relay (tunnel.mjs), so that the board's heap pays for no more
# than a board's would. Before, it took in whatever the UART held: the burst below ended in
# "MemoryError: memory allocation failed, allocating 85248 bytes" before its first message.
import os
import sys

import pytest

from e2e import ROOT
from hostile import publish
from test_host_pico_stalls import online_on_the_chip

sys.path.insert(0, os.path.join(ROOT, "pico_emulator"))
import pico  # noqa: E402

PK = "a1TrafficPk"
MESSAGES, SIZE = 60, 3000

TRAFFIC = """
import gc, ntptime
ntptime.host = "localhost"
ntptime.settime()
from dynreg import online
class Done(Exception):
    pass
got = []
low = [gc.mem_free()]
def on_connect(client):
    client.subscribe(b"%s")
def on_message(client, topic, msg):
    got.append(len(msg))
    low[0] = min(low[0], gc.mem_free())
    if len(got) == %d:
        raise Done()
try:
    online.stay_online("online.json", on_connect, on_message, online_ms=120000, ping_ms=20000, pong_ms=20000,
                       timeout_ms=20000)
    print("RESULT left", len(got))
except Done:
    print("RESULT", len(got), sum(got), "lowest free heap", low[0])
except Exception as e:
    print("RESULT", type(e).__name__, e, len(got))
"""


def test_a_burst_of_incoming_messages_is_taken_in_a_window_at_a_time(tmp_path):
    problem = pico.check_ready()
    if problem:
        pytest.fail("the emulated Pico W cannot run: " + problem)
    topic = "/%s/pico-traffic/user/get" % PK
    burst = [publish(topic, bytes([48 + i % 10]) * SIZE) for i in range(MESSAGES)]
    proc, broker = online_on_the_chip(tmp_path, PK, "pico-traffic", burst, TRAFFIC % (topic, MESSAGES), timeout=900)
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert len(results) == 1, proc.stdout + proc.stderr[-3000:]
    assert results[0].startswith("RESULT %d %d lowest free heap" % (MESSAGES, MESSAGES * SIZE)), \
        proc.stdout + proc.stderr[-3000:]
    assert broker.connections == 1 and "offline after" not in proc.stdout, proc.stdout
    print(results[0], pico.emulated_seconds(proc.stderr))

# Staying online: one MQTT session after another with the stored credential, for as long as the
# board runs. Keepalive pings, incoming messages, and on any loss a reconnect after a bounded,
# jittered exponential backoff, each with a fresh login (a Tencent login expires 24 h after it
# was made). It never registers: dynreg.ensure ran once, at boot. A refused login
# (RejectedError, CONNACK 4 or 5) ends it at once: retrying would not change the cloud's mind.
# A clock not set (ClockError) is a failure like a lost connection: sync_clock runs before the
# next attempt. Only the connection's errors are losses: one of the application's own, raised
# by its on_connect or on_message while the connection was fine, ends stay_online as it is.
# A MemoryError is a loss too (a reconnect is where a long-running board's heap is tightest):
# the dead client is dropped before the next is built, and the broker's TLS context is built
# once and kept. At the fifth of them since the last session that held, the MemoryError
# ends stay_online: the heap is not coming back, and the board application resets the board.
from micropython import const
from dynreg import ClockError, Error, NetworkError, ProtocolError, TLSError, clock, codec, connect, mqtt, net
from dynreg import options, say

DEFAULTS = {
    "keepalive": 60,  # seconds, sent in CONNECT: the broker drops a client silent for 1.5 times it
    "ping_ms": 0,  # a PINGREQ this long after the last one (or the CONNECT); 0: half the keepalive
    # (no pings with keepalive 0, which asks the broker for no keepalive at all)
    "pong_ms": 10000,  # its PINGRESP must come within this, or the connection counts as lost
    "timeout_ms": 10000,  # each connect: TCP, TLS and the CONNACK
    "reconnect_min_ms": 1000,  # the wait before a reconnect: doubles with each failure, jittered
    "reconnect_max_ms": 60000,  # ... up to this
    "online_ms": 0,  # leave after this long in all (tests, demos); 0: never
    "sessions": 0,  # leave once this session's on_connect has run (tests, demos); 0: never
    "max_packet": mqtt.MAX_PACKET,  # bytes: an incoming PUBLISH over it is dropped (logged), not taken in
    "sync_clock": None,  # called before the attempt that follows a ClockError (firmware: board.sync_clock)
    "feed": None,  # called at every turn of its loops (firmware: its watchdog)
    "ca": None,  # for dynreg.connect: the info's by default
    "mqtt_url": None,
    "log": print,
}
_MEMORY_ERRORS = const(5)  # MemoryErrors since the last session that held: the last one is raised
_IDLE_MS = const(60000)  # without pings or online_ms: how long one wait_for takes in messages


def stay_online(info, on_connect, on_message=None, **given):
    # on_connect(client) runs after every (re)connect: subscribe and publish there (the session is
    # clean each time). on_message(client, topic, msg) gets every incoming PUBLISH. Returns the
    # number of sessions when online_ms or sessions says to leave; forever otherwise.
    opts = options(given, DEFAULTS)
    connect_opts = {}  # dynreg.connect's own options, as given here
    for name in mqtt.DEFAULTS:
        if name in opts:
            connect_opts[name] = opts[name]
    connect_opts["tls_cache"] = {}  # the broker's TLS context, built at the first connect and kept
    ping_ms = opts["ping_ms"] or opts["keepalive"] * 500
    start = clock.ticks_ms()
    sessions = failures = 0  # failures: in a row since the last session that held, the backoff's exponent
    short = 0  # MemoryErrors since the last session that held
    client = None
    failure = None  # the last attempt's or session's error (a ClockError: sync the clock before the next)
    app = []  # the exception the application's on_message raised
    while True:
        if opts["feed"]:
            opts["feed"]()
        if sessions or failures:
            wait = backoff_ms(opts, failures)
            left = _left(opts, start)
            if left is not None and left <= wait:
                break
            say(opts, "reconnecting in %d ms" % wait)
            clock.sleep_ms(wait)
        try:
            if isinstance(failure, ClockError) and opts["sync_clock"]:
                opts["sync_clock"]()
            # dynreg.connect: a new login each time (new connid, new expiry), and for Azure one
            # more provisioning when the hub lost the device. It collects the garbage first: the
            # dead client's memory is free before the next handshake asks for it.
            client = connect(info, **connect_opts)
        except TLSError:
            raise  # a certificate the CA does not vouch for stays so: never retried
        except (NetworkError, ProtocolError, ClockError, MemoryError) as e:
            failures += 1
            failure = e
            say(opts, "connect failed (%s)" % _what(e))
        else:
            sessions += 1
            up = clock.ticks_ms()

            def deliver(topic, msg):  # always a callback: umqtt calls it for any PUBLISH, wanted or not
                if on_message:
                    try:
                        on_message(client, topic, msg)
                    except Exception as e:
                        if not _loss(client, e):
                            app.append(e)
                        raise

            client.set_callback(deliver)
            try:
                on_connect(client)
                if sessions != opts["sessions"]:
                    _session(client, opts, ping_ms, start)
            except Exception as e:
                mqtt.close(client)
                lost = _loss(client, e)
                client = None  # dropped before the next one is built
                if app or not lost:
                    e = app[0] if app else e
                    say(opts, "the application's on_connect or on_message raised %s: %s" % (type(e).__name__, e))
                    raise e
                lasted = clock.ticks_diff(clock.ticks_ms(), up)
                failures = 0 if lasted >= (ping_ms or _IDLE_MS) else failures + 1  # one that held resets it
                if not failures:
                    short = 0
                failure = e
                say(opts, "offline after %d ms: %s" % (lasted, _what(e)))
            except BaseException:
                mqtt.close(client)  # Ctrl-C: no socket left behind
                raise
            else:
                try:
                    client.disconnect()
                except OSError:
                    mqtt.close(client)
                break
        if isinstance(failure, MemoryError):
            short += 1
            if short >= _MEMORY_ERRORS:  # the heap is not coming back
                say(opts, "out of memory %d times since the last session that held: giving up" % short)
                raise failure
    say(opts, "leaving after %d session%s" % (sessions, "" if sessions == 1 else "s"))
    return sessions


def _session(client, opts, ping_ms, start):
    # Takes in messages and pings until the connection is lost (raises) or online_ms is over.
    last_ping = clock.ticks_ms()  # the CONNECT started the broker's keepalive timer
    while True:
        if opts["feed"]:
            opts["feed"]()
        wait = ping_ms - clock.ticks_diff(clock.ticks_ms(), last_ping) if ping_ms else _IDLE_MS
        left = _left(opts, start)
        if left is not None:
            if left <= 0:
                return
            wait = min(wait, left)
        if wait > 0:
            mqtt.wait_for(client, bool, wait)  # done() never: bool() is False
            continue
        # A PINGREQ, then messages until its PINGRESP, all within pong_ms. umqtt's blocking
        # wait_msg() returns None only for a PINGRESP; a PUBLISH meanwhile goes to the callback.
        pong_ms = opts["pong_ms"]
        client.ping()
        client.sock.setblocking(True)
        previous = mqtt.set_deadline(client, net.deadline_in(pong_ms))
        try:
            while client.wait_msg() is not None:
                pass
        except (OSError, IndexError, TypeError, AssertionError) as e:
            raise NetworkError("no PINGRESP within %d ms (%s)" % (pong_ms, net.reason(e)))
        finally:
            mqtt.set_deadline(client, previous)
        last_ping = clock.ticks_ms()


def backoff_ms(opts, failures):
    # reconnect_min_ms doubled per failure up to reconnect_max_ms, then a random point in its
    # upper half: a fleet that lost its broker together does not come back together.
    delay = min(opts["reconnect_min_ms"] << min(failures, 16), opts["reconnect_max_ms"])
    return delay - codec.random_int(24) % (delay // 2 + 1)


def _left(opts, start):
    if not opts["online_ms"]:
        return None
    return opts["online_ms"] - clock.ticks_diff(clock.ticks_ms(), start)


def _loss(client, e):
    # The connection's errors: dynreg's, umqtt's MQTTException (a SUBACK of 0x80), and any
    # while the connection failed under a read or write (umqtt's IndexError for a cut packet:
    # its link says `lost`, mqtt._Link);
    # and a MemoryError, wherever it came from: a packet half read leaves the stream unusable.
    from umqtt.simple import MQTTException

    return (isinstance(e, (NetworkError, ProtocolError, ClockError, MQTTException, MemoryError))
            or getattr(client.sock, "lost", False))


def _what(e):
    # dynreg's errors by their text; umqtt's own and a MemoryError by their type too.
    return (str(e) or type(e).__name__) if isinstance(e, Error) else "%s: %s" % (type(e).__name__, e)

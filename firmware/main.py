# The board application: network, clock, register once (dynreg.ensure), then stay online
# (dynreg.online): a status message after every (re)connect, keepalive pings, reconnects with
# backoff and a fresh login, never a second registration. Site settings (WiFi, topic, the
# online options, the retries) come from site.json beside the info (docs/SITE.md). Skipped on a
# safe boot (see boot.py).
# It outlasts what passes: a failure that waiting can cure is retried for ever, with a capped,
# jittered backoff; a refusal the console can fix is asked again slowly; only what no wait
# changes stops it (docs/ERRORS.md). An exception it did not expect resets the board, counted on
# flash: repeated crashes soon after boot make the next boot a safe boot. A watchdog resets a
# board that hangs (watchdog.py).
import json
import time

import board
import dynreg
import watchdog

INFO = "device_info.json"
# Formatted with (product, device name); site "status_topic" overrides. Azure's device id is its
# registration id: its own events topic. AWS: the template, then the SerialNumber, under "dt/"
# (AWS's prefix for device telemetry; any topic outside $aws/ that the thing's policy allows).
STATUS_TOPICS = {"tencent": "%s/%s/data", "aliyun": "/%s/%s/user/update", "azure": "devices/%.0s%s/messages/events/",
                 "aws": "dt/%s/%s/status"}
# site.json may set these online options (dynreg.online.DEFAULTS), under the same names.
ONLINE_SETTINGS = ("keepalive", "ping_ms", "pong_ms", "timeout_ms", "reconnect_min_ms", "reconnect_max_ms",
                   "online_ms", "sessions", "max_packet")
CRASHES_TO_SAFE_BOOT = 3  # in a row, each within crash_window_ms of its boot
_FEED_EVERY_MS = 10000  # main's own waits (up to refused_retry_ms) feed the watchdog this often
_booted = time.ticks_ms()
_crash_window_ms = 300000  # site.json's, set by main()
_steady = False  # this boot has lasted crash_window_ms: earlier crashes no longer count


def log(text):
    alive()  # every wait of the boot and of dynreg is logged before it starts
    print(text)


def alive():
    # From every loop and before every wait: feeds the watchdog, and once this boot has lasted
    # crash_window_ms, clears the crash count.
    global _steady
    watchdog.feed()
    if not _steady and time.ticks_diff(time.ticks_ms(), _booted) >= _crash_window_ms:
        _steady = True
        board.clear_crashes()


def pause(ms):
    end = time.ticks_add(time.ticks_ms(), ms)
    while True:
        alive()
        left = time.ticks_diff(end, time.ticks_ms())
        if left <= 0:
            return
        time.sleep_ms(min(left, _FEED_EVERY_MS))


def boot(site):
    # Network, clock and the credential: registers only if none is stored. Retried as a whole by
    # run(); the online part comes back there only for what stay_online does not retry itself.
    from dynreg import store

    board.info_from_nvs(INFO, log)
    # Read once, by dynreg (the only reader of the info): its cloud picks the NTP servers, and
    # dynreg.ensure takes it as it is. The info may name the device, or give a rule to derive
    # the name from the chip: dynreg asks the board for the name.
    info = store.load(INFO)
    board.network_up(site, log)
    try:
        board.sync_clock(site, log, info.cloud)
    except dynreg.ClockError as e:
        if info.needs_registration:
            raise
        # The credential is there: only the login needs the clock, and the online part syncs
        # it again before each attempt that fails for want of it.
        log("clock: %s (the credential is stored: synced again before the login)" % e)
    info = dynreg.ensure(info, name_from_chip=board.device_name, log=log)
    board.forget_nvs_secret(info, log)
    return info


def stay_online(site, info):
    topic = site.get("status_topic", STATUS_TOPICS[info.cloud]) % (info.product, info.device_name)

    def on_connect(client):
        board.forget_nvs_secret(info, log)  # the login spent the ProductSecret: NVS's copy goes too
        client.publish(topic.encode(), json.dumps({"status": "online", "uptime_ms": time.ticks_ms()}).encode())
        log("published status on %s" % topic)
        if site.get("subdevices"):
            register_subdevices(client, info, site["subdevices"])  # no request once all are done

    def on_message(client, msg_topic, msg):
        log("message on %s (%d bytes)" % (msg_topic.decode(), len(msg)))  # the payload may hold a secret

    from dynreg import online  # not before: a safe boot imports no more than it must

    settings = dict((name, site[name]) for name in ONLINE_SETTINGS if name in site)
    # A ClockError at a login (no NTP server answered at boot, a clock that lost its time) is
    # retried like a lost connection, the clock synced again before each new attempt.
    online.stay_online(info, on_connect, on_message, sync_clock=lambda: board.sync_clock(site, log, info.cloud),
                       log=log, feed=alive, **settings)


def register_subdevices(client, info, subdevices):
    # A gateway (Alibaba): its sub-devices get their secrets once, stored in subdevices.json.
    from dynreg import gateway

    registered, errors = gateway.register_subdevices(client, info, [tuple(s) for s in subdevices])
    for key in registered:
        log("sub-device %s/%s: secret on flash, in the gateway's topology" % key)
    for key, (code, message) in errors.items():
        log("sub-device %s/%s: refused by the cloud (%s %s)" % (key[0], key[1], code, message))


def main():
    global _crash_window_ms
    reason = board.safe_boot()
    if reason:
        log("safe boot (%s): the application does not start" % reason)
        return 0
    site = board.load_site()
    _crash_window_ms = site.get("crash_window_ms", 300000)
    # Longer than any wait between two feeds with the default settings: dynreg.ensure waits a
    # cloud's Retry-After within its total_ms of 300 s (docs/SITE.md has the reckoning).
    watchdog.arm(site.get("watchdog_ms", 360000))
    try:
        code = run(site)
    except Exception as e:
        crashed(e)
    except BaseException:  # Ctrl-C: a person at the console, whose REPL it is now
        watchdog.disarm()
        raise
    watchdog.disarm()  # stopped, or told to leave (online_ms, sessions): the REPL waits for a person
    return code


def run(site):
    # The boot, then online; every failure that can pass starts the boot again after a wait.
    # Returns when told to leave, or stopped by what no wait changes. boot_attempts: 0, for
    # ever; a number, a bench board that gives up after so many failures in a row.
    attempts = site.get("boot_attempts", 0)
    failed = 0
    while True:
        online = False
        try:
            info = boot(site)
            failed = 0
            online = True
            stay_online(site, info)  # network losses are its own business: it reconnects
            return 0
        except dynreg.ConfigError as e:
            log("stopped: bad configuration: %s (fix the info, then provision again: dynreg provision)" % e)
            return 2
        except dynreg.RejectedError as e:
            if not e.fixed_in_console:
                log("stopped: %s" % e)  # a wrong secret, a device activated before: no wait changes it
                return 2
            error, fix, last = e, "once fixed in the console, the board carries on by itself", "stopped: %s" % e
        except dynreg.TLSError as e:
            # A certificate the CA does not vouch for: a network that intercepts TLS passes, a
            # wrong CA or endpoint does not. Asked again as slowly as a refusal: no request was sent.
            error, fix, last = e, "a network that intercepts TLS, or a wrong CA or endpoint", None
            if online:
                last = "stopped: TLSError: %s" % e
        except (dynreg.Error, OSError) as e:
            # Transient: the network, DNS, a TLS handshake that timed out, a busy cloud, the
            # flash, and the clock (ClockError: no NTP server answered, the clock before the
            # build date).
            error, fix, last = e, None, None
        failed += 1
        counted = "%d of %d" % (failed, attempts) if attempts else str(failed)
        what = "boot attempt %s failed: %s: %s" % (counted, type(error).__name__, error)
        if failed == attempts:
            log(last or what)
            return 2 if last else 1
        if fix:
            wait = retry_wait(0, site.get("refused_retry_ms", 3600000))
            log("%s; asking again in %d ms (%s)" % (what, wait, fix))
        else:
            low = site.get("retry_min_ms", 5000) if "retry_min_ms" in site else site.get("retry_ms", 5000)
            wait = retry_wait(failed - 1, low, site.get("retry_max_ms", 300000))
            log("%s; retrying in %d ms" % (what, wait))
        pause(wait)


def retry_wait(failures, low, high=None):
    # low doubled per failure up to high, a random point in its upper half: dynreg.online's
    # reconnect backoff, so that a fleet that failed together does not come back together.
    from dynreg import online

    return online.backoff_ms({"reconnect_min_ms": low, "reconnect_max_ms": low if high is None else high}, failures)


def crashed(e):
    # An exception the application did not expect: reported, counted on flash, and the board
    # resets rather than sit at the REPL. The third crash in a row, each within crash_window_ms
    # of its boot, makes the next boot a safe boot.
    import sys

    try:
        log("crashed: %s: %s" % (type(e).__name__, e))
        sys.print_exception(e)
        count = board.count_crash()
        if count >= CRASHES_TO_SAFE_BOOT:
            board.set_safe_boot("%d crashes, each within %d ms of its boot" % (count, _crash_window_ms))
            log("crashed %d times in a row, each within %d ms of its boot: the next boot is a safe boot (delete %s "
                "to start the application again)" % (count, _crash_window_ms, board.SAFE_BOOT_FLAG))
        else:
            log("resetting: crash %d in a row (a safe boot after %d, each within %d ms of its boot)"
                % (count, CRASHES_TO_SAFE_BOOT, _crash_window_ms))
    finally:
        watchdog.reset()


if __name__ == "__main__":
    main()

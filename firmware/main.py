# The board application: network, clock, register once (dynreg.ensure), then stay online
# (dynreg.online): a status message after every (re)connect, keepalive pings, reconnects with
# backoff and a fresh login, never a second registration. Site settings (WiFi, topic, the
# online options) come from site.json beside the info. Skipped on a safe boot (see boot.py).
import json
import time

import board
import dynreg

INFO = "device_info.json"
# Formatted with (product, device name); site "status_topic" overrides. Azure's device id is its
# registration id: its own events topic.
STATUS_TOPICS = {"tencent": "%s/%s/data", "aliyun": "/%s/%s/user/update", "azure": "devices/%.0s%s/messages/events/"}
# site.json may set these online options (dynreg.online.DEFAULTS), under the same names.
ONLINE_SETTINGS = ("keepalive", "ping_ms", "pong_ms", "timeout_ms", "reconnect_min_ms", "reconnect_max_ms",
                   "online_ms", "sessions", "max_packet")


def log(text):
    print(text)


def boot(site):
    # Network, clock and the credential: registers only if none is stored. Retried as a whole
    # (boot_attempts); the online part below never comes back here.
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
    info = dynreg.ensure(info, name_from_chip=board.device_name)
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
                       **settings)


def register_subdevices(client, info, subdevices):
    # A gateway (Alibaba): its sub-devices get their secrets once, stored in subdevices.json.
    from dynreg import gateway

    registered, errors = gateway.register_subdevices(client, info, [tuple(s) for s in subdevices])
    for key in registered:
        log("sub-device %s/%s: secret on flash, in the gateway's topology" % key)
    for key, (code, message) in errors.items():
        log("sub-device %s/%s: refused by the cloud (%s %s)" % (key[0], key[1], code, message))


def main():
    reason = board.safe_boot()
    if reason:
        log("safe boot (%s): the application does not start" % reason)
        return 0
    site = board.load_site()
    delay_ms = site.get("retry_ms", 5000)
    attempts = site.get("boot_attempts", 3)
    info = None
    for attempt in range(1, attempts + 1):
        try:
            info = boot(site)
            break
        except dynreg.RejectedError as e:
            log("stopped: %s" % e)  # the cloud said no: retrying would not change its mind
            return 2
        except dynreg.ConfigError as e:
            log("stopped: bad configuration: %s (fix the info, then provision again: tools/provision.py)" % e)
            return 2
        except (dynreg.Error, OSError) as e:
            # Transient, retried with a backoff: the network, a busy cloud, the flash, and the
            # clock (ClockError: no NTP server answered and the clock is before the build date).
            if attempt == attempts:
                log("boot attempt %d of %d failed: %s: %s" % (attempt, attempts, type(e).__name__, e))
                break
            log("boot attempt %d of %d failed: %s: %s; retrying in %d ms"
                % (attempt, attempts, type(e).__name__, e, delay_ms))
            time.sleep_ms(delay_ms)
            delay_ms *= 2
    if info is None:
        return 1
    try:
        stay_online(site, info)  # network losses are its own business: it reconnects
        return 0
    except dynreg.RejectedError as e:
        log("stopped: %s" % e)  # a refused login: reported once, never retried
        return 2
    except dynreg.ConfigError as e:
        log("stopped: bad configuration: %s (fix the info, then provision again: tools/provision.py)" % e)
        return 2
    except dynreg.Error as e:
        log("stopped: %s: %s" % (type(e).__name__, e))  # a TLSError: the CA or the endpoint is wrong
        return 1


if __name__ == "__main__":
    main()

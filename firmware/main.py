# The board application: network, clock, register once (dynreg.ensure), connect, publish a
# status message. Site settings (WiFi, topic) come from site.json beside the info. Skipped on
# a safe boot (see boot.py).
import json
import time

import board
import dynreg

INFO = "device_info.json"
STATUS_TOPICS = {"tencent": "%s/%s/data", "aliyun": "/%s/%s/user/update"}  # site "status_topic" overrides


def log(text):
    print(text)


def device_name_for(info_path):
    # The info may name the device, or give a rule to derive the name from the chip.
    with open(info_path) as f:
        doc = json.load(f)
    rule = doc.get("device_name_from")
    return board.device_name(rule) if rule and not doc.get("device_name") else None


def run(site):
    board.info_from_nvs(INFO, log)
    board.network_up(site, log)
    board.sync_clock(site, log)
    info = dynreg.ensure(INFO, device_name=device_name_for(INFO))
    client = dynreg.connect(info)
    topic = site.get("status_topic", STATUS_TOPICS[info.cloud]) % (info.product, info.device_name)
    client.publish(topic.encode(), json.dumps({"status": "online", "uptime_ms": time.ticks_ms()}).encode())
    log("published status on %s" % topic)
    if site.get("subdevices"):
        register_subdevices(client, info, site["subdevices"])
    client.disconnect()


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
    for attempt in range(site.get("boot_attempts", 3)):
        try:
            run(site)
            return 0
        except dynreg.RejectedError as e:
            log("stopped: %s" % e)  # the cloud said no: retrying would not change its mind
            return 2
        except dynreg.ConfigError as e:
            log("stopped: bad configuration: %s" % e)
            return 2
        except (dynreg.Error, OSError) as e:
            log("boot attempt %d failed: %s: %s" % (attempt + 1, type(e).__name__, e))
            time.sleep_ms(delay_ms)
            delay_ms *= 2
    return 1


if __name__ == "__main__":
    main()

# The board specifics the application needs, kept thin: network up, clock set, a DeviceName
# from the chip. ESP32 and Pico W use their radio and SNTP; the unix port (the virtual board
# in tests and `make demo`) is already online with a set clock.
import sys
import time

UNIX = sys.platform == "linux"


def network_up(site, log):
    if UNIX:
        return
    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    for attempt in range(1, site.get("wifi_attempts", 3) + 1):
        if not wlan.isconnected():
            log("wifi: connecting to %s (attempt %d)" % (site["wifi_ssid"], attempt))
            wlan.connect(site["wifi_ssid"], site["wifi_password"])
            deadline = time.ticks_add(time.ticks_ms(), site.get("wifi_timeout_ms", 15000))
            while not wlan.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
                time.sleep_ms(200)
        if wlan.isconnected():
            log("wifi: up, %s" % wlan.ifconfig()[0])
            return
        wlan.disconnect()
    raise OSError("wifi: no connection to %s" % site["wifi_ssid"])


def sync_clock(site, log):
    if UNIX:
        return
    import ntptime

    for server in site.get("ntp_servers", ("pool.ntp.org", "time.google.com")):
        ntptime.host = server
        try:
            ntptime.settime()
            log("clock: set from %s" % server)
            return
        except OSError as e:
            log("clock: %s did not answer (%s)" % (server, e))


def device_name(rule):
    # "unique_id": the chip id in hex; "mac": the WiFi MAC in hex, as many lines label boards.
    from binascii import hexlify

    if rule == "mac" and not UNIX:
        import network

        return hexlify(network.WLAN(network.STA_IF).config("mac")).decode()
    if UNIX:
        import os

        return os.getenv("DYNREG_UNIQUE_ID") or "unix0001"
    import machine

    return hexlify(machine.unique_id()).decode()

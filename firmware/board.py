# The board specifics the application needs, kept thin: site settings, the safe-boot escape,
# the product identity from ESP32 NVS, network up, clock set, a DeviceName from the chip.
# ESP32 and Pico W use their radio and SNTP; the unix port (the virtual board in tests and
# `make demo`) is already online with a set clock. See boards/README.md.
import json
import sys
import time

UNIX = sys.platform == "linux"
SITE = "site.json"
SAFE_BOOT_FLAG = "safe_boot"  # in the flash root: /safe_boot on the boards
# Held low at boot: ESP32 devkits' BOOT button (GPIO0); Pico W: its BOOTSEL button.
# site.json "safe_boot_pin" overrides: a GPIO number, "bootsel", or null for none.
SAFE_BOOT_PIN = "bootsel" if sys.platform == "rp2" else (0 if sys.platform == "esp32" else None)
NVS_NAMESPACE = "dynreg"
# NVS key (15 characters at most) -> info field. Values are blobs holding UTF-8 text.
NVS_FIELDS = (("cloud", "cloud"), ("product_id", "product_id"), ("product_key", "product_key"),
              ("product_secret", "product_secret"), ("device_name", "device_name"),
              ("name_from", "device_name_from"), ("auth", "auth"), ("api", "api"),
              ("algorithm", "algorithm"), ("register_url", "register_url"), ("mqtt_url", "mqtt_url"),
              ("region", "region"), ("instance_id", "instance_id"))
NVS_CA = "ca"  # blob: the CA certificate (DER), written beside the info as ca.der

_safe_boot = None  # the reason, "" for a normal boot; None until checked


def load_site(path=SITE):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def safe_boot():
    # Why this boot must not start the application, or "". Decided once per boot: boot.py
    # asks first, while a button may still be held, and main.py gets the same answer (the
    # module stays imported between the two).
    global _safe_boot
    if _safe_boot is None:
        _safe_boot = _safe_boot_reason(load_site().get("safe_boot_pin", SAFE_BOOT_PIN))
    return _safe_boot


def _safe_boot_reason(pin):
    import os

    try:
        os.stat(SAFE_BOOT_FLAG)
        return "flag file %s" % SAFE_BOOT_FLAG
    except OSError:
        pass
    if UNIX or pin is None:
        return ""
    if pin == "bootsel":
        import rp2

        return "BOOTSEL held" if rp2.bootsel_button() else ""
    from machine import Pin

    return "GPIO%d held low" % pin if Pin(pin, Pin.IN, Pin.PULL_UP).value() == 0 else ""


def info_from_nvs(info_path, log):
    # ESP32 factory data: the product identity in NVS namespace "dynreg". Written once into
    # the info file when there is none, so dynreg.store stays the only reader of the info.
    # Other ports, or no identity in NVS: nothing to do.
    from dynreg import store

    if store.exists(info_path):
        return False
    try:
        from esp32 import NVS
    except ImportError:
        return False
    nvs = NVS(NVS_NAMESPACE)
    buf = bytearray(store.MAX_INFO)
    doc = {"dynreg": 1, "cloud": "tencent"}
    for key, field in NVS_FIELDS:
        value = _nvs_blob(nvs, key, buf)
        if value is not None:
            doc[field] = bytes(value).decode()
    if "product_secret" not in doc:
        return False
    ca = _nvs_blob(nvs, NVS_CA, buf)
    if ca is not None:
        doc["ca"] = "ca.der"
        store.write_atomic(store.join(_folder(info_path), "ca.der"), bytes(ca))
    doc["credential"] = {}
    store.write_atomic(info_path, json.dumps(doc).encode())
    log("nvs: product identity written to %s" % info_path)
    return True


def _nvs_blob(nvs, key, buf):
    try:
        return memoryview(buf)[:nvs.get_blob(key, buf)]
    except OSError:  # no such key (or larger than an info may be)
        return None


def _folder(path):
    return path.rsplit("/", 1)[0] if "/" in path else ""


def network_up(site, log):
    if UNIX:
        return
    if site.get("network") == "uart-tunnel":
        # The emulated Pico W has no radio: its flash holds a socket module whose streams
        # travel over UART0 to the emulator's runner (pico_emulator/).
        log("network: no radio, sockets over the UART0 tunnel (emulated board)")
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

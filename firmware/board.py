# The board specifics the application needs, kept thin: site settings, the safe-boot escape
# and the crash count that leads to it, the product identity from ESP32 NVS, network up, clock
# set, a DeviceName from the chip.
# ESP32 and Pico W use their radio and SNTP; the unix port (the virtual board in tests and
# `make demo`) is already online with a set clock. See boards/README.md.
import json
import sys
import time

UNIX = sys.platform == "linux"
SITE = "site.json"
# SNTP servers by the info's cloud, asked in turn until one answers; site.json "ntp_servers"
# replaces them. Tencent and Alibaba devices are mostly in mainland China, where Google's time
# servers do not answer and the global pool is patchy: the cloud's own public NTP first, the
# other Chinese cloud's, the NTP Pool's China zone, then the pool. Their sources:
#   ntp.tencent.com  Tencent Cloud, "NTP 服务概述": https://cloud.tencent.com/document/product/213/30392
#   ntp.aliyun.com   Alibaba Cloud, "阿里云NTP服务器": https://help.aliyun.com/document_detail/92704.html
#   cn.pool.ntp.org  the NTP Pool's China zone: https://www.ntppool.org/zone/cn
# Any other cloud (Azure; AWS later): the pool (https://www.ntppool.org) and, independent of its
# volunteers and of the cloud, Cloudflare's anycast NTP, answered from its edge near the device
# (https://developers.cloudflare.com/time-services/ntp/usage/).
NTP_SERVERS = {"tencent": ("ntp.tencent.com", "ntp.aliyun.com", "cn.pool.ntp.org", "pool.ntp.org"),
               "aliyun": ("ntp.aliyun.com", "ntp.tencent.com", "cn.pool.ntp.org", "pool.ntp.org")}
NTP_ELSEWHERE = ("pool.ntp.org", "time.cloudflare.com")
NTP_TIMEOUT_S = 2  # per server
SAFE_BOOT_FLAG = "safe_boot"  # in the flash root: /safe_boot on the boards; its text, if any, says why
CRASHES = "crashes"  # in the flash root: the crashes in a row so far, each soon after its boot (main.py)
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
    except OSError:
        pass
    else:
        why = _read(SAFE_BOOT_FLAG)
        return "flag file %s%s" % (SAFE_BOOT_FLAG, ": " + why if why else "")
    if UNIX or pin is None:
        return ""
    if pin == "bootsel":
        import rp2

        return "BOOTSEL held" if rp2.bootsel_button() else ""
    from machine import Pin

    return "GPIO%d held low" % pin if Pin(pin, Pin.IN, Pin.PULL_UP).value() == 0 else ""


def count_crash():
    # One more crash in a row: their number, kept on flash across the reset.
    from dynreg import store

    try:
        count = int(_read(CRASHES) or 0) + 1
    except ValueError:  # not a number: written by hand
        count = 1
    store.write_atomic(CRASHES, str(count).encode())  # a cut mid-write leaves the old count
    return count


def clear_crashes():
    import os

    try:
        os.remove(CRASHES)
    except OSError:  # none counted
        pass


def set_safe_boot(why):
    # The next boot is a safe boot, saying why, until a person deletes the flag; the count
    # starts again from there.
    from dynreg import store

    store.write_atomic(SAFE_BOOT_FLAG, why.encode())
    clear_crashes()


def _read(path):
    try:
        with open(path) as f:
            return f.read(120).strip()
    except OSError:
        return ""


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


def forget_nvs_secret(info, log):
    # Once the info holds no ProductSecret (spent at the first login), NVS's copy goes too:
    # called after every login and at boot, so a cut between the two erasures is mended.
    # Other ports, or no such key: nothing to do.
    if info.product_secret is not None:
        return False
    try:
        from esp32 import NVS
    except ImportError:
        return False
    nvs = NVS(NVS_NAMESPACE)
    try:
        nvs.erase_key("product_secret")
    except OSError:  # erased before, or never provisioned through NVS
        return False
    nvs.commit()
    log("nvs: product_secret erased")
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
    import watchdog

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    for attempt in range(1, site.get("wifi_attempts", 3) + 1):
        if not wlan.isconnected():
            log("wifi: connecting to %s (attempt %d)" % (site["wifi_ssid"], attempt))
            wlan.connect(site["wifi_ssid"], site["wifi_password"])
            deadline = time.ticks_add(time.ticks_ms(), site.get("wifi_timeout_ms", 15000))
            while not wlan.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
                watchdog.feed()  # wifi_timeout_ms may outlast it
                time.sleep_ms(200)
        if wlan.isconnected():
            log("wifi: up, %s" % wlan.ifconfig()[0])
            return
        wlan.disconnect()
    raise OSError("wifi: no connection to %s" % site["wifi_ssid"])


def ntp_servers(site, cloud):
    servers = site.get("ntp_servers") or NTP_SERVERS.get(cloud, NTP_ELSEWHERE)
    return (servers,) if isinstance(servers, str) else servers


def sync_clock(site, log, cloud):
    # The clock from the first server that answers. None answering is fine while the clock is
    # past the firmware's build date (an RTC kept it); before it, a ClockError naming each
    # server and what failed: nothing is signed or verified on that clock (main.py retries).
    # The unix port keeps the host's clock: it asks only servers that site.json names (the
    # tests' own), and sets nothing.
    if UNIX and not site.get("ntp_servers"):
        return
    from dynreg import ClockError, clock

    failed = []
    for server in ntp_servers(site, cloud):
        seconds, why = ntp_time(server)
        if seconds is not None and seconds < clock.EARLIEST:
            seconds, why = None, "answered a time before the firmware's build date"
        if seconds is None:
            log("clock: %s: %s" % (server, why))
            failed.append("%s: %s" % (server, why))
            continue
        if UNIX:
            log("clock: %s answered (the unix port keeps the host's clock)" % server)
        else:
            import machine

            tm = time.gmtime(seconds - (946684800 if clock.EPOCH_YEAR == 2000 else 0))
            machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
            log("clock: set from %s" % server)
        return
    try:
        clock.unix_time()
    except ClockError:
        raise ClockError("clock not set and before the firmware's build date; no NTP server answered: "
                         + "; ".join(failed))
    log("clock: no NTP server answered; the clock kept its time, past the firmware's build date")


def ntp_time(server):
    # One SNTP exchange (RFC 4330, as micropython-lib's ntptime makes it, each step's failure
    # told apart): (Unix seconds, None), or (None, what failed). "host:port" asks a server off
    # port 123 (the tests' own).
    import socket
    import struct

    host, _, port = server.partition(":")
    try:
        addr = socket.getaddrinfo(host, int(port or 123))[0][-1]
    except OSError as e:  # lwIP: its negative err_t (-6: no DNS server); unix: "[addrinfo error -2]"
        return None, "DNS failed (%s)" % (e.args[0] if e.args else "?")
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as e:  # lwIP: no socket left
        return None, "no socket (errno %s)" % (e.args[0] if e.args else "?")
    try:
        s.settimeout(NTP_TIMEOUT_S)
        query = bytearray(48)
        query[0] = 0x1B  # version 3, mode 3: a client's request
        s.sendto(query, addr)
        answer = s.recv(48)
    except OSError as e:
        import errno

        code = e.args[0] if e.args else None
        if code in (errno.ETIMEDOUT, errno.EAGAIN):  # lwIP and ESP-IDF: ETIMEDOUT; unix: EAGAIN
            return None, "no answer (timed out)"
        return None, "failed (errno %s)" % code
    finally:
        s.close()
    if len(answer) < 48 or (answer[0] & 7) != 4 or not answer[1]:  # not a server's answer, or kiss-o'-death
        return None, "no valid answer"
    seconds = struct.unpack("!I", answer[40:44])[0]  # the transmit time, from 1900
    if seconds < 0x80000000:  # NTP era 1, from 2036-02-07
        seconds += 0x100000000
    return seconds - 2208988800, None


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

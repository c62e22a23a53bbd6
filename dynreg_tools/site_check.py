"""Check a board's site.json offline, before it goes to the board: the settings that
firmware/main.py and firmware/board.py read (docs/SITE.md lists them).

    site_problems(site_path_or_None, board_kind) -> [problem, ...]

board_kind is "rp2", "esp32", "unix" or None (not known). Every problem is one line with its
fix. Reported: a file that is not JSON or not an object; a board with a radio (rp2, esp32)
left without wifi_ssid and wifi_password (also when there is no site file at all: the board
would stop at boot with KeyError: wifi_ssid); a name the firmware does not read (with the
closest known name); a value of the wrong type or out of range. No value is ever printed:
the WiFi password is a secret, and the SSID is not shown either.
`dynreg check --site FILE --board KIND` runs it, and `dynreg provision --site FILE`.
"""
import difflib
import json
import os
import re

SITE = "site.json"
BOARDS = ("rp2", "esp32", "unix")
RADIO_BOARDS = ("rp2", "esp32")
TITLES = {"rp2": " Pico W (rp2)", "esp32": "n ESP32", "unix": " unix port"}
TUNNEL = "uart-tunnel"  # the emulated Pico W's stand-in for the radio (pico_emulator/)
MAX_TICKS_MS = (1 << 29) - 1  # the largest interval time.ticks_add takes on the boards (2**30 ticks period)
MAX_SITE = 8192  # bytes: firmware/board.py reads the whole file into RAM at every boot


def _ms(low, default):
    return {"kind": "int", "min": low, "max": MAX_TICKS_MS, "default": default}


# Every setting the firmware reads, with its type and range; host_tests/test_host_site_check.py
# fails when firmware/ reads one that is not here, or this names one it does not read.
SETTINGS = {
    # firmware/board.py network_up: WiFi on rp2 and esp32; the unix port is online already.
    "wifi_ssid": {"kind": "ssid"},
    "wifi_password": {"kind": "wifi_password"},
    "wifi_attempts": {"kind": "int", "min": 1, "max": 100, "default": 3},
    "wifi_timeout_ms": _ms(1000, 15000),
    "network": {"kind": "network"},
    # firmware/board.py sync_clock; safe_boot
    "ntp_servers": {"kind": "ntp_servers"},
    "safe_boot_pin": {"kind": "pin"},
    # firmware/main.py
    "boot_attempts": {"kind": "int", "min": 0, "max": 100, "default": 0},  # 0: for ever
    "retry_min_ms": _ms(0, 5000),
    "retry_ms": _ms(0, 5000),  # retry_min_ms's old name, read when retry_min_ms is not there
    "retry_max_ms": _ms(0, 300000),
    "refused_retry_ms": _ms(1000, 3600000),
    "watchdog_ms": _ms(0, 360000),  # 0: off
    "crash_window_ms": _ms(1000, 300000),
    "status_topic": {"kind": "topic"},
    "subdevices": {"kind": "subdevices"},
    # main.ONLINE_SETTINGS: dynreg.online's options under the same names (its DEFAULTS)
    "keepalive": {"kind": "int", "min": 0, "max": 65535, "default": 60},  # MQTT's 16-bit field, seconds
    "ping_ms": _ms(0, 0),
    "pong_ms": _ms(1, 10000),
    "timeout_ms": _ms(1000, 10000),
    "reconnect_min_ms": _ms(1, 1000),
    "reconnect_max_ms": _ms(1, 60000),
    "online_ms": _ms(0, 0),
    "sessions": {"kind": "int", "min": 0, "max": MAX_TICKS_MS, "default": 0},
    # bytes; our bounds: a gateway's sub-device reply is near 2 KB, and no board has 1 MiB of heap
    "max_packet": {"kind": "int", "min": 1024, "max": 1 << 20, "default": 8192},
}
# The GPIOs a safe-boot button may use (board.py reads it with the internal pull-up).
PINS = {
    "rp2": [n for n in range(29) if n not in (23, 24, 25)],  # Pico W: 23-25 and 29 drive the radio
    # ESP32: 6-11 drive the SPI flash; 24 and 28-31 do not exist (34-39 need a pull-up of their own)
    "esp32": [n for n in range(40) if n not in (6, 7, 8, 9, 10, 11, 24, 28, 29, 30, 31)],
}
UNITS = {"keepalive": " (seconds)", "max_packet": " (bytes)"}
SSID_BYTES = 32  # IEEE 802.11: an SSID is 0 to 32 octets
PASSPHRASE = (8, 63)  # WPA2-PSK: 8 to 63 ASCII characters, or 64 hex digits (the PSK itself)


def site_problems(site_path, board_kind):
    """Every problem of the site file at site_path (None: the board gets no site file) for a
    board of board_kind ("rp2", "esp32", "unix" or None). [] when the board can boot with it."""
    name = site_path or SITE
    if site_path is None:
        if board_kind in RADIO_BOARDS:
            return ["no %s: a%s board brings its WiFi up from it and stops at boot without one (KeyError: "
                    "wifi_ssid); give one with wifi_ssid and wifi_password (boards/site.example.json, "
                    "docs/SITE.md)" % (SITE, TITLES[board_kind])]
        return []
    doc, found = read_site(site_path)
    if doc is None:
        return found
    for key in sorted(doc):
        if key not in SETTINGS:
            found.append(unknown_problem(name, key))
    for key in sorted(doc):
        if key in SETTINGS:
            found += ["%s: %s" % (name, p) for p in value_problems(key, doc[key], board_kind)]
    found += ["%s: %s" % (name, p) for p in network_problems(doc, board_kind) + combined_problems(doc)]
    return found


def read_site(site_path):
    # (doc, problems): the JSON object, or None and why not.
    if not os.path.isfile(site_path):
        return None, ["%s: no such file: give the path of the board's site.json" % site_path]
    size = os.path.getsize(site_path)
    if size > MAX_SITE:
        return None, ["%s: %d bytes, more than %d: the board reads it whole into RAM at every boot; keep only "
                      "the settings it needs" % (site_path, size, MAX_SITE)]
    try:
        with open(site_path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"), object_pairs_hook=_pairs)
    except (ValueError, UnicodeError) as e:
        where = "line %d, column %d" % (e.lineno, e.colno) if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        return None, ["%s: not valid JSON (%s): the board would ignore the whole file; fix it (docs/SITE.md "
                      "has the format)" % (site_path, where)]
    twice = sorted(doc.twice) if isinstance(doc, _Object) else []
    if not isinstance(doc, dict):
        return None, ['%s: not a JSON object: a site file is {"setting": value, ...} (boards/site.example.json)'
                      % site_path]
    return doc, ["%s: %s is set twice: the board takes the last one; keep one" % (site_path, printable(key))
                 for key in twice]


class _Object(dict):
    twice = ()


def _pairs(pairs):
    doc = _Object(pairs)
    doc.twice = set(k for i, (k, _) in enumerate(pairs) if k in [p[0] for p in pairs[:i]])
    return doc


def unknown_problem(name, key):
    close = difflib.get_close_matches(key, list(SETTINGS), n=1, cutoff=0.6)
    fix = "did you mean %s? Rename it" % close[0] if close else "remove it (docs/SITE.md lists every setting)"
    return "%s: %s is not a setting the firmware reads, so it would be ignored: %s" % (name, printable(key), fix)


def printable(key):
    # A setting's name as typed, shortened: a name is not a value, but keep the line short.
    text = key if len(key) <= 40 else key[:37] + "..."
    return json.dumps(text)[1:-1]


def value_problems(key, value, board_kind):
    rule = SETTINGS[key]
    kind = rule["kind"]
    if kind == "int":
        return int_problems(key, value, rule)
    return CHECKS[kind](key, value, board_kind)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def int_problems(key, value, rule):
    unit = " (milliseconds)" if key.endswith("_ms") else UNITS.get(key, "")
    if not is_int(value):
        return ["%s must be a whole number%s, without quotes; default %d" % (key, unit, rule["default"])]
    if not rule["min"] <= value <= rule["max"]:
        hint = "; it is in milliseconds, not seconds" if key.endswith("_ms") and 0 < value < rule["min"] else ""
        return ["%s is out of range: give %d to %d%s%s" % (key, rule["min"], rule["max"], unit, hint)]
    return []


def ssid_problems(key, value, board_kind):
    if not isinstance(value, str) or not value:
        return ["%s must be the network's name, in quotes" % key]
    if len(value.encode("utf-8")) > SSID_BYTES:
        return ["%s is longer than the %d bytes an SSID can have: copy the network's name again" % (key, SSID_BYTES)]
    return []


def wifi_password_problems(key, value, board_kind):
    if not isinstance(value, str):
        return ['%s must be the passphrase in quotes ("" for an open network)' % key]
    if value == "" or (len(value) == 64 and re.fullmatch(r"[0-9A-Fa-f]{64}", value)):
        return []
    if not value.isascii() or not PASSPHRASE[0] <= len(value) <= PASSPHRASE[1]:
        return ["%s is not a WPA2 passphrase (%d to %d ASCII characters, or the 64 hex digits of the key; "
                "\"\" for an open network): copy it again" % ((key,) + PASSPHRASE)]
    return []


def network_kind_problems(key, value, board_kind):
    if value is None or value == TUNNEL:
        return []
    return ['%s: the only value the firmware knows is "%s" (the emulated Pico W, no radio); leave it out for '
            'WiFi' % (key, TUNNEL)]


def ntp_problems(key, value, board_kind):
    servers = [value] if isinstance(value, str) else value
    if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
        return ['%s must be a list of server names in quotes, such as ["ntp.aliyun.com", "pool.ntp.org"]' % key]
    for server in servers:
        host, colon, port = server.partition(":")
        if not host or any(c.isspace() for c in server) or (colon and not (port.isdigit() and 0 < int(port) < 65536)):
            return ["%s: each entry is a host name or address, or host:port with a port of 1 to 65535" % key]
    return []


def pin_problems(key, value, board_kind):
    if value is None:
        return []
    if value == "bootsel":
        if board_kind == "esp32":
            return ['%s "bootsel" is the Pico W\'s button; an ESP32 has none (its BOOT button is GPIO 0): give a '
                    'GPIO number, or null' % key]
        return []
    if not is_int(value):
        return ['%s must be a GPIO number, "bootsel" (Pico W) or null (no button)' % key]
    pins = PINS.get(board_kind)
    if pins is not None and value not in pins:
        return ["%s: GPIO %d is not free for a button on %s: choose one of %s" % (key, value, board_kind,
                                                                                  ranges(pins))]
    if pins is None and not 0 <= value < 40:
        return ["%s: GPIO %d is not a pin of the Pico W (0-28) or the ESP32 (0-39)" % (key, value)]
    return []


def ranges(numbers):
    runs, start = [], None
    for n in numbers + [None]:
        if start is None:
            start = prev = n
        elif n is not None and n == prev + 1:
            prev = n
        else:
            runs.append("%d" % start if start == prev else "%d-%d" % (start, prev))
            start = prev = n
    return ", ".join(runs)


def topic_problems(key, value, board_kind):
    # firmware/main.py: site["status_topic"] % (product, device name)
    if not isinstance(value, str) or not value:
        return ['%s must be a topic in quotes, with two %%s: the product and the device name ("%%s/%%s/data")'
                % key]
    try:
        topic = value % ("P", "D")
    except (TypeError, ValueError):
        return ["%s must hold exactly two %%s (the product, then the device name; %%.0s skips one, %%%% is a %%): "
                "the board formats it with both and would stop at its first connection" % key]
    if "+" in topic or "#" in topic or "\0" in topic:
        return ["%s: a topic to publish on cannot hold the MQTT wildcards + or #" % key]
    return []


def subdevices_problems(key, value, board_kind):
    from dynreg_tools.check import DEVICE_NAME_RULES, PRODUCT_RULES  # here: check imports this module

    if not isinstance(value, list) or not all(isinstance(s, list) and len(s) == 2 for s in value):
        return ['%s must be a list of [ProductKey, DeviceName] pairs, such as [["a1SubPrdKey", "sensor-01"]]' % key]
    found = []
    for i, (product_key, device_name) in enumerate(value):
        if not isinstance(product_key, str) or not PRODUCT_RULES["aliyun"][0].fullmatch(product_key):
            found.append("%s entry %d: the ProductKey is not Alibaba's (%s)" % (key, i + 1, PRODUCT_RULES["aliyun"][1]))
        if not isinstance(device_name, str) or not DEVICE_NAME_RULES["aliyun"][0].fullmatch(device_name):
            found.append("%s entry %d: the DeviceName breaks Alibaba's rule (%s)"
                         % (key, i + 1, DEVICE_NAME_RULES["aliyun"][1]))
    if not found and len(set(map(tuple, value))) != len(value):
        found.append("%s names a sub-device twice: list each once" % key)
    return found


CHECKS = {"ssid": ssid_problems, "wifi_password": wifi_password_problems, "network": network_kind_problems,
          "ntp_servers": ntp_problems, "pin": pin_problems, "topic": topic_problems,
          "subdevices": subdevices_problems}


def network_problems(doc, board_kind):
    # firmware/board.py network_up reads site["wifi_ssid"] and site["wifi_password"] on a board
    # with a radio, unless "network" is the emulated Pico W's tunnel.
    if board_kind == "unix" or doc.get("network") == TUNNEL:
        return []
    missing = [key for key in ("wifi_ssid", "wifi_password") if key not in doc]
    if board_kind in RADIO_BOARDS and missing:
        return ["no %s: a%s board stops at boot without it (KeyError: %s); add it (\"wifi_password\": \"\" for "
                "an open network)" % (" and no ".join(missing), TITLES[board_kind], missing[0])]
    if len(missing) == 1:
        given = "wifi_ssid" if missing == ["wifi_password"] else "wifi_password"
        return ["%s without %s: a board with a radio stops at boot (KeyError: %s); give both"
                % (given, missing[0], missing[0])]
    return []


def combined_problems(doc):
    found = []
    low, high = doc.get("reconnect_min_ms", 1000), doc.get("reconnect_max_ms", 60000)
    if is_int(low) and is_int(high) and low > high:
        found.append("reconnect_min_ms is above reconnect_max_ms: the backoff starts at the first and is capped "
                     "by the second; lower the first or raise the second")
    keepalive, ping = doc.get("keepalive", 60), doc.get("ping_ms", 0)
    if is_int(keepalive) and is_int(ping) and keepalive and ping > keepalive * 1000:
        found.append("ping_ms is longer than keepalive (seconds): MQTT wants a packet within every keepalive "
                     "interval, and the broker drops a client silent for 1.5 of them; leave ping_ms out (half "
                     "the keepalive) or lower it")
    if "retry_ms" in doc and "retry_min_ms" in doc:
        found.append("retry_ms is the old name of retry_min_ms, and the board takes retry_min_ms: remove retry_ms")
    low, high = doc.get("retry_min_ms", doc.get("retry_ms", 5000)), doc.get("retry_max_ms", 300000)
    if is_int(low) and is_int(high) and low > high:
        found.append("%s is above retry_max_ms: the boot's backoff starts at the first and is capped by the second; "
                     "lower the first or raise the second" % ("retry_min_ms" if "retry_min_ms" in doc else "retry_ms"))
    watchdog, longest = doc.get("watchdog_ms", 360000), longest_unfed_ms(doc)
    if is_int(watchdog) and watchdog and longest and watchdog <= longest:
        found.append("watchdog_ms is not longer than the longest wait between two feeds with these settings (%d ms, "
                     "docs/SITE.md \"The watchdog\"): it would reset a board that is only waiting; leave it out "
                     "(360000) or raise it above that" % longest)
    return found


ENSURE_TOTAL_MS = 300000  # dynreg.ensure's total_ms (lib/dynreg/flow.py DEFAULTS): main.py keeps it


def longest_unfed_ms(doc):
    # The longest the board application goes without feeding its watchdog, with these settings
    # (docs/SITE.md, "The watchdog"); None when a value it needs is not a number (reported apart).
    # dynreg.ensure: a cloud's Retry-After, waited within its total_ms. stay_online: a
    # reconnect's wait, the connect, and on_connect (the status publish; for a gateway, two
    # requests per batch of 10 sub-devices); or a wait for messages until the next ping, or for
    # its PINGRESP. Every other wait of the application feeds it as it goes.
    values = [doc.get(key, default) for key, default in (("keepalive", 60), ("ping_ms", 0), ("pong_ms", 10000),
                                                         ("timeout_ms", 10000), ("reconnect_max_ms", 60000))]
    if not all(is_int(v) for v in values):
        return None
    keepalive, ping, pong, timeout, reconnect = values
    subdevices = doc.get("subdevices")
    batches = (len(subdevices) + 9) // 10 if isinstance(subdevices, list) else 0
    return max(ENSURE_TOTAL_MS, reconnect + timeout * (2 + 2 * batches), ping or keepalive * 500 or 60000, pong)

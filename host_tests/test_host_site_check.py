# dynreg_tools.site_check: a board's site.json checked offline (docs/SITE.md), every problem one
# line with its fix, never a value; and the settings it knows are exactly the ones firmware/
# reads, with the defaults the firmware and docs/SITE.md give.
import ast
import json
import os
import re
import subprocess

import pytest

from dynreg_tools import site_check
from dynreg_tools.site_check import site_problems

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DYNREG = os.path.join(ROOT, ".venv", "bin", "dynreg")

EXAMPLE = os.path.join(ROOT, "boards", "site.example.json")
SSID = "Zq-Lab-Net-7731"  # distinctive: no output may hold them
PASSWORD = "Wp9-kestrel-Harbour-0042"


def write(tmp_path, doc, name="site.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def wifi(**more):
    doc = {"wifi_ssid": SSID, "wifi_password": PASSWORD}
    doc.update(more)
    return {k: v for k, v in doc.items() if v is not None}


def one(found, *words):
    # The one problem that names every word.
    hits = [p for p in found if all(w in p for w in words)]
    assert len(hits) == 1, found
    return hits[0]


# -- the example, and files that are fine ---------------------------------------------------

@pytest.mark.parametrize("board", ["rp2", "esp32", "unix", None])
def test_the_example_file_passes(board):
    assert site_problems(EXAMPLE, board) == []


def test_the_example_has_placeholders_not_a_real_network():
    doc = json.load(open(EXAMPLE))
    assert doc["wifi_ssid"].startswith("YOUR_") and doc["wifi_password"].startswith("YOUR_")


def test_a_minimal_wifi_site_and_the_emulated_pico_pass(tmp_path):
    assert site_problems(write(tmp_path, wifi()), "esp32") == []
    assert site_problems(write(tmp_path, {"wifi_ssid": "cafe", "wifi_password": ""}), "rp2") == []  # open network
    assert site_problems(write(tmp_path, {"network": "uart-tunnel", "ntp_servers": ["localhost"]}), "rp2") == []
    assert site_problems(write(tmp_path, {}), "unix") == []


# -- no file, a file that is no site ---------------------------------------------------------

@pytest.mark.parametrize("board", ["rp2", "esp32"])
def test_a_radio_board_without_a_site_file_is_refused(board):
    [problem] = site_problems(None, board)
    assert "no site.json" in problem and "KeyError: wifi_ssid" in problem and "wifi_password" in problem


@pytest.mark.parametrize("board", ["unix", None])
def test_no_site_file_is_fine_where_no_radio_needs_one(board):
    assert site_problems(None, board) == []


def test_a_missing_file_is_named(tmp_path):
    [problem] = site_problems(str(tmp_path / "nope.json"), "rp2")
    assert "no such file" in problem


def test_not_json_says_where_and_never_what(tmp_path):
    path = write(tmp_path, '{"wifi_ssid": "%s",\n "wifi_password": "%s" "boot_attempts": 3}' % (SSID, PASSWORD))
    [problem] = site_problems(path, "rp2")
    assert "not valid JSON (line 2, column" in problem
    assert SSID not in problem and PASSWORD not in problem


@pytest.mark.parametrize("text", ['["wifi_ssid"]', '"site"', "3"])
def test_not_an_object(tmp_path, text):
    [problem] = site_problems(write(tmp_path, text), "esp32")
    assert "not a JSON object" in problem


def test_a_file_too_large_for_the_boards_ram(tmp_path):
    path = write(tmp_path, wifi(status_topic="%s/%s/" + "x" * 9000))
    [problem] = site_problems(path, "rp2")
    assert "more than 8192" in problem and "RAM" in problem


def test_a_setting_given_twice(tmp_path):
    path = write(tmp_path, '{"wifi_ssid": "a", "wifi_password": "", "retry_ms": 100, "retry_ms": 200}')
    one(site_problems(path, "rp2"), "retry_ms is set twice")


# -- WiFi for the board's network ------------------------------------------------------------

@pytest.mark.parametrize("board", ["rp2", "esp32"])
def test_a_radio_board_needs_both_wifi_fields(tmp_path, board):
    one(site_problems(write(tmp_path, {"boot_attempts": 2}), board), "no wifi_ssid and no wifi_password",
        "KeyError: wifi_ssid")
    one(site_problems(write(tmp_path, wifi(wifi_password=None)), board), "no wifi_password", "KeyError: wifi_password")
    one(site_problems(write(tmp_path, wifi(wifi_ssid=None)), board), "no wifi_ssid")


def test_the_uart_tunnel_and_the_unix_port_need_no_wifi(tmp_path):
    assert site_problems(write(tmp_path, {"network": "uart-tunnel"}), "rp2") == []
    assert site_problems(write(tmp_path, {"boot_attempts": 1}), "unix") == []


def test_half_the_wifi_settings_is_a_problem_on_an_unknown_board(tmp_path):
    one(site_problems(write(tmp_path, {"wifi_ssid": SSID}), None), "wifi_ssid without wifi_password")
    assert site_problems(write(tmp_path, {"boot_attempts": 1}), None) == []  # may be a unix board


def test_an_unknown_network_value(tmp_path):
    one(site_problems(write(tmp_path, wifi(network="wifi")), "rp2"), "network:", '"uart-tunnel"')


# -- unknown settings ------------------------------------------------------------------------

def test_a_typo_is_named_with_the_closest_known_setting(tmp_path):
    path = write(tmp_path, {"wifi_sid": SSID, "wifi_password": PASSWORD, "retry_mss": 100})
    found = site_problems(path, "rp2")
    assert "did you mean wifi_ssid?" in one(found, "wifi_sid is not a setting")
    assert "did you mean retry_ms?" in one(found, "retry_mss is not a setting")
    one(found, "no wifi_ssid")  # and the board would still stop for want of the real one
    assert not any(SSID in p or PASSWORD in p for p in found)


def test_a_name_far_from_any_setting(tmp_path):
    problem = one(site_problems(write(tmp_path, wifi(colour="blue")), "esp32"), "colour is not a setting")
    assert "did you mean" not in problem and "docs/SITE.md" in problem and "blue" not in problem


def test_the_libraries_own_options_that_the_firmware_does_not_pass_are_unknown(tmp_path):
    # dynreg.online.DEFAULTS has ca, mqtt_url and log too; main.py passes only ONLINE_SETTINGS.
    found = site_problems(write(tmp_path, wifi(mqtt_url="mqtts://x", log=None)), "rp2")
    one(found, "mqtt_url is not a setting")


# -- types and ranges ------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, words", [
    ("wifi_timeout_ms", 15, ("wifi_timeout_ms is out of range", "milliseconds, not seconds")),
    ("wifi_timeout_ms", "15000", ("wifi_timeout_ms must be a whole number", "without quotes")),
    ("wifi_timeout_ms", 15000.0, ("wifi_timeout_ms must be a whole number",)),
    ("wifi_timeout_ms", 1 << 29, ("wifi_timeout_ms is out of range", "536870911")),
    ("wifi_attempts", 0, ("wifi_attempts is out of range", "1 to 100")),
    ("boot_attempts", 101, ("boot_attempts is out of range", "0 to 100")),
    ("refused_retry_ms", 60, ("refused_retry_ms is out of range", "milliseconds, not seconds")),
    ("watchdog_ms", -1, ("watchdog_ms is out of range",)),
    ("boot_attempts", True, ("boot_attempts must be a whole number",)),
    ("retry_ms", -1, ("retry_ms is out of range",)),
    ("keepalive", 70000, ("keepalive is out of range", "0 to 65535", "(seconds)")),
    ("pong_ms", 0, ("pong_ms is out of range",)),
    ("timeout_ms", 10, ("timeout_ms is out of range", "milliseconds, not seconds")),
    ("reconnect_min_ms", 0, ("reconnect_min_ms is out of range",)),
    ("sessions", -1, ("sessions is out of range",)),
    ("online_ms", None, ("online_ms must be a whole number",)),
    ("ntp_servers", "pool.ntp.org:0", ("ntp_servers:", "port of 1 to 65535")),
    ("ntp_servers", ["ntp.aliyun.com", ""], ("ntp_servers:",)),
    ("ntp_servers", [123], ("ntp_servers must be a list",)),
    ("status_topic", "devices/status", ("status_topic must hold exactly two %s",)),
    ("status_topic", "%s/%s/%s", ("status_topic must hold exactly two %s",)),
    ("status_topic", "%s/+/%s", ("wildcards",)),
    ("status_topic", 7, ("status_topic must be a topic in quotes",)),
    ("subdevices", [["a1SubProduct"]], ("subdevices must be a list of [ProductKey, DeviceName] pairs",)),
    ("subdevices", [["short", "sensor-01"]], ("subdevices entry 1: the ProductKey",)),
    ("subdevices", [["a1SubPrdKey", "s!"]], ("subdevices entry 1: the DeviceName",)),
    ("subdevices", [["a1SubPrdKey", "sensor-01"], ["a1SubPrdKey", "sensor-01"]], ("names a sub-device twice",)),
    ("safe_boot_pin", "button", ("safe_boot_pin must be a GPIO number",)),
    ("wifi_ssid", "x" * 33, ("wifi_ssid is longer than the 32 bytes",)),
    ("wifi_ssid", 5, ("wifi_ssid must be the network's name",)),
    ("wifi_password", "short7", ("wifi_password is not a WPA2 passphrase",)),
    ("wifi_password", "p" * 64, ("wifi_password is not a WPA2 passphrase",)),  # 64 characters: hex only
    ("wifi_password", 12345678, ("wifi_password must be the passphrase in quotes",)),
])
def test_a_wrong_type_or_a_value_out_of_range(tmp_path, key, value, words):
    found = site_problems(write(tmp_path, wifi(**{key: value}) if value is not None else dict(wifi(), **{key: None})),
                          "rp2")
    one(found, *words)


@pytest.mark.parametrize("key, value", [
    ("status_topic", "%s/%s/data"), ("status_topic", "devices/%.0s%s/messages/events/"),
    ("status_topic", "100%%/%s/%s"), ("ntp_servers", "10.0.0.1"), ("ntp_servers", ["localhost:1123"]),
    ("wifi_password", "ab" * 32), ("keepalive", 0), ("retry_ms", 0), ("wifi_timeout_ms", 1000),
    ("boot_attempts", 0), ("watchdog_ms", 0), ("watchdog_ms", 300001), ("retry_min_ms", 300000),
    ("subdevices", [["a1SubPrdKey", "sensor-01"], ["a1SubPrdKey", "sensor-02"]]),
])
def test_values_in_range_pass(tmp_path, key, value):
    assert site_problems(write(tmp_path, wifi(**{key: value})), "rp2") == []


def test_safe_boot_pins_by_board(tmp_path):
    def pin(value, board):
        return site_problems(write(tmp_path, wifi(safe_boot_pin=value)), board)

    assert pin("bootsel", "rp2") == [] and pin(None, "esp32") == [] and pin(0, "esp32") == [] and pin(15, "rp2") == []
    one(pin("bootsel", "esp32"), "safe_boot_pin \"bootsel\" is the Pico W's button")
    one(pin(24, "rp2"), "GPIO 24 is not free for a button on rp2", "0-22, 26-28")  # the radio's
    one(pin(7, "esp32"), "GPIO 7 is not free for a button on esp32")  # the flash's
    one(pin(45, None), "GPIO 45 is not a pin")


def test_settings_that_only_fail_together(tmp_path):
    found = site_problems(write(tmp_path, wifi(reconnect_min_ms=5000, reconnect_max_ms=1000, keepalive=30,
                                               ping_ms=45000, retry_ms=100000, retry_max_ms=60000)), "rp2")
    one(found, "reconnect_min_ms is above reconnect_max_ms")
    one(found, "ping_ms is longer than keepalive")
    one(found, "retry_ms is above retry_max_ms")
    one(site_problems(write(tmp_path, wifi(retry_ms=100, retry_min_ms=200)), "rp2"),
        "retry_ms is the old name of retry_min_ms")
    # The watchdog must outlast every wait between two feeds: dynreg.ensure's 300 s by default,
    # longer when the reconnect backoff is (3600000 + 2 * 10000 ms).
    one(site_problems(write(tmp_path, wifi(watchdog_ms=300000)), "rp2"), "watchdog_ms is not longer", "300000 ms")
    one(site_problems(write(tmp_path, wifi(reconnect_max_ms=3600000)), "rp2"), "watchdog_ms is not longer",
        "3620000 ms")
    assert site_problems(write(tmp_path, wifi(keepalive=30, ping_ms=30000)), "rp2") == []


# -- never a value ---------------------------------------------------------------------------

def test_no_value_is_printed_by_the_check_verb(tmp_path):
    # Every kind of problem at once, each value distinctive: none of them comes out.
    doc = {"wifi_sid": SSID, "wifi_password": PASSWORD[:6], "wifi_timeout_ms": "Kx81-timeout",
           "status_topic": "Qv-topic-no-format", "ntp_servers": ["Jt-ntp host"], "safe_boot_pin": "Rm-pin",
           "network": "Yz-network", "subdevices": [["Hb-prod", "Hb dev"]]}
    path = write(tmp_path, doc)
    proc = subprocess.run([DYNREG, "check", "--site", path, "--board", "rp2"], capture_output=True, text=True,
                          cwd=ROOT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and output.count("problem: ") >= len(doc), output
    for value in (SSID, PASSWORD[:6], "Kx81", "Qv-topic", "Jt-ntp", "Rm-pin", "Yz-network", "Hb-prod", "Hb dev"):
        assert value not in output, value


def test_the_check_verb_passes_the_example_and_checks_an_info_and_a_site_together(tmp_path):
    run = [DYNREG, "check"]
    proc = subprocess.run(run + ["--site", EXAMPLE, "--board", "esp32"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: "), proc.stdout + proc.stderr
    info = write(tmp_path, {"dynreg": 1, "cloud": "tencent", "product_id": "BENCH00001",
                            "product_secret": "Bench2Secret-0123456789", "device_name_from": "unique_id",
                            "credential": {"psk": ""}}, "product_info.json")
    proc = subprocess.run(run + [info, "--board", "rp2"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "problem: no site.json" in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run(run + [info, "--site", EXAMPLE, "--board", "rp2"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.count("ok: ") == 2, proc.stdout + proc.stderr
    proc = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "give an info file, --site FILE, or both" in proc.stderr


# -- one list of settings: the firmware's ----------------------------------------------------

def firmware_source(name):
    with open(os.path.join(ROOT, "firmware", name)) as f:
        return f.read()


def online_settings():
    tree = ast.parse(firmware_source("main.py"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "ONLINE_SETTINGS":
            return ast.literal_eval(node.value)
    raise AssertionError("firmware/main.py has no ONLINE_SETTINGS")


def firmware_site_reads():
    # Every key the application reads from the site dict: site.get("k"...), site["k"],
    # load_site().get("k"...); and the online options it passes on by name.
    keys = set()
    for name in ("main.py", "board.py", "boot.py"):
        text = firmware_source(name)
        keys.update(re.findall(r"site(?:\(\))?\.get\(\s*\"(\w+)\"", text))
        keys.update(re.findall(r"site\[\s*\"(\w+)\"\s*\]", text))
    return keys | set(online_settings())


def firmware_defaults():
    # The defaults the firmware gives in site.get("k", default), where a literal.
    defaults = {}
    for name in ("main.py", "board.py"):
        for node in ast.walk(ast.parse(firmware_source(name))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[1], ast.Constant)):
                defaults[node.args[0].value] = node.args[1].value
    return defaults


def online_defaults():
    # dynreg.online.DEFAULTS: {name: default}, a number read through `mqtt.NAME` constants too;
    # None for a default that is no literal (a function, None).
    lib = os.path.join(ROOT, "lib", "dynreg")
    consts = {}
    for node in ast.parse(open(os.path.join(lib, "mqtt.py")).read()).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", "") == "const"):
            consts[node.targets[0].id] = node.value.args[0].value
    for node in ast.parse(open(os.path.join(lib, "online.py")).read()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DEFAULTS":
            values = {}
            for k, v in zip(node.value.keys, node.value.values):
                if isinstance(v, ast.Constant):
                    values[k.value] = v.value
                elif isinstance(v, ast.Attribute) and v.attr in consts:
                    values[k.value] = consts[v.attr]
                else:
                    values[k.value] = None
            return values
    raise AssertionError("lib/dynreg/online.py has no DEFAULTS")


def test_the_checker_knows_exactly_the_settings_the_firmware_reads():
    reads = firmware_site_reads()
    assert {"wifi_ssid", "wifi_password", "boot_attempts", "retry_ms", "keepalive"} <= reads  # the grep works
    assert reads - set(site_check.SETTINGS) == set(), "read by firmware/, unknown to dynreg_tools/site_check.py"
    assert set(site_check.SETTINGS) - reads == set(), "known to dynreg_tools/site_check.py, read by no firmware/ code"


def test_the_online_settings_are_the_librarys_options():
    # Every number dynreg.online takes is a site setting; the rest (ca, mqtt_url, log, hooks)
    # are the firmware's to pass.
    defaults = online_defaults()
    assert set(online_settings()) <= set(defaults)
    assert {k for k, v in defaults.items() if isinstance(v, int)} == set(online_settings())


def test_the_checkers_defaults_are_the_firmwares():
    code = dict(online_defaults(), **firmware_defaults())
    for key, rule in site_check.SETTINGS.items():
        if "default" in rule:
            assert code.get(key) == rule["default"], key


def site_doc_rows():
    with open(os.path.join(ROOT, "docs", "SITE.md")) as f:
        rows = [line.split(" | ") for line in f if line.startswith("| `")]
    return {row[0].strip("| `"): row for row in rows}


def test_docs_site_md_lists_every_setting_with_the_code_default():
    rows = site_doc_rows()
    assert set(rows) == set(site_check.SETTINGS)
    code = dict(online_defaults(), **firmware_defaults())
    for key, rule in site_check.SETTINGS.items():
        if rule["kind"] == "int":
            assert rows[key][2].startswith(str(code[key])), (key, rows[key][2])
            assert "%d to %d" % (rule["min"], rule["max"]) in rows[key][3], (key, rows[key][3])


def test_the_docs_point_at_the_example_and_the_check():
    for doc in ("README.md", os.path.join("boards", "README.md"), os.path.join("docs", "SITE.md")):
        with open(os.path.join(ROOT, doc)) as f:
            text = f.read()
        assert "site.example.json" in text and ("SITE.md" in text or doc.endswith("SITE.md")), doc

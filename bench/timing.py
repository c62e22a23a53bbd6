# Time, as ratios measured in the same run:
# - HMAC-SHA256 against the two raw SHA-256 passes (bench/hmac_bench.py, unix port);
# - Tencent payload decryption against raw AES-CBC of the same bytes (bench/decrypt_bench.py);
# - boot to credential stored and boot to MQTT connected, a dynreg device on the unix port
#   against the same flow done by the clouds' CPython SDKs, both against the local emulator
#   over TLS: median of RUNS runs each, interleaved, every run a fresh process and a fresh
#   device. "Boot" is the spawn of the process: the interpreter's start and imports count.
import json
import os
import shutil
import subprocess
import time

from common import (AZURE_KEY, BENCH, BUILD, MICROPYTHON, PYTHON, ROOT, SECRET, VENDOR_PYTHON, VENDOR_SDK,
                    aliyun_info, aws_info, azure_info, median, run_device, running_emulator, say, tencent_info)

RUNS = 15
TARGET_HMAC = 2.0
TENCENT, ALIYUN = "BENCHTIM01", "a1BenchTim1"
SDKS = {"tencent": "tencent-iot-device 1.0.0", "aliyun": "aliyun-iot-linkkit 1.2.13", "azure": "azure-iot-device 2.14.0",
        "aws": "awsiotsdk 1.31.0"}
# DPS assigns after 1 s: both devices are told retry-after=1 (the vendor SDK's first poll waits
# its fixed 2 s whatever DPS says; dynreg waits what it is told).
AZURE_GROUP, AZURE_SCOPE, AZURE_ASSIGN_S = "bench-time", "0ne00BENCHT", 1
AWS_TEMPLATE = "BenchTime"  # SerialNumber only, which names the thing: both devices send it

def _micropython(script):
    proc = subprocess.run([MICROPYTHON, os.path.join(BENCH, script)], capture_output=True, text=True,
                          env=dict(os.environ, MICROPYPATH=os.path.join(ROOT, "lib")), cwd=ROOT, timeout=300)
    if proc.returncode:
        raise RuntimeError("%s failed: %s" % (script, (proc.stdout + proc.stderr)[-500:]))
    return proc.stdout


def hmac():
    rows = {}
    for line in _micropython("hmac_bench.py").splitlines():
        fields = line[26:].split()
        if len(fields) == 3 and line[:26].strip() != "what":
            rows[line[:26].strip()] = {"us": float(fields[0]), "ratio": float(fields[1]),
                                       "bytes": int(fields[2]) if fields[2].isdigit() else None}
    return {"rows": rows, "ratio": rows["hmac, same key"]["ratio"], "target": TARGET_HMAC}


def decrypt():
    rows = {}
    for line in _micropython("decrypt_bench.py").splitlines()[1:]:
        name, size, full, raw, ratio = line.split()
        rows[name] = {"bytes": int(size), "decrypt_us": float(full), "aes_us": float(raw), "ratio": float(ratio)}
    return rows


def _sdk_run(spec):
    spawn = time.time_ns()
    proc = subprocess.run([VENDOR_PYTHON, VENDOR_SDK, json.dumps(spec)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    times, result = {}, "no result line: " + proc.stderr[-300:]
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["T"] and len(parts) == 3:
            times[parts[1]] = int(parts[2])
        elif parts[:1] == ["RESULT"]:
            result = line[7:].strip()
    return {"times": times, "result": result, "spawn_ns": spawn}


def _since(run, label, origin):
    # ms from the process's spawn, or from the first line of its script (the interpreter's own
    # start left out)
    if run["result"] != "ok" or label not in run["times"] or (origin == "start" and "start" not in run["times"]):
        return None
    return (run["times"][label] - (run["spawn_ns"] if origin == "spawn" else run["times"]["start"])) / 1e6


def _interpreter_start_ms():
    figures = {"micropython": [], "cpython": []}
    for _ in range(RUNS):
        for name, command in (("micropython", [MICROPYTHON, "-c", "pass"]), ("cpython", [PYTHON, "-c", "pass"])):
            start = time.perf_counter()
            subprocess.run(command, check=True)
            figures[name].append((time.perf_counter() - start) * 1000)
    result = {name: median(values) for name, values in figures.items()}
    result["runs"] = RUNS
    return result


ORIGINS = ("spawn", "start")
PREFIX = {"tencent_https": "th", "aliyun_https": "ah", "aliyun_mqtt": "am", "azure_dps": "az",
          "aws_claim": "aw"}  # device names
FLOWS = [
    # key, label, cloud, dynreg api, sdk mode
    ("tencent_https", "Tencent, HTTPS registration", "tencent", None, "https"),
    ("aliyun_https", "Alibaba, HTTPS registration", "aliyun", "https", "https"),
    ("aliyun_mqtt", "Alibaba, MQTT registration", "aliyun", "mqtt", "mqtt"),
    ("azure_dps", "Azure, DPS registration", "azure", None, "dps"),
    ("aws_claim", "AWS, fleet provisioning by claim", "aws", None, "provision"),
]


def boot():
    state = os.path.join(BUILD, "time-cloud")
    shutil.rmtree(state, ignore_errors=True)
    measures = ("stored", "connected", "second_boot")
    samples = {key: {"dynreg": {(m, o): [] for m in measures for o in ORIGINS},
                     "sdk": {(m, o): [] for m in measures for o in ORIGINS}, "errors": []} for key, *_ in FLOWS}
    with running_emulator(state) as cloud:
        cloud.add_product(TENCENT, SECRET, auth="key", dynreg=True, mode="autocreate", limit=100000)
        cloud.add_product(ALIYUN, SECRET, cloud="aliyun", limit=100000)
        cloud.add_product(AZURE_GROUP, AZURE_KEY, cloud="azure", id_scope=AZURE_SCOPE, hub="bench.azure-devices.net",
                          assign_seconds=AZURE_ASSIGN_S)
        cloud.add_aws_template(AWS_TEMPLATE)
        claim = cloud.add_aws_claim(AWS_TEMPLATE, os.path.join(state, "aws-claim"))
        for index in range(RUNS):
            for key, label, kind, api, mode in FLOWS:
                name, sdk_name = "%s-dyn-%02d" % (PREFIX[key], index), "%s-sdk-%02d" % (PREFIX[key], index)
                folder = os.path.join(state, "devices", "%s-%02d" % (key, index))
                if kind == "tencent":
                    info = tencent_info(os.path.join(folder, "dynreg"), cloud, TENCENT, name)
                elif kind == "azure":
                    info = azure_info(os.path.join(folder, "dynreg"), cloud, AZURE_SCOPE, name)
                elif kind == "aws":
                    info = aws_info(os.path.join(folder, "dynreg"), cloud, AWS_TEMPLATE, name, claim)
                else:
                    cloud.add_device(ALIYUN, name)
                    cloud.add_device(ALIYUN, sdk_name)
                    info = aliyun_info(os.path.join(folder, "dynreg"), cloud, ALIYUN, name, api=api)
                first = run_device(info, "rc")
                second = run_device(info, "rc")  # a credential is stored: straight to MQTT
                spec = {"sdk": kind, "mode": mode, "info": os.path.join(folder, "sdk_info.json"),
                        "product": {"tencent": TENCENT, "aliyun": ALIYUN, "azure": AZURE_SCOPE, "aws": AWS_TEMPLATE}[kind],
                        "device": sdk_name, "secret": AZURE_KEY if kind == "azure" else SECRET,
                        "https_port": cloud.https_port, "mqtts_port": cloud.mqtts_port, "ca_pem": cloud.ca_pem_path,
                        "connect": True, "template": AWS_TEMPLATE, "parameters": {"SerialNumber": sdk_name},
                        "claim_cert": str(claim.cert_pem), "claim_key": str(claim.key_pem),
                        "aws_mqtts_port": cloud.aws_mqtts_port}
                sdk = _sdk_run(spec)
                # The runner has no later boot for Azure's SDK (it keeps no key): no second-boot figure.
                sdk_second = _sdk_run(dict(spec, mode="login")) if sdk["result"] == "ok" and kind != "azure" else None
                figures = samples[key]
                for who, run, later in (("dynreg", first, second), ("sdk", sdk, sdk_second)):
                    if run["result"] != "ok":
                        figures["errors"].append("%s: %s" % (who, run["result"]))
                    for origin in ORIGINS:
                        for measure, source, label_name in (("stored", run, "stored"), ("connected", run, "connected"),
                                                            ("second_boot", later, "connected")):
                            value = _since(source, label_name, origin) if source is not None else None
                            if value is not None:
                                figures[who][(measure, origin)].append(value)
    results = {}
    for key, label, kind, api, mode in FLOWS:
        figures = samples[key]
        row = {"label": label, "sdk": SDKS[kind], "runs": RUNS, "errors": figures["errors"][:5],
               "error_count": len(figures["errors"])}
        for measure in measures:
            row[measure] = {}
            for origin, suffix in (("spawn", ""), ("start", "_from_script")):
                ours, theirs = median(figures["dynreg"][(measure, origin)]), median(figures["sdk"][(measure, origin)])
                row[measure].update({"dynreg_ms" + suffix: ours, "sdk_ms" + suffix: theirs,
                                     "ratio" + suffix: ours / theirs if ours and theirs else None})
            row[measure]["n"] = [len(figures["dynreg"][(measure, "spawn")]), len(figures["sdk"][(measure, "spawn")])]
        if kind == "azure":
            row["second_boot"]["sdk_note"] = ("azure-iot-device keeps no credential of its own: a later boot would "
                                              "provision again, so there is no later boot to compare with")
        results[key] = row
        say("  %-30s stored %s / %s ms, connected %s / %s ms (dynreg / %s)"
            % (label, _ms(row["stored"]["dynreg_ms"]), _ms(row["stored"]["sdk_ms"]), _ms(row["connected"]["dynreg_ms"]),
               _ms(row["connected"]["sdk_ms"]), SDKS[kind]))
    return results


def _ms(value):
    return "-" if value is None else "%.0f" % value


def run():
    results = {"hmac": hmac()}
    say("  hmac-sha256 ratio %.2f (target <= %.1f)" % (results["hmac"]["ratio"], TARGET_HMAC))
    results["decrypt"] = decrypt()
    say("  decrypt_payload / raw AES: %s" % ", ".join("%s %.1f" % (name, row["ratio"])
                                                     for name, row in results["decrypt"].items()))
    results["interpreter_start_ms"] = _interpreter_start_ms()
    results["boot"] = boot()
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))

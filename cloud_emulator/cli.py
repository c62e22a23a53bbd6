"""Command line: `python -m cloud_emulator <command> --state DIR ...` (see README.md)."""

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import admin, registry
from .faults import FAULT_KINDS, Blackhole, FaultError, queue_fault
from .server import ServeOptions, run
from .state import StateStore


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("port must be 0..65535 (0 picks a free port)")
    return value


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError("use on or off")
    return text == "on"


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[title for _, title in columns]] + [
        ["-" if row.get(key) is None else str(row.get(key)) for key, _ in columns] for row in rows
    ]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells)


def _cmd_serve(args: argparse.Namespace) -> int:
    return run(
        ServeOptions(
            state_dir=Path(args.state),
            host=args.host,
            http_port=args.http_port,
            https_port=args.https_port,
            mqtt_port=args.mqtt_port,
            mqtts_port=args.mqtts_port,
            client_timeout=args.client_timeout,
        )
    )


def _on_off_text(value: bool) -> str:
    return "on" if value else "off"


def _cmd_add_product(args: argparse.Namespace) -> int:
    created = admin.add_product(
        StateStore(args.state), args.product_id, args.secret, cloud=args.cloud,
        auth=args.auth, dynreg=args.dynreg, mode=args.mode, limit=args.limit,
        regnwl=args.regnwl, gateway=args.gateway, subdevice=args.subdevice, securemode3=args.securemode3,
    )
    verb = "added" if created else "updated"
    if args.cloud == registry.CLOUD_ALIYUN:
        node = "gateway" if args.gateway else "subdevice" if args.subdevice else "direct"
        print(
            f"product {args.product_id} {verb}: cloud aliyun, dynreg {_on_off_text(args.dynreg)}, "
            f"regnwl {_on_off_text(args.regnwl)}, node {node}, securemode3 {_on_off_text(args.securemode3)}, "
            f"limit {args.limit}"
        )
    else:
        print(
            f"product {args.product_id} {verb}: auth {args.auth}, "
            f"dynreg {_on_off_text(args.dynreg)}, mode {args.mode or 'autocreate'}, limit {args.limit}"
        )
    return 0


def _cmd_add_device(args: argparse.Namespace) -> int:
    admin.add_device(StateStore(args.state), args.product_id, args.device_name)
    print(f"device {args.product_id}/{args.device_name} added (status created)")
    return 0


def _cmd_reset_device(args: argparse.Namespace) -> int:
    admin.reset_device(StateStore(args.state), args.product_id, args.device_name)
    print(f"device {args.product_id}/{args.device_name} reset (status created, secret revoked)")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    rows = admin.list_devices(StateStore(args.state), with_secrets=args.show_secrets)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        if args.show_secrets:
            row["secret"] = (row.get("psk") or row.get("device_secret")
                             or (f"token {row['device_token']}" if "device_token" in row else None)
                             or (f"cert sha256 {row['cert_sha256'][:16]}" if "cert_sha256" in row else None))
        else:
            row["secret"] = "<hidden>" if row["has_secret"] else None
    print(_table(rows, [("product_id", "PRODUCT"), ("device_name", "DEVICE"), ("cloud", "CLOUD"),
                        ("auth", "AUTH"), ("status", "STATUS"), ("registrations", "REGISTRATIONS"),
                        ("gateway", "GATEWAY"), ("secret", "SECRET")]))
    return 0


def _cmd_products(args: argparse.Namespace) -> int:
    rows = admin.list_products(StateStore(args.state))
    for row in rows:
        if row["cloud"] == registry.CLOUD_ALIYUN:
            row["node"] = "gateway" if row.get("gateway") else "subdevice" if row.get("subdevice") else "direct"
    print(_table(rows, [("product_id", "PRODUCT"), ("cloud", "CLOUD"), ("auth", "AUTH"), ("dynreg", "DYNREG"),
                        ("mode", "MODE"), ("limit", "LIMIT"), ("regnwl", "REGNWL"), ("node", "NODE"),
                        ("securemode3", "SECUREMODE3"), ("devices", "DEVICES")]))
    return 0


def _cmd_log(args: argparse.Namespace) -> int:
    for record in StateStore(args.state).read_log():
        if args.json:
            print(json.dumps(record, sort_keys=True, ensure_ascii=False))
            continue
        who = "/".join(part for part in (record.get("product"), record.get("device")) if part) or "-"
        details = " ".join(
            f"{key}={record[key]}" for key in ("algorithm", "reason", "topic", "connack", "fault") if record.get(key)
        )
        print(f"{record['time']}  {record['api']:<15} {who:<30} {record.get('result', '-'):<40} {details}".rstrip())
    return 0


def _cmd_fault(args: argparse.Namespace) -> int:
    store = StateStore(args.state)
    if args.clear:
        store.clear_faults()
        print("fault queue cleared")
        return 0
    if args.list or args.kind is None:
        for fault in store.list_faults():
            print(json.dumps(fault, sort_keys=True))
        return 0
    fault = queue_fault(store, args.kind, count=args.count, status=args.status, seconds=args.seconds,
                        retry_after=args.retry_after, interval=args.interval, body_bytes=args.body_bytes)
    print("queued " + json.dumps(fault, sort_keys=True))
    return 0


def _cmd_clock(args: argparse.Namespace) -> int:
    store = StateStore(args.state)
    if args.offset is not None:
        admin.set_clock_offset(store, args.offset)
    print(f"emulator clock: host clock {store.clock_offset():+g} s")
    return 0


def _cmd_drop(args: argparse.Namespace) -> int:
    request_id = admin.drop_connection(StateStore(args.state), args.product_id, args.device_name, how=args.how)
    print(f"drop of {args.product_id}/{args.device_name} ({args.how}) queued: the running broker logs it as "
          f"mqtt-drop, request_id {request_id}")
    return 0


def _cmd_blackhole(args: argparse.Namespace) -> int:
    try:
        hole = Blackhole(args.host, args.port)
    except OSError as error:
        print(f"error: cannot open the blackhole port: {error}", file=sys.stderr)
        return 1
    with hole:
        print(f"blackhole on {hole.host}:{hole.port}: connect() never completes; Ctrl-C to stop", flush=True)
        def stop(*_: Any) -> None:
            raise KeyboardInterrupt

        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, stop)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cloud_emulator",
                                     description="Local Tencent IoT and Alibaba Cloud IoT Platform emulator")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--state", required=True, metavar="DIR", help="state folder")
        sub.set_defaults(handler=handler)
        return sub

    serve = command("serve", _cmd_serve, "run the HTTP/HTTPS registration endpoints and the MQTT broker")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--http-port", type=_port, default=8080)
    serve.add_argument("--https-port", type=_port, default=8443)
    serve.add_argument("--mqtt-port", type=_port, default=1883)
    serve.add_argument("--mqtts-port", type=_port, default=8883)
    serve.add_argument("--client-timeout", type=float, default=10.0, metavar="S",
                       help="seconds a client gets to send a whole HTTP request or its MQTT CONNECT (default 10)")

    product = command("add-product", _cmd_add_product, "create or update a product")
    product.add_argument("--product-id", "--product-key", dest="product_id", required=True,
                         help="Tencent ProductId (10 A-Z0-9) or Alibaba ProductKey (11 A-Za-z0-9)")
    product.add_argument("--secret", required=True, help="ProductSecret (never echoed)")
    product.add_argument("--cloud", choices=registry.CLOUDS, default=registry.CLOUD_TENCENT)
    product.add_argument("--auth", choices=registry.AUTH_MODES, default="key")
    product.add_argument("--dynreg", type=_on_off, default=True, metavar="on|off")
    product.add_argument("--mode", choices=registry.REGISTRATION_MODES, default=None,
                         help="Tencent only (default autocreate); Alibaba devices are always pre-registered")
    product.add_argument("--limit", type=int, default=registry.DEFAULT_DEVICE_LIMIT,
                         help="most devices auto-create (Tencent) or regnwl (Alibaba) may reach")
    product.add_argument("--regnwl", type=_on_off, default=False, metavar="on|off",
                         help="Alibaba: allow pre-registration-free MQTT registration (default off)")
    node = product.add_mutually_exclusive_group()
    node.add_argument("--gateway", action="store_true", help="Alibaba: gateway product")
    node.add_argument("--subdevice", action="store_true", help="Alibaba: sub-device product")
    product.add_argument("--securemode3", type=_on_off, default=False, metavar="on|off",
                         help="Alibaba: accept DeviceSecret logins over plain TCP, securemode=3 (default off)")

    for name, handler, help_text in (
        ("add-device", _cmd_add_device, "pre-create a device (operator console)"),
        ("reset-device", _cmd_reset_device, "operator reset: revoke the secret, back to status created"),
    ):
        sub = command(name, handler, help_text)
        sub.add_argument("--product-id", "--product-key", dest="product_id", required=True)
        sub.add_argument("--device-name", required=True)

    devices = command("devices", _cmd_devices, "list devices and their status")
    devices.add_argument("--show-secrets", action="store_true", help="print issued secrets (masked otherwise)")
    devices.add_argument("--json", action="store_true")

    command("products", _cmd_products, "list products (without secrets)")

    log = command("log", _cmd_log, "print the request log")
    log.add_argument("--json", action="store_true", help="one JSON object per line")

    fault = command("fault", _cmd_fault, "queue an injected fault for the next requests")
    fault.add_argument("--kind", choices=sorted(FAULT_KINDS))
    fault.add_argument("--status", type=int, help="HTTP status for http_status (and wrong_content_type)")
    fault.add_argument("--seconds", type=float,
                       help="seconds for delay; for mqtt_no_connack, how long the connection is held")
    fault.add_argument("--retry-after", type=int, metavar="S", help="http_status: send Retry-After: S")
    fault.add_argument("--interval", type=float, metavar="S", help="trickle: seconds between bytes")
    fault.add_argument("--body-bytes", type=int, metavar="N",
                       help="truncate, reset: body bytes sent before the cut (default half)")
    fault.add_argument("--count", type=int, default=1, help="how many requests it applies to (default 1)")
    fault.add_argument("--list", action="store_true", help="show the queue")
    fault.add_argument("--clear", action="store_true", help="empty the queue")

    clock = command("clock", _cmd_clock, "show or set the emulator clock's offset from the host clock")
    clock.add_argument("--offset", type=float, metavar="S",
                       help="seconds ahead of the host clock (negative: behind; 0: the host's)")

    drop = command("drop", _cmd_drop, "drop a connected device's MQTT connections (the running broker acts)")
    drop.add_argument("--product-id", "--product-key", dest="product_id", required=True)
    drop.add_argument("--device-name", required=True)
    drop.add_argument("--how", choices=admin.DROP_HOW, default="reset",
                      help="reset: TCP RST at once (default); silence: never read or answer again")

    hole = commands.add_parser("blackhole", help="hold a port where connect() never completes (a connect timeout)",
                               description="hold a port where connect() never completes (a connect timeout): "
                               "a listener that never accepts, its accept queue full")
    hole.add_argument("--host", default="127.0.0.1")
    hole.add_argument("--port", type=_port, default=0, help="0 picks a free port (printed)")
    hole.set_defaults(handler=_cmd_blackhole)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (registry.RegistryError, FaultError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

"""Command line: `python -m cloud_emulator <command> [--state DIR] ...` (see README.md)."""

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn

from . import admin, aws, registry
from .crypto import CHAIN_SHAPES, DEFAULT_CHAIN, ensure_tls_material
from .faults import FAULT_KINDS, Blackhole, FaultError, queue_fault
from .server import ServeOptions, run
from .throttle import ANSWERS, RETRY_AFTER_MODES
from .state import StateStore

DEFAULT_STATE = Path(__file__).resolve().parent.parent / "build" / "cloud"  # where `make cloud` serves
GENERATED_SECRET_LENGTH = 24
HIDDEN = "<hidden>"
SECRET_ON_ARGV_WARNING = ("warning: --secret shows the ProductSecret to other users (ps) and leaves it in your "
                          "shell history; prefer --secret-file or --generate-secret")


class InputError(ValueError):
    """A command-line input the emulator cannot use (an unreadable secret file, ...)."""


class CommandLineError(Exception):
    """Raised instead of argparse's print-and-exit, so main() can hide argument values first."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    # argparse repeats raw arguments in its errors ("unrecognized arguments: --secrett S"); a
    # mistyped secret option must not put the secret on the terminal, so main() masks them.
    public_words: frozenset[str] = frozenset()  # command names and choices: shown even when typed

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(self, message)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error("unrecognized arguments: " + " ".join(_names_only(extras)))
        return namespace


_OPTION_NAME = re.compile(r"--?[a-z][a-z0-9-]*\Z")


def _names_only(arguments: list[str]) -> list[str]:
    """Option names as typed, every value replaced by HIDDEN."""
    shown = []
    for argument in arguments:
        name, equals, _ = argument.partition("=")
        shown.append(name + (equals and "=" + HIDDEN) if _OPTION_NAME.match(name) else HIDDEN)
    return shown


def _without_values(message: str, argv: list[str], public_words: frozenset[str]) -> str:
    """`message` with every argument value in `argv` (quoted, or after "=") replaced by HIDDEN,
    except the command line's own words (a list of choices stays readable)."""
    for argument in argv:
        name, equals, value = argument.partition("=")
        if equals and name.startswith("-"):
            message = message.replace(argument, f"{name}={HIDDEN}")
            argument = value
        if not argument.startswith("-") and argument not in public_words:
            message = message.replace(repr(argument), HIDDEN)
    return message


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


def _state_folder(args: argparse.Namespace) -> Path:
    return DEFAULT_STATE if args.state is None else Path(args.state)


def _store(args: argparse.Namespace) -> StateStore:
    return admin.open_state(_state_folder(args))


def _cmd_serve(args: argparse.Namespace) -> int:
    return run(
        ServeOptions(
            state_dir=_state_folder(args),
            host=args.host,
            http_port=args.http_port,
            https_port=args.https_port,
            mqtt_port=args.mqtt_port,
            mqtts_port=args.mqtts_port,
            aws_mqtts_port=args.aws_mqtts_port,
            client_timeout=args.client_timeout,
            chain=args.chain,
        )
    )


def _on_off_text(value: bool) -> str:
    return "on" if value else "off"


def _store_for_add_product(args: argparse.Namespace) -> StateStore:
    """add-product may start a new state in a folder named explicitly (add-product, then serve, is
    a documented order); the default folder it never creates: a forgotten --state would quietly
    send the product to a state no server serves."""
    folder = _state_folder(args)
    if args.state is None or admin.has_state(folder):
        return admin.open_state(folder)
    print(f"note: no emulator state at {folder} yet: starting a new one there", file=sys.stderr)
    return admin.open_state(folder, create=True)


def _strip_one_newline(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def _read_secret_file(name: str) -> str:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read the secret file {name}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise InputError(f"the secret file {name} is not UTF-8 text") from None
    secret = _strip_one_newline(text)
    if not secret:
        raise InputError(f"the secret file {name} is empty")
    return secret


def _write_new_secret_file(path: Path, secret: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{path} exists: --generate-secret never overwrites a file") from None
    except OSError as error:
        raise InputError(f"cannot create {path}: {error.strerror or error}") from None
    os.fchmod(fd, 0o600)  # O_CREAT honours the umask; make the mode exact
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")


def _given_secret(args: argparse.Namespace) -> str | None:
    if args.secret is not None:
        print(SECRET_ON_ARGV_WARNING, file=sys.stderr)
        return args.secret
    if args.secret_file is not None:
        return _read_secret_file(args.secret_file)
    return None


def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Only the settings typed on the command line: --update changes these and keeps the rest."""
    settings = {name: getattr(args, name) for name in ("cloud", "auth", "dynreg", "mode", "limit", "regnwl",
                                                       "securemode3", *registry.AZURE_SETTINGS)}
    if args.node is not None:  # one setting, stored as two flags
        settings.update(gateway=args.node == "gateway", subdevice=args.node == "subdevice")
    return {name: value for name, value in settings.items() if value is not None}


def _define_product(args: argparse.Namespace, store: StateStore) -> admin.ProductChange:
    settings = _given_settings(args)
    if args.generate_secret is None:
        return admin.define_product(store, args.product_id, _given_secret(args), update=args.update, **settings)
    azure = args.cloud == registry.CLOUD_AZURE
    secret = registry.new_group_key() if azure else registry.random_alphanumeric(GENERATED_SECRET_LENGTH)
    path = Path(args.generate_secret)
    _write_new_secret_file(path, secret)
    try:
        return admin.define_product(store, args.product_id, secret, update=args.update, **settings)
    except registry.RegistryError:
        path.unlink()  # the product did not take it: leave no secret file behind
        raise


def _node(settings: dict[str, Any]) -> str:
    return "gateway" if settings.get("gateway") else "subdevice" if settings.get("subdevice") else "direct"


def _settings_text(settings: dict[str, Any]) -> str:
    if settings["cloud"] == registry.CLOUD_AZURE:
        return (f"cloud azure, enrollment group {_on_off_text(settings['dynreg'])}, ID scope {settings['id_scope']}, "
                f"hub {settings['hub']}, assign_seconds {settings['assign_seconds']}")
    if settings["cloud"] == registry.CLOUD_ALIYUN:
        return (f"cloud aliyun, dynreg {_on_off_text(settings['dynreg'])}, "
                f"regnwl {_on_off_text(settings['regnwl'])}, node {_node(settings)}, "
                f"securemode3 {_on_off_text(settings['securemode3'])}, limit {settings['limit']}")
    return (f"auth {settings['auth']}, dynreg {_on_off_text(settings['dynreg'])}, mode {settings['mode']}, "
            f"limit {settings['limit']}")


def _changed_text(changed: tuple[str, ...]) -> str:
    names = dict.fromkeys("node" if name in ("gateway", "subdevice") else name for name in changed)
    return f"changed: {', '.join(names)}" if names else "nothing changed"


def _cmd_add_product(args: argparse.Namespace) -> int:
    change = _define_product(args, _store_for_add_product(args))
    if change.created:
        print(f"product {args.product_id} added: {_settings_text(change.settings)}")
    else:
        print(f"product {args.product_id} updated ({_changed_text(change.changed)}): "
              f"{_settings_text(change.settings)}")
    if args.generate_secret is not None:
        what = "group key" if change.settings["cloud"] == registry.CLOUD_AZURE else "ProductSecret"
        print(f"{what} written to {args.generate_secret} (mode 0600)")
    return 0


def _cmd_hub_device(args: argparse.Namespace) -> int:
    admin.set_hub_device(_store(args), args.product_id, args.device_name, args.action)
    print(f"device {args.product_id}/{args.device_name}: {args.action}d in its IoT hub")
    return 0


def _cmd_aws_add_template(args: argparse.Namespace) -> int:
    try:
        configuration = json.loads(args.device_configuration) if args.device_configuration else {}
    except ValueError as error:
        raise InputError(f"--device-configuration is not JSON: {error}") from None
    template = aws.add_template(_store(args), args.name, args.parameter, thing_name_prefix=args.thing_name_prefix,
                                allow=args.allow, device_configuration=configuration, update=args.update)
    print(f"template {args.name}: parameters {', '.join(template['parameters'])}, things named "
          f"{template['thing_name_prefix']}<{template['parameters'][0]}>, allowed {template['parameters'][0]}: "
          f"{template['allow']}, device configuration {json.dumps(template['device_configuration'])}")
    return 0


def _cmd_aws_add_claim(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.template not in {row["name"] for row in aws.templates(store)}:
        print(f"note: no template {args.template} yet: RegisterThing answers 404 until aws-add-template defines it",
              file=sys.stderr)
    files = aws.add_claim(store, ensure_tls_material(store.folder).ca, args.template, args.cert_out, args.key_out)
    print(f"claim certificate {files.certificate_id} for template {args.template} (ACTIVE): certificate "
          f"{files.cert_pem} (PEM), {files.cert_der} (DER); key {files.key_pem} (PEM), {files.key_der} (DER), "
          "mode 0600")
    return 0


def _cmd_aws_claim_status(args: argparse.Namespace) -> int:
    enabled = args.command == "aws-enable-claim"
    claim_id = aws.set_claim_enabled(_store(args), args.certificate_id, enabled)
    print(f"claim certificate {claim_id}: {aws.ACTIVE if enabled else aws.INACTIVE}")
    return 0


_AWS_TABLES = {
    "aws-templates": (aws.templates, [("name", "TEMPLATE"), ("parameters", "PARAMETERS"),
                                      ("thing_name_prefix", "THING PREFIX"), ("allow", "ALLOW"),
                                      ("device_configuration", "DEVICE CONFIGURATION")]),
    "aws-certificates": (aws.certificates, [("certificate_id", "CERTIFICATE ID"), ("kind", "KIND"),
                                            ("status", "STATUS"), ("template", "TEMPLATE"), ("thing", "THING")]),
    "aws-things": (aws.things, [("thing_name", "THING"), ("template", "TEMPLATE"),
                                ("certificates", "CERTIFICATES"), ("parameters", "PARAMETERS")]),
}


def _cmd_aws_list(args: argparse.Namespace) -> int:
    rows, columns = _AWS_TABLES[args.command]
    listed = rows(_store(args))
    if args.json:
        for row in listed:
            print(json.dumps(row, sort_keys=True))
    else:
        print(_table([{key: json.dumps(v) if isinstance(v, (list, dict)) else v for key, v in row.items()}
                      for row in listed], columns))
    return 0


def _cmd_add_device(args: argparse.Namespace) -> int:
    admin.add_device(_store(args), args.product_id, args.device_name)
    print(f"device {args.product_id}/{args.device_name} added (status created)")
    return 0


def _cmd_reset_device(args: argparse.Namespace) -> int:
    admin.reset_device(_store(args), args.product_id, args.device_name)
    print(f"device {args.product_id}/{args.device_name} reset (status created, secret revoked)")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    rows = admin.list_devices(_store(args), with_secrets=args.show_secrets)
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
    rows = admin.list_products(_store(args))
    for row in rows:
        if row["cloud"] == registry.CLOUD_ALIYUN:
            row["node"] = _node(row)
    print(_table(rows, [("product_id", "PRODUCT"), ("cloud", "CLOUD"), ("auth", "AUTH"), ("dynreg", "DYNREG"),
                        ("mode", "MODE"), ("limit", "LIMIT"), ("regnwl", "REGNWL"), ("node", "NODE"),
                        ("securemode3", "SECUREMODE3"), ("devices", "DEVICES")]))
    return 0


def _cmd_log(args: argparse.Namespace) -> int:
    for record in _store(args).read_log():
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
    store = _store(args)
    if args.clear:
        store.clear_faults()
        print("fault queue cleared")
        return 0
    if args.list or args.kind is None:
        for fault in store.list_faults():
            print(json.dumps(fault, sort_keys=True))
        return 0
    fault = queue_fault(store, args.kind, count=args.count, status=args.status, seconds=args.seconds,
                        retry_after=args.retry_after, interval=args.interval, body_bytes=args.body_bytes,
                        answer=args.answer)
    print("queued " + json.dumps(fault, sort_keys=True))
    return 0


def _cmd_clock(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.offset is not None:
        admin.set_clock_offset(store, args.offset)
    print(f"emulator clock: host clock {store.clock_offset():+g} s")
    return 0


def _cmd_throttle(args: argparse.Namespace) -> int:
    if args.off == (args.rate is not None):
        print("throttle: give --rate R (registrations a second) or --off", file=sys.stderr)
        return 2
    limit = admin.set_throttle(_store(args), args.product_id, None if args.off else args.rate, args.burst,
                               args.retry_after, args.answer)
    print(f"product {args.product_id}: " + ("registrations not limited" if limit is None else
                                           f"at most {args.rate:g} registrations a second, {args.burst or 1} at once, "
                                           f"answer: {limit['answer']}, Retry-After: {limit['retry_after']}"))
    return 0


def _cmd_drop(args: argparse.Namespace) -> int:
    request_id = admin.drop_connection(_store(args), args.product_id, args.device_name, how=args.how)
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


def _parser(prog: str) -> _Parser:
    parser = _Parser(prog=prog,
                     description="Local Tencent IoT, Alibaba Cloud IoT Platform and Azure DPS / IoT Hub emulator")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--state", metavar="DIR", help=f"state folder (default {DEFAULT_STATE})")
        sub.set_defaults(handler=handler)
        return sub

    serve = command("serve", _cmd_serve, "run the HTTP/HTTPS registration endpoints and the MQTT broker")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--http-port", type=_port, default=8080)
    serve.add_argument("--https-port", type=_port, default=8443)
    serve.add_argument("--mqtt-port", type=_port, default=1883)
    serve.add_argument("--mqtts-port", type=_port, default=8883)
    serve.add_argument("--aws-mqtts-port", type=_port, default=8884,
                       help="AWS IoT Core's endpoint: MQTT over TLS with a client certificate required (default 8884)")
    serve.add_argument("--client-timeout", type=float, default=10.0, metavar="S",
                       help="seconds a client gets to send a whole HTTP request or its MQTT CONNECT (default 10)")
    serve.add_argument("--chain", choices=list(CHAIN_SHAPES),
                       help=f"the shape of the server's certificate chain (default: the state's; {DEFAULT_CHAIN} in a "
                       "new state); another shape than the state's makes a new root, a new ca.der for the devices")

    # Settings default to None: --update must tell the options typed from those left out.
    product = command("add-product", _cmd_add_product,
                      "create a product, or with --update change the settings given and keep the rest")
    product.add_argument("--product-id", "--product-key", dest="product_id", required=True,
                         help="Tencent ProductId (10 A-Z0-9) or Alibaba ProductKey (11 A-Za-z0-9)")
    product.add_argument("--update", action="store_true",
                         help="change an existing product (without it, an existing id is refused)")
    secret = product.add_mutually_exclusive_group()
    secret.add_argument("--secret-file", metavar="PATH",
                        help="read the ProductSecret from PATH (- reads stdin; one trailing newline is dropped)")
    secret.add_argument("--generate-secret", metavar="PATH",
                        help=f"use a new random ProductSecret ({GENERATED_SECRET_LENGTH} alphanumerics), written to "
                        "PATH with mode 0600 (never overwrites a file)")
    secret.add_argument("--secret", metavar="S",
                        help="ProductSecret on the command line: visible to other users and in shell history")
    product.add_argument("--cloud", choices=registry.CLOUDS, help="default tencent")
    product.add_argument("--auth", choices=registry.AUTH_MODES, help="default key")
    product.add_argument("--dynreg", type=_on_off, metavar="on|off", help="default on")
    product.add_argument("--mode", choices=registry.REGISTRATION_MODES,
                         help="Tencent only (default autocreate); Alibaba devices are always pre-registered")
    product.add_argument("--limit", type=int,
                         help="most devices auto-create (Tencent) or regnwl (Alibaba) may reach "
                         f"(default {registry.DEFAULT_DEVICE_LIMIT})")
    product.add_argument("--regnwl", type=_on_off, metavar="on|off",
                         help="Alibaba: allow pre-registration-free MQTT registration (default off)")
    node = product.add_mutually_exclusive_group()
    for kind, help_text in (("gateway", "Alibaba: gateway product"), ("subdevice", "Alibaba: sub-device product"),
                            ("direct", "Alibaba: direct-connection product (the default)")):
        node.add_argument(f"--{kind}", dest="node", action="store_const", const=kind, help=help_text)
    product.add_argument("--securemode3", type=_on_off, metavar="on|off",
                         help="Alibaba: accept DeviceSecret logins over plain TCP, securemode=3 (default off)")
    product.add_argument("--id-scope", dest="id_scope", metavar="SCOPE",
                         help="Azure: the DPS ID scope of this enrollment group (--product-id is the group's name; "
                         "--generate-secret makes its key, base64 of 64 random bytes)")
    product.add_argument("--hub", metavar="HOST", help="Azure: the IoT hub the group assigns devices to")
    product.add_argument("--assign-seconds", dest="assign_seconds", type=int, metavar="S",
                         help=f"Azure: the retry-after of DPS's first answer, and how long the assignment takes "
                         f"(default {registry.DEFAULT_ASSIGN_SECONDS})")

    for name, handler, help_text in (
        ("add-device", _cmd_add_device, "pre-create a device (operator console)"),
        ("reset-device", _cmd_reset_device, "operator reset: revoke the secret, back to status created"),
    ):
        sub = command(name, handler, help_text)
        sub.add_argument("--product-id", "--product-key", dest="product_id", required=True)
        sub.add_argument("--device-name", required=True)

    hub = command("hub-device", _cmd_hub_device, "Azure: delete an assigned device from its IoT hub, "
                  "or disable or enable it there")
    hub.add_argument("--product-id", dest="product_id", required=True, help="the enrollment group")
    hub.add_argument("--device-name", required=True, help="the registration id")
    hub.add_argument("--action", choices=registry.HUB_ACTIONS, required=True)

    template = command("aws-add-template", _cmd_aws_add_template, "AWS: define a fleet-provisioning template")
    template.add_argument("--name", required=True, help="1 to 36 of 0-9 A-Z a-z _ -")
    template.add_argument("--parameter", action="append", required=True, metavar="NAME",
                          help="a parameter RegisterThing must send (repeat for more); the first names the thing")
    template.add_argument("--thing-name-prefix", default="", metavar="P", help="things are named P<first parameter>")
    template.add_argument("--allow", default=".*", metavar="REGEX",
                          help="the pre-provisioning hook: the first parameter must match in full (default: any)")
    template.add_argument("--device-configuration", metavar="JSON",
                          help="a JSON object of strings, the deviceConfiguration RegisterThing answers")
    template.add_argument("--update", action="store_true", help="replace a template of that name")
    claim = command("aws-add-claim", _cmd_aws_add_claim,
                    "AWS: mint a claim certificate and RSA-2048 key for a template (PEM, and DER beside as .der)")
    claim.add_argument("--template", required=True)
    claim.add_argument("--cert-out", required=True, metavar="PATH", help="the certificate, PEM (PATH.der: DER)")
    claim.add_argument("--key-out", required=True, metavar="PATH", help="the key, PKCS#1 PEM (.der: DER), mode 0600")
    for name, help_text in (("aws-disable-claim", "AWS: deactivate a claim certificate (its logins are refused)"),
                            ("aws-enable-claim", "AWS: activate a claim certificate again")):
        sub = command(name, _cmd_aws_claim_status, help_text)
        sub.add_argument("--certificate-id", required=True, metavar="ID", help="the claim's id, or 8+ of its first hex")
    for name, help_text in (("aws-templates", "AWS: list the provisioning templates"),
                            ("aws-certificates", "AWS: list claim and device certificates with their status"),
                            ("aws-things", "AWS: list the things RegisterThing created")):
        command(name, _cmd_aws_list, help_text).add_argument("--json", action="store_true")

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
    fault.add_argument("--retry-after", type=int, metavar="S",
                       help="http_status: send Retry-After: S (implies --answer http)")
    fault.add_argument("--answer", choices=ANSWERS,
                       help="http_status: cloud (the default) answers as the cloud reports errors, HTTP 200 and "
                            "its code where it does so (Tencent's current API, Alibaba HTTPS); http: HTTP status N")
    fault.add_argument("--interval", type=float, metavar="S", help="trickle: seconds between bytes")
    fault.add_argument("--body-bytes", type=int, metavar="N",
                       help="truncate, reset: body bytes sent before the cut (default half)")
    fault.add_argument("--count", type=int, default=1, help="how many requests it applies to (default 1)")
    fault.add_argument("--list", action="store_true", help="show the queue")
    fault.add_argument("--clear", action="store_true", help="empty the queue")

    clock = command("clock", _cmd_clock, "show or set the emulator clock's offset from the host clock")
    clock.add_argument("--offset", type=float, metavar="S",
                       help="seconds ahead of the host clock (negative: behind; 0: the host's)")

    throttle = command("throttle", _cmd_throttle, "limit a product's registrations (a token bucket), or lift it")
    throttle.add_argument("--product-id", "--product-key", dest="product_id", required=True)
    throttle.add_argument("--rate", type=float, metavar="R", help="registrations a second")
    throttle.add_argument("--burst", type=int, metavar="B", help="registrations at once (default 1)")
    throttle.add_argument("--retry-after", choices=RETRY_AFTER_MODES,
                          help="what a 429 over-limit answer's Retry-After says: slot (a reserved slot of its own, "
                               "the default), next (when the next token is there), none (no Retry-After); "
                               "implies --answer http unless --answer is given")
    throttle.add_argument("--answer", choices=ANSWERS,
                          help="over the limit: cloud (the default) answers as the cloud documents it, HTTP 200 and "
                               "its code without Retry-After where it reports errors so (Tencent's current API, "
                               "Alibaba HTTPS); http: HTTP 429 with Retry-After (the emulator's choice)")
    throttle.add_argument("--off", action="store_true", help="no limit")

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
    parser.public_words = frozenset([*commands.choices, *registry.CLOUDS, *registry.AUTH_MODES,
                                     *registry.REGISTRATION_MODES, *FAULT_KINDS, *admin.DROP_HOW,
                                     *registry.HUB_ACTIONS, *CHAIN_SHAPES])
    return parser


def _parse(argv: list[str], prog: str) -> argparse.Namespace:
    parser = _parser(prog)
    try:
        return parser.parse_args(argv)
    except CommandLineError as error:
        error.parser.print_usage(sys.stderr)
        message = _without_values(error.message, argv, parser.public_words)
        print(f"{error.parser.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None, prog: str = "python -m cloud_emulator") -> int:
    args = _parse(sys.argv[1:] if argv is None else list(argv), prog)
    try:
        return args.handler(args)
    except (registry.RegistryError, FaultError, InputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

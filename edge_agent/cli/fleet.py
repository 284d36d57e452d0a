"""`edge-agent fleet ...`: the central side of fleet commands: a signing key, signed envelopes, publishing
them to the devices and collecting their answers."""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from edge_agent.cli.args import EXIT_FAILURES, EXIT_OK, positive_float, positive_int, settings_from
from edge_agent.errors import EdgeAgentError
from edge_agent.fleet.command import ALL_DEVICES, COMMANDS

LIFETIME = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def add_fleet_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = commands.add_parser("fleet", help="signed commands to a fleet of agents over MQTT")
    sub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")

    keygen = sub.add_parser("keygen", help="make an Ed25519 key for signing commands")
    keygen.add_argument("path", type=Path, metavar="KEYFILE")
    keygen.set_defaults(handler=_cmd_keygen)

    sign = sub.add_parser("sign", help="write a signed command envelope")
    _command_options(sign)
    sign.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here (default: stdout)")
    sign.set_defaults(handler=_cmd_sign)

    publish = sub.add_parser("publish", help="publish a signed envelope (QoS 1), wait for the broker's ack")
    publish.add_argument("envelope", type=Path, metavar="ENVELOPE_FILE")
    publish.add_argument("--target", help="device id or all (default: the one it is signed for)")
    publish.set_defaults(handler=_cmd_publish)

    send = sub.add_parser("send", help="sign, publish, and collect the devices' answers")
    _command_options(send)
    send.add_argument("--expect", type=positive_int, help="answers to wait for (default 1 for one device)")
    send.add_argument("--timeout", type=positive_float, default=30.0, help="seconds to wait (default 30)")
    send.set_defaults(handler=_cmd_send)


def _command_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "command", choices=sorted(COMMANDS), metavar="COMMAND", help=" | ".join(sorted(COMMANDS))
    )
    parser.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a command argument; VALUE is read as JSON when it is JSON (1e-4, true, [..]), else as text",
    )
    parser.add_argument("--args-json", metavar="JSON", help="the arguments as one JSON object")
    parser.add_argument("--bundle", type=Path, metavar="FILE", help="apply_bundle: the signed bundle file")
    parser.add_argument("--mode", choices=["delta", "full"], help="apply_bundle: delta (default) or full")
    parser.add_argument(
        "--remove",
        action="extend",
        nargs="+",
        metavar="ID",
        help="apply_bundle: subject ids, rotate_keys: keys",
    )
    parser.add_argument("--target", default=ALL_DEVICES, help="device id or all (default: all)")
    parser.add_argument("--lifetime", type=_lifetime, default=timedelta(minutes=15), help="e.g. 15m, 2h, 1d")
    parser.add_argument("--key", type=Path, required=True, metavar="KEYFILE", help="Ed25519 signing key")


def _lifetime(text: str) -> timedelta:
    match = LIFETIME.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: use a duration like 90s, 15m, 2h, 1d")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def command_args(args: argparse.Namespace) -> dict[str, Any]:
    """The command's arguments from --args-json, then --arg, then the apply_bundle shortcuts."""
    values: dict[str, Any] = {}
    if args.args_json is not None:
        try:
            parsed = json.loads(args.args_json)
        except ValueError:
            raise EdgeAgentError("--args-json is not JSON") from None
        if not isinstance(parsed, dict):
            raise EdgeAgentError("--args-json must be a JSON object")
        values.update(parsed)
    for item in args.arg:
        name, equals, text = item.partition("=")
        if not equals or not name.strip():
            raise EdgeAgentError(f"--arg {item!r}: use NAME=VALUE")
        values[name.strip()] = _value(text)
    shortcuts = {"bundle": args.bundle, "mode": args.mode, "remove": args.remove}
    for option, value in shortcuts.items():
        allowed = ("apply_bundle", "rotate_keys") if option == "remove" else ("apply_bundle",)
        if value is not None and args.command not in allowed:
            raise EdgeAgentError(f"--{option} is for {' and '.join(allowed)}, not {args.command}")
    if args.bundle is not None:
        values["bundle"] = base64.b64encode(_read_bundle(args.bundle)).decode("ascii")
    if args.mode is not None:
        values["mode"] = args.mode
    if args.remove is not None:
        values["remove"] = list(args.remove)
    if args.command == "apply_bundle" and "bundle" not in values:
        raise EdgeAgentError("apply_bundle needs --bundle FILE (a signed watchlist bundle)")
    return values


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _read_bundle(path: Path) -> bytes:
    from edge_agent.signed import open_envelope
    from edge_agent.watchlist.bundle import BUNDLE

    data = _read(path)
    try:
        open_envelope(BUNDLE, data)  # its signature is the devices' check, against their trusted keys
    except EdgeAgentError as exc:
        raise EdgeAgentError(f"{path}: {exc}") from None
    return data


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EdgeAgentError(f"cannot read {path}: {exc.strerror or exc}") from None


def _sign(args: argparse.Namespace) -> bytes:
    from edge_agent.fleet.central import check_target
    from edge_agent.fleet.command import sign_command
    from edge_agent.signed import load_private_key

    check_target(args.target)
    values = command_args(args)
    key = load_private_key(args.key)
    return sign_command(key, args.command, values, target=args.target, lifetime=args.lifetime)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from edge_agent.signed import generate_key

    public = generate_key(args.path)
    print(
        f"private key written to {args.path}; public key (for the devices' watchlist.trusted_keys): {public}"
    )
    return EXIT_OK


def _cmd_sign(args: argparse.Namespace) -> int:
    from edge_agent.files import atomic_write_bytes
    from edge_agent.fleet.central import read_envelope

    envelope = _sign(args)
    command = read_envelope(envelope)
    if args.output is None:
        sys.stdout.write(envelope.decode())
    else:
        atomic_write_bytes(args.output, envelope)
        print(f"{command.command} for {command.target} signed to {args.output} (nonce {command.nonce})")
    return EXIT_OK


def _cmd_publish(args: argparse.Namespace) -> int:
    from edge_agent.fleet.central import command_topic, publish_command, read_envelope

    settings = settings_from(args).mqtt
    envelope = _read(args.envelope)
    try:
        command = read_envelope(envelope)
    except EdgeAgentError as exc:
        raise EdgeAgentError(f"{args.envelope}: {exc}") from None
    nonce = publish_command(settings, envelope, args.target)
    topic = command_topic(settings, command.target, command.command)
    results = f"{settings.topic_prefix}/+/cmd/result"
    print(f"{command.command} published on {topic} (nonce {nonce}); devices answer on {results}")
    return EXIT_OK


def _cmd_send(args: argparse.Namespace) -> int:
    from edge_agent.fleet.central import send

    settings = settings_from(args).mqtt
    collected = send(settings, _sign(args), expect=args.expect, timeout_s=args.timeout)
    for result in collected.results:
        if args.json:
            print(json.dumps(result.payload, sort_keys=True))
        elif result.accepted:
            print(f"{result.device_id}: accepted after {result.after_s:.2f} s: {_details(result.details)}")
        else:
            why = f"refused ({result.reason}) after {result.after_s:.2f} s"
            print(f"{result.device_id}: {why}: {result.message}")
    print(collected.summary())
    if not collected.complete:
        missing = (collected.expected or 1) - len(collected.results)
        who = f"{missing} device(s) did not answer" if collected.expected else "no device answered"
        print(f"edge-agent: {who} within {args.timeout:g} s", file=sys.stderr)
    return EXIT_OK if collected.ok else EXIT_FAILURES


def _details(details: dict[str, Any]) -> str:
    """A result's details on one line (`added ["s-…"], removed []`)."""
    if not details:
        return "done"
    return ", ".join(f"{name} {json.dumps(value, sort_keys=True)}" for name, value in details.items())

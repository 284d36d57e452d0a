"""`edge-agent run`, `schema`, `listen`, `sources` and `report`: the live agent, its payload schemas, a
checking subscriber, the cameras this machine offers, and transparency reports."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date
from pathlib import Path

from edge_agent.cli.args import EXIT_FAILURES, EXIT_OK, positive_int, settings_from
from edge_agent.redaction import redact


def add_agent_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run the live agent in the foreground (what the service runs)")
    run.add_argument("--source", help="override camera.source (a device number, URL or video file)")
    run.add_argument("--loop", action="store_true", help="play a file source in a loop (camera.loop)")
    run.set_defaults(handler=_cmd_run)

    schema = commands.add_parser("schema", help="write the JSON Schemas of the MQTT payloads")
    schema.add_argument("--out", type=Path, help="folder for <kind>.schema.json (default: print)")
    schema.add_argument("kind", nargs="?", choices=["cmd-result", "match", "status", "health", "report"])
    schema.set_defaults(handler=_cmd_schema)

    listen = commands.add_parser("listen", help="subscribe to agents' topics and check every payload")
    listen.add_argument("--device", default="+", help="device id to follow (default: all)")
    listen.add_argument("--count", type=positive_int, help="exit after this many match events")
    listen.add_argument("--timeout", type=float, help="exit after this many seconds")
    listen.add_argument("--matches-only", action="store_true", help="print match events only")
    listen.set_defaults(handler=_cmd_listen)

    sources = commands.add_parser(
        "sources", help="list the cameras this machine offers and the configured one"
    )
    sources.add_argument(
        "--explain",
        action="store_true",
        help="show exactly what the configured camera opens (the GStreamer pipeline for jetson)",
    )
    sources.set_defaults(handler=_cmd_sources)

    report = commands.add_parser(
        "report", help="transparency report: aggregate counts for a period (no person named)"
    )
    report.add_argument(
        "--since", type=_day, required=True, metavar="DATE", help="first UTC day (YYYY-MM-DD)"
    )
    report.add_argument("--until", type=_day, metavar="DATE", help="last UTC day, included (default: today)")
    report.add_argument(
        "--publish", action="store_true", help="also send it retained on <prefix>/<device_id>/report (QoS 1)"
    )
    report.set_defaults(handler=_cmd_report)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


class RedactingFormatter(logging.Formatter):
    """Every log line through `redact`: no camera login reaches the journal, whoever logged it."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging() -> None:
    """One line per event on stderr (journald adds the time under systemd)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("edge-agent: %(message)s"))
    root = logging.getLogger("edge_agent")
    root.handlers[:] = [handler]
    if root.level == logging.NOTSET:  # else -v / -q set it (cli/options.py)
        root.setLevel(logging.INFO)
    root.propagate = False


def _cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.service import Agent

    camera: dict[str, object] = {}
    if args.source:
        camera["source"] = args.source
    if args.loop:
        camera["loop"] = True
    settings = settings_from(args, camera=camera) if camera else settings_from(args)
    configure_logging()
    agent = Agent(settings)
    agent.install_signal_handlers()
    return agent.run()


def _cmd_schema(args: argparse.Namespace) -> int:
    from edge_agent.events.schema import PAYLOADS, schema_text, write_schemas

    if args.out is not None:
        for path in write_schemas(args.out):
            print(path)
        return EXIT_OK
    kinds = [args.kind] if args.kind else list(PAYLOADS)
    for kind in kinds:
        print(schema_text(kind), end="")
    return EXIT_OK


def _cmd_listen(args: argparse.Namespace) -> int:
    """One JSON line per valid message on stdout; one line per invalid payload on stderr (exit 1)."""
    from edge_agent.events.listen import Listener

    settings = settings_from(args)
    listener = Listener(settings.mqtt, args.device)
    matches = invalid = 0
    for received in listener.messages(args.timeout):
        if received.error is not None:
            invalid += 1
            print(f"edge-agent: invalid payload on {received.topic}: {received.error}", file=sys.stderr)
            continue
        if received.duplicate or (args.matches_only and received.kind != "match"):
            continue
        print(json.dumps({"topic": received.topic, "kind": received.kind, "payload": received.payload}))
        sys.stdout.flush()
        if received.kind == "match":
            matches += 1
            if args.count is not None and matches >= args.count:
                break
    if listener.last_error is not None:
        print(f"edge-agent: {listener.last_error}", file=sys.stderr)
    short = args.count is not None and matches < args.count
    return EXIT_FAILURES if invalid or short or listener.last_error else EXIT_OK


def _cmd_sources(args: argparse.Namespace) -> int:
    from edge_agent.capture.discover import report, survey

    settings = settings_from(args)
    for line in report(survey(), settings.camera, explain=args.explain):
        print(redact(line))
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from edge_agent.engine.transparency import build_report, publish_report, render_markdown

    settings = settings_from(args)
    report = build_report(settings, args.since, args.until)
    if args.json:
        print(report.to_json().decode())
    else:
        print(render_markdown(report), end="")
    if args.publish:
        sys.stdout.flush()
        topic = publish_report(settings, report)
        print(f"edge-agent: report published (retained) on {topic}", file=sys.stderr)
    return EXIT_OK

"""`edge-agent watchlist audit`: verify the hash-chained audit log, print its head for an anchor."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.cli.args import EXIT_FAILURES, EXIT_OK, open_watchlist, settings_from
from edge_agent.errors import EdgeAgentError
from edge_agent.watchlist import audit
from edge_agent.watchlist.audit import Anchor


def add_audit_commands(sub: Any) -> None:
    audit_parser = sub.add_parser("audit", help="the hash-chained audit log")
    audit_sub = audit_parser.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="check the chain and the subject rows; exit 1 at the first bad row"
    )
    verify.add_argument(
        "--against",
        metavar="ANCHOR",
        help="also require this published head: <row id>:<hash> from `audit head`, or @FILE holding it "
        "(or the anchor's JSON); a cut tail or rewritten history fails",
    )
    verify.set_defaults(handler=_cmd_audit_verify)
    head = audit_sub.add_parser("head", help="the chain head to publish as an anchor: <row id>:<hash>")
    head.set_defaults(handler=_cmd_audit_head)


def _cmd_audit_verify(args: argparse.Namespace) -> int:

    published = None if args.against is None else _read_anchor(args.against)
    with open_watchlist(settings_from(args)) as watchlist:
        if published is None:
            check = audit.verify(watchlist.conn)
        else:
            check = audit.verify_against(watchlist.conn, published)
        subjects = watchlist.conn.execute("SELECT count(*) FROM subjects").fetchone()[0]
    if not check.ok:
        print(f"edge-agent: audit chain broken: {check.reason}", file=sys.stderr)
        return EXIT_FAILURES
    held = "" if published is None else f", holds anchor {published.text}"
    print(f"audit chain intact: {check.rows} row(s), {subjects} subject row(s) as recorded{held}")
    return EXIT_OK


def _read_anchor(value: str) -> Anchor:
    """`--against`: the anchor itself, or @FILE holding it (text, payload JSON, signed envelope or a status
    message carrying one)."""
    from edge_agent.fleet.anchor import read_anchor

    if not value.startswith("@"):
        return read_anchor(value, "--against")
    path = Path(value[1:])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise EdgeAgentError(f"--against {path}: {why}") from None
    return read_anchor(text, f"--against {path}")


def _cmd_audit_head(args: argparse.Namespace) -> int:

    settings = settings_from(args)
    with open_watchlist(settings) as watchlist:
        if args.json:
            now = datetime.now(UTC)
            print(json.dumps(audit.anchor_payload(watchlist.conn, device_id=settings.device_id, now=now)))
        else:
            print(audit.anchor(watchlist.conn).text)
    return EXIT_OK

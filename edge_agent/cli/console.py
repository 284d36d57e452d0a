"""`edge-agent console ...`: the reviewers' web console on the central side (the `console` extra)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from edge_agent.cli.args import EXIT_OK, open_watchlist, settings_from
from edge_agent.errors import EdgeAgentError

if TYPE_CHECKING:
    from edge_agent.config import Settings
    from edge_agent.console.service import Console


def add_console_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = commands.add_parser(
        "console", help="the reviewers' web console (pip install edge-agent[console])"
    )
    sub = console.add_subparsers(dest="console_command", required=True, metavar="ACTION")

    serve = sub.add_parser("serve", help="ingest the fleet's messages and serve the review console")
    serve.add_argument("--host", help="listen address (default: console.host)")
    serve.add_argument("--port", type=int, help="listen port (default: console.port)")
    serve.set_defaults(handler=_cmd_serve)

    adduser = sub.add_parser("adduser", help="add a reviewer or admin account")
    adduser.add_argument("username")
    adduser.add_argument("--role", choices=["reviewer", "admin"], default="reviewer")
    _password_option(adduser)
    adduser.set_defaults(handler=_cmd_adduser)

    passwd = sub.add_parser("passwd", help="set an account's password (ends its sessions)")
    passwd.add_argument("username")
    _password_option(passwd)
    passwd.set_defaults(handler=_cmd_passwd)


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input (one line)"
    )


def _open(settings: Settings, with_ingest: bool) -> Console:
    try:
        from edge_agent.console.service import Console
    except ImportError as exc:
        raise EdgeAgentError(
            f"the console needs its extra: pip install 'edge-agent[console]' ({exc.name} is missing)"
        ) from None
    return Console.open(settings, with_ingest=with_ingest, open_master=lambda: open_watchlist(settings))


def _cmd_serve(args: argparse.Namespace) -> int:
    from edge_agent.console.app import serve

    settings = settings_from(args)
    console = _open(settings, with_ingest=True)
    if console.signer is None:
        print(
            "edge-agent: console.command_key is not set: verdicts cannot be signed for the devices",
            file=sys.stderr,
        )
    if not console.accounts.listed():
        print(
            "edge-agent: no account yet: add one with `edge-agent console adduser NAME --role admin`",
            file=sys.stderr,
        )
    serve(console, args.host, args.port)
    return EXIT_OK


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise EdgeAgentError("the two passwords differ")
    return first


def _cmd_adduser(args: argparse.Namespace) -> int:
    console = _open(settings_from(args), with_ingest=False)
    try:
        account = console.accounts.create(args.username, _password(args), args.role, "cli", console.clock())
    finally:
        console.close()
    print(f"account {account.username} ({account.role}) added to {console.settings.console.path}")
    return EXIT_OK


def _cmd_passwd(args: argparse.Namespace) -> int:
    console = _open(settings_from(args), with_ingest=False)
    try:
        console.accounts.set_password(args.username, _password(args), "cli", console.clock())
    finally:
        console.close()
    print(f"password of {args.username} set; its sessions have ended")
    return EXIT_OK

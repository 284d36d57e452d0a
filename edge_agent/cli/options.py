"""The global options (`--config`, `--json`, `-v/-q`, `--version`), accepted before or after any
subcommand, what `-v`/`-q` turn on and off, and progress bars for long jobs.

Every parser of the tree gets the same options with `SUPPRESS` defaults, so a value given after the
subcommand replaces the one given before it and an absent one leaves it alone; the top-level parser holds
the real defaults. A parser that defines one of these option strings itself keeps its own (`bench
pipeline --json FILE`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edge_agent import agent_version
from edge_agent.capture.media import quiet_decoders
from edge_agent.quiet import show_native_logs

if TYPE_CHECKING:
    from tqdm import tqdm

T = TypeVar("T")


def _add_options(parser: argparse.ArgumentParser, top: bool) -> None:
    taken = set(parser._option_string_actions)
    group = parser.add_argument_group("global options (before or after the command)")

    def option(*flags: str, default: object, **kwargs: object) -> None:
        if not taken.intersection(flags):
            group.add_argument(*flags, default=default if top else argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    option(
        "--config",
        type=Path,
        default=os.environ.get("EDGE_AGENT_CONFIG") or None,
        help="TOML config file (default: $EDGE_AGENT_CONFIG, else built-in defaults)",
    )
    option("--json", action="store_true", default=False, help="machine-readable output, no progress bars")
    option("-v", "--verbose", action="store_true", default=False, help="also the native libraries' logs")
    option("-q", "--quiet", action="store_true", default=False, help="no progress bars")
    if "--version" not in taken:
        group.add_argument("--version", action="version", version=f"edge-agent {agent_version()}")


def add_global_options(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """The global options on `parser` and, below it, on every subcommand's parser."""
    _add_options(parser, top)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(p): p for p in action.choices.values()}.values():
                add_global_options(child, top=False)


def apply_verbosity(args: argparse.Namespace) -> None:
    """Without `-v`: FFmpeg's, OpenCV's and the TFLite runtime's own lines stay off stderr; with `-q` the
    agent's own log drops to warnings."""
    show_native_logs(args.verbose)
    quiet_decoders()  # our one line per failure, not FFmpeg's and OpenCV's own (unless -v)
    logging.getLogger("edge_agent").setLevel(
        logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    )


def progress_shown(args: argparse.Namespace) -> bool:
    """Progress bars only for a person watching: stdout and stderr on a terminal, no `--json`, no `-q`."""
    return not (args.json is True or args.quiet) and sys.stderr.isatty() and sys.stdout.isatty()


def with_progress(
    items: Iterable[T], args: argparse.Namespace, unit: str, total: int | None = None
) -> Iterator[T]:
    """`items`, with a bar on stderr where `progress_shown`; lines printed meanwhile go through `say`."""
    if not progress_shown(args):
        yield from items
        return
    yield from _tqdm()(items, total=total, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)


def _tqdm() -> type[tqdm[Any]]:
    """tqdm without its monitor thread: a second thread would turn `quiet_stderr` off for the whole job."""
    from tqdm import tqdm

    tqdm.monitor_interval = 0
    return tqdm


class Bar:
    """A bar moved by calls rather than by iterating: for work that reports through a callback."""

    def __init__(self, bar: tqdm[Any] | None, total: float) -> None:
        self._bar, self._total, self._done = bar, total, 0.0

    def advance(self, n: float = 1.0) -> None:
        self.reach(self._done + n)

    def reach(self, done: float) -> None:
        """To `done` of the total (never back, never past the end)."""
        done = min(done, self._total)
        if self._bar is not None and done > self._done:
            self._bar.update(done - self._done)
        self._done = max(done, self._done)


@contextlib.contextmanager
def progress_bar(args: argparse.Namespace, unit: str, total: float) -> Iterator[Bar]:
    """A `Bar` of `total` units on stderr where `progress_shown`; elsewhere one that draws nothing."""
    if not progress_shown(args):
        yield Bar(None, total)
        return
    bar = _tqdm()(total=total, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
    try:
        yield Bar(bar, total)
    finally:
        bar.close()


def say(line: str, err: bool = False) -> None:
    """Print one line without tearing an active progress bar (tqdm clears and redraws it)."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr if err else sys.stdout)
    (sys.stderr if err else sys.stdout).flush()

"""`edge-agent bench false-alerts`: the "Congress test" (edge_agent/lab/bench/false_alerts.py)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from edge_agent.cli.args import EXIT_OK, positive_float, positive_int, settings_from

DEFAULT_SIZES = "10000,100000,1000000"
DEFAULT_TRACK_SIZES = "10000,100000"


def add_false_alert_bench(bench_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = bench_commands.add_parser(
        "false-alerts",
        help='the "Congress test": people not on a real watchlist, photo by photo and as tracks through '
        "the live decision, at every calibrated point and watchlist size",
    )
    parser.add_argument(
        "--faces", type=Path, default=Path(os.environ.get("EDGE_AGENT_TEST_FACES", "../shared/faces"))
    )
    parser.add_argument("--people", type=positive_int, default=1000, help="people on the watchlist (1000)")
    parser.add_argument(
        "--sizes", type=_sizes, default=_sizes(DEFAULT_SIZES), help=f"padded sizes, photos ({DEFAULT_SIZES})"
    )
    parser.add_argument(
        "--track-sizes",
        type=_sizes,
        default=_sizes(DEFAULT_TRACK_SIZES),
        help=f"padded sizes the tracks are replayed at ({DEFAULT_TRACK_SIZES})",
    )
    parser.add_argument(
        "--mated-tracks", type=positive_int, default=300, help="enrolled people's photos walked (300)"
    )
    parser.add_argument(
        "--stranger-tracks", type=positive_int, help="strangers' photos walked (default: every one)"
    )
    parser.add_argument(
        "--max-photos", type=positive_int, help="use only the first N lfw-devtrain photos (tests: a slice)"
    )
    parser.add_argument("--seconds", type=positive_float, default=2.0, help="length of each track (2 s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.set_defaults(handler=_cmd_bench_false_alerts)


def _sizes(text: str) -> list[int]:
    return [positive_int(part) for part in text.split(",") if part.strip()]


def _cmd_bench_false_alerts(args: argparse.Namespace) -> int:
    from edge_agent.lab.bench.false_alerts_report import SECTION_KEY, SECTION_TITLE, format_report
    from edge_agent.lab.bench.false_alerts_run import run_false_alert_bench
    from edge_agent.lab.markdown import package_versions, section_header, write_section
    from edge_agent.vision.faces import FacePipeline

    settings = settings_from(args)
    faces = FacePipeline.from_settings(settings)
    bench = run_false_alert_bench(
        settings,
        faces,
        args.faces,
        people=args.people,
        sizes=args.sizes,
        track_sizes=args.track_sizes,
        mated_tracks=args.mated_tracks,
        stranger_tracks=args.stranger_tracks,
        max_photos=args.max_photos,
        seconds=args.seconds,
        seed=args.seed,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    body = format_report(bench)
    print(body)
    if not args.no_write:
        words = ["edge-agent", "bench", "false-alerts"]
        if args.people != 1000:
            words += ["--people", str(args.people)]
        command = shlex.join(words)
        header = section_header(
            SECTION_TITLE, command, package_versions("numpy", "usearch", "ai-edge-litert")
        )
        write_section(args.output, SECTION_KEY, "\n".join(header) + body)
        print(f"written to {args.output}")
    return EXIT_OK

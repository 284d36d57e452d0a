"""`edge-agent bench pipeline` and `bench soak`: the live agent end to end, and its memory over time."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from edge_agent.cli.args import EXIT_FAILURES, EXIT_OK, positive_float, positive_int, settings_from
from edge_agent.cli.options import progress_bar, say
from edge_agent.errors import EdgeAgentError

DEFAULT_CLIP = "short_hamilton_clip.mp4"
DEFAULT_PHOTO = "lin_manuel_miranda.png"
DEFAULT_DOC = Path("docs/benchmarks.md")


def add_live_bench_commands(bench_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pipeline = bench_commands.add_parser(
        "pipeline",
        help="the live agent end to end on a clip with a real broker: fps, stage latency, frame->MQTT "
        "delivery, time to a name, CPU/RSS, beside face_recognition's approach (dlib)",
    )
    _common(pipeline)
    pipeline.add_argument("--repeat", type=positive_int, default=5, help="camera-like runs (default 5)")
    pipeline.add_argument(
        "--baseline-frames",
        type=positive_int,
        metavar="N",
        help="run the dlib baseline on the first N frames only (default: every frame)",
    )
    pipeline.add_argument("--no-baseline", action="store_true", help="skip the dlib baseline")
    pipeline.set_defaults(handler=_cmd_bench_pipeline)

    soak = bench_commands.add_parser(
        "soak",
        help="the live agent on a looped clip for M minutes: RSS growth after warm-up (exit 1 if >= 5%%)",
    )
    _common(soak)
    soak.add_argument("--minutes", type=positive_float, default=10.0, help="length of the run (default 10)")
    soak.add_argument(
        "--realtime",
        action="store_true",
        help="deliver frames at the clip's rate and drop what the agent cannot keep up with (default: every "
        "frame, as fast as it goes)",
    )
    soak.add_argument("--sample-s", type=positive_float, default=2.0, help="RSS sample period (default 2)")
    soak.add_argument(
        "--warmup-s", type=positive_float, help="warm-up (default: 60 s, or a quarter of a shorter run)"
    )
    soak.add_argument(
        "--max-growth", type=positive_float, default=5.0, metavar="PERCENT", help="gate (default 5)"
    )
    soak.set_defaults(handler=_cmd_bench_soak)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", nargs="?", type=Path, help=f"a video file (default: the demo kit's {DEFAULT_CLIP})"
    )
    parser.add_argument(
        "--enrol",
        type=Path,
        action="append",
        metavar="PHOTO",
        help="photo to enrol in the temporary watchlist, repeatable "
        f"(default: the demo kit's {DEFAULT_PHOTO})",
    )
    parser.add_argument(
        "--broker",
        choices=["local", "config"],
        default="local",
        help="local: start a mosquitto on a free loopback port (default); "
        "config: the configured [mqtt] broker",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--json", type=Path, metavar="FILE", dest="json_file", help="also write the numbers as JSON"
    )


def _inputs(args: argparse.Namespace) -> tuple[Path, tuple[Path, ...]]:
    from edge_agent.lab.demo.kit import default_kit

    source = args.source or default_kit() / DEFAULT_CLIP
    photos = tuple(args.enrol or [default_kit() / DEFAULT_PHOTO])
    for path in (source, *photos):
        if not path.is_file():
            raise EdgeAgentError(f"no such file: {path}")
    return source, photos


def _command(name: str, args: argparse.Namespace, extra: list[str]) -> str:
    words = ["edge-agent", "bench", name]
    if args.source is not None:
        words.append(str(args.source))
    for photo in args.enrol or []:
        words += ["--enrol", str(photo)]
    if args.broker != "local":
        words += ["--broker", args.broker]
    return shlex.join(words + extra)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _said(line: str) -> None:
    """A progress line on stderr that leaves a progress bar whole."""
    say(line, err=True)


def _broker_version(args: argparse.Namespace) -> str:
    from edge_agent.lab.mosquitto import mosquitto_version

    return mosquitto_version() if args.broker == "local" else ""


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from edge_agent.lab.bench.live_pipeline import PipelineBenchOptions, run_pipeline_bench
    from edge_agent.lab.bench.live_pipeline_report import as_json, format_summary, write_report

    source, photos = _inputs(args)
    options = PipelineBenchOptions(
        source=source,
        photos=photos,
        repeat=args.repeat,
        baseline=not args.no_baseline,
        baseline_frames=args.baseline_frames,
        broker=args.broker,
    )
    result = run_pipeline_bench(settings_from(args), options, progress=_progress)
    print(format_summary(result))
    if args.json_file is not None:
        _write_json(args.json_file, as_json(result))
    if not args.no_write:
        extra = ["--repeat", str(args.repeat)]
        if args.baseline_frames is not None:
            extra += ["--baseline-frames", str(args.baseline_frames)]
        if args.no_baseline:
            extra.append("--no-baseline")
        clip = None if args.source is None else Path(args.source).name
        write_report(result, args.output, _command("pipeline", args, extra), _broker_version(args), clip)
        print(f"written to {args.output}")
    return EXIT_OK


def _cmd_bench_soak(args: argparse.Namespace) -> int:
    from edge_agent.lab.bench.soak import SoakOptions, run_soak
    from edge_agent.lab.bench.soak_report import as_json, format_summary, write_report

    source, photos = _inputs(args)
    options = SoakOptions(
        source=source,
        photos=photos,
        minutes=args.minutes,
        realtime=args.realtime,
        sample_s=args.sample_s,
        warmup_s=args.warmup_s,
        max_growth_pct=args.max_growth,
        broker=args.broker,
    )
    with progress_bar(args, "s", max(1, round(args.minutes * 60.0))) as bar:  # whole seconds
        result = run_soak(settings_from(args), options, progress=_said, elapsed=lambda s: bar.reach(int(s)))
    print(format_summary(result))
    if args.json_file is not None:
        _write_json(args.json_file, as_json(result))
    if not args.no_write:
        extra = ["--minutes", f"{args.minutes:g}"]
        if args.realtime:
            extra.append("--realtime")
        write_report(result, args.output, _command("soak", args, extra), _broker_version(args))
        print(f"written to {args.output}")
    return EXIT_OK if result.passed else EXIT_FAILURES

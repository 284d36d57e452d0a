"""The `edge-agent` command. Thin: it parses, calls the library, prints. Nothing else prints.

User errors (bad config, unreadable files, missing models) end as one line on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.cli.agent import add_agent_commands
from edge_agent.cli.args import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, given, positive_int, settings_from
from edge_agent.cli.bench import add_live_bench_commands
from edge_agent.cli.bench_false_alerts import add_false_alert_bench
from edge_agent.cli.console import add_console_commands
from edge_agent.cli.faces import Tally, add_face_commands, frames_of
from edge_agent.cli.fleet import add_fleet_commands
from edge_agent.cli.options import (
    add_global_options,
    apply_verbosity,
    progress_bar,
    say,
    with_progress,
)
from edge_agent.cli.watchlist import add_watchlist_commands
from edge_agent.config import load_settings, settings_as_toml
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.redaction import redact
from edge_agent.types import KEYPOINT_NAMES, Face, Frame

if TYPE_CHECKING:
    from edge_agent.config import Settings
    from edge_agent.engine.budget import PointLoad
    from edge_agent.lab.bench.detect import BenchResult
    from edge_agent.lab.bench.detect_scene import SceneResult
    from edge_agent.vision.manifest import ModelCatalog


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_verbosity(args)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"edge-agent: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except EdgeAgentError as exc:
        print(f"edge-agent: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURES
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # output piped into `head`: not an error worth a traceback
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="On-device face-watchlist agent.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_detect_command(commands)
    _add_config_and_models_commands(commands)
    _add_bench_commands(commands)
    add_face_commands(commands)
    add_watchlist_commands(commands)
    add_agent_commands(commands)
    add_fleet_commands(commands)
    add_console_commands(commands)

    demo = commands.add_parser("demo", help="run the bundled demo kit")
    demo.add_argument("--kit", type=Path, help="folder of demo photos and clips")
    demo.add_argument("--out", type=Path, default=Path("demo-output"))
    demo.set_defaults(handler=_cmd_demo)
    add_global_options(parser)
    return parser


def _add_detect_command(commands: Any) -> None:
    detect = commands.add_parser("detect", help="find faces in images, folders and videos")
    detect.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    detect.add_argument("--draw", type=Path, metavar="OUTDIR", help="save annotated frames here")
    detect.add_argument("--every", type=positive_int, default=1, help="every Nth video frame")
    detect.add_argument("--model", choices=["short_range", "full_range"])
    detect.add_argument("--precision", choices=["auto", "float32", "dyn8", "int8"])
    detect.add_argument("--tiles", type=_tiles, metavar="COLSxROWS", help="e.g. 2x2")
    detect.set_defaults(handler=_cmd_detect)


def _add_config_and_models_commands(commands: Any) -> None:
    config = commands.add_parser("config", help="check or print the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    validate = config_commands.add_parser("validate", help="check a config file")
    validate.add_argument("file", type=Path)
    validate.set_defaults(handler=_cmd_config_validate)
    show = config_commands.add_parser("show", help="print the effective configuration")
    show.set_defaults(handler=_cmd_config_show)

    models = commands.add_parser("models", help="the bundled models")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    verify = models_commands.add_parser("verify", help="check model files against the manifest")
    verify.set_defaults(handler=_cmd_models_verify)


def _add_bench_commands(commands: Any) -> None:
    bench = commands.add_parser("bench", help="benchmarks; numbers go to docs/benchmarks.md")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    benches = (
        ("detect", "detector speed and accuracy beside dlib HOG", _cmd_bench_detect),
        ("embed", "embedder speed per face beside dlib", _cmd_bench_embed),
    )
    for name, help_text, handler in benches:
        bench_parser = bench_commands.add_parser(name, help=help_text)
        bench_parser.add_argument("--faces", type=Path, default=_default_faces_dir())
        bench_parser.add_argument("--threads", type=_int_list, default=[1, 2], metavar="1,2")
        bench_parser.add_argument("--rounds", type=positive_int, default=5)
        bench_parser.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
        bench_parser.add_argument("--no-write", action="store_true", help="print only")
        bench_parser.set_defaults(handler=handler)
        if name == "detect":
            _add_scene_options(bench_parser)

    bench_watchlist = bench_commands.add_parser(
        "watchlist", help="watchlist search at scale: usearch f32/f16/i8 beside numpy exact search"
    )
    bench_watchlist.add_argument("--faces", type=Path, default=_default_faces_dir())
    bench_watchlist.add_argument("--size", type=positive_int, default=1_000_000, help="distractor vectors")
    bench_watchlist.add_argument("--probes", type=positive_int, default=1000, help="random synthetic queries")
    bench_watchlist.add_argument("--seed", type=int, default=0)
    bench_watchlist.add_argument(
        "--dtypes", type=_dtypes, default=("f16",), help="index dtypes to build: f32,f16,i8 (default f16)"
    )
    bench_watchlist.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    bench_watchlist.add_argument("--no-write", action="store_true", help="print only")
    bench_watchlist.set_defaults(handler=_cmd_bench_watchlist)
    add_live_bench_commands(bench_commands)
    add_false_alert_bench(bench_commands)


def _add_scene_options(bench_detect: argparse.ArgumentParser) -> None:
    bench_detect.add_argument(
        "--scene",
        type=Path,
        action="append",
        metavar="CLIP.mp4",
        help="a labelled scene clip (CLIP.mp4.truth.csv beside it) to score recall on; repeatable "
        "(default: video/scenes/crowd.mp4 under --faces, where it is)",
    )
    bench_detect.add_argument(
        "--scene-every", type=positive_int, default=10, metavar="N", help="score every Nth frame of a scene"
    )


def _cmd_detect(args: argparse.Namespace) -> int:
    from edge_agent.lab.draw import draw_faces, save_jpeg
    from edge_agent.vision.detect import FaceDetector
    from edge_agent.vision.manifest import ModelCatalog

    settings = settings_from(
        args, detector=given(model=args.model, precision=args.precision, tiles=args.tiles)
    )
    detector = FaceDetector.from_settings(
        settings.detector, settings.runtime, ModelCatalog.load(settings.models_dir)
    )
    tally = Tally()
    for item in frames_of(args, detector, tally):
        frame = item.frame
        for face in item.faces:
            if args.json:
                say(json.dumps(_detection_record(frame, face, detector.model_id)))
            else:
                box = ", ".join(f"{v:.0f}" for v in face.box.as_list())
                say(f"{frame.source_id} frame {frame.index}: face [{box}] score {face.score:.2f}")
        if args.draw and item.faces:
            # a short hash of the source path keeps same-named files from different folders apart
            tag = hashlib.sha1(frame.source_id.encode()).hexdigest()[:6]
            name = f"{Path(frame.source_id).stem}_{tag}_frame{frame.index:05d}.jpg"
            save_jpeg(draw_faces(frame.image, item.faces), args.draw / name)
    print(f"{tally.summary()} [{detector.model_id}]", file=sys.stderr)
    return EXIT_FAILURES if tally.failed else EXIT_OK


def _detection_record(frame: Frame, face: Face, model_id: str) -> dict[str, Any]:
    return {
        "file": frame.source_id,
        "frame": frame.index,
        "time_s": round(frame.offset_s, 3),
        "box": [round(v, 1) for v in face.box.as_list()],
        "score": round(face.score, 4),
        "keypoints": {
            name: [round(float(x), 1), round(float(y), 1)]
            for name, (x, y) in zip(KEYPOINT_NAMES, face.keypoints, strict=True)
        },
        "model": model_id,
    }


def _cmd_config_validate(args: argparse.Namespace) -> int:
    load_settings(args.file, use_environment=False)
    print(f"{args.file}: valid")
    return EXIT_OK


def _cmd_config_show(args: argparse.Namespace) -> int:
    # secrets are masked by settings_as_toml (SecretStr); camera logins in URLs by redact
    print(redact(settings_as_toml(settings_from(args))), end="")
    return EXIT_OK


def _cmd_models_verify(args: argparse.Namespace) -> int:
    from edge_agent.vision.manifest import ModelCatalog

    catalog = ModelCatalog.load(settings_from(args).models_dir)
    problems = catalog.verify()
    for problem in problems:
        print(f"edge-agent: {problem}", file=sys.stderr)
    if not problems:
        print(f"{len(catalog.manifest.files)} model file(s) match {catalog.root / 'manifest.toml'}")
    return EXIT_FAILURES if problems else EXIT_OK


def _cmd_bench_detect(args: argparse.Namespace) -> int:
    from edge_agent.lab.bench import detect as bench
    from edge_agent.lab.markdown import package_versions, section_header, write_section
    from edge_agent.vision.manifest import ModelCatalog

    catalog = ModelCatalog.load(settings_from(args).models_dir)
    _check_scenes(args.scene or [])  # before the minutes of the labelled photos
    data = bench.labelled_detection_set(args.faces)
    results = []
    for case in bench.default_cases(catalog, args.threads):
        result = bench.run_case(case, catalog, data, args.rounds)
        print(_bench_line(result), flush=True)
        results.append(result)
    baseline = bench.run_dlib_hog(data, args.rounds)
    if baseline:
        print(_bench_line(baseline))
    faces = sum(len(labels.boxes) for labels, _ in data)
    table = bench.format_table(results, baseline, (len(data), faces))
    command = "edge-agent bench detect " + " ".join(
        [f"--threads {','.join(map(str, args.threads))}", f"--rounds {args.rounds}"]
    )
    versions = package_versions(
        "ai-edge-litert", "tflite-runtime", "numpy", "opencv-python-headless", "dlib-bin"
    )
    body = "\n".join(section_header("Face detection", command, versions)) + table
    if not args.no_write:
        write_section(args.output, "detect", body)
        print(f"written to {args.output}")
    _bench_detect_scenes(args, catalog, command, versions)
    return EXIT_OK


def _check_scenes(clips: Sequence[Path]) -> None:
    from edge_agent.lab.bench.detect_scene import truth_boxes

    for clip in clips:
        if not clip.is_file():
            raise EdgeAgentError(f"{clip}: no such scene clip")
        truth_boxes(clip)


def _bench_detect_scenes(
    args: argparse.Namespace, catalog: ModelCatalog, command: str, versions: str
) -> None:
    from edge_agent.lab.bench import detect_scene as scenes
    from edge_agent.lab.markdown import section_header, write_section

    clips = args.scene or [c for c in [scenes.default_scene(args.faces)] if c is not None]
    if not clips:
        print(f"no scene clip at {args.faces / scenes.DEFAULT_SCENE}: no scene recall this run")
        return
    tables = []
    for clip in clips:
        scene = scenes.load_scene(clip, args.scene_every)
        print(f"{clip}: {len(scene.frames)} frames scored, {scene.faces} labelled faces", flush=True)
        report = scenes.run_scene(scene, catalog, args.threads[0], _print_scene_line)
        tables.append(scenes.format_scene_table(report))
        print(tables[-1], flush=True)
    options = [f"--scene {clip}" for clip in args.scene or []]
    if args.scene_every != scenes.SCENE_EVERY:
        options.append(f"--scene-every {args.scene_every}")
    scene_command = " ".join([command, *options])
    body = "\n".join(section_header("Face detection on scene clips", scene_command, versions))
    body += "\n\n".join(tables)
    if not args.no_write:
        write_section(args.output, "detect-scene", body)
        print(f"written to {args.output}")


def _print_scene_line(result: SceneResult) -> None:
    windows = "" if result.windows_per_frame is None else f"  {result.windows_per_frame:5.2f} windows/frame"
    print(
        f"{result.name:40s} {result.ms_per_frame:8.2f} ms/frame  recall {result.counts.recall:.3f}  "
        f"precision {result.counts.precision:.3f}{windows}",
        flush=True,
    )


def _cmd_bench_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from edge_agent.lab.bench import embed as bench
    from edge_agent.lab.evaluation.dlib_reference import DlibPipeline
    from edge_agent.lab.markdown import package_versions, section_header, write_section
    from edge_agent.vision.manifest import ModelCatalog

    catalog = ModelCatalog.load(settings_from(args).models_dir)
    reference = DlibPipeline()
    photos = bench.bench_photos(args.faces)
    chips = [
        c for p in with_progress(photos, args, "photo", len(photos)) for c in bench.dlib_chips(reference, [p])
    ]
    expected = np.stack([reference.describe_chip(chip) for chip in chips])
    with progress_bar(args, "round", bench.timing_rounds(catalog, args.threads, args.rounds)) as bar:
        results = bench.run_embedders(catalog, chips, expected, args.threads, args.rounds, bar.advance)
        baseline = bench.run_dlib(reference, chips, args.rounds, bar.advance)
        alignment = bench.run_alignment(photos, args.rounds, bar.advance)
    for r in [*results, baseline, alignment]:
        print(f"{r.name:52s} threads {r.threads}  {r.ms_per_face:7.2f} ms/face", flush=True)
    command = f"edge-agent bench embed --threads {','.join(map(str, args.threads))} --rounds {args.rounds}"
    versions = package_versions(
        "ai-edge-litert", "tflite-runtime", "numpy", "opencv-python-headless", "dlib-bin"
    )
    body = "\n".join(section_header("Face embedding", command, versions))
    body += bench.format_table(results, baseline, alignment, len(chips))
    if not args.no_write:
        write_section(args.output, "embed", body)
        print(f"written to {args.output}")
    return EXIT_OK


def _cmd_bench_watchlist(args: argparse.Namespace) -> int:
    from edge_agent.lab.bench.watchlist import run_watchlist_bench
    from edge_agent.lab.bench.watchlist_report import format_table, write_report

    result = run_watchlist_bench(
        args.faces,
        args.size,
        args.probes,
        args.seed,
        dtypes=args.dtypes,
        progress=lambda line: print(line, file=sys.stderr),
    )
    print(format_table(result))
    if not args.no_write:
        dtypes = "" if args.dtypes == ("f16",) else f" --dtypes {','.join(args.dtypes)}"
        write_report(result, args.output, f"edge-agent bench watchlist --size {args.size}{dtypes}")
        print(f"written to {args.output}")
    return EXIT_OK


def _bench_line(result: BenchResult) -> str:
    return (
        f"{result.name:48s} threads {result.threads}  {result.ms_per_frame:7.2f} ms/frame  "
        f"recall {result.counts.recall:.3f}  precision {result.counts.precision:.3f}"
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from edge_agent.lab.demo.kit import default_kit, run_detection_demo
    from edge_agent.lab.demo.live import run_live_demo
    from edge_agent.vision.faces import FacePipeline

    settings = settings_from(args)
    pipeline = FacePipeline.from_settings(settings)
    detector = pipeline.detector
    kit = args.kit or default_kit()
    print(f"edge-agent demo: detector {detector.model_id}, kit {kit}")
    for summary in run_detection_demo(detector, kit, args.out):
        if summary.frames == 1:
            print(f"  {summary.file.name}: {summary.faces} face(s)")
        else:
            print(
                f"  {summary.file.name}: {summary.frames} frames, faces in "
                f"{summary.frames_with_faces}, {summary.faces} detections, "
                f"detector {summary.fps:.0f} frames/s"
            )
        for drawn in summary.drawn:
            print(f"    drawn: {drawn}")
    with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as scratch:
        print(
            f"live agent: the kit photos enrolled in a throw-away watchlist in {scratch} (deleted afterwards)"
        )
        result = run_live_demo(settings, pipeline, kit, Path(scratch))
    where = f"local mosquitto on {result.broker}" if result.broker else "no mosquitto found: no broker"
    print(f"  {result.clip.name}: {result.frames} frames, {result.tracks} tracks; {where}")
    if result.operating is not None:
        print(f"  operating point: {result.operating.summary()}")
        print(f"  decision: {_decision_rule(settings, result.operating.chosen)}")
    names = dict(result.enrolled)
    for event in result.events:
        print(
            f"  match event: {names.get(str(event['subject_id']), event['subject_id'])} on track "
            f"{event['track_id']}, distance {event['distance']} < {event['threshold']} "
            f"(false-match rate {_stated_rate(event)}), "
            f"{event['frames_agreeing']} of {event['frames_seen']} agreeing, event {event['event_id']}"
        )
    matched = {str(event["subject_id"]) for event in result.events}
    for subject_id, name in result.enrolled.items():
        if subject_id not in matched:
            print(f"  no event for {name}")
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(result.topics.items()))
    if result.broker:
        print(f"  messages received and checked against their schemas: {counts or 'none'}")
    else:
        print(f"  {result.left_in_outbox} event(s) would wait in the outbox for a broker")
    for problem in result.invalid:
        print(f"edge-agent: invalid payload {problem}", file=sys.stderr)
    return EXIT_FAILURES if result.invalid else EXIT_OK


def _default_faces_dir() -> Path:
    return Path(os.environ.get("EDGE_AGENT_TEST_FACES", "../shared/faces"))


def _dtypes(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [part for part in chosen if part not in ("f32", "f16", "i8")]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"dtypes are f32, f16 and i8, got {text!r}")
    return chosen


def _int_list(text: str) -> list[int]:
    return [positive_int(part) for part in text.split(",") if part.strip()]


def _stated_rate(event: dict[str, Any]) -> str:
    """The false-match rate a match event states (the calibration point its deciding looks passed)."""
    rate = event.get("false_match_rate")
    return f"{rate['target']:g}" if isinstance(rate, dict) else "?"


def _decision_rule(settings: Settings, load: PointLoad) -> str:
    """ "3 of 5 looks under T, or one look under T' (rate R)" for the demo's summary (engine.vote)."""
    rule = f"{settings.decision.k} of {settings.decision.n} looks under {load.point.threshold:.3f}"
    single = load.single_look
    if single is None:
        return rule
    return f"{rule}, or one look under {single.threshold:.3f} (rate {single.target_fmr:g})"


def _tiles(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"tiles must look like 2x2, got {text!r}")
    return positive_int(parts[0]), positive_int(parts[1])


if __name__ == "__main__":
    sys.exit(main())

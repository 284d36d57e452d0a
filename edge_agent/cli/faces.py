"""`edge-agent embed` and `edge-agent compare`: descriptors and same/different answers from the CLI.

Descriptors printed by `embed` are biometric data: they are printed because the user asked for them,
for the files the user named; the agent itself never stores descriptors of faces that are not enrolled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge_agent.cli.args import EXIT_FAILURES, EXIT_OK, given, positive_int, settings_from
from edge_agent.config import Settings
from edge_agent.errors import EdgeAgentError, MediaError
from edge_agent.vision.faces import DescribedFace, FacePipeline


def add_face_commands(commands: Any) -> None:
    """Registers `embed` and `compare` on the main parser's sub-commands."""
    embed = commands.add_parser("embed", help="face descriptors of images, folders and videos")
    embed.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    embed.add_argument("--json", action="store_true", help="one JSON object per face, with the descriptor")
    embed.add_argument("--every", type=positive_int, default=1, help="every Nth video frame")
    _add_model_options(embed)
    embed.set_defaults(handler=_cmd_embed)

    compare = commands.add_parser("compare", help="are the faces in two photos the same person?")
    compare.add_argument("a", type=Path, metavar="A")
    compare.add_argument("b", type=Path, metavar="B")
    compare.add_argument("--json", action="store_true")
    compare.add_argument(
        "--single",
        action="store_true",
        help="refuse photos with more than one face instead of using the largest",
    )
    _add_model_options(compare)
    compare.set_defaults(handler=_cmd_compare)


def is_still_image(source_id: str) -> bool:
    from edge_agent.capture.media import IMAGE_SUFFIXES

    return Path(source_id).suffix.lower() in IMAGE_SUFFIXES


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=["auto", "float32", "dyn8", "int8"], help="embedder build")
    parser.add_argument("--fmr", type=float, help="target false-match rate: 1e-2, 1e-3, 1e-4 or 1e-5")


def _settings(args: argparse.Namespace) -> Settings:
    return settings_from(args, embedder=given(precision=args.precision, target_fmr=args.fmr))


def face_record(described: DescribedFace, pipeline: FacePipeline) -> dict[str, Any]:
    face = described.face
    return {
        "box": [round(v, 1) for v in face.box.as_list()],
        "score": round(face.score, 4),
        "quality": described.quality.as_dict(),
        "quality_failures": described.quality.failures(pipeline.quality),
        "model": pipeline.embedder.model_id,
        "embedding": [round(float(v), 6) for v in described.descriptor],
    }


def _cmd_embed(args: argparse.Namespace) -> int:
    from edge_agent.engine.offline import detect_in_files

    pipeline = FacePipeline.from_settings(_settings(args))
    frames = faces = errors = 0
    for item in detect_in_files(args.paths, pipeline.detector, args.every):
        if isinstance(item, MediaError):
            errors += 1
            print(f"edge-agent: {item}", file=sys.stderr)
            continue
        frames += 1
        if not item.faces and is_still_image(item.frame.source_id):
            errors += 1  # a photo given to `embed` is expected to show a face
            print(f"edge-agent: {item.frame.source_id}: no face found", file=sys.stderr)
        for face in item.faces:
            faces += 1
            described = pipeline.describe_face(item.frame.image, face)
            record = {"file": item.frame.source_id, "frame": item.frame.index} | face_record(
                described, pipeline
            )
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                box = ", ".join(f"{v:.0f}" for v in face.box.as_list())
                print(
                    f"{item.frame.source_id} frame {item.frame.index}: face [{box}] "
                    f"quality {described.quality.score:.2f} descriptor {described.descriptor.size}-d "
                    f"({pipeline.embedder.model_id})"
                )
    print(
        f"{frames} frame(s), {faces} face(s), {errors} file(s) unreadable or without a face", file=sys.stderr
    )
    return EXIT_FAILURES if errors else EXIT_OK


def _one_face(pipeline: FacePipeline, path: Path, single: bool) -> tuple[DescribedFace, str]:
    from edge_agent.capture.media import read_image

    described, count = pipeline.describe_one(read_image(path), "largest")
    if described is None:
        raise EdgeAgentError(f"{path}: no face found")
    box = "[" + ", ".join(f"{v:.0f}" for v in described.face.box.as_list()) + "]"
    if count > 1 and single:
        raise EdgeAgentError(
            f"{path}: {count} faces found and --single was given; crop the photo to one face"
        )
    note = f"{count} faces, used the largest at {box}" if count > 1 else f"1 face at {box}"
    return described, note


def _cmd_compare(args: argparse.Namespace) -> int:
    pipeline = FacePipeline.from_settings(_settings(args))
    a, note_a = _one_face(pipeline, args.a, args.single)
    b, note_b = _one_face(pipeline, args.b, args.single)
    d = pipeline.embedder.distance(a.descriptor, b.descriptor)
    point = pipeline.embedder.operating_point
    same = pipeline.embedder.is_match(d)
    if args.json:
        print(
            json.dumps(
                {
                    "a": {"file": str(args.a), "faces": note_a, "quality": a.quality.as_dict()},
                    "b": {"file": str(args.b), "faces": note_b, "quality": b.quality.as_dict()},
                    "distance": round(d, 6),
                    "same_person": same,
                    "threshold": point.threshold,
                    "target_fmr": point.target_fmr,
                    "fmr_upper_95": point.fmr_upper_95,
                    "model": pipeline.embedder.model_id,
                }
            )
        )
        return EXIT_OK
    print(f"A: {args.a}: {note_a}")
    print(f"B: {args.b}: {note_b}")
    verdict = "same person" if same else "different people"
    print(
        f"distance {d:.4f} -> {verdict} at false-match rate {point.target_fmr:g} "
        f"(threshold {point.threshold:.4f}; 95% upper bound on the rate {point.fmr_upper_95:.2g}, "
        f"{pipeline.embedder.model_id})"
    )
    return EXIT_OK

"""`edge-agent embed` and `edge-agent compare`: descriptors and same/different answers from the CLI.

Descriptors printed by `embed` are biometric data: they are printed because the user asked for them,
for the files the user named; the agent itself never stores descriptors of faces that are not enrolled.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.cli.args import EXIT_FAILURES, EXIT_OK, given, positive_int, settings_from
from edge_agent.cli.options import say, with_progress
from edge_agent.config import Settings
from edge_agent.errors import EdgeAgentError, MediaError
from edge_agent.redaction import redact
from edge_agent.vision.faces import DescribedFace, FacePipeline

if TYPE_CHECKING:
    from edge_agent.engine.offline import FrameFaces
    from edge_agent.vision.detect import FaceDetector


def add_face_commands(commands: Any) -> None:
    """Registers `embed` and `compare` on the main parser's sub-commands."""
    embed = commands.add_parser("embed", help="face descriptors of images, folders and videos")
    embed.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    embed.add_argument("--every", type=positive_int, default=1, help="every Nth video frame")
    _add_model_options(embed)
    embed.set_defaults(handler=_cmd_embed)

    compare = commands.add_parser("compare", help="are the faces in two photos the same person?")
    compare.add_argument("a", type=Path, metavar="A")
    compare.add_argument("b", type=Path, metavar="B")
    compare.add_argument(
        "--single",
        action="store_true",
        help="refuse photos with more than one face instead of using the largest",
    )
    _add_model_options(compare)
    compare.set_defaults(handler=_cmd_compare)


@dataclass
class Tally:
    frames: int = 0
    faces: int = 0
    failed: int = 0  # files unreadable, and photos without a face

    def summary(self) -> str:
        failed = f"{self.failed} file(s) unreadable or without a face"
        return f"{self.frames} frame(s), {self.faces} face(s), {failed}"


def frames_of(args: argparse.Namespace, detector: FaceDetector, tally: Tally) -> Iterator[FrameFaces]:
    """Every frame of `args.paths` (every `args.every`th of a video) with its faces, a progress bar over
    the files. An unreadable file, or a photo without a face (a photo given to `detect` or `embed` is
    expected to show one), is one line on stderr and counts as failed: the same in both commands."""
    from edge_agent.capture.media import expand_paths, is_still_image
    from edge_agent.engine.offline import detect_in_files

    files = expand_paths(args.paths)
    for path in with_progress(files, args, "file", total=len(files)):
        for item in detect_in_files([path], detector, args.every):
            if isinstance(item, MediaError):
                tally.failed += 1
                say(f"edge-agent: {redact(str(item))}", err=True)
                continue
            tally.frames += 1
            tally.faces += len(item.faces)
            if not item.faces and is_still_image(item.frame.source_id):
                tally.failed += 1
                say(f"edge-agent: {redact(item.frame.source_id)}: no face found", err=True)
            yield item


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
    pipeline = FacePipeline.from_settings(_settings(args))
    tally = Tally()
    for item in frames_of(args, pipeline.detector, tally):
        for face in item.faces:
            described = pipeline.describe_face(item.frame.image, face)
            record = {"file": item.frame.source_id, "frame": item.frame.index} | face_record(
                described, pipeline
            )
            if args.json:
                say(json.dumps(record))
            else:
                box = ", ".join(f"{v:.0f}" for v in face.box.as_list())
                say(
                    f"{item.frame.source_id} frame {item.frame.index}: face [{box}] "
                    f"quality {described.quality.score:.2f} descriptor {described.descriptor.size}-d "
                    f"({pipeline.embedder.model_id})"
                )
    print(tally.summary(), file=sys.stderr)
    return EXIT_FAILURES if tally.failed else EXIT_OK


@dataclass(frozen=True)
class ChosenFace:
    """The face `compare` uses from one photo, and how many the photo shows."""

    described: DescribedFace
    count: int

    @property
    def box(self) -> list[int]:
        return [round(v) for v in self.described.face.box.as_list()]

    def note(self) -> str:
        box = "[" + ", ".join(map(str, self.box)) + "]"
        return f"{self.count} faces, used the largest at {box}" if self.count > 1 else f"1 face at {box}"

    def record(self, path: Path) -> dict[str, Any]:
        quality = self.described.quality.as_dict()
        return {"file": str(path), "faces": self.count, "box": self.box, "quality": quality}


def _one_face(pipeline: FacePipeline, path: Path, single: bool) -> ChosenFace:
    from edge_agent.capture.media import read_image

    described, count = pipeline.describe_one(read_image(path), "largest")
    if described is None:
        raise EdgeAgentError(f"{path}: no face found")
    if count > 1 and single:
        raise EdgeAgentError(
            f"{path}: {count} faces found and --single was given; crop the photo to one face"
        )
    return ChosenFace(described, count)


def _cmd_compare(args: argparse.Namespace) -> int:
    pipeline = FacePipeline.from_settings(_settings(args))
    chosen_a = _one_face(pipeline, args.a, args.single)
    chosen_b = _one_face(pipeline, args.b, args.single)
    a, b = chosen_a.described, chosen_b.described
    d = pipeline.embedder.distance(a.descriptor, b.descriptor)
    point = pipeline.embedder.operating_point
    same = pipeline.embedder.is_match(d)
    if args.json:
        print(
            json.dumps(
                {
                    "a": chosen_a.record(args.a),
                    "b": chosen_b.record(args.b),
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
    print(f"A: {args.a}: {chosen_a.note()}")
    print(f"B: {args.b}: {chosen_b.note()}")
    verdict = "same person" if same else "different people"
    print(
        f"distance {d:.4f} -> {verdict} at false-match rate {point.target_fmr:g} "
        f"(threshold {point.threshold:.4f}; 95% upper bound on the rate {point.fmr_upper_95:.2g}, "
        f"{pipeline.embedder.model_id})"
    )
    return EXIT_OK

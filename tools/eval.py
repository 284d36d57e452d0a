#!/usr/bin/env python3
"""Accuracy of the project pipeline beside dlib's reference pipeline, written to docs/accuracy.md.

Evaluation sets (either layout, any number of each):
  --folders DIR   a folder of identity sub-folders (e.g. ../shared/faces/people); --strangers DIR adds
                  photos of people in no sub-folder as extra non-mated searches
  --pairs CSV     a pairs list `image_a,image_b,same` (e.g. ../shared/faces/lfw-devtrain/pairs.csv)

Pipelines: `project` (BlazeFace + dlib 5-point landmarks + TFLite ResNet, as configured), `keypoints`
(the same without the landmark model: a template on BlazeFace's keypoints) and `dlib` (HOG + 5-point
landmarks + dlib's ResNet). In every photo the face nearest the centre is the labelled one.

For each set and pipeline: pair accuracy at dlib's 0.6 and at the best threshold, TAR at FAR
1e-1/1e-2/1e-3, a ROC table, thresholds per FMR, rank-1 identification, FNIR at FPIR (open set), faces not
detected; and the distance between the project's and dlib's descriptor of the same photo.

    .venv/bin/python tools/eval.py                      # people/ (+ strangers/) and lfw-devtrain
    .venv/bin/python tools/eval.py --pairs my/pairs.csv --no-write
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_agent.config import load_settings
from edge_agent.errors import EdgeAgentError
from edge_agent.lab.evaluation.datasets import (
    LabelledPhoto,
    Pair,
    load_identity_folders,
    load_pairs_csv,
    pair_images,
    photos_in,
)
from edge_agent.lab.evaluation.dlib_reference import DlibPipeline
from edge_agent.lab.evaluation.report import PipelineAccuracy, format_report, write_accuracy_report
from edge_agent.lab.evaluation.run import Described, Describer, accuracy_of, cross_pipeline, describe_photos
from edge_agent.lab.markdown import package_versions
from edge_agent.vision.faces import FacePipeline

ROOT = Path(__file__).resolve().parent.parent
DLIB_THRESHOLD = 0.6
PIPELINES = ("project", "keypoints", "dlib")


def make_pipeline(name: str) -> Describer:
    if name == "dlib":
        return DlibPipeline()
    settings = load_settings(None, use_environment=False)
    return FacePipeline.from_settings(settings, use_landmarks=name == "project")


def _stranger_photos(folder: Path | None) -> list[LabelledPhoto]:
    if folder is None:
        return []
    return [LabelledPhoto(p, f"stranger:{p.stem}") for p in photos_in(folder)]


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def evaluate_set(
    title: str,
    photos: list[LabelledPhoto],
    pairs: list[Pair],
    strangers: list[LabelledPhoto],
    pipelines: Sequence[str],
    cache: Path,
    identities_known: bool = True,
) -> tuple[list[PipelineAccuracy], list[str]]:
    results, notes = [], []
    described: dict[str, Described] = {}
    for name in pipelines:
        pipeline = make_pipeline(name)
        print(
            f"{title}: {pipeline.name} on {len(photos) + len(strangers)} photos", file=sys.stderr, flush=True
        )
        every = describe_photos(pipeline, photos + strangers, cache, _progress)
        described[name] = every
        own = Described(every.photos[: len(photos)], every.descriptors[: len(photos)], every.seconds)
        rest = every.descriptors[len(photos) :]
        extra = rest[~np.isnan(rest[:, 0])] if len(rest) else None  # strangers with a face
        results.append(accuracy_of(pipeline.name, own, DLIB_THRESHOLD, pairs, extra, identities_known))
        timing = f"{every.seconds / max(1, len(every.photos)) * 1000:.0f} ms per photo"
        notes.append(
            f"{pipeline.name}: {timing}" + (" (from the cached earlier run)" if every.cached else "")
        )
    for name in ("project", "keypoints"):
        if name in described and "dlib" in described:
            cross = cross_pipeline(described[name], described["dlib"])
            if cross is not None:
                notes.append(
                    f"Distance between the `{name}` pipeline's descriptor and dlib's of the same photo, "
                    f"over the {cross.photos} photos where both found a face: median {cross.median:.3f}, "
                    f"max {cross.max:.3f} (worst: `{Path(cross.worst_photo).name}`)."
                )
    return results, notes


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    faces = ROOT.parent / "shared" / "faces"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folders", type=Path, action="append")
    parser.add_argument("--strangers", type=Path)
    parser.add_argument("--pairs", type=Path, action="append")
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "accuracy.md")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "eval-cache")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not args.folders and not args.pairs:
        args.folders = [faces / "people"]
        args.strangers = args.strangers or faces / "strangers"
        args.pairs = [faces / "lfw-devtrain" / "pairs.csv"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    unknown = sorted(set(pipelines) - set(PIPELINES))
    if unknown:
        raise SystemExit(
            f"eval: unknown pipeline(s) {', '.join(unknown)}; choose from {', '.join(PIPELINES)}"
        )
    command = "python tools/eval.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    versions = package_versions("ai-edge-litert", "numpy", "opencv-python-headless", "dlib-bin")
    sets: list[tuple[str, list[LabelledPhoto], list[Pair], list[LabelledPhoto], bool]] = []
    for folder in args.folders or []:
        photos = load_identity_folders(folder)
        sets.append((f"{folder.name}/", photos, [], _stranger_photos(args.strangers), True))
    for csv_path in args.pairs or []:
        pairs = load_pairs_csv(csv_path)
        title = f"{csv_path.parent.name}/{csv_path.name}"
        try:
            sets.append((title, pair_images(pairs), pairs, [], True))
        except EdgeAgentError as exc:  # folders are not identities: judge the listed pairs only
            print(f"{title}: {exc}; evaluating the listed pairs only", file=sys.stderr)
            unique = sorted({path for pair in pairs for path in (pair.a, pair.b)})
            sets.append((title, [LabelledPhoto(path, str(path)) for path in unique], pairs, [], False))
    for title, photos, pairs, strangers, identities_known in sets:
        results, notes = evaluate_set(
            title, photos, pairs, strangers, pipelines, args.cache, identities_known
        )
        body = format_report(
            f"Face verification and identification: {title}", command.strip(), versions, results, notes
        )
        print(body)
        if not args.no_write:
            write_accuracy_report(args.doc, f"eval:{title}", body)
            print(f"written to {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

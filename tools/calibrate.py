#!/usr/bin/env python3
"""Match thresholds per target false-match rate, for every embedder build, from lfw-devtrain.

Procedure (the numbers land in `models/manifest.toml` under `[calibration."<file id>"]`):

1. Every photo of `lfw-devtrain/pairs.csv` (3,443 photos of 2,132 people) goes through the project
   pipeline exactly as the agent runs it: BlazeFace (configured detector) → dlib 5-point landmarks →
   dlib-style 150x150 chip; the face nearest the image centre is the labelled person (LFW's rule).
   Photos with no face are counted and left out.
2. Each embedder build describes the same chips.
3. Impostor distances: every pair of photos of different people (about 5.9 million pairs; they are not
   independent, since each photo takes part in thousands of them: the confidence bound below assumes
   independence and is therefore optimistic). Genuine distances: the CSV's 1,100 same-person pairs.
4. For each target FMR of `CALIBRATED_FMRS` (1e-2 to 1e-6 in half decades): the largest threshold whose
   observed FMR is at most the target (match = distance < threshold), the observed false matches, the
   one-sided 95% Clopper-Pearson upper bound on the FMR, whether the pair count resolves the target
   (>= 3 / target pairs), and the share of the genuine pairs accepted.

Run from the repository root with the project venv (dlib is not needed):

    .venv/bin/python tools/calibrate.py --faces ../shared/faces
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from manifest_blocks import replace_block, toml_value

from edge_agent.capture.media import read_image
from edge_agent.config import load_settings
from edge_agent.lab.evaluation.datasets import load_pairs_csv, pair_images
from edge_agent.lab.evaluation.distances import all_pair_distances, paired_distances
from edge_agent.lab.evaluation.verification import threshold_for_fmr
from edge_agent.vision.embed import FaceEmbedder
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.settings import CALIBRATED_FMRS

ROOT = Path(__file__).resolve().parent.parent


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "faces")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    command = "python tools/calibrate.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    csv_path = args.faces / "lfw-devtrain" / "pairs.csv"
    pairs = load_pairs_csv(csv_path)
    photos = pair_images(pairs)
    settings = load_settings(None, use_environment=False)
    catalog = ModelCatalog.load(args.models)
    pipeline = FacePipeline.from_settings(settings, catalog, calibrated=False)

    start = time.perf_counter()
    size = pipeline.embedder.spec.input_size
    chips = np.zeros((len(photos), size, size, 3), dtype=np.uint8)
    found = np.zeros(len(photos), dtype=bool)
    for i, photo in enumerate(photos):
        described, _ = pipeline.describe_one(read_image(photo.path), "centre")
        if described is not None:
            chips[i], found[i] = described.chip, True
    print(
        f"{len(photos)} photos, {int((~found).sum())} without a face, "
        f"{time.perf_counter() - start:.0f} s detect+align",
        flush=True,
    )
    where = {photo.path: i for i, photo in enumerate(photos)}
    genuine_pairs = [(where[p.a], where[p.b]) for p in pairs if p.same]
    genuine_pairs = [(a, b) for a, b in genuine_pairs if found[a] and found[b]]
    labels = [photo.identity for photo, ok in zip(photos, found, strict=True) if ok]

    blocks = []
    embedders = [e for e in catalog.manifest.files if e.embedder is not None]
    for entry in embedders:
        embedder = FaceEmbedder.for_file(catalog, entry, settings.runtime, target_fmr=None)
        descriptors = np.full((len(photos), embedder.spec.dimensions), np.nan, dtype=np.float32)
        for index in np.flatnonzero(found):
            descriptors[index] = embedder.embed(chips[index])
        impostor = all_pair_distances(descriptors[found], labels).impostor
        a, b = zip(*genuine_pairs, strict=True)
        genuine = paired_distances(descriptors[list(a)], descriptors[list(b)])
        lines = [
            f'[calibration."{entry.id}"]',
            f"dataset = {toml_value(_dataset_note(len(photos), int(found.sum()), len(genuine)))}",
            f"pipeline = {toml_value(_pipeline_name(pipeline.detector.model_id, entry.id, embedder))}",
            f"command = {toml_value(command)}",
            "thresholds = [",
        ]
        for target in CALIBRATED_FMRS:
            point = threshold_for_fmr(impostor, target)
            tmr = float((genuine < point.threshold).mean())
            row = {
                "target_fmr": target,
                # rounded down: a stored threshold never admits an impostor pair the count missed
                "threshold": math.floor(float(point.threshold) * 1e6) / 1e6,
                "impostor_pairs": point.impostor_pairs,
                "false_matches": point.false_matches,
                "fmr_upper_95": round_up(point.upper_bound, 3),
                "resolved": point.resolved,
                "genuine_pairs": len(genuine),
                "true_match_rate": round(tmr, 4),
            }
            lines.append(f"    {toml_value(row)},")
            print(entry.id, row, flush=True)
        lines.append("]")
        blocks.append("\n".join(lines))
    if not args.no_write:
        replace_block(args.models / "manifest.toml", "tools/calibrate.py", "\n\n".join(blocks))
        print("written to", args.models / "manifest.toml")
    return 0


def _pipeline_name(detector_id: str, embedder_id: str, embedder: FaceEmbedder) -> str:
    views = " (mean of chip and mirror)" if embedder.spec.views == "chip_and_mirror" else ""
    return f"{detector_id} + dlib 5-point landmarks + {embedder_id}{views}"


def round_up(value: float, digits: int) -> float:
    """`value` to `digits` significant digits, rounded up (an upper bound must stay an upper bound)."""
    if value <= 0:
        return 0.0
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(value)))
    return float(math.ceil(value * scale) / scale)


def _dataset_note(photos: int, with_face: int, genuine: int) -> str:
    return (
        f"lfw-devtrain (LFW DevTrain view, Huang et al. 2007): {photos} photos, {with_face} with a face; "
        f"impostors = every cross-person pair of those; genuine = {genuine} pairs.csv same-person pairs"
    )


if __name__ == "__main__":
    raise SystemExit(main())

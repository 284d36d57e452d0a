#!/usr/bin/env python3
"""Measure the live quality gates' defaults (blur, truncation) on the shared real photos and clips.

The numbers this prints are where `QualitySettings.min_sharpness` and `edge_margin` come from; rerun it
after a change to the detector, the alignment or `edge_agent.vision.quality`, and `--check` says whether
the configured defaults still follow from the data.

Faces measured: every face the default detector finds in `people/` and `strangers/` photos, in every
`VIDEO_EVERY`-th frame of `video/*.mp4` and every `SCENE_EVERY`-th frame of `video/scenes/*.mp4` (real
LFW photos moved through a scene), that passes every default gate other than blur: size, truncation,
pose, brightness. Those are the faces the blur gate would see live. All are real, sharp-as-recorded
footage; none of them is blurred by us.

Blur (`min_sharpness`), the procedure:
1. Sharpness is `quality.assess`'s: variance of the Laplacian of the grey aligned 150x150 chip.
2. The threshold is the `QUANTILE` (1%) quantile of the sharp faces' sharpness, taken as an observed
   value (numpy `lower`) and rounded down to a whole number: at least 99% of the shared faces pass.
   Nothing blurred takes part in choosing it, and it is not tuned to make any test pass.
3. What it catches: each chip blurred with a Gaussian of sigma `s` chip pixels, for `s` in
   `SIGMA_GRID`. The sigma reported as "blurred" is the smallest on the grid whose median descriptor
   drift (distance between the sharp and the blurred chip's descriptors) reaches `DRIFT`: 0.1, the level
   at which docs/models.md measured chip differences to cost accuracy (0.05-0.1 of dlib's 0.6 rule). The
   share of those blurred faces the threshold refuses is printed beside it.

Truncation (`edge_margin`): the detector clamps boxes to the frame, so a face cut off at an edge has a
box touching it. Printed: the edge gap (`quality.edge_gap`: the box's smallest distance to a frame edge,
as a fraction of its width or height) of the whole faces above, and the share of the same photos cut
through the face (a vertical cut through the box at `CUTS` of its width from the left; the face is then
detected again) refused as truncated at the configured margin.

    .venv/bin/python tools/measure_gates.py [--faces ../shared/faces] [--check]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_agent.capture.media import read_frames, read_image  # noqa: E402
from edge_agent.config import Settings  # noqa: E402
from edge_agent.lab.evaluation.datasets import people_and_strangers  # noqa: E402
from edge_agent.types import Face, RGBImage  # noqa: E402
from edge_agent.vision.faces import FacePipeline  # noqa: E402
from edge_agent.vision.quality import assess, detector_gate_failures, edge_gap  # noqa: E402
from edge_agent.vision.settings import QualitySettings  # noqa: E402

VIDEO_EVERY = 5
SCENE_EVERY = 15
QUANTILE = 0.01
SIGMA_GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
DRIFT = 0.1
CUTS = (0.1, 0.25, 0.5)

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Measured:
    source: str
    face: Face
    frame_size: tuple[int, int]
    chip: RGBImage
    sharpness: float


def _frames(faces_dir: Path) -> Iterator[tuple[str, RGBImage]]:
    for path in people_and_strangers(faces_dir):
        yield str(path.relative_to(faces_dir)), read_image(path)
    for folder, every in ((faces_dir / "video", VIDEO_EVERY), (faces_dir / "video" / "scenes", SCENE_EVERY)):
        for clip in sorted(folder.glob("*.mp4")):
            for frame in read_frames(clip, every):
                yield f"{clip.relative_to(faces_dir)}#{frame.index}", frame.image


def measure(faces_dir: Path, pipeline: FacePipeline, gates: QualitySettings) -> list[Measured]:
    """Every face that reaches the blur gate with the other gates at `gates` (blur off)."""
    open_gates = gates.model_copy(update={"min_sharpness": 0.0})
    found = []
    for source, image in _frames(faces_dir):
        size = (image.shape[1], image.shape[0])
        for face in pipeline.detector.detect(image):
            if detector_gate_failures(face, size, open_gates):
                continue
            chip, _ = pipeline.aligner.align(image, face)
            quality = assess(face, chip)
            if quality.rejections(open_gates):
                continue
            found.append(Measured(source, face, size, chip, quality.sharpness))
    return found


def threshold_of(sharpness: Sequence[float]) -> float:
    """The `QUANTILE` quantile as an observed value, rounded down: at least 1 - QUANTILE pass."""
    return float(np.floor(np.quantile(np.asarray(sharpness), QUANTILE, method="lower")))


def blurred(chip: RGBImage, sigma: float) -> RGBImage:
    out: RGBImage = np.ascontiguousarray(cv2.GaussianBlur(chip, (0, 0), sigma), np.uint8)
    return out


def blur_report(measured: list[Measured], pipeline: FacePipeline, threshold: float) -> float | None:
    """Prints drift and refusal per sigma; returns the sigma that reaches `DRIFT` (None if none does)."""
    sharp = np.stack([pipeline.embedder.embed(m.chip) for m in measured])
    chosen = None
    print(f"\nblurred copies (Gaussian on the chip), threshold {threshold:g}:")
    print("  sigma  median drift  refused")
    for sigma in SIGMA_GRID:
        chips = [blurred(m.chip, sigma) for m in measured]
        scores = np.array([assess(m.face, c).sharpness for m, c in zip(measured, chips, strict=True)])
        drift = np.linalg.norm(np.stack([pipeline.embedder.embed(c) for c in chips]) - sharp, axis=1)
        refused = float(np.mean(scores < threshold))
        mark = ""
        if chosen is None and float(np.median(drift)) >= DRIFT:
            chosen, mark = sigma, f"  <- first sigma with median drift >= {DRIFT}"
        print(f"  {sigma:5.1f}  {np.median(drift):12.3f}  {refused:7.1%}{mark}")
    return chosen


def cut_report(faces_dir: Path, pipeline: FacePipeline, gates: QualitySettings) -> None:
    print(f"\nphotos cut through the face (edge_margin {gates.edge_margin:g}):")
    for cut in CUTS:
        refused = seen = lost = 0
        for path in people_and_strangers(faces_dir):
            image = read_image(path)
            faces = pipeline.detector.detect(image)
            if not faces:
                continue
            face = max(faces, key=lambda f: f.box.area)
            x = round(face.box.x0 + cut * face.box.width)
            if x <= 0:
                continue
            part = np.ascontiguousarray(image[:, x:])
            size = (part.shape[1], part.shape[0])
            again = [f for f in pipeline.detector.detect(part) if f.box.x0 < face.box.width]
            seen += 1
            if not again:
                lost += 1  # the detector no longer finds it: nothing to gate
                continue
            nearest = min(again, key=lambda f: f.box.x0)
            reasons = [r.reason for r in detector_gate_failures(nearest, size, gates)]
            refused += "truncated" in reasons
        found = seen - lost
        print(
            f"  cut at {cut:.0%} of the box: {seen} photos, {lost} faces no longer detected, "
            f"{refused} of {found} still detected refused as truncated"
        )


def _quantiles(values: F64) -> str:
    qs = (0.0, 0.01, 0.05, 0.5, 0.95, 1.0)
    return ", ".join(f"q{q:g} {np.quantile(values, q, method='lower'):.1f}" for q in qs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "faces")
    parser.add_argument("--check", action="store_true", help="exit 1 if the configured default differs")
    args = parser.parse_args(argv)
    settings = Settings()
    pipeline = FacePipeline.from_settings(settings)
    measured = measure(args.faces, pipeline, settings.quality)
    scores = np.array([m.sharpness for m in measured])
    photos = sum("#" not in m.source for m in measured)
    frames = len({m.source for m in measured if "#" in m.source})
    print(f"pipeline: {pipeline.name}")
    print(
        f"faces reaching the blur gate: {len(measured)} "
        f"({photos} in photos, the rest in {frames} video frames)"
    )
    print(f"sharpness: {_quantiles(scores)}")
    for group in ("people", "strangers", "video/short", "video/walkers", "video/scenes"):
        part = scores[[m.source.startswith(group) for m in measured]]
        if part.size:
            print(f"  {group:15s} {part.size:4d} faces, min {part.min():.1f}, median {np.median(part):.1f}")
    threshold = threshold_of(scores.tolist())
    print(f"min_sharpness = {threshold:g}  (the {QUANTILE:.0%} quantile, rounded down)")
    print(f"sharp faces refused at it: {int(np.sum(scores < threshold))} of {len(scores)}")
    sigma = blur_report(measured, pipeline, threshold)
    if sigma is not None:
        print(f"blurred set: sigma {sigma:g} chip px")
    gaps = np.array([edge_gap(m.face, m.frame_size) for m in measured])
    print(
        f"\nedge gap of the whole faces: {np.sum(gaps < settings.quality.edge_margin)} of {len(gaps)} "
        f"nearer the edge than edge_margin {settings.quality.edge_margin:g}, min {gaps.min():.3f}"
    )
    cut_report(args.faces, pipeline, settings.quality)
    configured = QualitySettings().min_sharpness
    if args.check and configured != threshold:
        print(f"\nQualitySettings.min_sharpness is {configured:g}, the data give {threshold:g}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`edge-agent bench detect`: speed and accuracy of every detector build beside dlib's HOG detector.

Every configuration runs over the same decoded pictures of the hand-labelled set in one process, so
the ratio to dlib's HOG detector (the detector of the face_recognition library) compares like with
like. Accuracy is recall and precision at IoU >= 0.3 against the labels.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edge_agent.capture.media import read_image
from edge_agent.errors import EdgeAgentError
from edge_agent.lab.bench.labels import (
    NO_MATCHES,
    LabelledImage,
    MatchCounts,
    load_imglab,
    match_detections,
)
from edge_agent.types import Box, RGBImage
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.settings import DetectorSettings, RuntimeSettings

T = TypeVar("T")
LABEL_FILES = ("training.xml", "testing.xml")
MIN_IOU = 0.3
DLIB_UPSAMPLE = 1  # one 2x up-sampling: dlib's own example setting, needed for its 80 px window


@dataclass(frozen=True)
class BenchCase:
    name: str
    detector: DetectorSettings
    threads: int


@dataclass(frozen=True)
class BenchResult:
    name: str
    threads: int
    ms_per_frame: float
    counts: MatchCounts


def labelled_detection_set(faces_dir: Path) -> list[tuple[LabelledImage, RGBImage]]:
    """The labelled pictures of `faces_dir/detection`, decoded once."""
    folder = faces_dir / "detection"
    images = [image for name in LABEL_FILES for image in load_imglab(folder / name)]
    if not images:
        raise EdgeAgentError(f"no labelled images found in {folder}")
    return [(labels, read_image(labels.path)) for labels in images]


def score(
    detect: Callable[[RGBImage], Sequence[Box]], data: Sequence[tuple[LabelledImage, RGBImage]]
) -> MatchCounts:
    total = NO_MATCHES
    for labels, image in data:
        total = total + match_detections(detect(image), labels, MIN_IOU)
    return total


def _no_report() -> None:
    pass


def time_per_frame(
    detect: Callable[[T], object], images: Sequence[T], rounds: int, timed: Callable[[], None] = _no_report
) -> float:
    """Median over `rounds` of the mean milliseconds per picture, after one warm-up round; `timed` is called
    after each timed round, outside its clock (a progress bar)."""
    for image in images:
        detect(image)
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for image in images:
            detect(image)
        means.append((time.perf_counter() - start) * 1000.0 / len(images))
        timed()
    return statistics.median(means)


def default_cases(catalog: ModelCatalog, threads: Sequence[int]) -> Iterator[BenchCase]:
    """Every detector build whole-frame, and the short-range ones on 2x2 tiles (the small-face mode)."""
    for entry in catalog.manifest.files:
        if entry.detector is None or entry.precision == "fp16":
            continue
        tilings = [(1, 1), (2, 2)] if entry.detector == "short_range" else [(1, 1)]
        for tiles in tilings:
            for count in threads:
                settings = DetectorSettings(model=entry.detector, precision=entry.precision, tiles=tiles)
                suffix = "" if tiles == (1, 1) else f" tiles {tiles[0]}x{tiles[1]}"
                yield BenchCase(f"{entry.id}{suffix}", settings, count)


def run_case(
    case: BenchCase,
    catalog: ModelCatalog,
    data: Sequence[tuple[LabelledImage, RGBImage]],
    rounds: int,
) -> BenchResult:
    detector = FaceDetector.from_settings(case.detector, RuntimeSettings(threads=case.threads), catalog)

    def boxes(image: RGBImage) -> list[Box]:
        return [face.box for face in detector.detect(image)]

    images = [image for _, image in data]
    return BenchResult(
        case.name, case.threads, time_per_frame(detector.detect, images, rounds), score(boxes, data)
    )


def run_dlib_hog(data: Sequence[tuple[LabelledImage, RGBImage]], rounds: int) -> BenchResult | None:
    """dlib's HOG + linear SVM detector, or None where dlib is not installed (dev extra)."""
    try:
        import dlib
    except ImportError:
        return None
    hog = dlib.get_frontal_face_detector()

    def boxes(image: RGBImage) -> list[Box]:
        found = hog(image, DLIB_UPSAMPLE)
        return [Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in found]

    images = [image for _, image in data]
    return BenchResult(
        f"dlib HOG (upsample {DLIB_UPSAMPLE})",
        1,
        time_per_frame(boxes, images, rounds),
        score(boxes, data),
    )


def format_table(
    results: Sequence[BenchResult], baseline: BenchResult | None, data_size: tuple[int, int]
) -> str:
    images, faces = data_size
    lines = [
        f"Labelled set: `detection/` of the shared faces ({images} photos, {faces} hand-labelled "
        f"faces, PASCAL VOC via dlib's examples); recall and precision at IoU >= {MIN_IOU}.",
        "",
        "| configuration | threads | ms/frame | speed-up vs dlib HOG (ratio) | recall | precision |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = list(results) + ([baseline] if baseline else [])
    for r in rows:
        ratio = f"{baseline.ms_per_frame / r.ms_per_frame:.1f}" if baseline else "n/a"
        lines.append(
            f"| {r.name} | {r.threads} | {r.ms_per_frame:.2f} | {ratio} | "
            f"{r.counts.recall:.3f} | {r.counts.precision:.3f} |"
        )
    if baseline is None:
        lines.append("")
        lines.append("dlib is not installed (it comes with the `dev` extra): no baseline this run.")
    return "\n".join(lines)

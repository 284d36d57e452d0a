"""`edge-agent bench embed`: ms per face of every embedder build beside dlib, on the same chips.

The chips are dlib's own 150x150 chips of the `people/` and `strangers/` photos, so every build and dlib's
`compute_face_descriptor` do exactly the same work in one process, and the ratio compares like with like.
The project's per-face alignment cost (5-point landmarks + chip) is timed on the same faces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.capture.media import read_image
from edge_agent.config import load_settings
from edge_agent.errors import EdgeAgentError
from edge_agent.lab.bench.detect import time_per_frame
from edge_agent.lab.evaluation.datasets import people_and_strangers
from edge_agent.lab.evaluation.dlib_reference import DlibPipeline
from edge_agent.types import Face, RGBImage
from edge_agent.vision.embed import FaceEmbedder
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.pick import pick_detection
from edge_agent.vision.settings import RuntimeSettings


@dataclass(frozen=True)
class EmbedResult:
    name: str
    threads: int
    ms_per_face: float
    max_distance_to_dlib: float | None


Timed = Callable[[], None]  # called after each timed round (the CLI's progress bar)


def _no_report() -> None:
    pass


def timing_rounds(catalog: ModelCatalog, threads: Sequence[int], rounds: int) -> int:
    """How many timed rounds `run_embedders`, `run_dlib` and `run_alignment` make together."""
    embedders = sum(entry.embedder is not None for entry in catalog.manifest.files)
    return (embedders * len(threads) + 2) * rounds


def bench_photos(faces_dir: Path) -> list[Path]:
    photos = people_and_strangers(faces_dir)
    if not photos:
        raise EdgeAgentError(f"no photos found in {faces_dir / 'people'} or {faces_dir / 'strangers'}")
    return photos


def dlib_chips(reference: DlibPipeline, photos: Sequence[Path]) -> list[RGBImage]:
    chips = []
    for path in photos:
        face = reference.face(read_image(path), "largest")
        if face is not None:
            chips.append(face.chip)
    return chips


def run_embedders(
    catalog: ModelCatalog,
    chips: Sequence[RGBImage],
    reference: np.ndarray,
    threads: Sequence[int],
    rounds: int,
    timed: Timed = _no_report,
) -> list[EmbedResult]:
    results = []
    for entry in catalog.manifest.files:
        if entry.embedder is None:
            continue
        for count in threads:
            embedder = FaceEmbedder.for_file(catalog, entry, RuntimeSettings(threads=count), target_fmr=None)
            ours = np.stack([embedder.network(chip) for chip in chips])
            gap = float(np.linalg.norm(ours.astype(np.float64) - reference, axis=1).max())
            ms = time_per_frame(embedder.embed, chips, rounds, timed)
            results.append(EmbedResult(entry.id, count, ms, gap))
    return results


def run_dlib(
    reference: DlibPipeline, chips: Sequence[RGBImage], rounds: int, timed: Timed = _no_report
) -> EmbedResult:
    return EmbedResult(
        "dlib compute_face_descriptor (dlib-bin)",
        1,
        time_per_frame(reference.describe_chip, chips, rounds, timed),
        0.0,
    )


def run_alignment(photos: Sequence[Path], rounds: int, timed: Timed = _no_report) -> EmbedResult:
    """The project's per-face cost before the network: 5-point landmarks and the dlib-style chip."""
    pipeline = FacePipeline.from_settings(load_settings(None, use_environment=False))
    faces: list[tuple[RGBImage, Face]] = []
    for path in photos:
        image = read_image(path)
        found = pipeline.detector.detect_photo(image)
        if found:
            faces.append((image, pick_detection(found, image, "largest")))
    ms = time_per_frame(lambda pair: pipeline.aligner.align(*pair), faces, rounds, timed)
    return EmbedResult("alignment: 5-point landmarks + chip (numpy/OpenCV)", 1, ms, None)


def format_table(
    results: Sequence[EmbedResult], baseline: EmbedResult, alignment: EmbedResult, chips: int
) -> str:
    lines = [
        f"Chips: dlib's own 150x150 chips of the {chips} `people/` and `strangers/` shared photos. "
        "Ratio = dlib's ms/face / this build's ms/face, from the same run.",
        "",
        "| embedder | threads | ms/face | speed-up vs dlib (ratio) | max distance to dlib's descriptor |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in [*results, baseline]:
        gap = "reference" if r is baseline else f"{r.max_distance_to_dlib:.4f}"
        ratio = baseline.ms_per_face / r.ms_per_face
        lines.append(f"| {r.name} | {r.threads} | {r.ms_per_face:.2f} | {ratio:.1f} | {gap} |")
    lines += [
        "",
        f"Per-face alignment before the network ({alignment.name}): {alignment.ms_per_face:.2f} ms/face.",
    ]
    return "\n".join(lines)

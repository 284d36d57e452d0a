"""Runs face pipelines over an evaluation set and turns their descriptors into accuracy numbers.

A pipeline here is anything with a `name` and `describe(image) -> descriptor | None` that picks the face
nearest the image centre (LFW's rule: the labelled person is the face nearest the centre). Descriptors are
cached per pipeline and photo list under `cache_dir`, so re-running a report does not re-run dlib.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.capture.media import read_image
from edge_agent.errors import MediaError
from edge_agent.evaluation.datasets import LabelledPhoto, Pair, identification_split
from edge_agent.evaluation.metrics import all_pair_distances, paired_distances
from edge_agent.evaluation.report import (
    IdentificationAccuracy,
    PipelineAccuracy,
    evaluate_pipeline,
    identification_accuracy,
)
from edge_agent.types import RGBImage

F32 = npt.NDArray[np.float32]


class Describer(Protocol):
    name: str
    fingerprint: str  # changes whenever a model file or setting that shapes the descriptors changes

    def describe(self, image: RGBImage) -> F32 | None: ...


@dataclass(frozen=True)
class Described:
    """Descriptors of `photos` (NaN rows where no face was found) and the seconds it took."""

    photos: tuple[LabelledPhoto, ...]
    descriptors: F32
    seconds: float

    @property
    def found(self) -> npt.NDArray[np.bool_]:
        found: npt.NDArray[np.bool_] = ~np.isnan(self.descriptors[:, 0])
        return found

    def index(self) -> dict[Path, int]:
        return {photo.path: i for i, photo in enumerate(self.photos)}


def _cache_key(describer: Describer, photos: Sequence[LabelledPhoto]) -> str:
    digest = hashlib.sha256(f"{describer.name}|{describer.fingerprint}".encode())
    for photo in photos:
        digest.update(str(photo.path.resolve()).encode())
    return digest.hexdigest()[:20]


def describe_photos(
    describer: Describer,
    photos: Sequence[LabelledPhoto],
    cache_dir: Path | None,
    progress: Callable[[str], None] | None = None,
) -> Described:
    """Descriptors for every photo, from the cache when this pipeline has seen this exact list."""
    cache = cache_dir / f"{_cache_key(describer, photos)}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        return Described(tuple(photos), stored["descriptors"], float(stored["seconds"]))
    rows: list[F32] = []
    start = time.perf_counter()
    for i, photo in enumerate(photos):
        try:
            descriptor = describer.describe(read_image(photo.path))
        except MediaError as exc:
            print(f"skipping {photo.path}: {exc}", file=sys.stderr)
            descriptor = None
        rows.append(descriptor if descriptor is not None else np.full(128, np.nan, dtype=np.float32))
        if progress is not None and (i + 1) % 250 == 0:
            progress(f"{describer.name}: {i + 1}/{len(photos)}")
    seconds = time.perf_counter() - start
    descriptors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 128), np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".partial.npz")
        np.savez(partial, descriptors=descriptors, seconds=seconds)
        partial.replace(cache)
    return Described(tuple(photos), descriptors, seconds)


def _pair_split(described: Described, pairs: Sequence[Pair]) -> tuple[F32, F32, int]:
    """Distances of the listed genuine and impostor pairs whose photos both have a face."""
    where = described.index()
    a = np.array([where[p.a] for p in pairs])
    b = np.array([where[p.b] for p in pairs])
    same = np.array([p.same for p in pairs])
    usable = described.found[a] & described.found[b]
    distances = paired_distances(described.descriptors[a[usable]], described.descriptors[b[usable]])
    return distances[same[usable]], distances[~same[usable]], int((~usable).sum())


def _identification(described: Described, extra_non_mated: F32 | None) -> IdentificationAccuracy | None:
    found = np.flatnonzero(described.found)
    labels = [described.photos[i].identity for i in found]
    split = identification_split(labels)
    if not split.gallery or not split.mated:
        return None
    vectors = described.descriptors[found]
    non_mated = vectors[list(split.non_mated)]
    if extra_non_mated is not None and len(extra_non_mated):
        non_mated = np.concatenate([non_mated, extra_non_mated])
    return identification_accuracy(
        vectors[list(split.gallery)],
        [labels[i] for i in split.gallery],
        vectors[list(split.mated)],
        [labels[i] for i in split.mated],
        non_mated,
    )


def accuracy_of(
    name: str,
    described: Described,
    threshold: float,
    pairs: Sequence[Pair] = (),
    extra_non_mated: F32 | None = None,
) -> PipelineAccuracy:
    """Pair accuracy from `pairs` (if given), TAR/ROC/calibration from every same- and cross-identity
    pair of the photos with a face, and open-set identification from `identification_split`."""
    found = described.found
    vectors = described.descriptors[found]
    labels = [photo.identity for photo, ok in zip(described.photos, found, strict=True) if ok]
    every = all_pair_distances(vectors, labels)
    if pairs:
        pair_genuine, pair_impostor, _ = _pair_split(described, pairs)
    else:
        pair_genuine, pair_impostor = every.genuine, every.impostor
    return evaluate_pipeline(
        name,
        threshold,
        pair_genuine=pair_genuine,
        pair_impostor=pair_impostor,
        genuine=every.genuine,
        impostor=every.impostor,
        images=len(described.photos),
        faces_not_detected=int((~found).sum()),
        identification=_identification(described, extra_non_mated),
    )


@dataclass(frozen=True)
class CrossPipeline:
    """How far the project's descriptor of a photo is from dlib's descriptor of the same photo."""

    photos: int
    median: float
    max: float
    worst_photo: str


def cross_pipeline(project: Described, reference: Described) -> CrossPipeline | None:
    both = project.found & reference.found
    if not both.any():
        return None
    distances = paired_distances(project.descriptors[both], reference.descriptors[both])
    worst = int(np.argmax(distances))
    return CrossPipeline(
        photos=int(both.sum()),
        median=float(np.median(distances)),
        max=float(distances[worst]),
        worst_photo=str(np.array([p.path for p in project.photos], dtype=object)[both][worst]),
    )

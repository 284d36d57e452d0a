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
from edge_agent.lab.evaluation.datasets import LabelledPhoto, Pair, identification_split
from edge_agent.lab.evaluation.distances import all_pair_distances, paired_distances
from edge_agent.lab.evaluation.report import (
    IdentificationAccuracy,
    PipelineAccuracy,
    evaluate_pipeline,
    identification_accuracy,
)
from edge_agent.lab.fingerprint import describer_fingerprint
from edge_agent.types import RGBImage

F32 = npt.NDArray[np.float32]
DIMENSIONS = 128  # dlib's descriptor length, shared by every pipeline compared here


class Describer(Protocol):
    """Its cache key comes from `describer_fingerprint`: the project pipeline's is computed by the lab,
    any other describer carries a `fingerprint` that changes with whatever shapes its descriptors."""

    name: str

    def describe(self, image: RGBImage) -> F32 | None: ...


@dataclass(frozen=True)
class Described:
    """Descriptors of `photos` (NaN rows where no face was found) and the seconds it took
    (`cached`: in an earlier run, whose timing may have been on another machine or load)."""

    photos: tuple[LabelledPhoto, ...]
    descriptors: F32
    seconds: float
    cached: bool = False

    @property
    def found(self) -> npt.NDArray[np.bool_]:
        found: npt.NDArray[np.bool_] = ~np.isnan(self.descriptors[:, 0])
        return found

    def index(self) -> dict[Path, int]:
        return {photo.path: i for i, photo in enumerate(self.photos)}


def _cache_key(describer: Describer, photos: Sequence[LabelledPhoto]) -> str:
    digest = hashlib.sha256(f"{describer.name}|{describer_fingerprint(describer)}".encode())
    for photo in photos:
        stat = photo.path.stat()
        digest.update(f"{photo.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def _load_cache(cache: Path, rows: int) -> tuple[F32, float] | None:
    try:
        with np.load(cache) as stored:
            descriptors, seconds = stored["descriptors"], float(stored["seconds"])
    except (OSError, ValueError, KeyError, EOFError):
        return None  # unreadable: describe again
    return (descriptors, seconds) if descriptors.ndim == 2 and len(descriptors) == rows else None


def describe_photos(
    describer: Describer,
    photos: Sequence[LabelledPhoto],
    cache_dir: Path | None,
    progress: Callable[[str], None] | None = None,
) -> Described:
    """Descriptors for every photo, from the cache when this pipeline, code and photo list are unchanged.
    A run in which a photo could not be read is not cached."""
    cache = cache_dir / f"{_cache_key(describer, photos)}.npz" if cache_dir else None
    if cache is not None and cache.is_file() and (hit := _load_cache(cache, len(photos))) is not None:
        return Described(tuple(photos), hit[0], hit[1], cached=True)
    rows: list[F32] = []
    unreadable = 0
    start = time.perf_counter()
    for i, photo in enumerate(photos):
        try:
            descriptor = describer.describe(read_image(photo.path))
        except MediaError as exc:
            print(f"skipping {photo.path}: {exc}", file=sys.stderr)
            descriptor, unreadable = None, unreadable + 1
        rows.append(descriptor if descriptor is not None else np.full(DIMENSIONS, np.nan, dtype=np.float32))
        if progress is not None and (i + 1) % 250 == 0:
            progress(f"{describer.name}: {i + 1}/{len(photos)}")
    seconds = time.perf_counter() - start
    descriptors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, DIMENSIONS), np.float32)
    if cache is not None and not unreadable:
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
    identities_known: bool = True,
) -> PipelineAccuracy:
    """Pair accuracy from `pairs` (if given); TAR/ROC/calibration from every same- and cross-identity
    pair of the photos with a face and open-set identification, when the photos' identities are known
    (`identities_known=False`, e.g. a pairs list over one flat folder: everything from the listed pairs)."""
    found = described.found
    pair_genuine = pair_impostor = None
    if pairs:
        pair_genuine, pair_impostor, _ = _pair_split(described, pairs)
    if identities_known:
        labels = [photo.identity for photo, ok in zip(described.photos, found, strict=True) if ok]
        every = all_pair_distances(described.descriptors[found], labels)
        genuine, impostor = every.genuine, every.impostor
        identification = _identification(described, extra_non_mated)
    elif pair_genuine is not None and pair_impostor is not None:
        genuine, impostor, identification = pair_genuine, pair_impostor, None
    else:
        raise ValueError("without known identities, accuracy needs a pairs list")
    return evaluate_pipeline(
        name,
        threshold,
        pair_genuine=genuine if pair_genuine is None else pair_genuine,
        pair_impostor=impostor if pair_impostor is None else pair_impostor,
        genuine=genuine,
        impostor=impostor,
        images=len(described.photos),
        faces_not_detected=int((~found).sum()),
        identification=identification,
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

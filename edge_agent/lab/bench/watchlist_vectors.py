"""Vectors for the watchlist benchmark: real enrolled faces and probes, and synthetic distractors
drawn from a Gaussian mixture fitted to the real descriptors (see edge_agent/lab/bench/watchlist.py)."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.capture.media import read_image
from edge_agent.config import load_settings
from edge_agent.errors import EdgeAgentError, MediaError
from edge_agent.files import atomic_write_bytes
from edge_agent.lab.evaluation.datasets import LabelledPhoto, identification_split, load_identity_folders
from edge_agent.lab.fingerprint import pipeline_fingerprint
from edge_agent.vision.faces import FacePipeline

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DIMENSIONS = 128
DEFAULT_CACHE = Path("build") / "bench-cache" / "lfw-descriptors.npz"
ROW_CHUNK = 65_536  # rows per numpy block: 32 MiB of float32, the fastest single-thread size measured


@dataclass(frozen=True, eq=False)
class RealFaces:
    """Project descriptors of real photos (rows where a face was found) and each row's identity."""

    vectors: F32
    identities: tuple[str, ...]
    paths: tuple[Path, ...]  # the photo of each row
    photos: int
    no_face: int
    seconds: float
    cached: bool


@dataclass(frozen=True, eq=False)
class BenchVectors:
    """Everything searched: `matrix` row i is usearch key i; enrolled templates sit at `enrolled_keys`,
    every other row is a distractor. `probes` are real (mated) photos; `queries` fresh synthetic draws."""

    matrix: F32
    enrolled_keys: I64
    enrolled_identities: tuple[str, ...]
    probes: F32
    probe_identities: tuple[str, ...]
    queries: F32
    model: DistractorModel

    @property
    def distractors(self) -> int:
        return len(self.matrix) - len(self.enrolled_keys)

    def distractor_mask(self) -> npt.NDArray[np.bool_]:
        mask = np.ones(len(self.matrix), dtype=bool)
        mask[self.enrolled_keys] = False
        return mask


def real_photos(faces_dir: Path, max_photos: int | None = None) -> list[LabelledPhoto]:
    """The LFW DevTrain photos (the first `max_photos`, in identity order) then the `people/` photos;
    identities are prefixed with their folder so the two sets never share a name."""
    lfw = load_identity_folders(faces_dir / "lfw-devtrain" / "img")
    if max_photos is not None:
        lfw = lfw[:max_photos]
    people = load_identity_folders(faces_dir / "people")
    return [LabelledPhoto(p.path, f"lfw:{p.identity}") for p in lfw] + [
        LabelledPhoto(p.path, f"people:{p.identity}") for p in people
    ]


def _cache_key(pipeline_fingerprint: str, faces_dir: Path, photos: Sequence[LabelledPhoto]) -> str:
    digest = hashlib.sha256(pipeline_fingerprint.encode())
    for photo in photos:
        stat = photo.path.stat()
        name = photo.path.relative_to(faces_dir).as_posix()
        digest.update(f"{name}|{photo.identity}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _load_cached(cache: Path, key: str, rows: int) -> tuple[F32, float] | None:
    try:
        with np.load(cache) as stored:
            if str(stored["key"]) != key:
                return None
            descriptors, seconds = stored["descriptors"], float(stored["seconds"])
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if descriptors.shape != (rows, DIMENSIONS):
        return None
    return descriptors.astype(np.float32), seconds


def describe_real_faces(
    faces_dir: Path,
    max_photos: int | None = None,
    cache: Path | None = DEFAULT_CACHE,
    pipeline: FacePipeline | None = None,
    progress: Callable[[str], None] | None = None,
) -> RealFaces:
    """The project pipeline's descriptor of the face nearest each photo's centre (LFW's rule).

    Cached in one file, keyed by the pipeline's fingerprint and the photo list (names, sizes, times),
    so a rerun skips the ~10 ms per photo; another pipeline or photo set overwrites it. A `max_photos`
    run uses a file of its own (`<stem>-first<N>.npz`), so it never evicts the whole set's cache.
    """
    photos = real_photos(faces_dir, max_photos)
    if cache is not None and max_photos is not None:
        cache = cache.with_name(f"{cache.stem}-first{max_photos}{cache.suffix}")
    pipeline = pipeline or FacePipeline.from_settings(load_settings(None, use_environment=False))
    key = _cache_key(pipeline_fingerprint(pipeline), faces_dir, photos)
    hit = _load_cached(cache, key, len(photos)) if cache is not None and cache.is_file() else None
    if hit is not None:
        descriptors, seconds = hit
    else:
        start = time.perf_counter()
        rows = []
        for i, photo in enumerate(photos):
            try:
                described, _ = pipeline.describe_one(read_image(photo.path), "centre")
            except MediaError as exc:
                raise EdgeAgentError(f"cannot describe {photo.path}: {exc}") from None
            nothing = np.full(DIMENSIONS, np.nan, dtype=np.float32)
            rows.append(nothing if described is None else described.descriptor.astype(np.float32))
            if progress is not None and (i + 1) % 500 == 0:
                progress(f"described {i + 1}/{len(photos)} photos")
        descriptors = np.stack(rows)
        seconds = time.perf_counter() - start
        if cache is not None:
            buffer = io.BytesIO()
            np.savez(buffer, key=np.array(key), descriptors=descriptors, seconds=np.array(seconds))
            atomic_write_bytes(cache, buffer.getvalue())
    found = ~np.isnan(descriptors[:, 0])
    return RealFaces(
        vectors=np.ascontiguousarray(descriptors[found]),
        identities=tuple(p.identity for p, ok in zip(photos, found, strict=True) if ok),
        paths=tuple(p.path for p, ok in zip(photos, found, strict=True) if ok),
        photos=len(photos),
        no_face=int((~found).sum()),
        seconds=seconds,
        cached=hit is not None,
    )


# --- the vectors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixtureSettings:
    """The distractor model: k-means clusters of the real descriptors, each a Gaussian with its own full
    covariance shrunk towards the pooled within-cluster covariance by `shrinkage` pseudo-samples.

    Why not one Gaussian: dlib descriptors are not one blob. Real impostor pairs have a heavy close tail
    (mostly East Asian faces, which dlib's network packs tightly), and that tail is what false matches
    are made of. One Gaussian with the real mean and covariance matches the median impostor distance but
    puts ~30x too few pairs under the FMR 1e-4 threshold; 12 clusters with light shrinkage match it.
    """

    clusters: int = 12
    shrinkage: float = 8.0
    restarts: int = 4


@dataclass(frozen=True, eq=False)
class DistractorModel:
    """A Gaussian mixture over descriptors (one component: a plain Gaussian)."""

    weights: F64
    means: F64
    factors: F64  # Cholesky factor of each component's covariance

    def draw(self, rng: np.random.Generator, count: int) -> F32:
        component = rng.choice(len(self.weights), size=count, p=self.weights)
        noise = rng.standard_normal((count, self.means.shape[1]))
        out = np.empty((count, self.means.shape[1]), dtype=np.float32)
        for j in range(len(self.weights)):
            rows = component == j
            out[rows] = noise[rows] @ self.factors[j].T + self.means[j]
        return out


def _cholesky(covariance: F64) -> F64:
    """With a tiny ridge, so a covariance from few samples still factors."""
    ridge = 1e-9 * float(np.trace(covariance)) / covariance.shape[0]
    factor: F64 = np.linalg.cholesky(covariance + ridge * np.eye(covariance.shape[0]))
    return factor


def fit_gaussian(vectors: F32) -> DistractorModel:
    """One Gaussian with the real mean and full covariance (kept for the distribution check)."""
    data = vectors.astype(np.float64)
    return DistractorModel(
        np.ones(1), data.mean(axis=0)[None, :], _cholesky(np.cov(data, rowvar=False))[None, :, :]
    )


def kmeans(data: F64, clusters: int, rng: np.random.Generator, iterations: int = 100) -> tuple[I64, float]:
    """Lloyd's k-means from a k-means++ start: labels and inertia."""
    norms = (data * data).sum(axis=1)
    centres = [data[rng.integers(len(data))]]
    for _ in range(1, clusters):
        chosen = np.array(centres)
        d2 = np.maximum(norms[:, None] - 2.0 * data @ chosen.T + (chosen * chosen).sum(1)[None, :], 0.0)
        nearest = d2.min(axis=1)
        centres.append(data[rng.choice(len(data), p=nearest / nearest.sum())])
    centre = np.array(centres)
    labels = np.full(len(data), -1, dtype=np.int64)
    for _ in range(iterations):
        d2 = norms[:, None] - 2.0 * data @ centre.T + (centre * centre).sum(1)[None, :]
        new = np.argmin(d2, axis=1).astype(np.int64)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(clusters):
            if np.any(labels == j):
                centre[j] = data[labels == j].mean(axis=0)
    inertia = float(((data - centre[labels]) ** 2).sum())
    return labels, inertia


def fit_mixture(vectors: F32, settings: MixtureSettings, rng: np.random.Generator) -> DistractorModel:
    """k-means (best of `restarts`) then one shrunk full-covariance Gaussian per cluster of 2+ vectors.

    At most one cluster per 2 x dimensions descriptors (256), so that each covariance rests on enough
    faces: a few hundred photos (the tests) get a plain Gaussian, which is too tight a fit otherwise."""
    data = vectors.astype(np.float64)
    clusters = max(1, min(settings.clusters, len(data) // (2 * data.shape[1])))
    labels, _ = min(
        (kmeans(data, clusters, rng) for _ in range(max(1, settings.restarts))), key=lambda found: found[1]
    )
    kept = [j for j in range(clusters) if np.count_nonzero(labels == j) >= 2]
    means = np.array([data[labels == j].mean(axis=0) for j in kept])
    residuals = np.concatenate([data[labels == j] - means[i] for i, j in enumerate(kept)])
    pooled = residuals.T @ residuals / max(len(residuals) - len(kept), 1)
    factors, weights = [], []
    for i, j in enumerate(kept):
        members = data[labels == j] - means[i]
        own = members.T @ members / len(members)
        covariance = (len(members) * own + settings.shrinkage * pooled) / (len(members) + settings.shrinkage)
        factors.append(_cholesky(covariance))
        weights.append(len(members))
    return DistractorModel(np.array(weights, dtype=np.float64) / sum(weights), means, np.array(factors))


def mix_vectors(
    real: RealFaces, size: int, queries: int, seed: int, mixture: MixtureSettings | None = None
) -> BenchVectors:
    """The index matrix (`size` distractors plus the enrolled templates at random rows), the mated
    probes and `queries` random synthetic queries; a function of its arguments only."""
    if size < 1:
        raise EdgeAgentError(f"the watchlist size must be at least 1, got {size}")
    split = identification_split(real.identities)
    if not split.gallery or not split.mated:
        raise EdgeAgentError("no person has two photos with a face: nothing to enrol and probe")
    rng = np.random.default_rng(seed)
    model = fit_mixture(real.vectors, mixture or MixtureSettings(), rng)
    enrolled = len(split.gallery)
    total = size + enrolled
    enrolled_keys = np.sort(rng.choice(total, size=enrolled, replace=False)).astype(np.int64)
    matrix = np.empty((total, DIMENSIONS), dtype=np.float32)
    matrix[enrolled_keys] = real.vectors[list(split.gallery)]
    mask = np.ones(total, dtype=bool)
    mask[enrolled_keys] = False
    rows = np.flatnonzero(mask)
    for start in range(0, len(rows), ROW_CHUNK):
        chunk = rows[start : start + ROW_CHUNK]
        matrix[chunk] = model.draw(rng, len(chunk))
    return BenchVectors(
        matrix=matrix,
        enrolled_keys=enrolled_keys,
        enrolled_identities=tuple(real.identities[i] for i in split.gallery),
        probes=np.ascontiguousarray(real.vectors[list(split.mated)]),
        probe_identities=tuple(real.identities[i] for i in split.mated),
        queries=model.draw(rng, queries),
        model=model,
    )

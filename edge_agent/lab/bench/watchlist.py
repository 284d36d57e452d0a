"""`edge-agent bench watchlist`: usearch search over real enrolled faces hidden among synthetic distractors.

Why synthetic distractors: no million-identity face set ships with the project, and the search cost and
the open-set risk depend on how the *other* vectors are spread, not on whose faces they are. So the
index holds the real enrolled templates (project descriptors of `lfw-devtrain/` and `people/` photos,
first photo of every person with 2+ photos) mixed at random positions into `size` vectors drawn from a
Gaussian mixture fitted to the real descriptors (see `MixtureSettings` for why not one Gaussian). The
report checks that fit (pairwise and nearest-neighbour distances of distractors against real
cross-person pairs, down to the 1e-4 quantile where false matches live) before trusting it, and the
real probes (the other photos of the enrolled people) measure identification among the distractors.

Every usearch build (dtype f32, f16, i8; metric l2sq) is compared, in the same run and on the same
float32 matrix, with a plain numpy exact search (chunked brute force, OpenBLAS pinned to one thread).
Ground truth for recall is a float32 GEMM pass whose top candidates are re-ranked in float64.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config import load_settings
from edge_agent.errors import EdgeAgentError
from edge_agent.lab.bench.watchlist_distribution import DistributionCheck, distribution_check
from edge_agent.lab.bench.watchlist_exact import ExactAnswers, exact_answers, squared_norms
from edge_agent.lab.bench.watchlist_search import (
    DTYPES,
    HnswSettings,
    Identification,
    IndexDtype,
    SearchRun,
    Truth,
    gallery_only_identification,
    run_numpy_baseline,
    run_usearch,
)
from edge_agent.lab.bench.watchlist_vectors import (
    DEFAULT_CACHE,
    F32,
    BenchVectors,
    MixtureSettings,
    RealFaces,
    describe_real_faces,
    mix_vectors,
)
from edge_agent.vision.embed import FaceEmbedder
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import FmrThreshold, ModelCatalog

SECTION_KEY = "watchlist"
SECTION_TITLE = "Watchlist search (usearch)"


@dataclass(frozen=True)
class ThresholdLoad:
    """How many of the distractors fall within one calibrated threshold of the real probes."""

    target_fmr: float
    threshold: float
    distractor_fmr: float  # (probe, distractor) pairs below threshold / all such pairs
    per_probe: float  # mean distractors within threshold of one probe
    true_match_rate: float  # of the LFW calibration, at this threshold
    probes_hit: float  # share of probes with at least one distractor within threshold


@dataclass(frozen=True)
class RealSummary:
    photos: int
    no_face: int
    identities: int
    enrolled: int
    probes: int
    describe_seconds: float
    cached: bool


@dataclass(frozen=True)
class WatchlistBench:
    size: int
    seed: int
    build_threads: int
    hnsw: HnswSettings
    mixture: MixtureSettings
    components: int
    real: RealSummary
    model_id: str
    target_fmr: float
    threshold: float
    check: DistributionCheck
    loads: tuple[ThresholdLoad, ...]
    gallery_only: Identification
    runs: tuple[SearchRun, ...]
    blas_single_thread: bool
    queries: int
    seconds: float

    @property
    def baseline(self) -> SearchRun:
        return self.runs[0]


def run_watchlist_bench(
    faces_dir: Path,
    size: int,
    probes: int,
    seed: int,
    *,
    build_threads: int = 0,
    hnsw: HnswSettings | None = None,
    mixture: MixtureSettings | None = None,
    dtypes: Sequence[IndexDtype] = DTYPES,
    baseline_queries: int = 100,
    max_photos: int | None = None,
    cache: Path | None = DEFAULT_CACHE,
    progress: Callable[[str], None] | None = None,
) -> WatchlistBench:
    """The whole benchmark: `size` distractors plus the real enrolled templates, `probes` random
    synthetic queries and every real mated probe, numpy exact beside each usearch dtype.

    `build_threads` is for `Index.add` only (0: every core); searches are always one query at a time on
    one thread. `baseline_queries` bounds how many random queries time the numpy baseline (~30 ms each at
    a million rows). `max_photos` limits the LFW photos (the tests use a few hundred).
    """
    say = progress or (lambda _: None)
    began = time.perf_counter()
    hnsw, mixture = hnsw or HnswSettings(), mixture or MixtureSettings()
    if probes < 1:
        raise EdgeAgentError(f"--probes must be at least 1, got {probes}")
    real, embedder, calibrated = _describe_real_faces(faces_dir, max_photos, cache, say)
    threshold = embedder.threshold
    vectors = mix_vectors(real, size, probes, seed, mixture)
    enrolled = len(vectors.enrolled_keys)
    say(f"matrix: {len(vectors.matrix):,} rows ({enrolled} enrolled), {len(vectors.probes)} probes")
    norms = squared_norms(vectors.matrix)
    check = distribution_check(real, vectors, threshold, seed)
    truth = _exact_truth(vectors, norms, calibrated, threshold)
    say("exact answers done")
    loads = _threshold_loads(calibrated, truth.probes, vectors)
    baseline, pinned = run_numpy_baseline(truth, norms, min(baseline_queries, probes))
    say(f"numpy exact: p50 {baseline.p50_ms:.2f} ms")
    searched = _usearch_runs(dtypes, truth, hnsw, build_threads, say)
    return WatchlistBench(
        size=size,
        seed=seed,
        build_threads=build_threads,
        hnsw=hnsw,
        mixture=mixture,
        components=len(vectors.model.weights),
        real=_real_summary(real, vectors),
        model_id=embedder.model_id,
        target_fmr=embedder.operating_point.target_fmr,
        threshold=threshold,
        check=check,
        loads=loads,
        gallery_only=gallery_only_identification(vectors, threshold),
        runs=(baseline, *searched),
        blas_single_thread=pinned,
        queries=len(vectors.queries),
        seconds=time.perf_counter() - began,
    )


def _describe_real_faces(
    faces_dir: Path, max_photos: int | None, cache: Path | None, say: Callable[[str], None]
) -> tuple[RealFaces, FaceEmbedder, list[FmrThreshold]]:
    """The real descriptors from the configured pipeline, its embedder, and the embedder's calibrated
    thresholds, loosest first."""
    settings = load_settings(None, use_environment=False)
    catalog = ModelCatalog.load(settings.models_dir)
    pipeline = FacePipeline.from_settings(settings, catalog)
    real = describe_real_faces(faces_dir, max_photos, cache, pipeline, say)
    origin = "cached" if real.cached else "new"
    say(f"real descriptors: {len(real.vectors)} of {real.photos} photos ({origin})")
    embedder = pipeline.embedder
    calibrated = sorted(catalog.calibration_for(embedder.model).thresholds, key=lambda t: -t.target_fmr)
    return real, embedder, calibrated


def _exact_truth(
    vectors: BenchVectors, norms: F32, calibrated: Sequence[FmrThreshold], threshold: float
) -> Truth:
    """Exact answers for the random queries, and for the real probes with the distractors within each
    calibrated threshold."""
    random_truth = exact_answers(vectors.matrix, norms, vectors.queries, vectors.enrolled_keys)
    probe_truth = exact_answers(
        vectors.matrix, norms, vectors.probes, vectors.enrolled_keys, [t.threshold for t in calibrated]
    )
    return Truth(vectors, random_truth, probe_truth, threshold)


def _threshold_loads(
    calibrated: Sequence[FmrThreshold], probe_truth: ExactAnswers, vectors: BenchVectors
) -> tuple[ThresholdLoad, ...]:
    pairs = max(len(vectors.probes) * vectors.distractors, 1)
    return tuple(
        ThresholdLoad(
            target_fmr=t.target_fmr,
            threshold=t.threshold,
            distractor_fmr=float(probe_truth.within[:, i].sum() / pairs),
            per_probe=float(probe_truth.within[:, i].mean()),
            true_match_rate=t.true_match_rate,
            probes_hit=float((probe_truth.within[:, i] > 0).mean()),
        )
        for i, t in enumerate(calibrated)
    )


def _usearch_runs(
    dtypes: Sequence[IndexDtype],
    truth: Truth,
    hnsw: HnswSettings,
    build_threads: int,
    say: Callable[[str], None],
) -> list[SearchRun]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as scratch:
        for dtype in dtypes:
            for run in run_usearch(dtype, truth, hnsw, build_threads, Path(scratch)):
                say(
                    f"{run.name} ef={run.expansion_search}: build {run.build_seconds:.1f} s, "
                    f"p50 {run.p50_ms:.3f} ms, recall {run.random_recall:.3f} / probes {run.probe_recall:.3f}"
                )
                runs.append(run)
    return runs


def _real_summary(real: RealFaces, vectors: BenchVectors) -> RealSummary:
    return RealSummary(
        photos=real.photos,
        no_face=real.no_face,
        identities=len(set(real.identities)),
        enrolled=len(vectors.enrolled_keys),
        probes=len(vectors.probes),
        describe_seconds=real.seconds,
        cached=real.cached,
    )

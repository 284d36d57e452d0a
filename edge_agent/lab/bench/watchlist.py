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

import contextlib
import ctypes
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from usearch.index import Index, Matches

from edge_agent.config import load_settings
from edge_agent.errors import EdgeAgentError
from edge_agent.lab.bench.watchlist_vectors import (
    DEFAULT_CACHE,
    DIMENSIONS,
    ROW_CHUNK,
    BenchVectors,
    MixtureSettings,
    RealFaces,
    describe_real_faces,
    fit_gaussian,
    mix_vectors,
)
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
IndexDtype = Literal["f32", "f16", "i8"]

DTYPES: tuple[IndexDtype, ...] = ("f32", "f16", "i8")
SECTION_KEY = "watchlist"
SECTION_TITLE = "Watchlist search (usearch)"
QUERY_BLOCK = 256  # queries per ground-truth GEMM block (256 x 65,536 float32 = 64 MiB of distances)
CANDIDATES = 8  # float32 GEMM candidates per chunk re-ranked in float64 for the ground truth
WARM_UP = 200  # untimed searches before timing each configuration (page in the graph after a build)
BLAS_SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class HnswSettings:
    """usearch's graph settings. `expansion_search` is a tuple because it can change after the build at
    no cost: each value is one row of the report (the recall/latency trade-off of one graph)."""

    connectivity: int = 16
    expansion_add: int = 40
    expansion_search: tuple[int, ...] = (64, 256, 1024)


@dataclass(frozen=True)
class DistanceSummary:
    """Euclidean distances of one kind of pair: how many, median, low quantiles (the distances at which a
    share 1e-2, 1e-3, 1e-4 of these pairs would match) and the share below the default threshold."""

    pairs: int
    median: float
    q1e2: float
    q1e3: float
    q1e4: float
    below_threshold: float


@dataclass(frozen=True)
class DistributionCheck:
    """Do the distractors look like faces? Same-size pools, so nearest-neighbour distances compare."""

    real_genuine: DistanceSummary
    real_impostor: DistanceSummary
    distractor_pairs: DistanceSummary
    gaussian_pairs: DistanceSummary  # one plain Gaussian instead of the mixture, for contrast
    probe_distractor: DistanceSummary
    real_nearest_impostor: DistanceSummary
    distractor_nearest: DistanceSummary
    pool: int


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
class Identification:
    """Rank-1 answers for the real mated probes, at the default threshold."""

    probes: int
    rank1: float  # the nearest vector is the probe's own enrolled template
    matched: float  # ... and it is within the threshold: a correct match event
    false_alarm: float  # the nearest is anyone else (a distractor or another person) within the threshold


@dataclass(frozen=True)
class SearchRun:
    """One searcher on the whole matrix; `dtype` "numpy" marks the exact baseline."""

    name: str
    dtype: str
    expansion_search: int | None
    build_seconds: float | None
    disk_bytes: int | None
    memory_bytes: int
    p50_ms: float
    p99_ms: float
    timed_queries: int
    cpu_per_wall: float
    random_recall: float
    probe_recall: float
    own_recall: float  # recall@1 on the probes whose exact answer is their own enrolled template
    identification: Identification
    max_distance_error: float  # |reported Euclidean distance - float64 distance of the returned key|


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


# --- real descriptors ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ExactAnswers:
    """Exact nearest row per query (float64 distances) and, per threshold, distractors within it."""

    keys: I64
    distances: F64
    within: I64  # (queries, thresholds)


def squared_norms(matrix: F32) -> F32:
    norms: F32 = np.einsum("ij,ij->i", matrix, matrix)
    return norms


def exact_answers(
    matrix: F32,
    norms: F32,
    queries: F32,
    enrolled_keys: I64,
    thresholds: Sequence[float] = (),
) -> ExactAnswers:
    """Ground truth: float32 GEMM distances over row chunks, the best `CANDIDATES` rows of each chunk
    re-ranked in float64 (GEMM rounding cannot swap a near tie), and counts of distractor rows below each
    threshold. Uses every BLAS thread: this is the answer key, not the timed baseline."""
    count = len(queries)
    keys = np.zeros(count, dtype=np.int64)
    distances = np.zeros(count, dtype=np.float64)
    within = np.zeros((count, len(thresholds)), dtype=np.int64)
    limits = np.square(np.asarray(thresholds, dtype=np.float64)).astype(np.float32)
    is_enrolled = np.zeros(len(matrix), dtype=bool)
    is_enrolled[enrolled_keys] = True
    for q0 in range(0, count, QUERY_BLOCK):
        block = queries[q0 : q0 + QUERY_BLOCK]
        block_norms = squared_norms(block)
        found: list[I64] = []
        for r0 in range(0, len(matrix), ROW_CHUNK):
            rows = matrix[r0 : r0 + ROW_CHUNK]
            d2 = block @ rows.T
            d2 *= -2.0
            d2 += norms[r0 : r0 + ROW_CHUNK][None, :]
            d2 += block_norms[:, None]
            take = min(CANDIDATES, d2.shape[1])
            found.append(np.argpartition(d2, take - 1, axis=1)[:, :take] + r0)
            if len(limits):
                enrolled_here = np.flatnonzero(is_enrolled[r0 : r0 + ROW_CHUNK])
                for t, limit in enumerate(limits):
                    hits = np.count_nonzero(d2 < limit, axis=1)
                    hits -= np.count_nonzero(d2[:, enrolled_here] < limit, axis=1)
                    within[q0 : q0 + len(block), t] += hits
        candidates = np.concatenate(found, axis=1)
        exact = np.linalg.norm(
            matrix[candidates].astype(np.float64) - block.astype(np.float64)[:, None, :], axis=2
        )
        best = np.argmin(exact, axis=1)
        keys[q0 : q0 + len(block)] = candidates[np.arange(len(block)), best]
        distances[q0 : q0 + len(block)] = exact[np.arange(len(block)), best]
    return ExactAnswers(keys, distances, within)


def numpy_nearest(matrix: F32, norms: F32, query: F32) -> tuple[int, float]:
    """The baseline searcher: chunked brute force, ||x||^2 - 2 x.q per row, best row and its distance."""
    best_key, best = -1, np.inf
    for r0 in range(0, len(matrix), ROW_CHUNK):
        scores = norms[r0 : r0 + ROW_CHUNK] - 2.0 * (matrix[r0 : r0 + ROW_CHUNK] @ query)
        i = int(np.argmin(scores))
        if scores[i] < best:
            best_key, best = r0 + i, float(scores[i])
    return best_key, float(np.sqrt(max(best + float(query @ query), 0.0)))


@contextlib.contextmanager
def single_thread_blas() -> Iterator[bool]:
    """Pin numpy's OpenBLAS to one thread for the block (numpy has no API for it; the environment
    variables only act at import). Yields whether it could; the caller also reports CPU/wall time."""
    setter, getter = _openblas_thread_functions()
    if setter is None or getter is None:
        yield False
        return
    before = int(getter())
    setter(1)
    try:
        yield True
    finally:
        setter(before)


def _openblas_thread_functions() -> tuple[Callable[[int], object] | None, Callable[[], int] | None]:
    candidates: list[str] = []
    maps = Path("/proc/self/maps")
    with contextlib.suppress(OSError):
        candidates = sorted(
            {line.split()[-1] for line in maps.read_text().splitlines() if "openblas" in line.lower()}
        )
    libs = Path(np.__file__).parent.parent / "numpy.libs"
    if libs.is_dir():
        candidates += [str(p) for p in sorted(libs.glob("*openblas*"))]
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in (
            "scipy_openblas_{}_num_threads64_",
            "openblas_{}_num_threads64_",
            "openblas_{}_num_threads",
        ):
            setter = getattr(lib, suffix.format("set"), None)
            getter = getattr(lib, suffix.format("get"), None)
            if setter is not None and getter is not None:
                return setter, getter
    return None, None


# --- the benchmark -----------------------------------------------------------------------------------


def _percentile_ms(seconds: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds), q)) * 1e3


def _own_template(keys: I64, vectors: BenchVectors) -> npt.NDArray[np.bool_]:
    """Per probe: is the answer `keys[i]` the probe's own enrolled template?"""
    owner = dict(zip(vectors.enrolled_keys.tolist(), vectors.enrolled_identities, strict=True))
    return np.array(
        [owner.get(int(k)) == who for k, who in zip(keys, vectors.probe_identities, strict=True)], dtype=bool
    )


def _identification(keys: I64, distances: F64, vectors: BenchVectors, threshold: float) -> Identification:
    right = _own_template(keys, vectors)
    close = distances < threshold
    probes = len(keys)
    return Identification(
        probes=probes,
        rank1=float(right.mean()) if probes else 0.0,
        matched=float((right & close).mean()) if probes else 0.0,
        false_alarm=float((~right & close).mean()) if probes else 0.0,
    )


def gallery_only_identification(vectors: BenchVectors, threshold: float) -> Identification:
    """Rank-1 against the enrolled templates alone: what the distractors take away."""
    gallery = vectors.matrix[vectors.enrolled_keys].astype(np.float64)
    d = np.linalg.norm(vectors.probes.astype(np.float64)[:, None, :] - gallery[None, :, :], axis=2)
    best = np.argmin(d, axis=1)
    return _identification(vectors.enrolled_keys[best], d[np.arange(len(best)), best], vectors, threshold)


def _true_distances(matrix: F32, queries: F32, keys: I64) -> F64:
    distances: F64 = np.linalg.norm(matrix[keys].astype(np.float64) - queries.astype(np.float64), axis=1)
    return distances


def _summary(distances: F64, threshold: float) -> DistanceSummary:
    """A quantile q is reported only when at least 10 pairs lie below it (NaN otherwise)."""
    count = len(distances)

    def quantile(q: float) -> float:
        return float(np.quantile(distances, q)) if count * q >= 10 else float("nan")

    return DistanceSummary(
        pairs=count,
        median=quantile(0.5),
        q1e2=quantile(1e-2),
        q1e3=quantile(1e-3),
        q1e4=quantile(1e-4),
        below_threshold=float(np.count_nonzero(distances < threshold) / count) if count else float("nan"),
    )


def _pairwise(a: F32, b: F32) -> F64:
    x, y = a.astype(np.float64), b.astype(np.float64)
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    distances: F64 = np.sqrt(np.maximum(d2, 0.0))
    return distances


def distribution_check(
    real: RealFaces, vectors: BenchVectors, threshold: float, seed: int
) -> DistributionCheck:
    """Real pairs beside distractor pairs, from pools of the same size (the real descriptors and as many
    distractors), so that nearest-neighbour distances compare like with like."""
    pool = len(real.vectors)
    distractors = vectors.matrix[vectors.distractor_mask()][:pool]
    gaussian = fit_gaussian(real.vectors).draw(np.random.default_rng([seed, 1]), len(distractors))
    gaussian_d = _pairwise(gaussian, gaussian)
    labels = np.unique(np.asarray(real.identities), return_inverse=True)[1]
    real_d = _pairwise(real.vectors, real.vectors)
    upper = np.triu(np.ones_like(real_d, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    other = np.where(same, np.inf, real_d)
    synthetic = _pairwise(distractors, distractors)
    upper_synthetic = np.triu(np.ones_like(synthetic, dtype=bool), k=1)
    np.fill_diagonal(synthetic, np.inf)
    return DistributionCheck(
        real_genuine=_summary(real_d[upper & same], threshold),
        real_impostor=_summary(real_d[upper & ~same], threshold),
        distractor_pairs=_summary(synthetic[upper_synthetic], threshold),
        gaussian_pairs=_summary(gaussian_d[upper_synthetic], threshold),
        probe_distractor=_summary(_pairwise(vectors.probes, distractors).ravel(), threshold),
        real_nearest_impostor=_summary(other.min(axis=1), threshold),
        distractor_nearest=_summary(synthetic.min(axis=1), threshold),
        pool=min(pool, len(distractors)),
    )


def run_numpy_baseline(
    vectors: BenchVectors,
    norms: F32,
    random_truth: ExactAnswers,
    probe_truth: ExactAnswers,
    threshold: float,
    timed_queries: int,
) -> tuple[SearchRun, bool]:
    """Time the numpy searcher one query at a time on one BLAS thread; its accuracy is the truth's."""
    queries = vectors.queries[:timed_queries]
    seconds: list[float] = []
    worst_gap = 0.0
    with single_thread_blas() as pinned:
        # OpenBLAS workers busy-wait for a while after a parallel call (the ground-truth GEMM): let them
        # park, so that the CPU/wall ratio reported shows this loop alone
        time.sleep(BLAS_SETTLE_SECONDS)
        for query in queries[: min(WARM_UP, len(queries))]:
            numpy_nearest(vectors.matrix, norms, query)
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        for i, query in enumerate(queries):
            start = time.perf_counter()
            key, distance = numpy_nearest(vectors.matrix, norms, query)
            seconds.append(time.perf_counter() - start)
            true = float(_true_distances(vectors.matrix, query[None, :], np.array([key]))[0])
            worst_gap = max(worst_gap, abs(distance - true), abs(true - float(random_truth.distances[i])))
        cpu_per_wall = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    run = SearchRun(
        name="numpy exact (float32 brute force, 1 thread)",
        dtype="numpy",
        expansion_search=None,
        build_seconds=None,
        disk_bytes=None,
        memory_bytes=int(vectors.matrix.nbytes + norms.nbytes),
        p50_ms=_percentile_ms(seconds, 50),
        p99_ms=_percentile_ms(seconds, 99),
        timed_queries=len(seconds),
        cpu_per_wall=cpu_per_wall,
        random_recall=1.0,
        probe_recall=1.0,
        own_recall=1.0,
        identification=_identification(probe_truth.keys, probe_truth.distances, vectors, threshold),
        max_distance_error=worst_gap,
    )
    return run, pinned


def _search_one(index: Index, query: F32) -> tuple[int, float]:
    found = index.search(query, 1, threads=1, exact=False)
    if not isinstance(found, Matches) or len(found.keys) == 0:
        raise EdgeAgentError("usearch returned no neighbour for a query")
    return int(found.keys[0]), float(found.distances[0])


def run_usearch(
    dtype: IndexDtype,
    vectors: BenchVectors,
    random_truth: ExactAnswers,
    probe_truth: ExactAnswers,
    threshold: float,
    hnsw: HnswSettings,
    build_threads: int,
    scratch: Path,
) -> list[SearchRun]:
    """Build one index (timed), measure it in memory and on disk, then search every random query and
    real probe one at a time on one thread, once per `expansion_search` value."""
    index = Index(
        ndim=DIMENSIONS,
        metric="l2sq",
        dtype=dtype,
        connectivity=hnsw.connectivity,
        expansion_add=hnsw.expansion_add,
        expansion_search=hnsw.expansion_search[0],
    )
    keys = np.arange(len(vectors.matrix), dtype=np.uint64)
    start = time.perf_counter()
    index.add(keys, vectors.matrix, threads=build_threads)
    build_seconds = time.perf_counter() - start
    memory = int(index.memory_usage)
    path = scratch / f"watchlist-{dtype}.usearch"
    index.save(str(path))
    disk = path.stat().st_size
    path.unlink()
    both = np.concatenate([vectors.queries, vectors.probes])
    own = _own_template(probe_truth.keys, vectors)
    runs = []
    for expansion in hnsw.expansion_search:
        # usearch declares the setter on a copy of the property: mypy sees it as read-only
        index.expansion_search = expansion  # type: ignore[misc]
        for query in both[: min(WARM_UP, len(both))]:
            _search_one(index, query)
        found = np.zeros(len(both), dtype=np.int64)
        reported = np.zeros(len(both), dtype=np.float64)
        seconds: list[float] = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i, query in enumerate(both):
            t0 = time.perf_counter()
            found[i], reported[i] = _search_one(index, query)
            seconds.append(time.perf_counter() - t0)
        cpu_per_wall = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
        true = _true_distances(vectors.matrix, both, found)
        euclidean = np.sqrt(np.maximum(reported, 0.0))
        q = len(vectors.queries)
        runs.append(
            SearchRun(
                name=f"usearch {dtype}",
                dtype=dtype,
                expansion_search=expansion,
                build_seconds=build_seconds,
                disk_bytes=disk,
                memory_bytes=memory,
                p50_ms=_percentile_ms(seconds, 50),
                p99_ms=_percentile_ms(seconds, 99),
                timed_queries=len(seconds),
                cpu_per_wall=cpu_per_wall,
                random_recall=_recall(found[:q], random_truth.keys),
                probe_recall=_recall(found[q:], probe_truth.keys),
                own_recall=_recall(found[q:][own], probe_truth.keys[own]),
                identification=_identification(found[q:], true[q:], vectors, threshold),
                max_distance_error=float(np.abs(euclidean - true).max()) if len(true) else 0.0,
            )
        )
    return runs


def _recall(found: I64, truth: I64) -> float:
    return float((found == truth).mean()) if len(truth) else float("nan")


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
    hnsw = hnsw or HnswSettings()
    if probes < 1:
        raise EdgeAgentError(f"--probes must be at least 1, got {probes}")
    settings = load_settings(None, use_environment=False)
    catalog = ModelCatalog.load(settings.models_dir)
    pipeline = FacePipeline.from_settings(settings, catalog)
    real = describe_real_faces(faces_dir, max_photos, cache, pipeline, say)
    origin = "cached" if real.cached else "new"
    say(f"real descriptors: {len(real.vectors)} of {real.photos} photos ({origin})")
    embedder = pipeline.embedder
    calibrated = sorted(catalog.calibration_for(embedder.model).thresholds, key=lambda t: -t.target_fmr)
    threshold = embedder.threshold
    mixture = mixture or MixtureSettings()
    vectors = mix_vectors(real, size, probes, seed, mixture)
    enrolled = len(vectors.enrolled_keys)
    say(f"matrix: {len(vectors.matrix):,} rows ({enrolled} enrolled), {len(vectors.probes)} probes")
    norms = squared_norms(vectors.matrix)
    check = distribution_check(real, vectors, threshold, seed)
    random_truth = exact_answers(vectors.matrix, norms, vectors.queries, vectors.enrolled_keys)
    probe_truth = exact_answers(
        vectors.matrix, norms, vectors.probes, vectors.enrolled_keys, [t.threshold for t in calibrated]
    )
    say("exact answers done")
    pairs = max(len(vectors.probes) * vectors.distractors, 1)
    loads = tuple(
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
    baseline, pinned = run_numpy_baseline(
        vectors, norms, random_truth, probe_truth, threshold, min(baseline_queries, probes)
    )
    say(f"numpy exact: p50 {baseline.p50_ms:.2f} ms")
    runs = [baseline]
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as scratch:
        for dtype in dtypes:
            for run in run_usearch(
                dtype, vectors, random_truth, probe_truth, threshold, hnsw, build_threads, Path(scratch)
            ):
                say(
                    f"{run.name} ef={run.expansion_search}: build {run.build_seconds:.1f} s, "
                    f"p50 {run.p50_ms:.3f} ms, recall {run.random_recall:.3f} / probes {run.probe_recall:.3f}"
                )
                runs.append(run)
    split_people = len(set(real.identities))
    return WatchlistBench(
        size=size,
        seed=seed,
        build_threads=build_threads,
        hnsw=hnsw,
        mixture=mixture,
        components=len(vectors.model.weights),
        real=RealSummary(
            photos=real.photos,
            no_face=real.no_face,
            identities=split_people,
            enrolled=len(vectors.enrolled_keys),
            probes=len(vectors.probes),
            describe_seconds=real.seconds,
            cached=real.cached,
        ),
        model_id=embedder.model_id,
        target_fmr=embedder.operating_point.target_fmr,
        threshold=threshold,
        check=check,
        loads=loads,
        gallery_only=gallery_only_identification(vectors, threshold),
        runs=tuple(runs),
        blas_single_thread=pinned,
        queries=len(vectors.queries),
        seconds=time.perf_counter() - began,
    )


# --- the report --------------------------------------------------------------------------------------

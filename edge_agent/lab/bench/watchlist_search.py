"""The timed searchers of the watchlist benchmark: numpy exact search and usearch builds, one query at a
time on one thread, each scored for latency, recall and identification of the real probes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from usearch.index import Index, Matches

from edge_agent.errors import EdgeAgentError
from edge_agent.lab.bench.watchlist_exact import ExactAnswers, numpy_nearest, single_thread_blas
from edge_agent.lab.bench.watchlist_vectors import DIMENSIONS, F32, F64, I64, BenchVectors
from edge_agent.watchlist.index import CONNECTIVITY, EXPANSION_ADD
from edge_agent.watchlist.search import CANDIDATES

IndexDtype = Literal["f32", "f16", "i8"]

DTYPES: tuple[IndexDtype, ...] = ("f32", "f16", "i8")
WARM_UP = 200  # untimed searches before timing each configuration (page in the graph after a build)
BLAS_SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class HnswSettings:
    """usearch's graph settings. `expansion_search` is a tuple because it can change after the build at
    no cost: each value is one row of the report (the recall/latency trade-off of one graph)."""

    connectivity: int = CONNECTIVITY  # the agent's own graph (edge_agent/watchlist/index.py)
    expansion_add: int = EXPANSION_ADD
    expansion_search: tuple[int, ...] = (64, 128, 192, 384)


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
    own_in_candidates: float  # ... their own template among the CANDIDATES the agent's search re-scores
    identification: Identification
    max_distance_error: float  # |reported Euclidean distance - float64 distance of the returned key|


@dataclass(frozen=True, eq=False)
class Truth:
    """What every searcher is scored against: the searched vectors, the exact answers for the random
    queries and for the real probes, and the threshold a match event needs."""

    vectors: BenchVectors
    random: ExactAnswers
    probes: ExactAnswers
    threshold: float


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


def run_numpy_baseline(truth: Truth, norms: F32, timed_queries: int) -> tuple[SearchRun, bool]:
    """Time the numpy searcher one query at a time on one BLAS thread; its accuracy is the truth's."""
    vectors, random_truth, probe_truth = truth.vectors, truth.random, truth.probes
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
        own_in_candidates=1.0,
        identification=_identification(probe_truth.keys, probe_truth.distances, vectors, truth.threshold),
        max_distance_error=worst_gap,
    )
    return run, pinned


def _search_one(index: Index, query: F32) -> tuple[int, float]:
    found = index.search(query, 1, threads=1, exact=False)
    if not isinstance(found, Matches) or len(found.keys) == 0:
        raise EdgeAgentError("usearch returned no neighbour for a query")
    return int(found.keys[0]), float(found.distances[0])


def run_usearch(
    dtype: IndexDtype, truth: Truth, hnsw: HnswSettings, build_threads: int, scratch: Path
) -> list[SearchRun]:
    """Build one index (timed), measure it in memory and on disk, then search every random query and
    real probe one at a time on one thread, once per `expansion_search` value."""
    vectors, random_truth, probe_truth = truth.vectors, truth.random, truth.probes
    built = _build_index(dtype, vectors, hnsw, build_threads, scratch)
    both = np.concatenate([vectors.queries, vectors.probes])
    own = _own_template(probe_truth.keys, vectors)
    q = len(vectors.queries)
    runs = []
    for expansion in hnsw.expansion_search:
        found, reported, seconds, cpu_per_wall = _timed_searches(built.index, expansion, both)
        true = _true_distances(vectors.matrix, both, found)
        euclidean = np.sqrt(np.maximum(reported, 0.0))
        runs.append(
            SearchRun(
                name=f"usearch {dtype}",
                dtype=dtype,
                expansion_search=expansion,
                build_seconds=built.seconds,
                disk_bytes=built.disk_bytes,
                memory_bytes=built.memory_bytes,
                p50_ms=_percentile_ms(seconds, 50),
                p99_ms=_percentile_ms(seconds, 99),
                timed_queries=len(seconds),
                cpu_per_wall=cpu_per_wall,
                random_recall=_recall(found[:q], random_truth.keys),
                probe_recall=_recall(found[q:], probe_truth.keys),
                own_recall=_recall(found[q:][own], probe_truth.keys[own]),
                own_in_candidates=_among_candidates(
                    built.index, expansion, vectors.probes[own], probe_truth.keys[own]
                ),
                identification=_identification(found[q:], true[q:], vectors, truth.threshold),
                max_distance_error=float(np.abs(euclidean - true).max()) if len(true) else 0.0,
            )
        )
    return runs


@dataclass(frozen=True, eq=False)
class _BuiltIndex:
    index: Index
    seconds: float
    memory_bytes: int
    disk_bytes: int


def _build_index(
    dtype: IndexDtype, vectors: BenchVectors, hnsw: HnswSettings, build_threads: int, scratch: Path
) -> _BuiltIndex:
    """The whole matrix added to a fresh index (timed), its memory, and the size of its saved file."""
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
    return _BuiltIndex(index, build_seconds, memory, disk)


def _timed_searches(index: Index, expansion: int, queries: F32) -> tuple[I64, F64, list[float], float]:
    """Every query once at `expansion`, after `WARM_UP` untimed ones: keys found, reported distances,
    seconds per search and the CPU/wall ratio of the timed loop."""
    # usearch declares the setter on a copy of the property: mypy sees it as read-only
    index.expansion_search = expansion  # type: ignore[misc]
    for query in queries[: min(WARM_UP, len(queries))]:
        _search_one(index, query)
    found = np.zeros(len(queries), dtype=np.int64)
    reported = np.zeros(len(queries), dtype=np.float64)
    seconds: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i, query in enumerate(queries):
        t0 = time.perf_counter()
        found[i], reported[i] = _search_one(index, query)
        seconds.append(time.perf_counter() - t0)
    cpu_per_wall = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    return found, reported, seconds, cpu_per_wall


def _among_candidates(index: Index, expansion: int, probes: F32, truth: I64) -> float:
    """Share of the probes whose true key is among the `CANDIDATES` nearest the index returns: what the
    agent's watchlist search sees, since it re-scores that many candidates exactly (watchlist/search.py)."""
    if len(truth) == 0:
        return float("nan")
    index.expansion_search = max(expansion, CANDIDATES)  # type: ignore[misc]
    hits = [
        int(key) in np.asarray(index.search(probe, CANDIDATES, threads=1).keys)
        for probe, key in zip(probes, truth, strict=True)
    ]
    index.expansion_search = expansion  # type: ignore[misc]
    return float(np.mean(hits))


def _recall(found: I64, truth: I64) -> float:
    return float((found == truth).mean()) if len(truth) else float("nan")

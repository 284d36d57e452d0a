"""Exact nearest neighbours in numpy for the watchlist benchmark: the ground truth every search is scored
against, the baseline searcher it is timed against, and pinning OpenBLAS to one thread for that timing."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.lab.bench.watchlist_vectors import F32, F64, I64, ROW_CHUNK

QUERY_BLOCK = 256  # queries per ground-truth GEMM block (256 x 65,536 float32 = 64 MiB of distances)
CANDIDATES = 8  # float32 GEMM candidates per chunk re-ranked in float64 for the ground truth


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

"""Euclidean distances between face descriptors: every pair of one set split by identity, row-wise pairs,
and the validation every accuracy function applies to descriptor arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.lab.evaluation.rates import FloatArray

DEFAULT_BLOCK_ELEMENTS = 4_000_000
"""Distance-matrix entries computed per block in `all_pair_distances` (32 MB of float64)."""


@dataclass(frozen=True, eq=False)
class PairDistances:
    """Distances of every unordered pair of descriptors (i < j), split by identity, in row-major order."""

    genuine: npt.NDArray[np.float32]
    impostor: npt.NDArray[np.float32]


def all_pair_distances(
    descriptors: npt.ArrayLike, labels: Sequence[str], block_elements: int = DEFAULT_BLOCK_ELEMENTS
) -> PairDistances:
    """Euclidean distances of every unordered pair i < j, split into same-label and cross-label pairs.

    Computed in blocks of rows from |a|^2 + |b|^2 - 2 a.b in float64 (clipped at 0 before the square
    root), only for the upper triangle; about `block_elements` matrix entries live at a time, so 3,500
    descriptors (6 million pairs) need ~50 MB for the two float32 results and ~100 MB of work space.
    """
    points = descriptors_of(descriptors, "descriptors", allow_empty=True)
    names = np.asarray(labels, dtype=np.str_)
    check_count(points.shape[0], names.size, "descriptors", "labels")
    _, codes = np.unique(names, return_inverse=True)
    per_label = np.bincount(codes) if codes.size else np.zeros(0, dtype=np.intp)
    genuine_total = int(np.sum(per_label * (per_label - 1) // 2))
    total = points.shape[0] * (points.shape[0] - 1) // 2
    genuine = np.empty(genuine_total, dtype=np.float32)
    impostor = np.empty(total - genuine_total, dtype=np.float32)
    n_genuine = n_impostor = 0
    step = max(1, block_elements // max(points.shape[0], 1))
    for start in range(0, points.shape[0], step):
        rows = points[start : start + step]
        block = np.sqrt(squared_distances(rows, points[start:]))
        upper = np.triu(np.ones(block.shape, dtype=bool), k=1)
        same = codes[start : start + rows.shape[0], None] == codes[None, start:]
        found_genuine, found_impostor = block[upper & same], block[upper & ~same]
        genuine[n_genuine : n_genuine + found_genuine.size] = found_genuine
        impostor[n_impostor : n_impostor + found_impostor.size] = found_impostor
        n_genuine += found_genuine.size
        n_impostor += found_impostor.size
    return PairDistances(genuine=genuine, impostor=impostor)


def paired_distances(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Euclidean distance of each row of `a` to the same row of `b`."""
    left = descriptors_of(a, "a", allow_empty=True)
    right = descriptors_of(b, "b", allow_empty=True, width=left.shape[1])
    check_count(left.shape[0], right.shape[0], "rows of a", "rows of b")
    distances: FloatArray = np.linalg.norm(left - right, axis=1)
    return distances


def descriptors_of(
    values: npt.ArrayLike, name: str, *, allow_empty: bool = False, width: int | None = None
) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or (width is not None and array.shape[0] and array.shape[1] != width):
        expected = f"(N, {width})" if width is not None else "(N, D)"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    if array.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array


def squared_distances(a: FloatArray, b: FloatArray) -> FloatArray:
    """|a_i - b_j|^2 for every row pair, clipped at 0 (rounding can make it slightly negative)."""
    squared = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)
    clipped: FloatArray = np.maximum(squared, 0.0)
    return clipped


def check_count(found: int, expected: int, what: str, against: str) -> None:
    if found != expected:
        raise ValueError(f"{found} {what} but {expected} {against}")

"""Open-set identification accuracy (NIST FRVT 1:N, ISO/IEC 19795-1 terms).

A probe is searched against a gallery of enrolled descriptors with identity labels; the rank-1 candidate
is the identity of the nearest gallery descriptor and its distance is the search's best distance. A mated
search has its identity enrolled; a non-mated search does not. Decision rule: a candidate is returned
when its distance < threshold (strictly, as in `edge_agent.lab.evaluation.verification`).

- FPIR(t), false-positive identification rate: share of non-mated searches that return any candidate with
  distance < t (equivalently, whose best distance is < t).
- FNIR(t), false-negative identification rate: share of mated searches in which the right identity is not
  returned at rank 1 with distance < t (the rank-1 identity is wrong, or its distance is >= t).
- Rank-1 identification rate (closed set, no threshold): share of mated searches whose rank-1 identity is
  right.

FNIR at an FPIR of f is only resolved with at least 1/f non-mated searches (`fnir_at_fpir`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.lab.evaluation.distances import (
    DEFAULT_BLOCK_ELEMENTS,
    check_count,
    descriptors_of,
    squared_distances,
)
from edge_agent.lab.evaluation.rates import (
    FloatArray,
    check_rate,
    largest_threshold_within,
    share_below,
    trials_needed,
)


@dataclass(frozen=True)
class FnirAtFpir:
    """FNIR at the largest threshold whose empirical FPIR <= `fpir_target`.

    With fewer than 1/fpir_target non-mated searches (`resolved` False) `threshold`, `fpir` and `fnir`
    are NaN.
    """

    fpir_target: float
    threshold: float
    fpir: float
    fnir: float
    mated_searches: int
    non_mated_searches: int
    resolved: bool


@dataclass(frozen=True, eq=False)
class SearchResults:
    """For each probe: the rank-1 gallery identity and its distance (nearest enrolled descriptor)."""

    identities: npt.NDArray[np.str_]
    distances: FloatArray


def search(gallery: npt.ArrayLike, gallery_labels: Sequence[str], probes: npt.ArrayLike) -> SearchResults:
    """Rank-1 candidate of each probe: the nearest gallery descriptor's identity and distance.

    A tie between gallery descriptors goes to the first in gallery order.
    """
    enrolled = descriptors_of(gallery, "gallery")
    labels = np.asarray(gallery_labels, dtype=np.str_)
    if labels.shape != (enrolled.shape[0],):
        raise ValueError(f"{enrolled.shape[0]} gallery descriptors but {labels.size} labels")
    queries = descriptors_of(probes, "probes", allow_empty=True, width=enrolled.shape[1])
    nearest = np.empty(queries.shape[0], dtype=np.intp)
    distances = np.empty(queries.shape[0], dtype=np.float64)
    step = max(1, DEFAULT_BLOCK_ELEMENTS // enrolled.shape[0])
    for start in range(0, queries.shape[0], step):
        block = squared_distances(queries[start : start + step], enrolled)
        columns = np.argmin(block, axis=1)
        nearest[start : start + step] = columns
        distances[start : start + step] = np.sqrt(block[np.arange(block.shape[0]), columns])
    return SearchResults(identities=labels[nearest], distances=distances)


def rank1_identification(
    gallery: npt.ArrayLike,
    gallery_labels: Sequence[str],
    probes: npt.ArrayLike,
    probe_labels: Sequence[str],
) -> float:
    """Closed-set rank-1 identification rate: share of (mated) probes whose rank-1 identity is theirs."""
    truth = _mated_labels(probe_labels, gallery_labels)
    results = search(gallery, gallery_labels, probes)
    check_count(results.distances.size, truth.size, "probes", "probe labels")
    if truth.size == 0:
        raise ValueError("rank-1 identification needs at least one probe")
    return int(np.count_nonzero(results.identities == truth)) / truth.size


def fnir_at_fpir(
    gallery: npt.ArrayLike,
    gallery_labels: Sequence[str],
    mated: npt.ArrayLike,
    mated_labels: Sequence[str],
    non_mated: npt.ArrayLike,
    fpir_targets: Sequence[float],
) -> tuple[FnirAtFpir, ...]:
    """FNIR at the largest threshold whose FPIR <= each target (NIST FRVT 1:N; see the module).

    The threshold for a target f is the (k+1)-th smallest non-mated best distance, k = floor(f * N_nm);
    unresolved (NaN) when there are fewer than 1/f non-mated searches.
    """
    truth = _mated_labels(mated_labels, gallery_labels)
    mated_results = search(gallery, gallery_labels, mated)
    check_count(mated_results.distances.size, truth.size, "mated probes", "mated labels")
    if truth.size == 0:
        raise ValueError("FNIR needs at least one mated probe")
    non_mated_best = search(gallery, gallery_labels, non_mated).distances
    right_identity = mated_results.identities == truth
    points = []
    for target in fpir_targets:
        check_rate(target, "fpir_target")
        if non_mated_best.size < trials_needed(target):
            nan = math.nan
            points.append(FnirAtFpir(target, nan, nan, nan, truth.size, non_mated_best.size, resolved=False))
            continue
        threshold = largest_threshold_within(non_mated_best, target)
        hits = np.count_nonzero(right_identity & (mated_results.distances < threshold))
        points.append(
            FnirAtFpir(
                fpir_target=target,
                threshold=threshold,
                fpir=share_below(non_mated_best, threshold),
                fnir=1.0 - int(hits) / truth.size,
                mated_searches=truth.size,
                non_mated_searches=non_mated_best.size,
                resolved=True,
            )
        )
    return tuple(points)


def _mated_labels(probe_labels: Sequence[str], gallery_labels: Sequence[str]) -> npt.NDArray[np.str_]:
    truth = np.asarray(probe_labels, dtype=np.str_)
    missing = sorted(set(truth.tolist()) - set(np.asarray(gallery_labels, dtype=np.str_).tolist()))
    if missing:
        raise ValueError(f"mated probes of identities not in the gallery: {', '.join(missing[:5])}")
    return truth

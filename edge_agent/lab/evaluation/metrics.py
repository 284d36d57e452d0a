"""Verification and identification accuracy from face-descriptor distances (smaller = more alike).

Decision rule, used by every function here: two faces are declared the same person when

    distance < threshold        (strictly less: dlib's rule `distance < 0.6`)

so a threshold equal to a measured distance rejects that pair. With this rule the largest threshold
that keeps a rate at or below a target is always a measured distance (or +inf), so it is exact; a
threshold that is stored rounded must be rounded down (tools/calibrate.py does), never up.

Definitions (N_gen genuine = same-person pairs, N_imp impostor = different-person pairs):

- FMR(t), false-match rate: share of impostor distances < t, i.e. #{impostor < t} / N_imp.
  FAR (false-accept rate) is used as its synonym, as in "TAR at FAR".
- TAR(t), true-accept rate: share of genuine distances < t, #{genuine < t} / N_gen.
- FNMR(t), false-non-match rate: 1 - TAR(t) = #{genuine >= t} / N_gen.
- Pair accuracy(t): share of all pairs decided correctly,
  (#{genuine < t} + #{impostor >= t}) / (N_gen + N_imp).

Open-set identification (NIST FRVT 1:N, ISO/IEC 19795-1 terms) searches a probe against a gallery of
enrolled descriptors with identity labels; the rank-1 candidate is the identity of the nearest gallery
descriptor and its distance is the search's best distance. A mated search has its identity enrolled; a
non-mated search does not.

- FPIR(t), false-positive identification rate: share of non-mated searches that return any candidate with
  distance < t (equivalently, whose best distance is < t).
- FNIR(t), false-negative identification rate: share of mated searches in which the right identity is not
  returned at rank 1 with distance < t (the rank-1 identity is wrong, or its distance is >= t).
- Rank-1 identification rate (closed set, no threshold): share of mated searches whose rank-1 identity is
  right.

Empirical rates are only resolved when there are enough trials: a rate of 1e-3 needs at least 1,000
impostor pairs to be observable at all (`tar_at_far`, `fnir_at_fpir`), and at least 3,000 to be supported
with 95% confidence when no false match is seen (the "rule of three", `threshold_for_fmr`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_RATE_EPS = 1e-9
"""Slack when turning a rate into a count (0.1 * 30 = 3.0000000000000004 must mean 3 pairs)."""

_DEFAULT_BLOCK_ELEMENTS = 4_000_000
"""Distance-matrix entries computed per block in `all_pair_distances` (32 MB of float64)."""


# ---------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class Roc:
    """The whole empirical ROC: one point per distinct distance, plus +inf (accepts every pair).

    `thresholds` ascend; the first (the smallest distance) accepts nothing, so the curve runs from
    (FMR 0, TAR 0) to (FMR 1, TAR 1).
    """

    thresholds: FloatArray
    fmr: FloatArray
    tar: FloatArray

    @property
    def fnmr(self) -> FloatArray:
        """False-non-match rate, 1 - TAR, at each threshold."""
        return 1.0 - self.tar


@dataclass(frozen=True)
class TarAtFar:
    """TAR at the largest threshold whose empirical FMR <= `far`.

    When fewer than 1/far impostor pairs were measured (`resolved` is False) the target cannot be told
    apart from zero: `tar`, `threshold` and `fmr` are NaN.
    """

    far: float
    tar: float
    threshold: float
    fmr: float
    impostor_pairs: int
    resolved: bool


@dataclass(frozen=True)
class BestAccuracy:
    """The highest pair accuracy over all thresholds, and the smallest threshold reaching it.

    The threshold is a measured distance (or +inf): every threshold above the next smaller distinct
    distance and up to it gives the same accuracy. Chosen on the data it is scored on, so optimistic.
    """

    accuracy: float
    threshold: float


@dataclass(frozen=True)
class FmrCalibration:
    """A threshold chosen so that the observed FMR is at most `target_fmr`, and how sure that is.

    `threshold` is the largest value with #{impostor < threshold} <= floor(target_fmr * impostor_pairs).
    `upper_bound` is the one-sided Clopper-Pearson upper confidence bound (at `confidence`) on the true FMR
    given `false_matches` out of `impostor_pairs`. `resolved` says whether impostor_pairs >= 3 / target_fmr
    (rule of three): with fewer, even zero false matches cannot show the target is met at 95%.
    """

    target_fmr: float
    threshold: float
    false_matches: int
    impostor_pairs: int
    observed_fmr: float
    upper_bound: float
    confidence: float
    resolved: bool


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
class PairDistances:
    """Distances of every unordered pair of descriptors (i < j), split by identity, in row-major order."""

    genuine: npt.NDArray[np.float32]
    impostor: npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class SearchResults:
    """For each probe: the rank-1 gallery identity and its distance (nearest enrolled descriptor)."""

    identities: npt.NDArray[np.str_]
    distances: FloatArray


# ---------------------------------------------------------------------------------------------------------
# Verification: genuine and impostor distances


def roc(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> Roc:
    """Empirical FMR and TAR at every distinct measured distance (see the module for the definitions)."""
    gen = np.sort(_scores(genuine, "genuine"))
    imp = np.sort(_scores(impostor, "impostor"))
    thresholds = np.append(np.unique(np.concatenate([gen, imp])), np.inf)
    return Roc(
        thresholds=thresholds,
        fmr=_count_below(imp, thresholds) / imp.size,
        tar=_count_below(gen, thresholds) / gen.size,
    )


def tar_at_far(genuine: npt.ArrayLike, impostor: npt.ArrayLike, far: float) -> TarAtFar:
    """TAR at the largest threshold t with FMR(t) <= `far`.

    That threshold is the (k+1)-th smallest impostor distance with k = floor(far * N_imp): every impostor
    distance below it is a false match, at most k of them. NaN results (resolved False) when
    N_imp < 1/far.
    """
    _check_rate(far, "far")
    gen = _scores(genuine, "genuine")
    imp = _scores(impostor, "impostor", allow_empty=True)
    if imp.size < trials_needed(far):
        nan = math.nan
        return TarAtFar(far, nan, nan, nan, int(imp.size), resolved=False)
    threshold = _largest_threshold_within(imp, far)
    return TarAtFar(
        far=far,
        tar=_share_below(gen, threshold),
        threshold=threshold,
        fmr=_share_below(imp, threshold),
        impostor_pairs=int(imp.size),
        resolved=True,
    )


def tar_at_fars(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike, fars: Sequence[float]
) -> tuple[TarAtFar, ...]:
    """`tar_at_far` at each of `fars` (a compact ROC: TAR against log-spaced FMRs)."""
    gen = _scores(genuine, "genuine")
    imp = _scores(impostor, "impostor", allow_empty=True)
    return tuple(tar_at_far(gen, imp, far) for far in fars)


def pair_accuracy(genuine: npt.ArrayLike, impostor: npt.ArrayLike, threshold: float) -> float:
    """Share of pairs decided correctly at `threshold`: genuine < threshold, impostor >= threshold."""
    gen = _scores(genuine, "genuine")
    imp = _scores(impostor, "impostor")
    correct = np.count_nonzero(gen < threshold) + np.count_nonzero(imp >= threshold)
    return int(correct) / (gen.size + imp.size)


def best_accuracy(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> BestAccuracy:
    """The best pair accuracy over every threshold (see `BestAccuracy` for which threshold is returned)."""
    gen = np.sort(_scores(genuine, "genuine"))
    imp = np.sort(_scores(impostor, "impostor"))
    thresholds = np.append(np.unique(np.concatenate([gen, imp])), np.inf)
    correct = _count_below(gen, thresholds) + (imp.size - _count_below(imp, thresholds))
    best = int(np.argmax(correct))  # first maximum: the smallest best threshold
    return BestAccuracy(
        accuracy=float(correct[best]) / (gen.size + imp.size), threshold=float(thresholds[best])
    )


def threshold_for_fmr(impostor: npt.ArrayLike, target_fmr: float, confidence: float = 0.95) -> FmrCalibration:
    """The largest threshold whose observed FMR <= `target_fmr`, with a Clopper-Pearson bound on the true FMR.

    The threshold is computed even when the impostor set is too small to support the target (`resolved`
    False); with floor(target * N_imp) = 0 it is the smallest impostor distance (no false match observed).
    """
    _check_rate(target_fmr, "target_fmr")
    _check_rate(confidence, "confidence")
    imp = _scores(impostor, "impostor")
    threshold = _largest_threshold_within(imp, target_fmr)
    false_matches = int(np.count_nonzero(imp < threshold))
    return FmrCalibration(
        target_fmr=target_fmr,
        threshold=threshold,
        false_matches=false_matches,
        impostor_pairs=int(imp.size),
        observed_fmr=false_matches / imp.size,
        upper_bound=clopper_pearson_upper(false_matches, int(imp.size), confidence),
        confidence=confidence,
        resolved=imp.size >= trials_needed(target_fmr, 3.0),
    )


# ---------------------------------------------------------------------------------------------------------
# How many trials a rate needs, and an exact binomial confidence bound


def trials_needed(rate: float, events: float = 1.0) -> int:
    """The fewest trials n with n * rate >= events.

    events=1: a rate that small can be observed at all (`tar_at_far`, `fnir_at_fpir`);
    events=3: the rule of three, zero events in n trials bound the rate below 3/n at ~95% confidence.
    """
    _check_rate(rate, "rate")
    return math.ceil(events / rate - _RATE_EPS)


def clopper_pearson_upper(events: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) upper confidence bound on a binomial proportion.

    The p at which observing `events` or fewer in `trials` has probability 1 - confidence:
    the `confidence` quantile of Beta(events + 1, trials - events); 1 when events == trials and
    1 - (1 - confidence) ** (1 / trials) when events == 0.
    """
    if trials < 1 or not 0 <= events <= trials:
        raise ValueError(f"need 0 <= events <= trials and trials >= 1, got {events} of {trials}")
    _check_rate(confidence, "confidence")
    if events == trials:
        return 1.0
    if events == 0:
        return -math.expm1(math.log1p(-confidence) / trials)
    return beta_quantile(confidence, events + 1, trials - events, lower=events / trials)


def beta_quantile(q: float, a: float, b: float, lower: float = 0.0) -> float:
    """The x in [0, 1] with regularized incomplete beta I_x(a, b) = q, by bisection (relative 1e-12).

    `lower` is a known lower bound on the answer (it only saves iterations).
    """
    _check_rate(q, "q")
    lo, hi = lower, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if regularized_incomplete_beta(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b) for a, b > 0, by Lentz's continued fraction (Numerical Recipes 6.4).

    Equals P(X >= a) for X ~ Binomial(a + b - 1, x) when a and b are whole numbers. Absolute error below
    1e-8 for a, b up to 1e7 (the log-gamma prefactor limits it), which bounds on rates of 1e-6 from
    millions of pairs need.
    """
    if a <= 0 or b <= 0:
        raise ValueError(f"beta parameters must be positive, got a={a}, b={b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 1000 + 20 * math.isqrt(int(max(a, b)) + 1)):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < eps:
            return fraction
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


# ---------------------------------------------------------------------------------------------------------
# Open-set identification


def search(gallery: npt.ArrayLike, gallery_labels: Sequence[str], probes: npt.ArrayLike) -> SearchResults:
    """Rank-1 candidate of each probe: the nearest gallery descriptor's identity and distance.

    A tie between gallery descriptors goes to the first in gallery order.
    """
    enrolled = _descriptors(gallery, "gallery")
    labels = np.asarray(gallery_labels, dtype=np.str_)
    if labels.shape != (enrolled.shape[0],):
        raise ValueError(f"{enrolled.shape[0]} gallery descriptors but {labels.size} labels")
    queries = _descriptors(probes, "probes", allow_empty=True, width=enrolled.shape[1])
    nearest = np.empty(queries.shape[0], dtype=np.intp)
    distances = np.empty(queries.shape[0], dtype=np.float64)
    step = max(1, _DEFAULT_BLOCK_ELEMENTS // enrolled.shape[0])
    for start in range(0, queries.shape[0], step):
        block = _squared_distances(queries[start : start + step], enrolled)
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
    _check_count(results.distances.size, truth.size, "probes", "probe labels")
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
    _check_count(mated_results.distances.size, truth.size, "mated probes", "mated labels")
    if truth.size == 0:
        raise ValueError("FNIR needs at least one mated probe")
    non_mated_best = search(gallery, gallery_labels, non_mated).distances
    right_identity = mated_results.identities == truth
    points = []
    for target in fpir_targets:
        _check_rate(target, "fpir_target")
        if non_mated_best.size < trials_needed(target):
            nan = math.nan
            points.append(FnirAtFpir(target, nan, nan, nan, truth.size, non_mated_best.size, resolved=False))
            continue
        threshold = _largest_threshold_within(non_mated_best, target)
        hits = np.count_nonzero(right_identity & (mated_results.distances < threshold))
        points.append(
            FnirAtFpir(
                fpir_target=target,
                threshold=threshold,
                fpir=_share_below(non_mated_best, threshold),
                fnir=1.0 - int(hits) / truth.size,
                mated_searches=truth.size,
                non_mated_searches=non_mated_best.size,
                resolved=True,
            )
        )
    return tuple(points)


# ---------------------------------------------------------------------------------------------------------
# Distances


def all_pair_distances(
    descriptors: npt.ArrayLike, labels: Sequence[str], block_elements: int = _DEFAULT_BLOCK_ELEMENTS
) -> PairDistances:
    """Euclidean distances of every unordered pair i < j, split into same-label and cross-label pairs.

    Computed in blocks of rows from |a|^2 + |b|^2 - 2 a.b in float64 (clipped at 0 before the square
    root), only for the upper triangle; about `block_elements` matrix entries live at a time, so 3,500
    descriptors (6 million pairs) need ~50 MB for the two float32 results and ~100 MB of work space.
    """
    points = _descriptors(descriptors, "descriptors", allow_empty=True)
    names = np.asarray(labels, dtype=np.str_)
    _check_count(points.shape[0], names.size, "descriptors", "labels")
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
        block = np.sqrt(_squared_distances(rows, points[start:]))
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
    left = _descriptors(a, "a", allow_empty=True)
    right = _descriptors(b, "b", allow_empty=True, width=left.shape[1])
    _check_count(left.shape[0], right.shape[0], "rows of a", "rows of b")
    distances: FloatArray = np.linalg.norm(left - right, axis=1)
    return distances


# ---------------------------------------------------------------------------------------------------------
# Helpers


def _scores(values: npt.ArrayLike, name: str, *, allow_empty: bool = False) -> FloatArray:
    scores = np.asarray(values, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"{name} distances must be a 1-D array, got shape {scores.shape}")
    if scores.size == 0 and not allow_empty:
        raise ValueError(f"no {name} distances")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} distances must be finite")
    return scores


def _descriptors(
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


def _squared_distances(a: FloatArray, b: FloatArray) -> FloatArray:
    """|a_i - b_j|^2 for every row pair, clipped at 0 (rounding can make it slightly negative)."""
    squared = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)
    clipped: FloatArray = np.maximum(squared, 0.0)
    return clipped


def _check_rate(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


def _check_count(found: int, expected: int, what: str, against: str) -> None:
    if found != expected:
        raise ValueError(f"{found} {what} but {expected} {against}")


def _largest_threshold_within(scores: FloatArray, rate: float) -> float:
    """The largest t with #{scores < t} <= floor(rate * n): the (k+1)-th smallest score."""
    allowed = math.floor(rate * scores.size + _RATE_EPS)
    if allowed >= scores.size:
        return math.inf
    return float(np.partition(scores, allowed)[allowed])


def _count_below(sorted_scores: FloatArray, thresholds: FloatArray) -> npt.NDArray[np.intp]:
    counts: npt.NDArray[np.intp] = np.searchsorted(sorted_scores, thresholds, side="left")
    return counts


def _share_below(scores: FloatArray, threshold: float) -> float:
    return int(np.count_nonzero(scores < threshold)) / scores.size


def _mated_labels(probe_labels: Sequence[str], gallery_labels: Sequence[str]) -> npt.NDArray[np.str_]:
    truth = np.asarray(probe_labels, dtype=np.str_)
    missing = sorted(set(truth.tolist()) - set(np.asarray(gallery_labels, dtype=np.str_).tolist()))
    if missing:
        raise ValueError(f"mated probes of identities not in the gallery: {', '.join(missing[:5])}")
    return truth

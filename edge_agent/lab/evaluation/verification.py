"""Verification accuracy from face-descriptor distances (smaller = more alike): ROC, TAR at FAR, pair
accuracy and FMR calibration.

Decision rule, used by every function here and in `identification`: two faces are declared the same
person when

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

A rate of 1e-3 needs at least 1,000 impostor pairs to be observable at all (`tar_at_far`), and at least
3,000 to be supported with 95% confidence when no false match is seen (the "rule of three",
`threshold_for_fmr`); see `rates`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.lab.evaluation.rates import (
    FloatArray,
    check_rate,
    clopper_pearson_upper,
    largest_threshold_within,
    share_below,
    trials_needed,
)


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
    check_rate(far, "far")
    gen = _scores(genuine, "genuine")
    imp = _scores(impostor, "impostor", allow_empty=True)
    if imp.size < trials_needed(far):
        nan = math.nan
        return TarAtFar(far, nan, nan, nan, int(imp.size), resolved=False)
    threshold = largest_threshold_within(imp, far)
    return TarAtFar(
        far=far,
        tar=share_below(gen, threshold),
        threshold=threshold,
        fmr=share_below(imp, threshold),
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
    check_rate(target_fmr, "target_fmr")
    check_rate(confidence, "confidence")
    imp = _scores(impostor, "impostor")
    threshold = largest_threshold_within(imp, target_fmr)
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


def _scores(values: npt.ArrayLike, name: str, *, allow_empty: bool = False) -> FloatArray:
    scores = np.asarray(values, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"{name} distances must be a 1-D array, got shape {scores.shape}")
    if scores.size == 0 and not allow_empty:
        raise ValueError(f"no {name} distances")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} distances must be finite")
    return scores


def _count_below(sorted_scores: FloatArray, thresholds: FloatArray) -> npt.NDArray[np.intp]:
    counts: npt.NDArray[np.intp] = np.searchsorted(sorted_scores, thresholds, side="left")
    return counts

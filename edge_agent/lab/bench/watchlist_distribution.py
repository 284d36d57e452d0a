"""Do the watchlist benchmark's distractors look like faces? Distances of real pairs beside distractor
pairs, down to the low quantiles where false matches live."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_agent.lab.bench.watchlist_vectors import F32, F64, BenchVectors, RealFaces, fit_gaussian


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

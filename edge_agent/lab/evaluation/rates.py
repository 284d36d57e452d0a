"""How many trials an error rate needs, thresholds that keep a rate within a target, and an exact binomial
confidence bound on a rate.

Empirical rates are only resolved when there are enough trials: a rate of 1e-3 needs at least 1,000
trials to be observable at all (`trials_needed`), and at least 3,000 to be supported with 95% confidence
when no error is seen (the "rule of three"). Decision rule: a trial is accepted when its distance is
strictly below the threshold.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

RATE_EPS = 1e-9
"""Slack when turning a rate into a count (0.1 * 30 = 3.0000000000000004 must mean 3 pairs)."""


def trials_needed(rate: float, events: float = 1.0) -> int:
    """The fewest trials n with n * rate >= events.

    events=1: a rate that small can be observed at all (`tar_at_far`, `fnir_at_fpir`);
    events=3: the rule of three, zero events in n trials bound the rate below 3/n at ~95% confidence.
    """
    check_rate(rate, "rate")
    return math.ceil(events / rate - RATE_EPS)


def clopper_pearson_upper(events: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) upper confidence bound on a binomial proportion.

    The p at which observing `events` or fewer in `trials` has probability 1 - confidence:
    the `confidence` quantile of Beta(events + 1, trials - events); 1 when events == trials and
    1 - (1 - confidence) ** (1 / trials) when events == 0.
    """
    if trials < 1 or not 0 <= events <= trials:
        raise ValueError(f"need 0 <= events <= trials and trials >= 1, got {events} of {trials}")
    check_rate(confidence, "confidence")
    if events == trials:
        return 1.0
    if events == 0:
        return -math.expm1(math.log1p(-confidence) / trials)
    return beta_quantile(confidence, events + 1, trials - events, lower=events / trials)


def beta_quantile(q: float, a: float, b: float, lower: float = 0.0) -> float:
    """The x in [0, 1] with regularized incomplete beta I_x(a, b) = q, by bisection (relative 1e-12).

    `lower` is a known lower bound on the answer (it only saves iterations).
    """
    check_rate(q, "q")
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


def check_rate(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


def largest_threshold_within(scores: FloatArray, rate: float) -> float:
    """The largest t with #{scores < t} <= floor(rate * n): the (k+1)-th smallest score."""
    allowed = math.floor(rate * scores.size + RATE_EPS)
    if allowed >= scores.size:
        return math.inf
    return float(np.partition(scores, allowed)[allowed])


def share_below(scores: FloatArray, threshold: float) -> float:
    return int(np.count_nonzero(scores < threshold)) / scores.size

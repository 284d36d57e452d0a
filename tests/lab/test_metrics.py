"""Accuracy metrics on small distance arrays whose answers are worked out by hand.

Decision rule throughout: same person when distance < threshold.
"""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from edge_agent.lab.evaluation.distances import all_pair_distances, paired_distances
from edge_agent.lab.evaluation.identification import fnir_at_fpir, rank1_identification, search
from edge_agent.lab.evaluation.rates import (
    beta_quantile,
    clopper_pearson_upper,
    regularized_incomplete_beta,
    trials_needed,
)
from edge_agent.lab.evaluation.report import (
    evaluate_pipeline,
    format_pipeline,
    format_report,
    identification_accuracy,
    write_accuracy_report,
)
from edge_agent.lab.evaluation.verification import (
    best_accuracy,
    pair_accuracy,
    roc,
    tar_at_far,
    tar_at_fars,
    threshold_for_fmr,
)

GENUINE = [0.1, 0.3, 0.5]
IMPOSTOR = [0.2, 0.4, 0.6, 0.8]
TEN_IMPOSTORS = [0.2, 0.25, 0.35, 0.45, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0]


def test_roc_counts_distances_strictly_below_each_threshold() -> None:
    curve = roc(GENUINE, IMPOSTOR)
    np.testing.assert_array_equal(curve.thresholds, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, np.inf])
    # at t = 0.3 the genuine 0.3 is rejected (not < 0.3) and the impostor 0.2 is accepted
    np.testing.assert_allclose(curve.tar, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(curve.fmr, [0, 0, 1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4, 1])
    np.testing.assert_allclose(curve.fnmr, 1 - curve.tar)


def test_tar_at_far_takes_the_largest_threshold_within_the_far() -> None:
    # far 0.1 of 10 impostors allows k = 1 false match: threshold = 2nd smallest impostor distance
    point = tar_at_far(GENUINE, TEN_IMPOSTORS, 0.1)
    assert point.resolved
    assert (point.threshold, point.fmr, point.tar, point.impostor_pairs) == (0.25, 0.1, 1 / 3, 10)
    # any larger threshold lets in a second impostor (0.25) and breaks the far
    assert np.count_nonzero(np.array(TEN_IMPOSTORS) < math.nextafter(0.25, 1.0)) == 2
    point = tar_at_far(GENUINE, TEN_IMPOSTORS, 0.2)  # k = 2: threshold 0.35 accepts genuine 0.1, 0.3
    assert (point.threshold, point.fmr, point.tar) == (0.35, 0.2, 2 / 3)
    assert tar_at_far(GENUINE, TEN_IMPOSTORS, 0.15).threshold == 0.25  # floor(1.5) = 1 false match


def test_tar_at_far_with_tied_impostors_stays_within_the_far() -> None:
    point = tar_at_far(GENUINE, [0.2, 0.2, *TEN_IMPOSTORS[2:]], 0.1)
    assert (point.threshold, point.fmr, point.tar) == (0.2, 0.0, 1 / 3)  # 0.2 < 0.2 is false: no match


def test_tar_at_far_unresolved_with_fewer_than_one_over_far_impostors() -> None:
    point = tar_at_far(GENUINE, TEN_IMPOSTORS, 0.05)  # needs 20 impostors
    assert not point.resolved
    assert point.impostor_pairs == 10
    assert math.isnan(point.tar) and math.isnan(point.threshold) and math.isnan(point.fmr)
    assert [p.resolved for p in tar_at_fars(GENUINE, TEN_IMPOSTORS, [0.1, 0.01])] == [True, False]
    assert trials_needed(1e-3) == 1000 and trials_needed(1e-3, 3.0) == 3000 and trials_needed(0.3) == 4


def test_pair_accuracy_by_hand() -> None:
    # 7 pairs; at 0.45: genuine 0.1, 0.3 accepted, impostors 0.6, 0.8 rejected
    assert pair_accuracy(GENUINE, IMPOSTOR, 0.45) == pytest.approx(4 / 7)
    # at 0.3 the genuine 0.3 is rejected; impostors 0.4, 0.6, 0.8 are rejected
    assert pair_accuracy(GENUINE, IMPOSTOR, 0.3) == pytest.approx(4 / 7)
    assert pair_accuracy(GENUINE, IMPOSTOR, 0.6) == pytest.approx(5 / 7)


def test_best_accuracy_returns_the_smallest_best_threshold() -> None:
    # correct pairs at thresholds 0.1..0.8, inf: 4, 5, 4, 5, 4, 5, 4, 3
    best = best_accuracy(GENUINE, IMPOSTOR)
    assert best.accuracy == pytest.approx(5 / 7)
    assert best.threshold == 0.2
    separable = best_accuracy([0.3, 0.4], [0.7, 0.8])
    assert (separable.accuracy, separable.threshold) == (1.0, 0.7)


def test_threshold_for_fmr_reports_counts_and_bound() -> None:
    calibration = threshold_for_fmr(TEN_IMPOSTORS, 0.1)
    assert (calibration.threshold, calibration.false_matches, calibration.impostor_pairs) == (0.25, 1, 10)
    assert calibration.observed_fmr == 0.1
    assert calibration.upper_bound == pytest.approx(clopper_pearson_upper(1, 10))
    assert not calibration.resolved  # rule of three: 0.1 needs 30 pairs
    thirty = np.arange(1, 31) / 10  # 0.1 .. 3.0; 0.1 * 30 = 3.0000000000000004 still allows 3
    calibration = threshold_for_fmr(thirty, 0.1)
    assert (calibration.threshold, calibration.false_matches, calibration.resolved) == (0.4, 3, True)
    assert not threshold_for_fmr(thirty[:29], 0.1).resolved


def test_threshold_for_fmr_below_resolution_is_the_smallest_impostor() -> None:
    calibration = threshold_for_fmr(TEN_IMPOSTORS, 1e-3)
    assert (calibration.threshold, calibration.false_matches, calibration.resolved) == (0.2, 0, False)
    assert calibration.upper_bound == pytest.approx(1 - 0.05 ** (1 / 10))


@pytest.mark.parametrize("trials", [1, 10, 3000, 6_000_000])
def test_clopper_pearson_zero_events(trials: int) -> None:
    assert clopper_pearson_upper(0, trials) == pytest.approx(1 - 0.05 ** (1 / trials), rel=1e-12)


def test_clopper_pearson_rule_of_three_and_edges() -> None:
    assert clopper_pearson_upper(0, 3000) == pytest.approx(3 / 3000, rel=3e-3)
    assert clopper_pearson_upper(10, 10) == 1.0
    # tabulated one-sided 95% bounds, as scipy.stats.beta.ppf(0.95, x + 1, n - x) gives them:
    # 1 of 10 -> 0.394163, 5 of 10 -> 0.777559
    assert clopper_pearson_upper(1, 10) == pytest.approx(0.394163, abs=1e-6)
    assert clopper_pearson_upper(5, 10) == pytest.approx(0.777559, abs=1e-6)
    bounds = [clopper_pearson_upper(events, 50) for events in range(51)]
    assert all(a < b for a, b in itertools.pairwise(bounds))
    with pytest.raises(ValueError):
        clopper_pearson_upper(3, 2)


@pytest.mark.parametrize(("events", "trials"), [(1, 10), (5, 10), (3, 20), (17, 2200), (99, 100)])
def test_clopper_pearson_matches_binomial_cdf(events: int, trials: int) -> None:
    """Independent check: P(X <= events) at the bound is exactly 1 - confidence (exact pmf sum)."""
    for confidence in (0.95, 0.99):
        p = clopper_pearson_upper(events, trials, confidence)
        cdf = sum(math.comb(trials, i) * p**i * (1 - p) ** (trials - i) for i in range(events + 1))
        assert cdf == pytest.approx(1 - confidence, rel=1e-8)


def test_clopper_pearson_at_six_million_trials() -> None:
    """The LFW-sized case, checked by the binomial pmf summed in log space."""
    events, trials = 6000, 6_000_000
    p = clopper_pearson_upper(events, trials)
    log_pmf = np.array(
        [
            math.lgamma(trials + 1) - math.lgamma(i + 1) - math.lgamma(trials - i + 1)
            + i * math.log(p) + (trials - i) * math.log1p(-p)
            for i in range(events + 1)
        ]
    )  # fmt: skip
    assert float(np.exp(log_pmf).sum()) == pytest.approx(0.05, rel=1e-6)
    assert 1e-3 < p < 1.1e-3


def test_regularized_incomplete_beta_closed_forms() -> None:
    for x in (1e-6, 0.1, 0.37, 0.5, 0.9, 1 - 1e-6):
        assert regularized_incomplete_beta(1, 1, x) == pytest.approx(x, rel=1e-12)
        assert regularized_incomplete_beta(3.5, 1, x) == pytest.approx(x**3.5, rel=1e-10)
        assert regularized_incomplete_beta(1, 7, x) == pytest.approx(1 - (1 - x) ** 7, rel=1e-10)
        assert regularized_incomplete_beta(2.5, 4, x) == pytest.approx(
            1 - regularized_incomplete_beta(4, 2.5, 1 - x), abs=1e-13
        )
    assert regularized_incomplete_beta(2, 3, 0.0) == 0.0 and regularized_incomplete_beta(2, 3, 1.0) == 1.0
    assert regularized_incomplete_beta(0.5, 0.5, 0.5) == pytest.approx(0.5, abs=1e-13)
    assert regularized_incomplete_beta(2, 2, 0.25) == pytest.approx(3 * 0.25**2 - 2 * 0.25**3)  # 5/32
    q = beta_quantile(0.3, 4, 9)
    assert regularized_incomplete_beta(4, 9, q) == pytest.approx(0.3, rel=1e-10)


# Identification: a 2-D gallery so every distance is plain. A has two descriptors.
GALLERY = [[0.0, 0.0], [-1.0, 0.0], [10.0, 0.0], [0.0, 10.0]]
GALLERY_LABELS = ["A", "A", "B", "C"]
# rank-1: A at 0.5; B at 1; A at 4 (wrong: B is 6 away); C at 3.5
MATED = [[0.5, 0.0], [9.0, 0.0], [4.0, 0.0], [0.0, 6.5]]
MATED_LABELS = ["A", "B", "B", "C"]
# (0, -d) is nearest A's (0, 0) at distance d
NON_MATED_DISTANCES = [2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
NON_MATED = [[0.0, -d] for d in NON_MATED_DISTANCES]


def test_search_and_rank1() -> None:
    found = search(GALLERY, GALLERY_LABELS, MATED)
    assert found.identities.tolist() == ["A", "B", "A", "C"]
    np.testing.assert_allclose(found.distances, [0.5, 1, 4, 3.5])
    np.testing.assert_allclose(search(GALLERY, GALLERY_LABELS, NON_MATED).distances, NON_MATED_DISTANCES)
    assert rank1_identification(GALLERY, GALLERY_LABELS, MATED, MATED_LABELS) == 0.75


def test_fnir_at_fpir_by_hand() -> None:
    tight, loose, unresolved = fnir_at_fpir(
        GALLERY, GALLERY_LABELS, MATED, MATED_LABELS, NON_MATED, [0.1, 0.2, 0.01]
    )
    # FPIR 0.1 of 10 searches: threshold = 2nd smallest best distance, 3; only 2.5 < 3
    assert (tight.threshold, tight.fpir) == (3.0, 0.1)
    assert tight.fnir == 0.5  # found below 3: the A at 0.5 and B at 1; missed: wrong A, C at 3.5
    assert (loose.threshold, loose.fpir, loose.fnir) == (4.0, 0.2, 0.25)  # only the wrong identity misses
    assert (loose.mated_searches, loose.non_mated_searches) == (4, 10)
    assert not unresolved.resolved and math.isnan(unresolved.fnir) and math.isnan(unresolved.threshold)


def test_identification_rejects_unenrolled_mated_probes() -> None:
    with pytest.raises(ValueError, match="not in the gallery"):
        rank1_identification(GALLERY, GALLERY_LABELS, MATED, ["A", "B", "B", "Z"])


def test_all_pair_distances_by_hand() -> None:
    points = np.array([[0, 0], [3, 4], [6, 8], [0, 1]], np.float32)
    labels = ["a", "a", "b", "b"]
    # pairs in order (0,1) 5 same; (0,2) 10; (0,3) 1; (1,2) 5; (1,3) sqrt 18; (2,3) sqrt 85 same
    for block in (1, 3, 1_000_000):
        pairs = all_pair_distances(points, labels, block_elements=block)
        assert pairs.genuine.dtype == np.float32 and pairs.impostor.dtype == np.float32
        np.testing.assert_allclose(pairs.genuine, [5, math.sqrt(85)], rtol=1e-6)
        np.testing.assert_allclose(pairs.impostor, [10, 1, 5, math.sqrt(18)], rtol=1e-6)
    empty = all_pair_distances(points[:1], labels[:1])
    assert empty.genuine.size == 0 and empty.impostor.size == 0


def test_all_pair_distances_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    points = rng.normal(size=(150, 128)).astype(np.float32) * 0.05
    labels = [f"id{i % 23}" for i in range(150)]
    pairs = all_pair_distances(points, labels, block_elements=2000)
    genuine: list[float] = []
    impostor: list[float] = []
    for i in range(150):
        for j in range(i + 1, 150):
            distance = float(np.linalg.norm(points[i].astype(np.float64) - points[j]))
            (genuine if labels[i] == labels[j] else impostor).append(distance)
    np.testing.assert_allclose(pairs.genuine.astype(np.float64), genuine, rtol=1e-5)
    np.testing.assert_allclose(pairs.impostor.astype(np.float64), impostor, rtol=1e-5)
    assert pairs.genuine.size + pairs.impostor.size == 150 * 149 // 2


def test_paired_distances() -> None:
    np.testing.assert_allclose(paired_distances([[0, 0], [1, 1]], [[3, 4], [1, 1]]), [5, 0])


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        roc([0.1, math.nan], IMPOSTOR)
    with pytest.raises(ValueError, match="no genuine"):
        tar_at_far([], IMPOSTOR, 0.1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        tar_at_far(GENUINE, IMPOSTOR, 1.0)
    with pytest.raises(ValueError, match="labels"):
        all_pair_distances(np.zeros((3, 2)), ["a", "b"])


def test_report_tables_and_section(tmp_path: Path) -> None:
    """The Markdown report shows these hand-checked numbers and lands between markers, once."""
    result = evaluate_pipeline(
        "tiny",
        0.45,
        pair_genuine=GENUINE,
        pair_impostor=IMPOSTOR,
        genuine=GENUINE,
        impostor=TEN_IMPOSTORS,
        images=12,
        faces_not_detected=1,
        identification=identification_accuracy(
            GALLERY, GALLERY_LABELS, MATED, MATED_LABELS, NON_MATED, [0.1]
        ),
    )
    text = format_pipeline(result)
    for row in (
        "| pair accuracy at threshold 0.4500 | 57.14% (3 genuine + 4 impostor pairs) |",
        "| best pair accuracy (threshold chosen on the same pairs) | 71.43% at threshold 0.2000 |",
        "| TAR at FAR 1e-1 | 33.33% (threshold 0.2500, FMR 1.00e-1) |",
        "| TAR at FAR 1e-2 | not resolved: needs 100 impostor pairs, has 10 |",
        "| rank-1 identification (3 enrolled identities) | 75.00% (4 mated searches) |",
        "| FNIR at FPIR 1e-1 | 50.00% (threshold 3.0000, FPIR 1.00e-1, 10 non-mated searches) |",
        "| faces not detected | 1 of 12 images |",
        "| 1e-1 | 1.00e-1 | 33.33% | 0.2500 |",
        "| 1e-2 | 0.2000 | 10 | 0 | 2.59e-1 | no (needs 300 pairs) |",
    ):
        assert row in text
    doc = tmp_path / "docs" / "accuracy.md"
    body = format_report("Accuracy: tiny", "pytest", "numpy", [result])
    write_accuracy_report(doc, "tiny", body)
    write_accuracy_report(doc, "tiny", body)
    written = doc.read_text(encoding="utf-8")
    assert written.startswith("# Accuracy\n")
    assert written.count("<!-- bench:tiny:start -->") == 1 and written.count("### tiny") == 1

"""The alert budget: the calibrated operating point that keeps false alerts per day within what the user
accepts, for the watchlist as large as it is now.

A threshold's false-match rate (FMR) is per comparison, but a search compares a look with every live
template, and a camera sees many strangers a day. The model, in the units a user lives with:

- a look searched against N live templates wrongly falls under the threshold of somebody with a
  probability of about N x FMR (the union bound: exact while N x FMR is small, an overestimate after);
- a stranger's track wrongly raises an alert with a probability of about `track_factor` x N x FMR. The
  factor is what the vote makes of a track's looks: its k of n, its single looks at a ten times stricter
  rate, over every window of a track's life. It is measured, not assumed: `edge-agent bench
  false-alerts` replays stranger tracks through the live decision (docs/benchmarks.md);
- false alerts per day = `faces_per_day` (strangers' tracks a day) x that.

The budget picks the loosest calibrated point whose false alerts per day, computed from the 95 % upper
bound of its measured FMR, stay within `false_alerts_per_day`: the highest true-match rate the budget
allows, without leaning on a rate the calibration cannot vouch for. When even the strictest calibrated
point cannot promise the budget, that point is used and the shortfall is said (health, enrolment,
`watchlist operating-point`): never a threshold the calibration has no evidence for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.engine.settings import DecisionSettings
from edge_agent.vision.manifest import Calibration, FmrThreshold

# Under a budget a single look decides at the calibrated rate this many times stricter than the operating
# point (1e-5 beside 1e-4, as the fixed default); below 1e-5 there is none, and k of n decides alone.
SINGLE_LOOK_STRICTER = 10.0


@dataclass(frozen=True)
class PointLoad:
    """One calibrated point applied to this watchlist: what it costs in false alerts."""

    point: FmrThreshold
    single_look: FmrThreshold | None  # the stricter point one look may decide at, if any
    templates: int  # live templates every look is compared with
    faces_per_day: float
    track_factor: float

    @property
    def per_search(self) -> float:
        """Expected false matches of one look (N x FMR)."""
        return self.templates * self.point.target_fmr

    @property
    def per_track(self) -> float:
        """Expected false alerts per stranger's track."""
        return min(1.0, self.track_factor * self.per_search)

    @property
    def per_track_upper(self) -> float:
        """The same from the 95 % upper bound of the point's measured FMR."""
        return min(1.0, self.track_factor * self.templates * self.point.fmr_upper_95)

    @property
    def per_day(self) -> float:
        """Expected false alerts per day."""
        return self.faces_per_day * self.per_track

    @property
    def per_day_upper(self) -> float:
        """False alerts per day at the 95 % upper bound of the FMR: what the budget is held to."""
        return self.faces_per_day * self.per_track_upper

    def alert_figures(self) -> dict[str, float | int]:
        """The figures events and health carry (the schema's field names), rounded for reading."""
        return {
            "expected_false_alerts_per_day": readable(self.per_day),
            "false_alerts_per_day_upper_95": readable(self.per_day_upper),
            "templates": self.templates,
        }


@dataclass(frozen=True)
class OperatingPoint:
    """The point in use, every calibrated point beside it (loosest first), and whether the budget holds."""

    chosen: PointLoad
    loads: tuple[PointLoad, ...]
    budget: float | None  # false alerts per day; None: a fixed rate (`decision.operating_point`)

    @property
    def budget_met(self) -> bool | None:
        return None if self.budget is None else self.chosen.per_day_upper <= self.budget

    @property
    def problem(self) -> str | None:
        """One line when the budget cannot be promised, else None."""
        if self.budget is None or self.budget_met:
            return None
        load = self.chosen
        needed = self.budget / (load.faces_per_day * load.track_factor * max(load.templates, 1))
        return (
            f"the false-alert budget of {self.budget:g} a day cannot be promised for {load.templates:,} "
            f"templates and {load.faces_per_day:g} strangers a day: it needs a false-match rate of at most "
            f"{needed:.2g} (upper bound), and the strictest calibrated point ({load.point.target_fmr:g}) is "
            f"only bounded at {load.point.fmr_upper_95:.3g} by {load.point.impostor_pairs:,} impostor pairs; "
            f"using it: {load.per_day:.3g} false alerts a day expected, up to {load.per_day_upper:.3g}"
        )

    def summary(self) -> str:
        """One line for logs and the CLI."""
        load = self.chosen
        how = "fixed rate" if self.budget is None else f"budget {self.budget:g} a day"
        templates = f"{load.templates:,} template" + ("" if load.templates == 1 else "s")
        return (
            f"{templates}: false-match rate {load.point.target_fmr:g} (threshold "
            f"{load.point.threshold:.3f}), {load.per_day:.3g} false alerts a day expected at "
            f"{load.faces_per_day:g} strangers a day (up to {load.per_day_upper:.3g}; {how})"
        )


def choose_operating_point(
    calibration: Calibration, templates: int, decision: DecisionSettings, fixed_fmr: float | None
) -> OperatingPoint:
    """The operating point for `templates` live templates. `fixed_fmr` (a calibrated rate) is used as it
    is when given (the `target_fmr` mode, or a fleet `set_target_fmr`); otherwise the budget chooses."""
    points = sorted(calibration.thresholds, key=lambda t: -t.target_fmr)
    loads = tuple(
        PointLoad(
            point=point,
            single_look=_single_look(point, points, decision, fixed_fmr is not None),
            templates=templates,
            faces_per_day=decision.faces_per_day,
            track_factor=decision.track_factor,
        )
        for point in points
    )
    if fixed_fmr is not None:
        chosen = next(load for load in loads if load.point == calibration.for_target(fixed_fmr))
        return OperatingPoint(chosen, loads, None)
    budget = decision.false_alerts_per_day
    within = [load for load in loads if load.per_day_upper <= budget]
    return OperatingPoint(within[0] if within else loads[-1], loads, budget)


def configured_point(
    calibration: Calibration, templates: int, decision: DecisionSettings, target_fmr: float
) -> OperatingPoint:
    """The point the configuration gives for `templates` live templates: the budget's, or the embedder's
    fixed `target_fmr` when `decision.operating_point` is "target_fmr"."""
    fixed = target_fmr if decision.operating_point == "target_fmr" else None
    return choose_operating_point(calibration, templates, decision, fixed)


def _single_look(
    point: FmrThreshold, points: Sequence[FmrThreshold], decision: DecisionSettings, fixed: bool
) -> FmrThreshold | None:
    """The stricter point one look may decide at: `decision.single_look_fmr` at a fixed rate, ten times
    stricter than the point under a budget; None when there is none below the point's threshold."""
    if fixed:
        given = decision.single_look_fmr
        single = next((p for p in points if given is not None and _same(p.target_fmr, given)), None)
    else:
        rate = point.target_fmr / SINGLE_LOOK_STRICTER
        single = next((p for p in points if _same(p.target_fmr, rate)), None)
    return single if single is not None and single.threshold < point.threshold else None


def readable(value: float) -> float:
    """Four significant digits: enough for a rate a person reads, without false precision."""
    return float(f"{value:.4g}")


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(a, b)

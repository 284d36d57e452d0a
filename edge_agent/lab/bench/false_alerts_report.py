"""The false-alert bench's tables for docs/benchmarks.md, written from one run's numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from edge_agent.lab.bench.false_alerts import (
    ACLU_FIGURE,
    FPS,
    FRAME_SIZE,
    WIDTHS,
    FalseAlertBench,
    PhotoRow,
    TrackRow,
)
from edge_agent.lab.evaluation.rates import clopper_pearson_upper

RowT = TypeVar("RowT", PhotoRow, TrackRow)
SECTION_KEY = "false-alerts"
SECTION_TITLE = 'False alerts at the operating point (the "Congress test")'


def _count(events: int, trials: int) -> str:
    """ "3 / 1,132 = 2.7e-03 (<= 6.9e-03)": the count, the rate and its one-sided 95 % upper bound."""
    if trials == 0:
        return "-"
    upper = clopper_pearson_upper(events, trials)
    return f"{events:,} / {trials:,} = {events / trials:.1e} (<= {upper:.1e})"


def _share(events: int, trials: int) -> str:
    return "-" if trials == 0 else f"{events / trials:.3f}"


def format_report(bench: FalseAlertBench) -> str:
    sizes = sorted({row.size for row in bench.photos})
    track_sizes = sorted({row.size for row in bench.tracks})
    first = bench.photos[0]
    lines = [
        f"- Published, for comparison: {ACLU_FIGURE}.",
        "",
        f"Watchlist: {bench.people:,} lfw-devtrain people (seed {bench.seed}), one enrolment photo each "
        "(people with two or more photos first, so their other photos test true matches), padded with the "
        "watchlist bench's mixture distractors to the larger sizes (each distractor stands for one more "
        f"enrolled person). Strangers: every photo of the {first.strangers:,} lfw-devtrain photos of people "
        "not on the list. Distances exact (numpy, float64 re-ranked): the index plays no part here.",
        "",
        "### (a) Photo by photo: false alerts per stranger's photo, and true matches",
        "",
        "A false alert: the stranger's nearest template is under the threshold. True match: an enrolled "
        "person's other photo has their own template nearest and under it. Count / trials = rate (one-sided "
        "95 % upper bound).",
        "",
        *_header(
            ["FMR", "threshold", "true-match rate, photos"],
            "false alerts per stranger at {size:,} templates (expected N x FMR)",
            sizes,
        ),
    ]
    for rate in _rates(bench.photos):
        rows = {r.size: r for r in bench.photos if r.point.target_fmr == rate}
        base = rows[sizes[0]]
        cells = [
            f"{_count(r.stranger_alerts, r.strangers)} ({min(1.0, r.size * rate):.2g})"
            for r in _by(rows, sizes)
        ]
        lines.append(
            f"| {rate:g} | {base.point.threshold:.4f} | {_share(base.true_matches, base.mated)} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "### (b) As tracks through the live decision",
        "",
        f"Each photo walked through a {bench.seconds:g} s clip of the agent's own frames ({FRAME_SIZE[0]}x"
        f"{FRAME_SIZE[1]} at {FPS:g} fps, the photo's middle growing from {WIDTHS[0]} to {WIDTHS[1]} px "
        "as it slides across) and through the whole live pipeline; every look's descriptor is kept and the "
        "live vote (k of n, and one look at the rate ten times stricter, as under the budget) replayed at "
        f"each point. {bench.looks:,} looks in all. A stranger-track alerts if the vote decides anything; an "
        "enrolled person's track is a true match when it names them. Track factor: false alerts per "
        "stranger-track / (templates x FMR), the number the alert budget multiplies by (engine/budget.py).",
        "",
        *_header(
            ["FMR", "single look at", "true-match rate, tracks", "wrong names, enrolled tracks"],
            "false alerts per stranger-track at {size:,} (track factor)",
            track_sizes,
        ),
    ]
    for rate in _rates(bench.tracks):
        rows_t = {r.size: r for r in bench.tracks if r.point.target_fmr == rate}
        base_t = rows_t[track_sizes[0]]
        single = "-" if base_t.single_look is None else f"{base_t.single_look.target_fmr:g}"
        cells = [f"{_count(r.stranger_alerts, r.strangers)} ({_factor(r)})" for r in _by(rows_t, track_sizes)]
        lines.append(
            f"| {rate:g} | {single} | {_share(base_t.true_matches, base_t.mated)} | "
            f"{base_t.wrong_names} | " + " | ".join(cells) + " |"
        )
    live, budget = bench.live.chosen, bench.budgets[0]
    lines += [
        "",
        f"Live run itself (the default budget for {bench.people:,} templates: false-match rate "
        f"{live.point.target_fmr:g}, threshold {live.point.threshold:.4f}): stranger-tracks with an event "
        f"{_count(bench.live_stranger_alerts, bench.live_strangers)}; enrolled people's tracks named "
        f"{_share(bench.live_true, bench.live_mated)} ({bench.live_true} of {bench.live_mated}).",
        "",
        "### What the budget picks",
        "",
        f"The agent's choice with this configuration (budget {budget.budget:g} false alert(s) a day at "
        f"{budget.chosen.faces_per_day:g} strangers' tracks a day, track factor "
        f"{budget.chosen.track_factor:g}"
        + (
            f"; the largest factor measured above, among points with 10 or more stranger alerts: "
            f"{bench.track_factor:g})"
            if bench.track_factor is not None
            else "; no point had 10 stranger alerts to measure the factor from)"
        )
        + ". True-match rates: the LFW calibration's same-person pairs (models/manifest.toml).",
        "",
        "| templates | FMR picked | threshold | single look at | expected false alerts a day | upper bound | "
        "budget met | true-match rate (LFW pairs) |",
        "|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for choice in bench.budgets:
        load = choice.chosen
        single = "-" if load.single_look is None else f"{load.single_look.target_fmr:g}"
        lines.append(
            f"| {load.templates:,} | {load.point.target_fmr:g} | {load.point.threshold:.4f} | {single} | "
            f"{load.per_day:.3g} | {load.per_day_upper:.3g} | {'yes' if choice.budget_met else 'no'} | "
            f"{load.point.true_match_rate:.3f} |"
        )
    lines += [
        "",
        "Notes:",
        "",
        "- A replay at another point uses the looks the live run took at its own point: there a settled "
        "track is re-checked at other moments, which changes when looks fall, not how many a track gets.",
        "- The stranger photos are the lfw-devtrain people not on the list; the calibration's impostor "
        "pairs come from the same 2,132 people, so this is not an independent test of the calibration, "
        "but a test of what the vote and the search make of it.",
        f"- Run time {bench.elapsed_s:.0f} s (walked tracks are cached in build/bench-cache).",
    ]
    return "\n".join(lines)


def _header(first: Sequence[str], per_size: str, sizes: Sequence[int]) -> list[str]:
    """A table's two header lines: the fixed columns, then one column per watchlist size."""
    columns = [*first, *(per_size.format(size=size) for size in sizes)]
    return ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]


def _rates(rows: Sequence[PhotoRow] | Sequence[TrackRow]) -> list[float]:
    return sorted({r.point.target_fmr for r in rows}, reverse=True)


def _by(rows: Mapping[int, RowT], sizes: Sequence[int]) -> list[RowT]:
    return [rows[size] for size in sizes]


def _factor(row: TrackRow) -> str:
    factor = row.factor
    return "-" if factor is None or row.stranger_alerts == 0 else f"{factor:.2g}"

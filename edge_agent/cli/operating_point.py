"""`edge-agent watchlist operating-point`: what each calibrated point costs this watchlist in false alerts,
and the one the budget picks (engine/budget.py). Reads the manifest only: no model is loaded."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edge_agent.cli.args import EXIT_OK, open_watchlist, positive_float, settings_from
from edge_agent.config import Settings
from edge_agent.engine.budget import OperatingPoint, PointLoad, configured_point, readable
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist.store import Watchlist


def add_operating_point_command(sub: Any) -> None:
    point = sub.add_parser(
        "operating-point",
        help="each calibrated false-match rate with its threshold, true-match rate and false alerts a day "
        "for this watchlist, and the one the budget picks",
    )
    point.add_argument(
        "--faces-per-day",
        type=positive_float,
        help="strangers' tracks a day (default: decision.faces_per_day from the config)",
    )
    point.set_defaults(handler=_cmd_operating_point)


def operating_point_for(settings: Settings, watchlist: Watchlist) -> OperatingPoint:
    """The point the agent would run at with this configuration and watchlist (a fleet `set_target_fmr`
    that a running agent has received is not known here)."""
    catalog = ModelCatalog.load(settings.models_dir)
    _, entry = catalog.embedder(settings.embedder.model, settings.embedder.precision)
    calibration = catalog.calibration_for(entry)
    return configured_point(
        calibration, watchlist.live_templates(), settings.decision, settings.embedder.target_fmr
    )


def report_operating_point(settings: Settings, watchlist: Watchlist) -> None:
    """After a change to the watchlist: the point it now implies, and a warning when the budget fails."""
    point = operating_point_for(settings, watchlist)
    print(f"operating point: {point.summary()}")
    if point.problem is not None:
        print(f"edge-agent: warning: {point.problem}", file=sys.stderr)


def _cmd_operating_point(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.faces_per_day is not None:
        decision = settings.decision.model_copy(update={"faces_per_day": args.faces_per_day})
        settings = settings.model_copy(update={"decision": decision})
    with open_watchlist(settings) as watchlist:
        point = operating_point_for(settings, watchlist)
    if args.json:
        print(json.dumps(_as_json(point), indent=2))
    else:
        print("\n".join(_as_text(point)))
    return EXIT_OK


def _as_text(point: OperatingPoint) -> list[str]:
    load = point.chosen
    budget = "a fixed rate" if point.budget is None else f"a budget of {point.budget:g} false alert(s) a day"
    lines = [
        f"{load.templates:,} live templates, {load.faces_per_day:g} strangers' tracks a day, track factor "
        f"{load.track_factor:g}; {budget}",
        "",
        f"  {'FMR':>7}  {'threshold':>9}  {'true-match rate':>15}  {'false alerts a day':>18}  "
        f"{'upper 95 %':>10}  {'per 1,000 strangers':>19}",
    ]
    for row in point.loads:
        mark = "  <- picked" if row == load else ""
        lines.append(
            f"  {row.point.target_fmr:>7g}  {row.point.threshold:>9.4f}  {row.point.true_match_rate:>15.3f}  "
            f"{row.per_day:>18.3g}  {row.per_day_upper:>10.3g}  {1000 * row.per_track:>19.3g}{mark}"
        )
    lines += ["", "true-match rate: lfw-devtrain same-person photo pairs (models/manifest.toml)"]
    if point.problem is not None:
        lines.append(f"not met: {point.problem}")
    return lines


def _as_json(point: OperatingPoint) -> dict[str, Any]:
    return {
        "templates": point.chosen.templates,
        "faces_per_day": point.chosen.faces_per_day,
        "track_factor": point.chosen.track_factor,
        "budget_false_alerts_per_day": point.budget,
        "budget_met": point.budget_met,
        "problem": point.problem,
        "picked": point.chosen.point.target_fmr,
        "points": [_row(row) for row in point.loads],
    }


def _row(row: PointLoad) -> dict[str, Any]:
    return {
        "target_fmr": row.point.target_fmr,
        "threshold": row.point.threshold,
        "fmr_upper_95": row.point.fmr_upper_95,
        "true_match_rate": row.point.true_match_rate,
        "single_look_fmr": None if row.single_look is None else row.single_look.target_fmr,
        "expected_false_alerts_per_day": readable(row.per_day),
        "false_alerts_per_day_upper_95": readable(row.per_day_upper),
        "false_alerts_per_1000_strangers": readable(1000 * row.per_track),
    }

"""The alert budget: the threshold follows the watchlist's size, and a budget the calibration cannot
promise is said, never hidden (engine/budget.py). Real descriptors of the shared photos, the real
calibration from models/manifest.toml, the live pipeline's own control surface."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.capture.runner import Captured
from edge_agent.cli.main import main
from edge_agent.config import Settings, load_settings
from edge_agent.engine.budget import choose_operating_point
from edge_agent.engine.live import LivePipeline, open_watchlist
from edge_agent.engine.settings import DecisionSettings
from edge_agent.engine.vote import TemporalVote
from edge_agent.events.store import EventStore
from edge_agent.types import Frame
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import Calibration, FmrThreshold
from edge_agent.watchlist.records import NewSubject, NewTemplate
from edge_agent.watchlist.store import Watchlist


def loosest_within(calibration: Calibration, templates: int, decision: DecisionSettings) -> FmrThreshold:
    """The budget's rule written out on its own: the loosest calibrated point whose false alerts a day,
    at the upper bound of its false-match rate, stay within the budget; else the strictest point."""

    def per_day(point: FmrThreshold) -> float:
        return decision.faces_per_day * min(1.0, decision.track_factor * templates * point.fmr_upper_95)

    within = [p for p in calibration.thresholds if per_day(p) <= decision.false_alerts_per_day]
    if within:
        return max(within, key=lambda p: p.target_fmr)
    return min(calibration.thresholds, key=lambda p: p.target_fmr)


def budget_settings(tmp_path: Path, **decision: Any) -> Settings:
    return load_settings(
        None,
        use_environment=False,
        watchlist={"path": tmp_path / "watchlist.db"},
        events={"path": tmp_path / "events.db"},
        decision=decision,
    )


@pytest.fixture
def live(tmp_path: Path, faces: FacePipeline) -> Iterator[tuple[Settings, LivePipeline]]:
    settings = budget_settings(tmp_path, track_factor=0.5)
    with (
        open_watchlist(settings, faces) as watchlist,
        EventStore.from_settings(settings.events) as store,
    ):
        yield settings, LivePipeline(settings, faces, watchlist, store, "t")


def template(descriptor: npt.NDArray[np.float32], name: str) -> NewTemplate:
    return NewTemplate(descriptor, 1.0, hashlib.sha256(name.encode()).hexdigest())


def _subject(name: str) -> NewSubject:
    return NewSubject(name, "test", "budget test", "case 1", "pytest", datetime.now(UTC) + timedelta(days=7))


def enrolling(
    added: list[str], descriptor: npt.NDArray[np.float32], name: str
) -> Callable[[Watchlist], None]:
    def enrol(watchlist: Watchlist) -> None:
        added.append(watchlist.enroll(_subject(name), [template(descriptor, name)]).id)

    return enrol


def removing(subject_id: str) -> Callable[[Watchlist], None]:
    def remove(watchlist: Watchlist) -> None:
        watchlist.remove(subject_id, "pytest", "budget test")

    return remove


def test_the_threshold_follows_the_watchlist_across_budget_steps(
    live: tuple[Settings, LivePipeline], faces: FacePipeline, project_descriptors: dict[Path, Any]
) -> None:
    settings, pipeline = live
    calibration = faces.embedder.calibration
    assert calibration is not None
    added: list[str] = []
    seen: list[float] = []
    for path, descriptor in sorted(project_descriptors.items()):
        assert pipeline.write_watchlist("enrol", enrolling(added, descriptor, path.stem))
        expected = loosest_within(calibration, len(added), settings.decision)
        assert pipeline.faces.embedder.threshold == expected.threshold, len(added)
        assert isinstance(pipeline.vote, TemporalVote)
        assert pipeline.vote.threshold == expected.threshold  # the vote moves with it
        assert pipeline.operating.chosen.templates == len(added)
        seen.append(expected.threshold)
    assert len(set(seen)) >= 3, seen  # the photos cross at least two steps of the budget
    assert seen == sorted(seen, reverse=True)  # more people, never a looser threshold
    for count in range(len(added), 0, -1):
        assert pipeline.write_watchlist("remove", removing(added[count - 1]))
        expected = loosest_within(calibration, count - 1, settings.decision)
        assert pipeline.faces.embedder.threshold == expected.threshold, count - 1
    assert pipeline.faces.embedder.threshold == max(t.threshold for t in calibration.thresholds)


def test_an_enrolment_by_another_process_moves_the_threshold_at_reload(
    live: tuple[Settings, LivePipeline], faces: FacePipeline, project_descriptors: dict[Path, Any]
) -> None:
    settings, pipeline = live
    calibration = faces.embedder.calibration
    assert calibration is not None
    before = pipeline.faces.embedder.threshold
    with Watchlist.for_settings(settings, 128) as other:  # the CLI's handle, as `watchlist enroll` opens it
        for path, descriptor in sorted(project_descriptors.items())[:8]:
            other.enroll(_subject(path.stem), [template(descriptor, path.stem)])
    pipeline.reopen_watchlist()  # SIGHUP
    expected = loosest_within(calibration, 8, settings.decision)
    assert expected.threshold < before
    assert pipeline.faces.embedder.threshold == expected.threshold


def test_a_budget_the_calibration_cannot_promise_is_reported_not_clamped(
    tmp_path: Path, faces: FacePipeline, project_descriptors: dict[Path, Any]
) -> None:
    settings = budget_settings(tmp_path, false_alerts_per_day=0.001, faces_per_day=5000)
    with open_watchlist(settings, faces) as watchlist, EventStore.from_settings(settings.events) as store:
        for path, descriptor in sorted(project_descriptors.items())[:5]:
            watchlist.enroll(_subject(path.stem), [template(descriptor, path.stem)])
        pipeline = LivePipeline(settings, faces, watchlist, store, "t")
        health = pipeline.operating_health(uptime_s=10.0)
    calibration = faces.embedder.calibration
    assert calibration is not None
    strictest = min(calibration.thresholds, key=lambda t: t.target_fmr)
    assert health.budget_met is False
    assert health.target_fmr == strictest.target_fmr  # the strictest point is used...
    assert health.false_alerts_per_day_upper_95 > 0.001  # ...and what it really costs is stated
    assert health.problem is not None and "cannot be promised" in health.problem
    assert f"{strictest.fmr_upper_95:.3g}" in health.problem


def test_operating_point_command_lists_every_point_and_says_when_the_budget_fails(
    tmp_path: Path, project_descriptors: dict[Path, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[watchlist]\npath = "{tmp_path / "watchlist.db"}"\n[decision]\nfalse_alerts_per_day = 0.001\n'
    )
    with Watchlist.open(tmp_path / "watchlist.db", model_id="dlib_resnet_v1", dimensions=128) as watchlist:
        for path, descriptor in sorted(project_descriptors.items())[:3]:
            watchlist.enroll(_subject(path.stem), [template(descriptor, path.stem)])
    assert main(["--config", str(config), "--json", "watchlist", "operating-point"]) == 0
    answer = json.loads(capsys.readouterr().out)
    settings = load_settings(config, use_environment=False)
    assert answer["templates"] == 3
    assert answer["budget_met"] is False and "cannot be promised" in answer["problem"]
    rates = [row["target_fmr"] for row in answer["points"]]
    assert rates == sorted(rates, reverse=True) and len(rates) >= 9
    for row in answer["points"]:  # the documented arithmetic, per point
        per_track = min(1.0, settings.decision.track_factor * 3 * row["target_fmr"])
        assert row["expected_false_alerts_per_day"] == pytest.approx(
            settings.decision.faces_per_day * per_track, rel=1e-3
        )
    assert main(["--config", str(config), "watchlist", "operating-point", "--faces-per-day", "10"]) == 0
    text = capsys.readouterr().out
    assert "10 strangers' tracks a day" in text and "<- picked" in text


def test_a_fixed_rate_ignores_the_watchlist_size(faces: FacePipeline) -> None:
    calibration = faces.embedder.calibration
    assert calibration is not None
    decision = DecisionSettings(operating_point="target_fmr")
    small = choose_operating_point(calibration, 1, decision, 1e-4)
    large = choose_operating_point(calibration, 1_000_000, decision, 1e-4)
    assert small.chosen.point == large.chosen.point == calibration.for_target(1e-4)
    assert small.budget_met is None and small.problem is None
    assert large.chosen.per_day > small.chosen.per_day  # the cost is still stated


def test_a_bundle_applied_in_process_moves_the_threshold_by_the_next_frame(
    live: tuple[Settings, LivePipeline], faces: FacePipeline, project_descriptors: dict[Path, Any]
) -> None:
    """Fleet commands (apply_bundle, remove_subject) write on the live watchlist itself: the next frame
    notices the index has changed size and recomputes the point."""
    settings, pipeline = live
    calibration = faces.embedder.calibration
    assert calibration is not None
    for path, descriptor in sorted(project_descriptors.items())[:12]:
        pipeline.watchlist.enroll(_subject(path.stem), [template(descriptor, path.stem)])
    assert pipeline.operating.chosen.templates == 0  # not yet looked at
    frame = Frame(np.zeros((120, 160, 3), dtype=np.uint8), "test", 0, datetime.now(UTC))
    pipeline.process(Captured(frame, 0.0))
    expected = loosest_within(calibration, 12, settings.decision)
    assert pipeline.operating.chosen.templates == 12
    assert pipeline.faces.embedder.threshold == expected.threshold

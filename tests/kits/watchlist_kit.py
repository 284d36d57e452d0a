"""Shared pieces of the watchlist tests: a clock the test moves, a watchlist in a test folder, a subject."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist.records import NewSubject
from edge_agent.watchlist.store import Watchlist

MODEL = "dlib_resnet_v1"  # the default embedder's model id, so `edge-agent watchlist show` opens the file


class Clock:
    """A clock the test moves, so expiry is checked without waiting."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def calibrated_threshold(catalog: ModelCatalog, target_fmr: float = 1e-4) -> float:
    """The default embedder build's threshold at `target_fmr`, from the manifest."""
    _, entry = catalog.embedder(MODEL, "auto")
    return catalog.calibration_for(entry).for_target(target_fmr).threshold


def open_watchlist(tmp_path: Path, clock: Clock) -> Watchlist:
    return Watchlist.open(tmp_path / "wl.db", model_id=MODEL, dimensions=128, clock=clock)


def new_subject(name: str, clock: Clock, days: int = 30) -> NewSubject:
    return NewSubject(
        display_name=name,
        watchlist="test",
        reason="test enrolment",
        source="case 1",
        created_by="pytest",
        expires_at=clock.now + timedelta(days=days),
    )

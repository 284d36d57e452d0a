"""The embedding schedule: which shots of a live track are worth an embedding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge_agent.engine.identity import EmbeddingSchedule
from edge_agent.engine.settings import TrackingSettings

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def schedule(**overrides: float) -> EmbeddingSchedule:
    return EmbeddingSchedule(TrackingSettings(**overrides))


def test_embedding_policy_first_shot_then_gain_or_interval() -> None:
    s = schedule(embed_interval_s=0.5, min_quality_gain=0.1)
    track = 1
    assert s.wants(track, 0.4, at(0.0))
    s.embedded(track, 0.4, at(0.0))
    assert not s.wants(track, 0.45, at(0.1))  # too soon, not better enough
    assert s.wants(track, 0.5, at(0.1))  # better by the gain
    s.embedded(track, 0.5, at(0.1))
    assert not s.wants(track, 0.3, at(0.5))
    assert s.wants(track, 0.3, at(0.6))  # the interval passed
    s.embedded(track, 0.3, at(0.6))
    assert not s.wants(track, 0.55, at(0.7))  # the best so far (0.5) still counts
    assert s.wants(track, 0.6, at(0.7))
    assert s.wants(2, 0.1, at(0.7))  # another track's first shot, whatever track 1 had


def test_ended_tracks_are_forgotten() -> None:
    s = schedule(embed_interval_s=10.0)
    s.embedded(1, 0.9, at(0.0))
    s.embedded(2, 0.9, at(0.0))
    assert not s.wants(1, 0.9, at(1.0))
    s.forget([1, 7])
    assert s.tracks == 1
    assert s.wants(1, 0.1, at(1.0))  # a new track that happens to get the id again starts afresh

"""The temporal vote's decision logic, with hand-built candidates (no faces: the rules alone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.engine.settings import DecisionSettings
from edge_agent.engine.vote import TemporalVote
from edge_agent.types import Candidate

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
THRESHOLD = 0.5


def vote(k: int = 3, n: int = 5, cooldown_s: float = 60.0) -> TemporalVote[str]:
    return TemporalVote(DecisionSettings(k=k, n=n, cooldown_s=cooldown_s), THRESHOLD)


def cand(track: int, subject: str | None, distance: float, t: float = 0.0) -> Candidate:
    """One embedding of `track` at T0 + t seconds whose nearest subject is `subject` at `distance`."""
    if subject is None:
        return Candidate(track, T0 + timedelta(seconds=t), None, None, float("inf"))
    return Candidate(track, T0 + timedelta(seconds=t), subject, "wanted", distance)


def test_k_of_n_decides_on_the_kth_agreeing_embedding() -> None:
    v = vote(k=3, n=5)
    assert v.add(cand(1, "alice", 0.30), "a") is None
    assert v.add(cand(1, "bob", 0.90), "b") is None
    assert v.add(cand(1, "alice", 0.20), "c") is None
    decision = v.add(cand(1, "alice", 0.40), "d")
    assert decision is not None
    assert (decision.track_id, decision.subject_id, decision.watchlist) == (1, "alice", "wanted")
    assert (decision.frames_agreeing, decision.frames_seen) == (3, 4)
    assert decision.distance == 0.20
    assert decision.best.distance == 0.20 and decision.best_item == "c"


def test_the_threshold_is_strict() -> None:
    v = vote(k=2, n=3)
    assert v.add(cand(1, "alice", THRESHOLD), "a") is None
    assert v.add(cand(1, "alice", THRESHOLD), "b") is None
    assert v.add(cand(1, "alice", THRESHOLD), "c") is None
    assert not v.settled(1)
    assert v.add(cand(1, "alice", THRESHOLD - 1e-9), "d") is None  # one agreeing so far
    assert v.add(cand(1, "alice", 0.1), "e") is not None


def test_disagreeing_subjects_and_empty_watchlists_do_not_add_up() -> None:
    v = vote(k=3, n=5)
    for subject, item in (("alice", "a"), ("bob", "b"), (None, "c"), ("alice", "d"), ("bob", "e")):
        assert v.add(cand(1, subject, 0.1), item) is None
    assert not v.settled(1)


def test_the_window_slides_so_old_agreement_expires() -> None:
    v = vote(k=3, n=4)
    assert v.add(cand(1, "alice", 0.1), "a") is None
    assert v.add(cand(1, "alice", 0.1), "b") is None
    for item in ("c", "d", "e"):  # pushes both alices out of the 4-long window
        assert v.add(cand(1, "alice", 0.9), item) is None
    assert v.add(cand(1, "alice", 0.1), "f") is None  # only one agreeing in the window now
    assert v.add(cand(1, "alice", 0.1), "g") is None
    decision = v.add(cand(1, "alice", 0.1), "h")
    assert decision is not None
    assert (decision.frames_agreeing, decision.frames_seen) == (3, 4)


def test_one_decision_per_track_and_subject() -> None:
    v = vote(k=2, n=3, cooldown_s=0.0)
    assert v.add(cand(1, "alice", 0.1, 0), "a") is None
    assert v.add(cand(1, "alice", 0.1, 1), "b") is not None
    assert all(v.add(cand(1, "alice", 0.1, t), "x") is None for t in range(2, 10))
    # Another subject in the same track is still decided once.
    assert v.add(cand(1, "bob", 0.1, 10), "c") is None
    assert v.add(cand(1, "bob", 0.1, 11), "d") is not None
    assert v.add(cand(1, "bob", 0.1, 12), "e") is None


def test_cooldown_spans_tracks_in_frame_time() -> None:
    v = vote(k=2, n=3, cooldown_s=60.0)
    v.add(cand(1, "alice", 0.1, 0), "a")
    assert v.add(cand(1, "alice", 0.1, 1), "b") is not None  # event at t=1
    v.add(cand(2, "alice", 0.1, 30), "c")
    assert v.add(cand(2, "alice", 0.1, 31), "d") is None  # 30 s later: cooled down
    assert v.settled(2)  # ... but decided, so track 2 never fires for alice
    assert v.add(cand(2, "alice", 0.1, 200), "e") is None
    # Another subject is not held back by alice's cooldown.
    v.add(cand(2, "bob", 0.1, 32), "f")
    assert v.add(cand(2, "bob", 0.1, 33), "g") is not None
    # A new track past the cooldown (counted from the event, not from the silenced vote) fires again.
    v.add(cand(3, "alice", 0.1, 60.5), "h")
    assert v.add(cand(3, "alice", 0.1, 61.0), "i") is not None


def test_forget_frees_the_state_of_ended_tracks() -> None:
    v = vote(k=3, n=5)
    for track in range(1, 101):
        v.add(cand(track, None, 0.0), f"stranger {track}")
    v.add(cand(200, "alice", 0.1), "a")
    assert v.tracks == 101
    v.forget(range(1, 101))
    assert v.tracks == 1
    v.forget([200, 999])  # unknown ids are fine
    assert v.tracks == 0


def test_forgotten_track_starts_afresh() -> None:
    v = vote(k=2, n=3, cooldown_s=0.0)
    v.add(cand(1, "alice", 0.1), "a")
    v.forget([1])
    assert v.add(cand(1, "alice", 0.1), "b") is None  # the earlier agreement is gone


def test_settled_only_after_a_decision() -> None:
    v = vote(k=2, n=3)
    assert not v.settled(1)
    v.add(cand(1, "alice", 0.1), "a")
    assert not v.settled(1)
    v.add(cand(1, "alice", 0.1), "b")
    assert v.settled(1)
    assert not v.settled(2)


def test_set_threshold_applies_to_the_next_embeddings() -> None:
    v = vote(k=2, n=3)
    v.add(cand(1, "alice", 0.45), "a")
    v.set_threshold(0.4)
    assert v.add(cand(1, "alice", 0.45), "b") is None
    assert v.threshold == 0.4
    with pytest.raises(ValueError, match="threshold"):
        v.set_threshold(float("nan"))
    with pytest.raises(ValueError, match="threshold"):
        vote().set_threshold(0.0)

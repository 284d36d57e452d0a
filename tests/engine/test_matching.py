"""The temporal vote's decision logic, with hand-built candidates (no faces: the rules alone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.engine.settings import DecisionSettings
from edge_agent.engine.vote import TemporalVote
from edge_agent.types import Candidate
from edge_agent.vision.manifest import FmrThreshold

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
THRESHOLD = 0.5
SINGLE_THRESHOLD = 0.3


def point(target_fmr: float, threshold: float) -> FmrThreshold:
    """A calibration point as the manifest states one (the counts are made up, the rules ignore them)."""
    return FmrThreshold(
        target_fmr=target_fmr,
        threshold=threshold,
        impostor_pairs=300_000,
        false_matches=round(target_fmr * 300_000),
        fmr_upper_95=min(1.0, 1.5 * target_fmr),
        resolved=True,
        genuine_pairs=3_000,
        true_match_rate=0.95,
    )


POINT = point(1e-4, THRESHOLD)
SINGLE = point(1e-5, SINGLE_THRESHOLD)


def vote(
    k: int = 3, n: int = 5, cooldown_s: float = 60.0, single_look: FmrThreshold | None = None
) -> TemporalVote[str]:
    return TemporalVote(DecisionSettings(k=k, n=n, cooldown_s=cooldown_s), POINT, single_look)


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
    assert decision.agreeing_items == ("a", "c", "d")
    assert decision.point == POINT  # k of n: the target's calibration point


def test_k_of_n_still_decides_when_a_single_look_point_is_set() -> None:
    v = vote(k=2, n=5, single_look=SINGLE)
    assert v.add(cand(1, "alice", 0.45), "a") is None  # under the target's threshold, not the single look's
    decision = v.add(cand(1, "alice", SINGLE_THRESHOLD), "b")  # the single-look threshold is strict too
    assert decision is not None
    assert decision.point == POINT
    assert decision.frames_agreeing == 2


def test_the_threshold_is_strict() -> None:
    v = vote(k=2, n=4)
    assert v.add(cand(1, "alice", THRESHOLD), "a") is None
    assert v.add(cand(1, "alice", THRESHOLD), "b") is None
    assert v.add(cand(1, "alice", THRESHOLD), "c") is None
    assert not v.settled(1)  # no decision, and the window is not full yet
    assert v.add(cand(1, "alice", THRESHOLD - 1e-9), "d") is None  # one agreeing so far
    assert v.settled(1) and v.looked_enough(1)  # n looks without a decision
    decision = v.add(cand(1, "alice", 0.1), "e")  # ... and the window still slides on to one
    assert decision is not None
    assert (decision.frames_agreeing, decision.frames_seen) == (2, 4)
    assert decision.agreeing_items == ("d", "e")


def test_disagreeing_subjects_and_empty_watchlists_do_not_add_up() -> None:
    v = vote(k=3, n=6)
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


def test_settled_after_a_decision() -> None:
    v = vote(k=2, n=3)
    assert not v.settled(1)
    v.add(cand(1, "alice", 0.1), "a")
    assert not v.settled(1)
    v.add(cand(1, "alice", 0.1), "b")
    assert v.settled(1)
    assert not v.looked_enough(1)  # settled by the decision: two looks of three
    assert not v.settled(2)


def test_settled_after_n_looks_without_a_decision() -> None:
    v = vote(k=3, n=4)
    looks = [("bob", 0.2), (None, 0.0), ("alice", 0.45), ("alice", 0.9)]
    for step, (subject, distance) in enumerate(looks):
        assert not v.looked_enough(1) and not v.settled(1)
        assert v.add(cand(1, subject, distance, step), f"look {step}") is None
    assert v.looked_enough(1) and v.settled(1)  # nobody on the list, as far as four looks can tell
    assert not v.looked_enough(2) and not v.settled(2)
    v.forget([1])
    assert not v.looked_enough(1) and not v.settled(1)


def test_a_single_strong_look_decides_at_once() -> None:
    v = vote(k=3, n=5, single_look=SINGLE)
    assert v.add(cand(1, "alice", 0.45), "a") is None  # agrees under the target only
    decision = v.add(cand(1, "alice", 0.25), "b")
    assert decision is not None
    assert (decision.subject_id, decision.distance, decision.best_item) == ("alice", 0.25, "b")
    assert (decision.frames_agreeing, decision.frames_seen) == (1, 2)
    assert decision.agreeing_items == ("b",)  # the look that decided, not the weaker one before it
    assert decision.point == SINGLE
    assert v.settled(1)
    assert v.add(cand(1, "alice", 0.1), "c") is None  # still once per (track, subject)
    # On a track of its own, the first look is enough.
    v = vote(k=3, n=5, single_look=SINGLE)
    first = v.add(cand(2, "bob", SINGLE_THRESHOLD - 1e-9), "x")
    assert first is not None
    assert (first.frames_agreeing, first.frames_seen, first.point) == (1, 1, SINGLE)


def test_a_single_strong_look_is_held_back_by_the_cooldown() -> None:
    v = vote(k=3, n=5, cooldown_s=60.0, single_look=SINGLE)
    assert v.add(cand(1, "alice", 0.1, 0), "a") is not None
    assert v.add(cand(2, "alice", 0.1, 30), "b") is None  # 30 s later, another track
    assert v.settled(2)
    assert v.add(cand(3, "alice", 0.1, 61), "c") is not None


@pytest.mark.parametrize("single_threshold", [THRESHOLD, 0.6])
def test_a_single_look_point_not_stricter_than_the_target_is_ignored(single_threshold: float) -> None:
    v = vote(k=3, n=5, single_look=point(1e-3, single_threshold))
    assert v.single_look is None
    assert v.add(cand(1, "alice", 0.05), "a") is None
    assert v.add(cand(1, "alice", 0.05), "b") is None
    decision = v.add(cand(1, "alice", 0.05), "c")
    assert decision is not None
    assert (decision.frames_agreeing, decision.point) == (3, POINT)


def test_set_points_applies_to_the_next_looks() -> None:
    v = vote(k=2, n=3)
    v.add(cand(1, "alice", 0.45), "a")
    stricter = point(1e-5, 0.4)
    v.set_points(stricter)
    assert (v.threshold, v.point, v.single_look) == (0.4, stricter, None)
    assert v.add(cand(1, "alice", 0.45), "b") is None  # neither look agrees under 0.4 now
    decision = v.add(cand(1, "alice", 0.35), "c")
    assert decision is None  # one agreeing look (c): a no longer counts
    decision = v.add(cand(1, "alice", 0.39), "d")
    assert decision is not None and decision.point == stricter
    # A single-look point set later is used from the next look on, and can be taken away again.
    v.set_points(POINT, SINGLE)
    strong = v.add(cand(2, "bob", 0.2), "e")
    assert strong is not None and strong.point == SINGLE
    v.set_points(POINT)
    assert v.add(cand(3, "carol", 0.2), "f") is None


def test_set_points_refuses_a_threshold_that_is_no_distance() -> None:
    v = vote()
    with pytest.raises(ValueError, match="threshold"):
        v.set_points(point(1e-4, float("inf")))
    assert v.threshold == THRESHOLD  # the vote keeps its point
    with pytest.raises(ValueError, match="threshold"):
        TemporalVote(DecisionSettings(), point(1e-4, float("inf")))
    with pytest.raises(ValueError, match="threshold"):
        point(1e-4, float("nan"))  # the manifest's model refuses it before the vote sees it
    with pytest.raises(ValueError, match="threshold"):
        point(1e-4, 0.0)

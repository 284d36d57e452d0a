"""The look schedule: which tracked faces are aligned and embedded in a frame, and which looks may vote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from edge_agent.engine.identity import RECENT_LOOKS, LookSchedule
from edge_agent.engine.settings import TrackingSettings
from edge_agent.types import Box, Face, TrackedFace
from edge_agent.vision.embed import Descriptor

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def schedule(**overrides: float) -> LookSchedule:
    return LookSchedule(TrackingSettings.model_validate(overrides))


def tracked(track_id: int, size: float = 60.0) -> TrackedFace:
    """Track `track_id`'s face: a square box side by side with the others, keypoints of a frontal face."""
    x, y = 100.0 * track_id, 100.0
    rel = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.5, 0.75], [0.05, 0.4], [0.95, 0.4]])
    keypoints = (np.array([x, y]) + rel * size).astype(np.float32)
    return TrackedFace(track_id, Face(Box(x, y, x + size, y + size), keypoints, 0.9), hits=1)


def descriptor(value: float) -> Descriptor:
    return np.full(128, value, np.float32)


def picked(s: LookSchedule, waiting: list[tuple[int, bool]], seconds: float) -> list[int]:
    """The track ids `pick` chooses, in its order, from (track id, settled) pairs."""
    return [face.track_id for face in s.pick([(tracked(i), settled) for i, settled in waiting], at(seconds))]


def test_the_first_look_at_a_track_is_always_due() -> None:
    s = schedule(embed_interval_s=10.0, recheck_interval_s=10.0)
    assert picked(s, [(1, False)], 0.0) == [1]
    s.looked(1, at(0.0), descriptor(0.1))
    # Another track's first look is due at once, settled or not, whatever track 1 had.
    assert picked(s, [(1, False), (2, False), (3, True)], 0.0) == [2, 3]
    assert s.tracks == 1  # picking is not looking: only `looked` records a track


def test_a_track_being_identified_is_due_again_after_embed_interval() -> None:
    s = schedule(embed_interval_s=0.1, recheck_interval_s=0.5)
    s.looked(1, at(0.0), descriptor(0.1))
    assert picked(s, [(1, False)], 0.0) == []
    assert picked(s, [(1, False)], 0.099) == []
    assert picked(s, [(1, False)], 0.1) == [1]  # the interval is inclusive
    s.looked(1, at(0.1), descriptor(0.1))
    assert picked(s, [(1, False)], 0.15) == []  # counted from the latest look
    assert picked(s, [(1, False)], 0.2) == [1]


def test_a_settled_track_is_rechecked_after_recheck_interval() -> None:
    s = schedule(embed_interval_s=0.1, recheck_interval_s=0.5)
    s.looked(1, at(0.0), descriptor(0.1))
    assert picked(s, [(1, True)], 0.1) == []  # an unsettled track would be due now
    assert picked(s, [(1, True)], 0.499) == []
    assert picked(s, [(1, True)], 0.5) == [1]
    s.looked(1, at(0.5), descriptor(0.1))
    assert picked(s, [(1, True)], 0.9) == []
    assert picked(s, [(1, False)], 0.6) == [1]  # unsettled again (say, after a split): the short interval


def test_a_look_whose_chip_failed_its_gates_still_waits_the_interval() -> None:
    s = schedule(embed_interval_s=0.1)
    s.looked(1, at(0.0), None)
    assert s.tracks == 1
    assert s.recent(1) == ()  # no descriptor was kept
    assert picked(s, [(1, False)], 0.05) == []
    assert picked(s, [(1, False)], 0.1) == [1]


@pytest.mark.parametrize(
    ("budget", "expected"), [(64, [3, 2, 1, 8, 4, 5]), (4, [3, 2, 1, 8]), (2, [3, 2]), (1, [3])]
)
def test_the_budget_goes_to_unsettled_then_never_looked_then_longest_waiting(
    budget: int, expected: list[int]
) -> None:
    s = schedule(embed_interval_s=0.1, recheck_interval_s=0.5, looks_per_frame=budget)
    s.looked(1, at(9.8), descriptor(0.1))  # unsettled, waited 0.2 s
    s.looked(2, at(9.5), descriptor(0.1))  # unsettled, waited 0.5 s
    s.looked(4, at(0.0), descriptor(0.1))  # settled, waited 10 s
    s.looked(5, at(9.0), descriptor(0.1))  # settled, waited 1 s
    s.looked(6, at(9.95), descriptor(0.1))  # unsettled, not due (0.05 s)
    s.looked(7, at(9.8), descriptor(0.1))  # settled, not due (0.2 s)
    waiting = [(1, False), (2, False), (3, False), (4, True), (5, True), (6, False), (7, True), (8, True)]
    # 3 and 8 were never looked at; 6 and 7 are not due and take no part of the budget.
    assert picked(s, waiting, 10.0) == expected


def test_ties_go_to_the_lower_track_id() -> None:
    s = schedule(looks_per_frame=2)
    for track_id in (5, 3, 4):
        s.looked(track_id, at(0.0), descriptor(0.1))
    assert picked(s, [(9, False), (7, False)], 1.0) == [7, 9]  # never looked at, both
    assert picked(s, [(5, False), (4, False), (3, False)], 1.0) == [3, 4]  # waited as long, all three


def test_with_many_faces_the_budget_takes_them_in_turn() -> None:
    s = schedule(embed_interval_s=0.0, looks_per_frame=2)
    waiting = [(track_id, False) for track_id in range(1, 7)]
    looks: list[int] = []
    for frame in range(6):
        chosen = picked(s, waiting, frame * 0.04)
        assert len(chosen) == 2
        for track_id in chosen:
            s.looked(track_id, at(frame * 0.04), descriptor(0.1))
        looks += chosen
    # Every face is looked at once in each three frames: those that waited longest come first.
    assert sorted(looks[:6]) == sorted(looks[6:]) == [1, 2, 3, 4, 5, 6]
    assert looks[6:] == looks[:6]


def test_recent_keeps_the_latest_descriptors() -> None:
    s = schedule()
    assert s.recent(1) == ()
    for step in range(RECENT_LOOKS + 2):
        s.looked(1, at(step), descriptor(float(step)))
    recent = s.recent(1)
    assert len(recent) == RECENT_LOOKS
    assert [float(d[0]) for d in recent] == [float(step) for step in range(2, RECENT_LOOKS + 2)]
    assert s.recent(2) == ()


def test_ended_tracks_are_forgotten() -> None:
    s = schedule(embed_interval_s=10.0)
    s.looked(1, at(0.0), descriptor(0.1))
    s.looked(2, at(0.0), descriptor(0.2))
    assert picked(s, [(1, False)], 1.0) == []
    s.forget([1, 7])  # unknown ids are fine
    assert s.tracks == 1
    assert s.recent(1) == ()
    assert len(s.recent(2)) == 1
    assert picked(s, [(1, False), (2, False)], 1.0) == [1]  # a track that got the id again starts afresh
    s.forget([2])
    assert s.tracks == 0


def test_a_split_starts_the_new_track_and_forgets_the_old() -> None:
    s = schedule(embed_interval_s=0.1, split_hold_s=0.6)
    s.looked(1, at(0.0), descriptor(0.1))
    s.looked(1, at(0.5), descriptor(0.1))
    s.split_off(1, 2, at(1.0))
    assert s.tracks == 1
    assert s.recent(1) == ()
    assert s.recent(2) == ()  # the look that caused the split is recorded by the caller (`looked`)
    assert picked(s, [(2, False)], 1.05) == []  # the split was itself a look
    assert picked(s, [(2, False)], 1.1) == [2]


def test_looks_within_split_hold_of_a_split_do_not_vote() -> None:
    s = schedule(split_hold_s=0.6)
    s.looked(1, at(0.0), descriptor(0.1))
    assert s.votes(1, at(0.0))  # never split: every look votes
    assert s.votes(99, at(0.0))  # unknown track: nothing holds it back
    s.split_off(1, 2, at(1.0))
    s.looked(2, at(1.0), descriptor(0.9))
    assert not s.votes(2, at(1.0))
    assert not s.votes(2, at(1.59))
    assert s.votes(2, at(1.6))
    assert s.votes(2, at(5.0))
    # A further split during the hold starts another hold, from the new split.
    s.split_off(2, 3, at(1.3))
    assert not s.votes(3, at(1.6))
    assert not s.votes(3, at(1.89))
    assert s.votes(3, at(1.9))
    assert s.tracks == 1


def test_split_hold_zero_lets_every_look_vote() -> None:
    s = schedule(split_hold_s=0.0)
    s.split_off(1, 2, at(1.0))
    assert s.votes(2, at(1.0))


def test_looks_in_a_split_hold_do_not_settle_the_new_track() -> None:
    """The first looks after a split cannot vote, so they do not count towards settling the track; the
    looks after the hold do."""
    s = schedule(split_hold_s=0.5)
    s.split_off(1, 2, at(0.0))
    for step in range(1, 5):
        s.looked(2, at(0.1 * step), descriptor(0.1))
    assert s.attempts(2) == 0
    s.looked(2, at(0.6), descriptor(0.1))
    assert s.attempts(2) == 1


def test_gate_refusals_are_counted_until_the_next_look() -> None:
    s = schedule(embed_interval_s=10.0, recheck_interval_s=10.0)
    s.refused(1)
    s.refused(1)
    assert (s.refused_in_a_row(1), s.attempts(1)) == (2, 0)
    assert picked(s, [(1, False)], 0.2) == [1]  # its first look is due as soon as it passes the gates
    s.looked(1, at(0.2), descriptor(0.1))
    assert (s.refused_in_a_row(1), s.attempts(1)) == (0, 1)

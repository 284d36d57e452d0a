"""The decision stage: a watchlist match is reported when a track's looks are strong enough evidence.

One look under the threshold is not enough: a blurred or half-turned shot of a stranger can land close to
somebody on the list. So a look counts by its strength:

- **k of n**: k of the track's last n looks name the same subject under the threshold calibrated for the
  target false-match rate. The event states that rate (the per-comparison rate of the threshold every
  agreeing look passed; not raised to the k-th power, because looks of one face are not independent).
- **one strong look**: a single look under the threshold calibrated for a stricter rate (ten times
  stricter than the operating point under the alert budget, engine/budget.py: 1e-5 beside 1e-4; a rate
  whose threshold is not below the target's is not used) decides at once. The event states that
  stricter rate and its threshold, which is what the look was compared with.

Either way the event's `threshold` and `false_match_rate` are the calibration point the deciding
evidence passed (models/manifest.toml, measured on lfw-devtrain), so the rate stated stays true. A
(track, subject) is reported once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from edge_agent.engine.settings import DecisionSettings
from edge_agent.types import Candidate
from edge_agent.vision.manifest import FmrThreshold

T = TypeVar("T")


@dataclass(frozen=True)
class Decision(Generic[T]):
    """A decided match: k of the track's last n looks named this subject under the target threshold, or
    one look did under the stricter single-look threshold (`frames_agreeing` 1; `point` says which)."""

    track_id: int
    subject_id: str
    watchlist: str
    distance: float  # best (smallest) among the agreeing embeddings
    frames_agreeing: int  # agreeing embeddings in the window
    frames_seen: int  # embeddings in the window (<= n)
    best: Candidate  # the agreeing candidate with the smallest distance
    best_item: T  # what the caller attached to that candidate (the described face)
    point: FmrThreshold  # the calibrated threshold the deciding looks passed (target or single look)
    agreeing_items: tuple[T, ...] = ()  # what the caller attached to every agreeing candidate, oldest first


class TemporalVote(Generic[T]):
    """k of the last n embeddings of a track must name the same subject under the calibrated threshold.

    State is kept per live track only (its window and the subjects it has decided) and is dropped by
    `forget` when the track ends, so nothing of a person who did not match outlives their track. Across
    tracks only the time of each subject's last decision is kept, for the cooldown.
    """

    def __init__(
        self, settings: DecisionSettings, point: FmrThreshold, single_look: FmrThreshold | None = None
    ) -> None:
        self.settings = settings
        self.set_points(point, single_look)
        self._windows: dict[int, deque[tuple[Candidate, T]]] = {}
        self._decided: dict[int, set[str]] = {}  # track id → subjects decided in it (event or cooled down)
        self._last_event: dict[str, datetime] = {}  # subject → frame time of its last decision

    def add(self, candidate: Candidate, item: T) -> Decision[T] | None:
        """Count one embedding of a track; a `Decision` the first time k in its window agree on a subject.

        No decision when (track, subject) was already decided, or when the subject had a decision (from any
        track) less than `cooldown_s` of frame time before `candidate.captured_at`. A vote that the cooldown
        silences still marks (track, subject) as decided, so it does not fire later in the same track.
        """
        window = self._windows.setdefault(candidate.track_id, deque(maxlen=self.settings.n))
        window.append((candidate, item))
        subject = candidate.subject_id
        if subject is None or not self._agrees(candidate, subject):
            return None
        decided = self._decided.setdefault(candidate.track_id, set())
        if subject in decided:
            return None
        agreeing = [(c, i) for c, i in window if self._agrees(c, subject)]
        point = self.point
        if self.single_look is not None and candidate.distance < self.single_look.threshold:
            point, agreeing = self.single_look, [(candidate, item)]
        elif len(agreeing) < self.settings.k:
            return None
        decided.add(subject)
        last = self._last_event.get(subject)
        cooldown = timedelta(seconds=self.settings.cooldown_s)
        if last is not None and candidate.captured_at - last < cooldown:
            return None
        self._last_event[subject] = candidate.captured_at
        best, best_item = min(agreeing, key=lambda pair: pair[0].distance)
        assert best.watchlist is not None  # a candidate with a subject has a watchlist (see Candidate)
        return Decision(
            track_id=candidate.track_id,
            subject_id=subject,
            watchlist=best.watchlist,
            distance=best.distance,
            frames_agreeing=len(agreeing),
            frames_seen=len(window),
            best=best,
            best_item=best_item,
            point=point,
            agreeing_items=tuple(item for _, item in agreeing),
        )

    def settled(self, track_id: int) -> bool:
        """Whether the track has reached a decision (reported, or silenced by the cooldown), or has had n
        looks without one (`looked_enough`)."""
        return bool(self._decided.get(track_id)) or self.looked_enough(track_id)

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop everything kept for these (ended) tracks."""
        for track_id in track_ids:
            self._windows.pop(track_id, None)
            self._decided.pop(track_id, None)

    def set_points(self, point: FmrThreshold, single_look: FmrThreshold | None = None) -> None:
        """Use these calibrated points from the next `add` on (e.g. after a fleet `set_fmr`). A single-look
        point that is not stricter than `point` is not used."""
        self.threshold = _checked(point.threshold)
        self.point = point
        self.single_look = stricter_only(point, single_look)

    def looked_enough(self, track_id: int) -> bool:
        """Whether the track's window is full without a decision: nobody on the list, as far as n looks
        can tell (it is then re-checked at the slower rate, like a decided track)."""
        window = self._windows.get(track_id)
        return window is not None and len(window) >= self.settings.n

    @property
    def tracks(self) -> int:
        """Tracks with state kept (for memory checks)."""
        return len(self._windows.keys() | self._decided.keys())

    def _agrees(self, candidate: Candidate, subject: str) -> bool:
        return candidate.subject_id == subject and candidate.distance < self.threshold


def stricter_only(point: FmrThreshold, single_look: FmrThreshold | None) -> FmrThreshold | None:
    """`single_look` where its threshold is below `point`'s (a single look may decide there), else None."""
    if single_look is not None and single_look.threshold < point.threshold:
        return single_look
    return None


def _checked(threshold: float) -> float:
    if not (math.isfinite(threshold) and threshold > 0.0):
        raise ValueError(f"threshold must be a finite distance > 0, got {threshold}")
    return threshold

"""The identity stage: which tracked faces to look at (align and embed) in this frame, and whether a
track still shows the person it showed before.

Looks are the expensive part of a frame (alignment costs more than the network), so a face is aligned only
when it will be embedded. A track still being identified is due for a look every `embed_interval_s` of
frame time; a settled one (decided, or judged nobody on the list) keeps being checked every
`recheck_interval_s`. Each frame embeds at most `looks_per_frame` due faces, tracks being identified
first, then the ones waiting longest: with many faces the budget, not a timer, sets how often each is
looked at.

A look that fits none of the track's recent looks (farther than the embedder's threshold at
`tracking.split_fmr` from each) is another person under the same box: a hand-over at a counter, a cut, two
people crossing. The track is split: the old identity ends (its vote and looks are forgotten) and the face
goes on under a new track id, with its own search and vote. At a hand-over the leaving and the arriving
face share the box for a moment, so the looks of the first `tracking.split_hold_s` after a split only
confirm it (a further split) and are not counted by the vote: an event never shows the hand-over's box.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from edge_agent.engine.clock import StageClock
from edge_agent.engine.counters import RunCounters
from edge_agent.engine.settings import TrackingSettings
from edge_agent.engine.stages import SplittableTracker, VoteState
from edge_agent.types import Frame, TrackedFace
from edge_agent.vision.embed import Descriptor
from edge_agent.vision.faces import DescribedFace, FacePipeline
from edge_agent.vision.quality import assess, detector_gate_failures
from edge_agent.vision.settings import QualitySettings

RECENT_LOOKS = 3
"""How many of a track's latest descriptors a new look is compared with before the track is split."""


@dataclass(frozen=True)
class Shot:
    """A tracked face that passed the quality gates, aligned and embedded. It keeps the size of its frame,
    never the frame: a track's vote window holds n shots."""

    tracked: TrackedFace
    frame_size: tuple[int, int]
    described: DescribedFace
    votes: bool = True  # False for the looks just after a split (`tracking.split_hold_s`): continuity only


@dataclass(slots=True)
class _Looks:
    last_at: datetime | None  # None: refused by the detector's gates so far, never looked at
    attempts: int = 0  # looks taken outside a split's hold
    refused_in_a_row: int = 0  # faces refused by a detector gate since the last look
    recent: deque[Descriptor] = field(default_factory=lambda: deque(maxlen=RECENT_LOOKS))
    split_at: datetime | None = None  # when this track was split off another


class LookSchedule:
    """Per live track: when it was last looked at and its latest descriptors (memory only, forgotten
    with the track)."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self._tracks: dict[int, _Looks] = {}

    @property
    def tracks(self) -> int:
        """Tracks with at least one look that have not been forgotten."""
        return len(self._tracks)

    def pick(self, waiting: Iterable[tuple[TrackedFace, bool]], at: datetime) -> list[TrackedFace]:
        """Of the (face, settled) pairs that passed the detector's gates, the ones to look at now, within
        `looks_per_frame`: due ones only, unsettled first, then never looked at, then longest waiting."""
        due = []
        for tracked, settled in waiting:
            seen = self._tracks.get(tracked.track_id)
            interval = self.settings.recheck_interval_s if settled else self.settings.embed_interval_s
            if seen is None or seen.last_at is None:
                due.append(((settled, 0, 0.0), tracked))
            elif (waited := (at - seen.last_at).total_seconds()) >= interval:
                due.append(((settled, 1, -waited), tracked))
        due.sort(key=lambda pair: (pair[0], pair[1].track_id))
        return [tracked for _, tracked in due[: self.settings.looks_per_frame]]

    def recent(self, track_id: int) -> tuple[Descriptor, ...]:
        seen = self._tracks.get(track_id)
        return tuple(seen.recent) if seen is not None else ()

    def split_off(self, old_id: int, new_id: int, at: datetime) -> None:
        """`new_id` was split off `old_id` at `at`: the old history goes, the new one starts now."""
        self.forget([old_id])
        self._tracks[new_id] = _Looks(at, split_at=at)

    def votes(self, track_id: int, at: datetime) -> bool:
        """Whether a look taken `at` may count in the track's vote: not within `split_hold_s` of a split."""
        seen = self._tracks.get(track_id)
        if seen is None or seen.split_at is None:
            return True
        return (at - seen.split_at).total_seconds() >= self.settings.split_hold_s

    def attempts(self, track_id: int) -> int:
        """Looks taken at the track since it started or was split off, not counting those within a split's
        hold (which cannot vote)."""
        seen = self._tracks.get(track_id)
        return seen.attempts if seen is not None else 0

    def refused_in_a_row(self, track_id: int) -> int:
        """Faces of the track refused by a detector gate since its last look."""
        seen = self._tracks.get(track_id)
        return seen.refused_in_a_row if seen is not None else 0

    def refused(self, track_id: int) -> None:
        """The track's face was refused by a detector gate (size, truncation, pose)."""
        self._tracks.setdefault(track_id, _Looks(None)).refused_in_a_row += 1

    def looked(self, track_id: int, at: datetime, descriptor: Descriptor | None) -> None:
        """Record a look at the track (`descriptor` None: the chip failed its gates, wait anyway)."""
        seen = self._tracks.setdefault(track_id, _Looks(at))
        if self.votes(track_id, at):
            seen.attempts += 1
        seen.last_at = at
        seen.refused_in_a_row = 0
        if descriptor is not None:
            seen.recent.append(descriptor)

    def forget(self, track_ids: Iterable[int]) -> None:
        """Ended tracks: their history goes with them."""
        for track_id in track_ids:
            self._tracks.pop(track_id, None)


class IdentityStage:
    """Looks at the due faces of a frame and keeps each track to one person (see the module docstring)."""

    def __init__(
        self,
        faces: FacePipeline,
        schedule: LookSchedule,
        tracker: SplittableTracker,
        vote: VoteState,
        gates: QualitySettings,
        split_distance: float,
        settle_after: int,
        counters: RunCounters,
    ) -> None:
        self.faces = faces
        self.schedule = schedule
        self.tracker = tracker
        self.vote = vote
        self.gates = gates
        self.split_distance = split_distance
        self.settle_after = settle_after
        self.counters = counters

    def settled(self, track_id: int) -> bool:
        """Whether the track is only re-checked now: its vote is settled, or `settle_after` looks came
        without settling it (a face whose chips keep failing their gates must not hold the budget). Looks
        within a split's hold do not count: they cannot vote."""
        return self.vote.settled(track_id) or self.schedule.attempts(track_id) >= self.settle_after

    def wants_every_frame(self, track_id: int) -> bool:
        """Whether the track's face should be searched in every frame: it is not settled, and its face has
        not been refused by a detector gate `settle_after` frames in a row (a face too small, cut off or
        turned away waits for the sweep until it passes)."""
        if self.settled(track_id):
            return False
        return self.schedule.refused_in_a_row(track_id) < self.settle_after

    def shots(self, frame: Frame, tracked: list[TrackedFace], clock: StageClock) -> list[Shot]:
        size = (frame.width, frame.height)
        waiting = []
        for item in tracked:
            refused = detector_gate_failures(item.face, size, self.gates)
            if refused:
                self.counters.rejected(refused[0])
                self.schedule.refused(item.track_id)
            else:
                waiting.append((item, self.settled(item.track_id)))
        shots = []
        for item in self.schedule.pick(waiting, frame.captured_at):
            with clock.time("align"):
                chip, landmarks = self.faces.aligner.align(frame.image, item.face)
                quality = assess(item.face, chip)
            refused = quality.rejections(self.gates)
            if refused:
                self.counters.rejected(refused[0])
                self.schedule.looked(item.track_id, frame.captured_at, None)
                continue
            with clock.time("embed"):
                descriptor = self.faces.embedder.embed(chip)
            item = self._same_person(item, descriptor, frame.captured_at)
            self.schedule.looked(item.track_id, frame.captured_at, descriptor)
            described = DescribedFace(item.face, landmarks, chip, quality, descriptor)
            shots.append(Shot(item, size, described, self.schedule.votes(item.track_id, frame.captured_at)))
        return shots

    def _same_person(self, item: TrackedFace, descriptor: Descriptor, at: datetime) -> TrackedFace:
        """The face under its own track, or under a new one split off when it fits none of the track's
        recent looks."""
        recent = self.schedule.recent(item.track_id)
        distance = self.faces.embedder.distance
        if not recent or any(distance(descriptor, old) < self.split_distance for old in recent):
            return item
        new_id = self.tracker.split(item.track_id)
        self.vote.forget([item.track_id])
        self.schedule.split_off(item.track_id, new_id, at)
        self.counters.splits += 1
        self.counters.tracks += 1
        return replace(item, track_id=new_id, hits=1)

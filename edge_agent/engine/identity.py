"""What to embed, and when: the shots of live tracks that are worth an embedding.

A track is embedded at its first good shot, then again only when a shot is clearly better (by
`tracking.min_quality_gain`) or `tracking.embed_interval_s` of frame time after the last one, until its
vote settles. The tracker only says which face is whose; this schedule is kept here, beside the quality
gates, so that following one frame's faces to their embeddings stays in one module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from edge_agent.engine.clock import StageClock
from edge_agent.engine.counters import RunCounters
from edge_agent.engine.settings import TrackingSettings
from edge_agent.engine.vote import TemporalVote
from edge_agent.types import Frame, TrackedFace
from edge_agent.vision.faces import DescribedFace, FacePipeline
from edge_agent.vision.quality import assess, detector_gate_failures
from edge_agent.vision.settings import QualitySettings


@dataclass(frozen=True)
class Shot:
    """A tracked face that passed the quality gates, aligned and embedded. It keeps the size of its frame,
    never the frame: a track's vote window holds n shots."""

    tracked: TrackedFace
    frame_size: tuple[int, int]
    described: DescribedFace


@dataclass(slots=True)
class _Embedded:
    best_quality: float  # quality score of the best shot embedded so far
    last_at: datetime


class EmbeddingSchedule:
    """Per live track: whether a shot of a given quality, taken at a given frame time, is worth embedding."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self._tracks: dict[int, _Embedded] = {}

    @property
    def tracks(self) -> int:
        """Tracks with at least one embedded shot that have not been forgotten."""
        return len(self._tracks)

    def wants(self, track_id: int, quality_score: float, at: datetime) -> bool:
        """Yes for the track's first shot; after that when the quality score rose by `min_quality_gain`
        over the best shot embedded so far, or when `embed_interval_s` of frame time passed since the last
        one. The caller has already judged the shot good enough."""
        seen = self._tracks.get(track_id)
        if seen is None:
            return True
        if quality_score >= seen.best_quality + self.settings.min_quality_gain:
            return True
        return (at - seen.last_at).total_seconds() >= self.settings.embed_interval_s

    def embedded(self, track_id: int, quality_score: float, at: datetime) -> None:
        """Record that the track's shot of quality `quality_score`, taken `at`, was embedded."""
        seen = self._tracks.get(track_id)
        if seen is None:
            self._tracks[track_id] = _Embedded(quality_score, at)
            return
        seen.best_quality = max(seen.best_quality, quality_score)
        seen.last_at = at

    def forget(self, track_ids: Iterable[int]) -> None:
        """Ended tracks: their history goes with them."""
        for track_id in track_ids:
            self._tracks.pop(track_id, None)


class IdentityStage:
    """Picks which tracked faces to embed: tracks still without a decision, whose face passes the quality
    gates and is worth it by the `EmbeddingSchedule`."""

    def __init__(
        self,
        faces: FacePipeline,
        schedule: EmbeddingSchedule,
        vote: TemporalVote[Shot],
        gates: QualitySettings,
        counters: RunCounters,
    ) -> None:
        self.faces = faces
        self.schedule = schedule
        self.vote = vote
        self.gates = gates
        self.counters = counters

    def shots(self, frame: Frame, tracked: list[TrackedFace], clock: StageClock) -> list[Shot]:
        shots = []
        for item in tracked:
            if self.vote.settled(item.track_id):
                continue
            refused = detector_gate_failures(item.face, (frame.width, frame.height), self.gates)
            if refused:
                self.counters.rejected(refused[0])
                continue
            with clock.time("align"):
                chip, landmarks = self.faces.aligner.align(frame.image, item.face)
                quality = assess(item.face, chip)
            refused = quality.rejections(self.gates)
            if refused:
                self.counters.rejected(refused[0])
                continue
            if not self.schedule.wants(item.track_id, quality.score, frame.captured_at):
                continue
            with clock.time("embed"):
                descriptor = self.faces.embedder.embed(chip)
            self.schedule.embedded(item.track_id, quality.score, frame.captured_at)
            described = DescribedFace(item.face, landmarks, chip, quality, descriptor)
            shots.append(Shot(item, (frame.width, frame.height), described))
        return shots

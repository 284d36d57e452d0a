"""The live pipeline: frame → detect → track → quality → embed → match → k-of-n vote → durable event.

This is the one place where capture, vision, the watchlist and events meet; each stage is a plain object
with one main method, and the values between them are the typed ones of `edge_agent.types`.

Privacy: a face that does not match lives only in this process's memory, in the window of its live
track (forgotten when the track ends). Only a decided match is written (outbox + review copy) and sent.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_agent.capture.runner import Captured
from edge_agent.config import QualitySettings, Settings
from edge_agent.engine.clock import StageClock
from edge_agent.engine.tracking import Tracker
from edge_agent.engine.vote import Decision, TemporalVote
from edge_agent.events.outbox import HELD_MAX, RETRY_S, EventStore
from edge_agent.events.schema import FalseMatchRate, MatchEvent, Models, Quality
from edge_agent.events.storage import WriteState, storage_fault
from edge_agent.types import Box, Candidate, Frame, TrackedFace
from edge_agent.vision.embed import Descriptor
from edge_agent.vision.faces import DescribedFace, FacePipeline
from edge_agent.vision.quality import REASONS, Rejection, assess, detector_gate_failures
from edge_agent.watchlist.store import Watchlist


def agent_version() -> str:
    try:
        return version("edge-agent")
    except PackageNotFoundError:
        return "0+unknown"


def models_of(faces: FacePipeline) -> Models:
    """The `models` field of events and status: manifest ids and the verified sha256 of the loaded files."""
    return Models(
        detector=faces.detector.model_id,
        embedder=faces.embedder.model_id,
        detector_sha256=faces.detector.model.sha256,
        embedder_sha256=faces.embedder.model.sha256,
    )


@dataclass
class RunCounters:
    """Aggregate counts for health and transparency reports; nothing per person.

    `rejected_<reason>`: faces of unsettled tracks that a live quality gate turned away, once per face
    and frame, under the first gate it failed (`edge_agent.vision.quality.REASONS` order), so the five
    add up to the faces refused."""

    frames: int = 0
    faces_seen: int = 0
    tracks: int = 0
    embeddings: int = 0
    matches: int = 0
    rejected_size: int = 0
    rejected_truncated: int = 0
    rejected_pose: int = 0
    rejected_blur: int = 0
    rejected_brightness: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))

    def rejected(self, rejection: Rejection) -> None:
        name = f"rejected_{rejection.reason}"
        if rejection.reason not in REASONS or not hasattr(self, name):
            raise ValueError(f"unknown gate reason {rejection.reason!r}")
        setattr(self, name, getattr(self, name) + 1)


@dataclass(frozen=True)
class Shot:
    """A tracked face that passed the quality gates, aligned and embedded. It keeps the size of its frame,
    never the frame: a track's vote window holds n shots."""

    tracked: TrackedFace
    frame_size: tuple[int, int]
    described: DescribedFace


class IdentityStage:
    """Picks which tracked faces to embed: tracks still without a decision, whose face passes the quality
    gates and is better than (or a while after) the track's last embedded shot."""

    def __init__(
        self,
        faces: FacePipeline,
        tracker: Tracker,
        vote: TemporalVote[Shot],
        gates: QualitySettings,
        counters: RunCounters,
    ) -> None:
        self.faces = faces
        self.tracker = tracker
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
            if not self.tracker.wants_embedding(item.track_id, quality.score, frame.captured_at):
                continue
            with clock.time("embed"):
                descriptor = self.faces.embedder.embed(chip)
            self.tracker.embedded(item.track_id, quality.score, frame.captured_at)
            described = DescribedFace(item.face, landmarks, chip, quality, descriptor)
            shots.append(Shot(item, (frame.width, frame.height), described))
        return shots


class Matcher:
    """Nearest live watchlist subject for a descriptor."""

    def __init__(self, watchlist: Watchlist) -> None:
        self.watchlist = watchlist

    @property
    def empty(self) -> bool:
        return len(self.watchlist.index) == 0

    def candidate(self, track_id: int, captured_at: datetime, descriptor: Descriptor) -> Candidate:
        found = self.watchlist.search(descriptor, k=1)
        if not found:
            return Candidate(track_id, captured_at, None, None, float("inf"))
        best = found[0]
        return Candidate(
            track_id, captured_at, best.subject.id, best.subject.watchlist, best.distance, best.template_id
        )


@dataclass
class EventFactory:
    """Turns a decision into the versioned event payload."""

    device_id: str
    camera_id: str
    faces: FacePipeline
    face_crop: bool
    face_crop_quality: int
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def event(self, decision: Decision[Shot]) -> MatchEvent:
        shot = decision.best_item
        embedder = self.faces.embedder
        point = embedder.operating_point
        calibrated_on = embedder.calibration.dataset if embedder.calibration is not None else "unknown"
        quality = shot.described.quality.as_dict()
        return MatchEvent(
            event_id=uuid.uuid4(),
            device_id=self.device_id,
            camera_id=self.camera_id,
            captured_at=decision.best.captured_at,
            decided_at=self.clock(),
            subject_id=decision.subject_id,
            watchlist=decision.watchlist,
            distance=round(decision.distance, 6),
            threshold=point.threshold,
            false_match_rate=FalseMatchRate(
                target=point.target_fmr, upper_95=point.fmr_upper_95, calibrated_on=calibrated_on
            ),
            frames_agreeing=decision.frames_agreeing,
            frames_seen=decision.frames_seen,
            track_id=decision.track_id,
            box=_rounded_box(shot.tracked.face.box),
            frame_size=shot.frame_size,
            quality=Quality(**quality),
            models=models_of(self.faces),
            agent_version=agent_version(),
            face_jpeg=self._crop(shot) if self.face_crop else None,
        )

    def _crop(self, shot: Shot) -> str:
        """The aligned face chip only (never the frame) as base64 JPEG, for the human reviewer."""
        bgr = cv2.cvtColor(shot.described.chip, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.face_crop_quality])
        if not ok:
            raise RuntimeError("JPEG encoding of the face chip failed")
        return base64.b64encode(data.tobytes()).decode()


class MatchAudit:
    """The watchlist audit row of each decided match (`Watchlist.record_match`), surviving storage faults:
    a row that cannot be written (the watchlist's disk is full, read-only, failing) is held in memory, in
    order, and written by `retry()` when it can be (its `at` is then the time it was written; the details
    carry the event id and capture time). At most `held_max` are held; past that the oldest is dropped and
    counted in `faults.lost`. The state is reported in health (`storage.watchlist`) and logged on change."""

    def __init__(self, watchlist: Callable[[], Watchlist], actor: str, held_max: int = HELD_MAX) -> None:
        self._watchlist = watchlist
        self.actor = actor
        self.held_max = held_max
        self.faults = WriteState(
            f"watchlist {watchlist().path}",
            logging.getLogger("edge_agent").info,
            holding="match audit rows are held in memory meanwhile",
        )
        self._held: deque[tuple[str, dict[str, Any]]] = deque()
        self._next_retry = 0.0

    def record(self, subject_id: str, details: dict[str, Any]) -> None:
        self._held.append((subject_id, details))
        if len(self._held) > self.held_max:
            self._held.popleft()
            self.faults.lost += 1
        if len(self._held) == 1:  # nothing held before it: write now
            self._write_held()
        self.faults.held = len(self._held)

    def retry(self, force: bool = False) -> None:
        """Writes held rows, at most every `RETRY_S` (always with `force`); nothing to do when none."""
        now = time.monotonic()
        if not self._held or (not force and now < self._next_retry):
            return
        self._next_retry = now + RETRY_S
        if self.faults.room(self._folder()):
            self._write_held()

    def _folder(self) -> Path:
        return Path(self._watchlist().path).parent

    def _write_held(self) -> None:
        stored = 0
        while self._held:
            subject_id, details = self._held[0]
            record = functools.partial(
                Watchlist.record_match, subject_id=subject_id, actor=self.actor, details=details
            )
            if not self.guarded("match audit", record):
                break
            self._held.popleft()
            stored += 1
        self.faults.held = len(self._held)
        if stored and not self._held:
            self.faults.recovered(self._folder(), stored)

    def guarded(self, doing: str, write: Callable[[Watchlist], object]) -> bool:
        """Runs one write on the watchlist; a SQLite error is a storage state (logged on change, in health),
        not an exception: rolled back, False. True when it landed (with nothing held, the state is then ok
        again)."""
        watchlist = self._watchlist()
        try:
            write(watchlist)
        except sqlite3.Error as exc:
            if watchlist.conn.in_transaction:  # a failed COMMIT leaves the transaction open
                with contextlib.suppress(sqlite3.Error):
                    watchlist.conn.execute("ROLLBACK")
            self.faults.failed(storage_fault(exc, self._folder()) or "error", exc, doing)
            return False
        if not self._held:
            self.faults.recovered(self._folder())
        return True


class LivePipeline:
    """Runs every stage for one frame and stores decided matches in the outbox (before any send)."""

    def __init__(
        self,
        settings: Settings,
        faces: FacePipeline,
        watchlist: Watchlist,
        store: EventStore,
        match_topic: str,
    ) -> None:
        self.settings = settings
        self.faces = faces
        self.matcher = Matcher(watchlist)
        self.store = store
        self.match_topic = match_topic
        self.counters = RunCounters()
        self._start_tracks()
        self.events = EventFactory(
            settings.device_id,
            settings.camera.id,
            faces,
            settings.events.face_crop,
            settings.events.face_crop_quality,
        )
        self.clock = StageClock()
        self.audit = MatchAudit(lambda: self.matcher.watchlist, f"edge-agent:{settings.device_id}")
        self.last_match_at: datetime | None = None
        self._timeline: tuple[str, datetime] | None = None  # the recording frames come from, and its time

    def replace_watchlist(self, watchlist: Watchlist) -> Watchlist:
        """Swap in a reopened watchlist (SIGHUP); returns the old one for the caller to close."""
        old, self.matcher = self.matcher.watchlist, Matcher(watchlist)
        return old

    def process(self, captured: Captured) -> list[MatchEvent]:
        frame = captured.frame
        self._follow_timeline(frame)
        with self.clock.time("detect"):
            faces = self.faces.detector.detect(frame.image)
        with self.clock.time("track"):
            started = self.tracker.started
            tracked = self.tracker.update(faces, frame.captured_at)
            self.vote.forget(self.tracker.ended())
        self.counters.frames += 1
        self.counters.faces_seen += len(faces)
        self.counters.tracks += self.tracker.started - started
        events = []
        if tracked and not self.matcher.empty:
            for shot in self.identity.shots(frame, tracked, self.clock):
                self.counters.embeddings += 1
                event = self._decide(shot, captured)
                if event is not None:
                    events.append(event)
        self.clock.frame_done()
        return events

    def _follow_timeline(self, frame: Frame) -> None:
        """Tracks and votes belong to one recording with forward-running time. A new clip (docked
        body-cam footage) or a time that runs backwards starts both afresh: a track cannot continue into
        another recording, and a cool-down measured on one clip's clock must not silence the next."""
        recording = frame.meta.get("clip_id", frame.source_id)
        previous = self._timeline
        self._timeline = (recording, frame.captured_at)
        if previous is not None and (previous[0] != recording or frame.captured_at < previous[1]):
            self._start_tracks()

    def _start_tracks(self) -> None:
        """A fresh tracker and vote (at the embedder's current threshold), and the stage that uses them."""
        self.tracker = Tracker(self.settings.tracking)
        self.vote: TemporalVote[Shot] = TemporalVote(self.settings.decision, self.faces.embedder.threshold)
        self.identity = IdentityStage(
            self.faces, self.tracker, self.vote, self.settings.quality, self.counters
        )

    def _decide(self, shot: Shot, captured: Captured) -> MatchEvent | None:
        with self.clock.time("search"):
            candidate = self.matcher.candidate(
                shot.tracked.track_id, captured.frame.captured_at, shot.described.descriptor
            )
        decision = self.vote.add(candidate, shot)
        if decision is None:
            return None
        event = self.events.event(decision)
        # Held in memory (not sent) when the event store cannot be written: see EventStore.commit_or_hold.
        # The review copy keeps every agreeing shot's embedding, so a reviewer's false-match verdict can
        # cover the look-alike's other views, not only the best one (edge_agent.fleet.device `review`).
        agreeing = decision.agreeing_items or (decision.best_item,)
        embeddings = np.stack([shot.described.descriptor for shot in agreeing])
        self.store.commit_or_hold(event, self.match_topic, embeddings)
        self.audit.record(
            decision.subject_id,
            {
                "event_id": str(event.event_id),
                "camera_id": event.camera_id,
                "captured_at": event.captured_at.isoformat(),
                "distance": event.distance,
                "threshold": event.threshold,
                "target_fmr": event.false_match_rate.target,
            },
        )
        self.counters.matches += 1
        self.last_match_at = event.decided_at
        self.clock.add("frame_to_commit", max(0.0, time.monotonic() - captured.read_at))
        return event


def _rounded_box(box: Box) -> tuple[float, float, float, float]:
    return (round(box.x0, 1), round(box.y0, 1), round(box.x1, 1), round(box.y1, 1))

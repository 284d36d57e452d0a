"""The live pipeline: frame → detect → track → quality → embed → match → k-of-n vote → durable event.

This is the one place where capture, vision, the watchlist and events meet; each stage is a plain object
with one main method (`stages`, `tracking`, `identity`, `vote`, `match_event`), and the values between
them are the typed ones of `edge_agent.types`. `LivePipeline` is also the control surface the daemon and
the fleet commands use: the live watchlist, the target false-match rate, the status, reload and purge.

Privacy: a face that does not match lives only in this process's memory, in the window of its live
track (forgotten when the track ends). Only a decided match is written (outbox + review copy) and sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from edge_agent import agent_version
from edge_agent.capture.runner import Captured
from edge_agent.config import Settings
from edge_agent.engine import stages
from edge_agent.engine.budget import OperatingPoint, choose_operating_point, configured_point
from edge_agent.engine.clock import StageClock
from edge_agent.engine.counters import RunCounters
from edge_agent.engine.detection import DetectionSchedule
from edge_agent.engine.identity import IdentityStage, LookSchedule, Shot
from edge_agent.engine.match_audit import MatchAudit
from edge_agent.engine.match_event import EventFactory
from edge_agent.engine.stages import EventSink
from edge_agent.engine.tracking import Tracker
from edge_agent.engine.vote import TemporalVote
from edge_agent.errors import ModelError
from edge_agent.events.schema import MatchEvent, OperatingPointHealth, StorageHealth
from edge_agent.types import Box, Candidate, Frame
from edge_agent.vision.embed import Descriptor
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import FmrThreshold
from edge_agent.watchlist.store import Watchlist

logger = logging.getLogger("edge_agent")


def open_watchlist(settings: Settings, faces: FacePipeline) -> Watchlist:
    """The configured watchlist for this embedder, its notices (rebuilds, migrations) logged."""
    watchlist = Watchlist.for_settings(settings, faces.embedder.spec.dimensions, metric=faces.embedder.metric)
    for notice in watchlist.notices:
        logger.info("watchlist: %s", notice)
    return watchlist


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


class LivePipeline:
    """Runs every stage for one frame and stores decided matches in the outbox (before any send).

    The daemon and the fleet commands act on the pipeline through its control surface only (`watchlist`,
    `set_target_fmr`, `status`, `reopen_watchlist`, `purge_expired`, `write_watchlist`, `retry_storage`),
    never through its stages."""

    def __init__(
        self,
        settings: Settings,
        faces: FacePipeline,
        watchlist: Watchlist,
        store: EventSink,
        match_topic: str,
    ) -> None:
        self.settings = settings
        self.faces = faces
        self.matcher = Matcher(watchlist)
        self.store = store
        self.actor = f"edge-agent:{settings.device_id}"
        self.match_topic = match_topic
        self.counters = RunCounters()
        self._fixed_fmr: float | None = None  # a fleet `set_target_fmr` overrides the configuration
        self.operating = self._operating_point()
        self._searched_templates = len(watchlist.index)
        self._start_tracks()
        self.events = EventFactory(
            settings.device_id,
            settings.camera.id,
            faces,
            settings.events.face_crop,
            settings.events.face_crop_quality,
            display_name=self._display_name if settings.events.include_name else None,
        )
        self.clock = StageClock()
        self.audit = MatchAudit(lambda: self.matcher.watchlist, self.actor)
        self.last_match_at: datetime | None = None
        self._timeline: tuple[str, datetime] | None = None  # the recording frames come from, and its time

    def _display_name(self, subject_id: str) -> str:
        return self.matcher.watchlist.subject(subject_id).display_name

    # ---- the control surface ---------------------------------------------------------------------

    @property
    def watchlist(self) -> Watchlist:
        """The live watchlist (replaced by `reopen_watchlist`: do not keep it past a reload)."""
        return self.matcher.watchlist

    @property
    def threshold(self) -> float:
        return self.faces.embedder.threshold

    @property
    def watchlist_storage(self) -> StorageHealth:
        """The match audit's storage state, for health (`storage.watchlist`)."""
        return self.audit.faults.health()

    def set_target_fmr(self, target: float) -> float:
        """A fixed calibrated false-match rate for the embedder and the vote, whatever the watchlist's size
        (a fleet `set_target_fmr` overrides the budget); returns the new threshold."""
        self.faces.embedder.use_target(target)  # an uncalibrated rate is refused before anything changes
        self._fixed_fmr = target
        self.refresh_operating_point()
        return self.faces.embedder.threshold

    def refresh_operating_point(self) -> OperatingPoint:
        """The operating point for the watchlist as it is now (after an enrolment, a removal, an expiry or
        a bundle: the budget's threshold follows its size); the embedder and the vote use it from the next
        look on."""
        before = self.operating
        self.operating = self._operating_point()
        self._searched_templates = len(self.watchlist.index)
        self.vote.set_points(*self._decision_points())
        if self.operating.chosen != before.chosen:
            logger.info("operating point: %s", self.operating.summary())
        if self.operating.problem is not None and self.operating.problem != before.problem:
            logger.warning("operating point: %s", self.operating.problem)
        return self.operating

    def status(self) -> dict[str, Any]:
        """The answer to a fleet `request_status`: aggregate numbers only."""
        stats = self.watchlist.stats()
        point = self.faces.embedder.operating_point
        return {
            "status": {
                "live_subjects": stats.live_subjects,
                "templates": stats.templates,
                "audit_head": stats.audit_head,
                "target_fmr": point.target_fmr,
                "threshold": point.threshold,
                "outbox_depth": self.store.depth(),
                "counters": self.counters.as_dict(),
                "agent_version": agent_version(),
            }
        }

    def operating_health(self, uptime_s: float) -> OperatingPointHealth:
        """The operating point for health; the measured tracks a day once an hour of frames is behind."""
        op, load = self.operating, self.operating.chosen
        measured = None if uptime_s < 3600.0 else round(self.counters.tracks * 86400.0 / uptime_s, 1)
        return OperatingPointHealth(
            mode="budget" if op.budget is not None else "target_fmr",
            target_fmr=load.point.target_fmr,
            threshold=load.point.threshold,
            single_look_fmr=None if load.single_look is None else load.single_look.target_fmr,
            faces_per_day=load.faces_per_day,
            tracks_per_day_measured=measured,
            budget_false_alerts_per_day=op.budget,
            budget_met=op.budget_met,
            problem=op.problem,
            **load.alert_figures(),
        )

    def replace_watchlist(self, watchlist: Watchlist) -> Watchlist:
        """Swap in a reopened watchlist; returns the old one for the caller to close."""
        old, self.matcher = self.matcher.watchlist, Matcher(watchlist)
        self.refresh_operating_point()
        return old

    def reopen_watchlist(self) -> Watchlist:
        """The watchlist as it is on disk now (SIGHUP, after a sync or an edit by the CLI) replaces the
        loaded one, which is closed. If it cannot be opened the error propagates and the old one stays."""
        watchlist = open_watchlist(self.settings, self.faces)
        self.replace_watchlist(watchlist).close()
        return watchlist

    def write_watchlist(self, doing: str, write: Callable[[Watchlist], object]) -> bool:
        """One write on the live watchlist; a storage fault is a state in health, not an exception (False)."""
        written = self.audit.guarded(doing, write)
        if written:
            self.refresh_operating_point()
        return written

    def purge_expired(self) -> int | None:
        """How many expired subjects were purged (their vectors leave the index); None when the watchlist
        cannot be written now (the state is in health, the next purge tries again)."""
        expired: list[object] = []
        if not self.write_watchlist(
            "purge expired subjects", lambda w: expired.extend(w.purge_expired(self.actor))
        ):
            return None
        return len(expired)

    def retry_storage(self, force: bool = False) -> None:
        """Match audit rows held through a storage fault are written now if they can be."""
        self.audit.retry(force)

    # ---- one frame -------------------------------------------------------------------------------

    def process(self, captured: Captured) -> list[MatchEvent]:
        frame = captured.frame
        self._follow_timeline(frame)
        if len(self.watchlist.index) != self._searched_templates:  # enrolled or retired in this process
            self.refresh_operating_point()
        with self.clock.time("detect"):
            windows = self.detection.windows(frame.width, frame.height, self._unsettled_boxes())
            faces = self.faces.detector.detect_in(frame.image, windows)
        with self.clock.time("track"):
            started = self.tracker.started
            tracked = self.tracker.update(faces, frame.captured_at)
            ended = self.tracker.ended()
            self.vote.forget(ended)
            self.schedule.forget(ended)
        self.counters.frames += 1
        self.counters.faces_seen += len(faces)
        self.counters.tracks += self.tracker.started - started
        events = []
        if tracked and not self.matcher.empty:
            for shot in self.identity.shots(frame, tracked, self.clock):
                self.counters.embeddings += 1
                event = self._decide(shot, captured) if shot.votes else None
                if event is not None:
                    events.append(event)
        self.clock.frame_done()
        return events

    def _unsettled_boxes(self) -> list[Box]:
        """Where the tracks still being identified were last seen (none while the watchlist is empty:
        nobody is looked at then)."""
        if self.matcher.empty:
            return []
        boxes = self.tracker.boxes().items()
        return [box for track_id, box in boxes if self.identity.wants_every_frame(track_id)]

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
        """A fresh tracker and vote (at the embedder's current operating point), and the stages that use
        them."""
        calibration = self.faces.embedder.calibration
        if calibration is None:
            raise ModelError(f"{self.faces.embedder.model.file} was loaded without its calibration")
        self.detection = DetectionSchedule(self.settings.detector, self.faces.detector.plan)
        self.tracker: stages.Tracker = Tracker(self.settings.tracking)
        self.schedule = LookSchedule(self.settings.tracking)
        self.vote: stages.DecisionStage[Shot] = TemporalVote(self.settings.decision, *self._decision_points())
        split_distance = calibration.for_target(self.settings.tracking.split_fmr).threshold
        self.identity = IdentityStage(
            self.faces,
            self.schedule,
            self.tracker,
            self.vote,
            self.settings.quality,
            split_distance,
            self.settings.decision.n,
            self.counters,
        )

    def _operating_point(self) -> OperatingPoint:
        """The budget's (or the fixed rate's) point for the live watchlist, set on the embedder."""
        calibration = self.faces.embedder.calibration
        if calibration is None:
            raise ModelError(f"{self.faces.embedder.model.file} was loaded without its calibration")
        templates, decision = self.watchlist.live_templates(), self.settings.decision
        if self._fixed_fmr is not None:
            chosen = choose_operating_point(calibration, templates, decision, self._fixed_fmr)
        else:
            chosen = configured_point(calibration, templates, decision, self.settings.embedder.target_fmr)
        self.faces.embedder.use_target(chosen.chosen.point.target_fmr)
        return chosen

    def _decision_points(self) -> tuple[FmrThreshold, FmrThreshold | None]:
        """The operating point, and the stricter one a single look may decide at."""
        return self.operating.chosen.point, self.operating.chosen.single_look

    def _decide(self, shot: Shot, captured: Captured) -> MatchEvent | None:
        with self.clock.time("search"):
            candidate = self.matcher.candidate(
                shot.tracked.track_id, captured.frame.captured_at, shot.described.descriptor
            )
        decision = self.vote.add(candidate, shot)
        if decision is None:
            return None
        event = self.events.event(decision, self.operating.chosen)
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

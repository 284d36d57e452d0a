"""A decision becomes the versioned match event: what a subscriber and the human reviewer receive."""

from __future__ import annotations

import base64
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import cv2

from edge_agent import agent_version
from edge_agent.engine.budget import PointLoad
from edge_agent.engine.identity import Shot
from edge_agent.engine.vote import Decision
from edge_agent.errors import EdgeAgentError
from edge_agent.events.schema import FalseMatchRate, MatchEvent, Models, Quality
from edge_agent.types import Box
from edge_agent.vision.faces import FacePipeline


def models_of(faces: FacePipeline) -> Models:
    """The `models` field of events and status: manifest ids and the verified sha256 of the loaded files."""
    return Models(
        detector=faces.detector.model_id,
        embedder=faces.embedder.model_id,
        detector_sha256=faces.detector.model.sha256,
        embedder_sha256=faces.embedder.model.sha256,
    )


@dataclass
class EventFactory:
    """Turns a decision into the versioned event payload."""

    device_id: str
    camera_id: str
    faces: FacePipeline
    face_crop: bool
    face_crop_quality: int
    display_name: Callable[[str], str] | None = None  # subject id -> name; None: names stay off the event
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def event(self, decision: Decision[Shot], load: PointLoad) -> MatchEvent:
        """The event for `decision`, with the false alerts a day expected at the operating point `load`
        (the vote's point pair as a whole, whichever of its two points decided)."""
        shot = decision.best_item
        embedder = self.faces.embedder
        point = decision.point  # the calibrated threshold the deciding looks passed (engine.vote)
        calibrated_on = embedder.calibration.dataset if embedder.calibration is not None else "unknown"
        quality = shot.described.quality.as_dict()
        return MatchEvent(
            event_id=uuid.uuid4(),
            device_id=self.device_id,
            camera_id=self.camera_id,
            captured_at=decision.best.captured_at,
            decided_at=self.clock(),
            subject_id=decision.subject_id,
            display_name=self._name(decision.subject_id),
            watchlist=decision.watchlist,
            distance=round(decision.distance, 6),
            threshold=point.threshold,
            false_match_rate=FalseMatchRate(
                target=point.target_fmr,
                upper_95=point.fmr_upper_95,
                calibrated_on=calibrated_on,
                **load.alert_figures(),
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

    def _name(self, subject_id: str) -> str | None:
        """The display name, cut to the schema's bound; None when names are off or it cannot be read
        (a subject retired meanwhile): the event still goes out, with its subject id."""
        if self.display_name is None:
            return None
        try:
            name = self.display_name(subject_id).strip()
        except (EdgeAgentError, sqlite3.Error):
            return None
        return name[:128] or None

    def _crop(self, shot: Shot) -> str:
        """The aligned face chip only (never the frame) as base64 JPEG, for the human reviewer."""
        bgr = cv2.cvtColor(shot.described.chip, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.face_crop_quality])
        if not ok:
            raise RuntimeError("JPEG encoding of the face chip failed")
        return base64.b64encode(data.tobytes()).decode()


def _rounded_box(box: Box) -> tuple[float, float, float, float]:
    return (round(box.x0, 1), round(box.y0, 1), round(box.x1, 1), round(box.y1, 1))

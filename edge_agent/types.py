"""The typed values that flow between stages, each checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")
"""BlazeFace's six keypoints, in output order (the subject's right eye comes first)."""

RGBImage = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in pixels of the original frame: x0, y0 inclusive, x1, y1 exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        values = (self.x0, self.y0, self.x1, self.y1)
        if not all(np.isfinite(values)):
            raise ValueError(f"box coordinates must be finite, got {values}")
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"box needs x0 <= x1 and y0 <= y1, got {values}")

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    def iou(self, other: Box) -> float:
        """Intersection over union, 0 for boxes that do not touch."""
        iw = min(self.x1, other.x1) - max(self.x0, other.x0)
        ih = min(self.y1, other.y1) - max(self.y0, other.y0)
        if iw <= 0 or ih <= 0:
            return 0.0
        inter = iw * ih
        return inter / (self.area + other.area - inter)

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]


@dataclass(frozen=True, slots=True)
class Face:
    """One detected face: its box, six keypoints (x, y pixels) and detector score in 0..1."""

    box: Box
    keypoints: npt.NDArray[np.float32]
    score: float

    def __post_init__(self) -> None:
        if self.keypoints.shape != (len(KEYPOINT_NAMES), 2):
            raise ValueError(
                f"keypoints must have shape ({len(KEYPOINT_NAMES)}, 2), got {self.keypoints.shape}"
            )
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be within 0..1, got {self.score}")

    def keypoint(self, name: str) -> tuple[float, float]:
        x, y = self.keypoints[KEYPOINT_NAMES.index(name)]
        return float(x), float(y)


@dataclass(frozen=True, slots=True)
class Frame:
    """One RGB picture with where and when it came from.

    `captured_at` is the moment the picture was taken (sensor, clip or file time), not when we read it.
    """

    image: RGBImage
    source_id: str
    index: int
    captured_at: datetime
    offset_s: float = 0.0
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"frame image must be an (H, W, 3) uint8 RGB array, "
                f"got shape {self.image.shape} dtype {self.image.dtype}"
            )
        if self.image.shape[0] < 1 or self.image.shape[1] < 1:
            raise ValueError(f"frame image is empty: shape {self.image.shape}")
        if self.captured_at.tzinfo is None:
            raise ValueError("captured_at must be timezone-aware")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True, slots=True)
class TrackedFace:
    """A detected face with the track it belongs to (the same person across frames)."""

    track_id: int
    face: Face
    hits: int  # frames in which this track has been detected so far, this one included

    def __post_init__(self) -> None:
        if self.track_id < 1 or self.hits < 1:
            raise ValueError(f"track ids and hit counts start at 1, got {self.track_id} and {self.hits}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One embedding of a track and the nearest live watchlist subject for it.

    `subject_id` is None when the watchlist holds nobody; `distance` is then infinite. Whether the
    distance is under the calibrated threshold is the decision stage's business, not the matcher's.
    """

    track_id: int
    captured_at: datetime
    subject_id: str | None
    watchlist: str | None
    distance: float
    template_id: int | None = None

    def __post_init__(self) -> None:
        if (self.subject_id is None) != (self.watchlist is None):
            raise ValueError("subject_id and watchlist are both set or both None")
        if self.subject_id is None and self.distance != float("inf"):
            raise ValueError("a candidate without a subject has an infinite distance")
        if not self.distance >= 0.0:
            raise ValueError(f"distance must be >= 0, got {self.distance}")
        if self.captured_at.tzinfo is None:
            raise ValueError("captured_at must be timezone-aware")

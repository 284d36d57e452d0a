"""The face_recognition library's approach, with dlib directly: every face of every frame is found with
the HOG detector (upsample 1), given 5 landmarks and a ResNet descriptor (1 jitter), and compared with
the enrolled template; a distance <= 0.6 (face_recognition's default tolerance) is a match.

Needs `dlib-bin` and `face_recognition_models` (the `dev` extra); the agent itself never imports dlib.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.capture.media import read_image
from edge_agent.lab.bench.reference import clip_frames
from edge_agent.types import RGBImage

FACE_RECOGNITION_TOLERANCE = 0.6
UPSAMPLE = 1
F32 = npt.NDArray[np.float32]


class FaceRecognitionApproach:
    """dlib's HOG detector, 5-point shape predictor and ResNet, as face_recognition calls them."""

    name = "face_recognition approach (dlib HOG + 5-point + ResNet, every face, every frame)"

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as frm

        self.version = str(dlib.__version__)
        self._detector: Any = dlib.get_frontal_face_detector()
        self._predictor: Any = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._net: Any = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def encodings(self, image: RGBImage) -> list[tuple[int, F32]]:
        """(box area, descriptor) of every face found in the image."""
        found = []
        for rect in self._detector(image, UPSAMPLE):
            shape = self._predictor(image, rect)
            descriptor = np.asarray(self._net.compute_face_descriptor(image, shape, 1), dtype=np.float32)
            found.append((int(rect.width() * rect.height()), descriptor))
        return found


def load_approach() -> tuple[FaceRecognitionApproach | None, str | None]:
    """The approach, or None and why it cannot run (dlib missing)."""
    try:
        return FaceRecognitionApproach(), None
    except ImportError as exc:
        return None, f"dlib cannot be imported ({exc.name or exc}): pip install -e '.[dev]' for dlib-bin"


@dataclass(frozen=True)
class BaselineSubject:
    subject_id: str
    enrolled: bool  # dlib found a face in the enrolment photo
    frames_matched: int  # frames with a face within face_recognition's tolerance
    first_frame: int | None
    frames_within_threshold: int  # frames with a face within the agent's calibrated threshold
    first_within_threshold: int | None
    best_distance: float | None


@dataclass(frozen=True)
class BaselineRun:
    name: str
    dlib_version: str
    frames: int
    faces: int
    seconds: float
    subjects: tuple[BaselineSubject, ...]
    tolerance: float
    threshold: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def run_baseline(
    approach: FaceRecognitionApproach,
    source: Path,
    photos: Sequence[tuple[str, Path]],
    threshold: float,
    max_frames: int | None = None,
) -> BaselineRun:
    """Templates from the photos (largest face), then the clip frame by frame; decoding is timed too."""
    templates: dict[str, F32] = {}
    for subject_id, photo in photos:
        faces = approach.encodings(read_image(photo))
        if faces:
            templates[subject_id] = max(faces, key=lambda face: face[0])[1]
    matched = dict.fromkeys(templates, 0)
    within = dict.fromkeys(templates, 0)
    first: dict[str, int] = {}
    first_within: dict[str, int] = {}
    best = dict.fromkeys(templates, np.inf)
    frames = faces_seen = 0
    started = time.perf_counter()
    for frame in clip_frames(source, max_frames):
        frames += 1
        encodings = [descriptor for _, descriptor in approach.encodings(frame.image)]
        faces_seen += len(encodings)
        if not encodings:
            continue
        stacked = np.stack(encodings)
        for subject_id, template in templates.items():
            distance = float(np.min(np.linalg.norm(stacked - template, axis=1)))
            best[subject_id] = min(best[subject_id], distance)
            if distance <= FACE_RECOGNITION_TOLERANCE:
                matched[subject_id] += 1
                first.setdefault(subject_id, frame.index)
            if distance < threshold:
                within[subject_id] += 1
                first_within.setdefault(subject_id, frame.index)
    seconds = time.perf_counter() - started
    subjects = tuple(
        BaselineSubject(
            subject_id,
            subject_id in templates,
            matched.get(subject_id, 0),
            first.get(subject_id),
            within.get(subject_id, 0),
            first_within.get(subject_id),
            float(best[subject_id]) if subject_id in templates and np.isfinite(best[subject_id]) else None,
        )
        for subject_id, _ in photos
    )
    return BaselineRun(
        approach.name,
        approach.version,
        frames,
        faces_seen,
        seconds,
        subjects,
        FACE_RECOGNITION_TOLERANCE,
        threshold,
    )

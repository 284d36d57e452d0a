"""The project's face pipeline: BlazeFace → landmarks → dlib-style chip → quality → TFLite descriptor.

Every stage is configured from `Settings` and the model manifest; nothing here is stored or sent: the
caller decides what (if anything) leaves the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.config import Settings
from edge_agent.errors import ModelError
from edge_agent.types import Face, RGBImage
from edge_agent.vision.align import chip_transform, extract_chip
from edge_agent.vision.alignment_fit import AlignmentModel
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.embed import Descriptor, FaceEmbedder
from edge_agent.vision.manifest import EmbedderSpec, ModelCatalog
from edge_agent.vision.pick import Pick, pick_detection
from edge_agent.vision.quality import FaceQuality, assess
from edge_agent.vision.settings import QualitySettings
from edge_agent.vision.shape_predictor import ShapePredictor

LANDMARKS_FILE_ID = "dlib-5pt-landmarks"
ALIGNMENT_FILE_ID = "blazeface-to-dlib-alignment"


@dataclass(frozen=True)
class DescribedFace:
    face: Face
    landmarks: npt.NDArray[np.float64] | None  # dlib's 5 points when that route is used
    chip: RGBImage
    quality: FaceQuality
    descriptor: Descriptor


class Aligner:
    """Detector keypoints → 150x150 chip, with or without dlib's 5-point landmark model."""

    def __init__(
        self,
        alignment: AlignmentModel,
        predictor: ShapePredictor | None,
        size: int,
        padding: float,
        fingerprint: str = "",
    ) -> None:
        if (alignment.size, alignment.padding) != (size, padding):
            raise ModelError(
                f"the alignment fit is for {alignment.size} px chips with padding {alignment.padding}, "
                f"the embedder needs {size} px with padding {padding}"
            )
        self.alignment = alignment
        self.predictor = predictor
        self.size = size
        self.padding = padding
        self.fingerprint = fingerprint

    @classmethod
    def from_catalog(cls, catalog: ModelCatalog, spec: EmbedderSpec, use_landmarks: bool = True) -> Aligner:
        """The bundled alignment; `use_landmarks=False` is the keypoint-only route, kept for evaluation
        (the manifest's thresholds are calibrated with the landmark route)."""
        alignment_file = catalog.file_by_id(ALIGNMENT_FILE_ID)
        alignment = AlignmentModel.load(catalog.path_of(alignment_file))
        predictor, fingerprint = None, alignment_file.sha256
        if use_landmarks:
            landmarks_file = catalog.file_by_id(LANDMARKS_FILE_ID)
            predictor = ShapePredictor.load_npz(catalog.path_of(landmarks_file))
            fingerprint += landmarks_file.sha256
        return cls(alignment, predictor, spec.input_size, spec.chip_padding, fingerprint)

    def align(self, image: RGBImage, face: Face) -> tuple[RGBImage, npt.NDArray[np.float64] | None]:
        """The chip, and dlib's 5 landmarks when they were used.

        The landmark rectangle comes from a linear map fitted on upright faces; for a face far from
        upright (roll near 90 degrees) it can come out degenerate, and the keypoint template is used
        instead (such faces fail the default roll gate anyway)."""
        rect = self.alignment.landmark_rect(face) if self.predictor is not None else None
        if self.predictor is None or rect is None or not plausible_rect(rect, face):
            return extract_chip(image, self.alignment.keypoint_transform(face), self.size), None
        points = self.predictor.predict(image, rect)
        return extract_chip(image, chip_transform(points, self.size, self.padding), self.size), points


def plausible_rect(rect: tuple[float, float, float, float], face: Face) -> bool:
    """A landmark rectangle of finite corners, between a quarter and four times the box's width."""
    left, top, right, bottom = rect
    if not all(math.isfinite(v) for v in rect):
        return False
    lo, hi = 0.25 * face.box.width, 4.0 * face.box.width
    return lo <= right - left <= hi and lo <= bottom - top <= hi


class FacePipeline:
    def __init__(
        self, detector: FaceDetector, aligner: Aligner, embedder: FaceEmbedder, quality: QualitySettings
    ) -> None:
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.quality = quality
        self.name = f"edge-agent ({detector.model_id} + {aligner_name(aligner)} + {embedder.model_id})"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        catalog: ModelCatalog | None = None,
        *,
        calibrated: bool = True,
        use_landmarks: bool = True,
    ) -> FacePipeline:
        catalog = catalog or ModelCatalog.load(settings.models_dir)
        detector = FaceDetector.from_settings(settings.detector, settings.runtime, catalog)
        embedder = FaceEmbedder.from_settings(settings.embedder, settings.runtime, catalog, calibrated)
        aligner = Aligner.from_catalog(catalog, embedder.spec, use_landmarks)
        return cls(detector, aligner, embedder, settings.quality)

    def describe_face(self, image: RGBImage, face: Face) -> DescribedFace:
        chip, landmarks = self.aligner.align(image, face)
        return DescribedFace(face, landmarks, chip, assess(face, chip), self.embedder.embed(chip))

    def describe_all(self, image: RGBImage) -> list[DescribedFace]:
        """Every face of a photo (searched whole: `FaceDetector.detect_photo`)."""
        return [self.describe_face(image, face) for face in self.detector.detect_photo(image)]

    def describe_frame(self, image: RGBImage) -> list[DescribedFace]:
        """Every face of a camera or video frame (every window of the detector's plan)."""
        return [self.describe_face(image, face) for face in self.detector.detect(image)]

    def describe_one(self, image: RGBImage, pick: Pick = "largest") -> tuple[DescribedFace | None, int]:
        """The chosen face (largest, or nearest the centre) and how many faces were found."""
        faces = self.detector.detect_photo(image)
        if not faces:
            return None, 0
        return self.describe_face(image, pick_detection(faces, image, pick)), len(faces)

    def describe(self, image: RGBImage) -> Descriptor | None:
        """The descriptor of the face nearest the centre (the evaluation protocol), or None."""
        described, _ = self.describe_one(image, "centre")
        return None if described is None else described.descriptor


def aligner_name(aligner: Aligner) -> str:
    return "dlib 5-point landmarks" if aligner.predictor is not None else "keypoint template"

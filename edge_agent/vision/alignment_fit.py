"""From BlazeFace to dlib's alignment: the fitted map `models/alignment.json` holds.

`tools/fit_alignment.py` fits it on the shared photos; `edge_agent.vision.align` does the chip geometry.
The map turns a detection (box and keypoints) into the rectangle dlib's HOG detector would have drawn
(the shape predictor was trained on those), and holds a keypoint template for the route without the
landmark model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.errors import ModelError
from edge_agent.types import KEYPOINT_NAMES, Face
from edge_agent.vision.align import (
    CHIP_PADDING,
    CHIP_SIZE,
    TEMPLATE_KEYPOINTS,
    FloatArray,
    similarity_transform,
)

ALIGNMENT_SCHEMA_VERSION = 1
RECT_OUTPUTS = ("center_x", "center_y", "width", "height")


def rect_features(face: Face) -> FloatArray:
    """The inputs of the landmark-rectangle map: 1, then each template keypoint's (x, y) offset
    from the box centre, divided by the box width (so the map is shift and scale invariant)."""
    box = face.box
    width = box.width
    if width <= 0:
        raise ValueError(f"face box has no width: {box}")
    center = np.array([(box.x0 + box.x1) / 2.0, (box.y0 + box.y1) / 2.0])
    points = np.asarray(face.keypoints, dtype=np.float64)[
        [KEYPOINT_NAMES.index(n) for n in TEMPLATE_KEYPOINTS]
    ]
    return np.concatenate([[1.0], ((points - center) / width).ravel()])


def rect_from_outputs(face: Face, outputs: npt.ArrayLike) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) from the map's outputs (centre x, y, width, height / box width)."""
    box = face.box
    cx_rel, cy_rel, w_rel, h_rel = (float(v) for v in np.asarray(outputs, dtype=np.float64))
    cx = (box.x0 + box.x1) / 2.0 + cx_rel * box.width
    cy = (box.y0 + box.y1) / 2.0 + cy_rel * box.width
    half_w, half_h = w_rel * box.width / 2.0, h_rel * box.width / 2.0
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def template_keypoints(face: Face) -> FloatArray:
    """The keypoints the template route aligns with, (4, 2) image pixels."""
    indices = [KEYPOINT_NAMES.index(name) for name in TEMPLATE_KEYPOINTS]
    return np.asarray(face.keypoints, dtype=np.float64)[indices]


@dataclass(frozen=True, eq=False)
class AlignmentModel:
    """The fitted bridge from BlazeFace detections to dlib's face chip (`models/alignment.json`).

    - `rect_coefficients` (1 + 2K, 4): a linear map from `rect_features` to the rectangle dlib's HOG
      detector would draw (centre offset, width and height, in box widths); the shape predictor
      was trained on such rectangles, so it is the rectangle to hand it.
    - `template` (K, 2): chip positions (`size`, `padding`) for BlazeFace's eyes, nose tip and mouth
      centre, fitted so that the similarity from them to the detected keypoints lands closest to
      dlib's chip; that similarity is the no-landmark alignment.
    """

    rect_coefficients: FloatArray
    template: FloatArray
    size: int = CHIP_SIZE
    padding: float = CHIP_PADDING

    def __post_init__(self) -> None:
        features = 1 + 2 * len(TEMPLATE_KEYPOINTS)
        if self.rect_coefficients.shape != (features, len(RECT_OUTPUTS)):
            raise ModelError(
                f"rect coefficients have shape {self.rect_coefficients.shape}, "
                f"expected ({features}, {len(RECT_OUTPUTS)})"
            )
        if self.template.shape != (len(TEMPLATE_KEYPOINTS), 2):
            raise ModelError(f"keypoint template has shape {self.template.shape}, expected (4, 2)")
        if not (np.all(np.isfinite(self.rect_coefficients)) and np.all(np.isfinite(self.template))):
            raise ModelError("alignment coefficients must be finite numbers")

    @classmethod
    def load(cls, path: Path) -> AlignmentModel:
        """Read `models/alignment.json` (written by tools/fit_alignment.py); `ModelError` if bad."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ModelError(f"{path}: cannot read alignment file ({exc.strerror or exc})") from exc
        except ValueError as exc:
            raise ModelError(f"{path}: not valid JSON ({exc})") from exc
        try:
            return cls.from_dict(document)
        except (KeyError, TypeError, ValueError, ModelError) as exc:
            raise ModelError(f"{path}: not a usable alignment file ({exc!s})") from exc

    @classmethod
    def from_dict(cls, document: Any) -> AlignmentModel:
        """Build from the parsed JSON document; ValueError, KeyError or TypeError when malformed."""
        if not isinstance(document, dict):
            raise TypeError("the document must be a JSON object")
        if document.get("schema_version") != ALIGNMENT_SCHEMA_VERSION:
            raise ValueError(f"schema_version {document.get('schema_version')!r}, expected 1")
        rect, template = document["landmark_rect"], document["keypoint_template"]
        if (
            tuple(rect["keypoints"]) != TEMPLATE_KEYPOINTS
            or tuple(template["keypoints"]) != TEMPLATE_KEYPOINTS
        ):
            raise ValueError(f"keypoints must be {list(TEMPLATE_KEYPOINTS)}")
        if tuple(rect["outputs"]) != RECT_OUTPUTS:
            raise ValueError(f"landmark_rect outputs must be {list(RECT_OUTPUTS)}")
        chip = document["chip"]
        return cls(
            rect_coefficients=np.array(rect["coefficients"], dtype=np.float64),
            template=np.array(template["points"], dtype=np.float64),
            size=int(chip["size"]),
            padding=float(chip["padding"]),
        )

    def landmark_rect(self, face: Face) -> tuple[float, float, float, float]:
        """The (left, top, right, bottom) rectangle to give the shape predictor for this face."""
        return rect_from_outputs(face, rect_features(face) @ self.rect_coefficients)

    def keypoint_transform(self, face: Face) -> FloatArray:
        """The no-landmark alignment: "image <- chip" similarity from the keypoint template."""
        return similarity_transform(self.template, template_keypoints(face))

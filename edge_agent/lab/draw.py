"""Pictures for people: detections drawn on a frame, saved as JPEG (for `detect --draw`, the demo)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_agent.errors import EdgeAgentError
from edge_agent.files import atomic_write_bytes
from edge_agent.types import Face, RGBImage

BOX_COLOUR = (0, 220, 0)
KEYPOINT_COLOUR = (255, 64, 64)


def draw_faces(image: RGBImage, faces: list[Face]) -> RGBImage:
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        top_left = (round(face.box.x0), round(face.box.y0))
        bottom_right = (round(face.box.x1), round(face.box.y1))
        cv2.rectangle(canvas, top_left, bottom_right, BOX_COLOUR, thickness)
        for x, y in face.keypoints:
            cv2.circle(canvas, (round(float(x)), round(float(y))), thickness + 1, KEYPOINT_COLOUR, -1)
        label = f"{face.score:.2f}"
        cv2.putText(
            canvas,
            label,
            (top_left[0], max(12, top_left[1] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            BOX_COLOUR,
            thickness,
        )
    return canvas


def save_jpeg(image: RGBImage, path: Path) -> None:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise EdgeAgentError(f"could not encode {path} as JPEG")
    atomic_write_bytes(path, np.asarray(encoded).tobytes())

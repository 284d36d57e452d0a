"""Which face of a photo to use when one is wanted: the largest, or the one nearest the centre."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from edge_agent.types import Face, RGBImage

Pick = Literal["centre", "largest"]
Rect = tuple[float, float, float, float]  # left, top, right, bottom


def pick_face(rects: Sequence[Rect], width: int, height: int, pick: Pick) -> int:
    """Index of the face to use: the largest, or nearest the image centre (LFW's rule: the labelled
    person is the face nearest the centre)."""
    if not rects:
        raise ValueError("no faces to pick from")
    if pick == "largest":
        return max(range(len(rects)), key=lambda i: (rects[i][2] - rects[i][0]) * (rects[i][3] - rects[i][1]))

    def centre_distance(i: int) -> float:
        left, top, right, bottom = rects[i]
        return ((left + right) / 2 - width / 2) ** 2 + ((top + bottom) / 2 - height / 2) ** 2

    return min(range(len(rects)), key=centre_distance)


def pick_detection(faces: Sequence[Face], image: RGBImage, pick: Pick) -> Face:
    """The detected face to use in `image` (see `pick_face`)."""
    rects = [(f.box.x0, f.box.y0, f.box.x1, f.box.y1) for f in faces]
    return faces[pick_face(rects, image.shape[1], image.shape[0], pick)]

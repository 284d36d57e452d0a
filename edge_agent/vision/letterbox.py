"""Fit any picture into a square model input without distorting it, and map points back.

The picture is scaled so its longer side fills the square, centred, and the rest is black (zero
pixels). `Letterbox.to_source` turns normalised model coordinates into pixels of the source picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge_agent.types import RGBImage


@dataclass(frozen=True, slots=True)
class Letterbox:
    size: int
    scale: float
    pad_x: int
    pad_y: int
    origin_x: float = 0.0
    origin_y: float = 0.0

    @classmethod
    def fit(cls, width: int, height: int, size: int, origin: tuple[float, float] = (0.0, 0.0)) -> Letterbox:
        if width < 1 or height < 1:
            raise ValueError(f"cannot letterbox an empty {width}x{height} picture")
        scale = size / max(width, height)
        new_w = max(1, round(width * scale))
        new_h = max(1, round(height * scale))
        return cls(size, scale, (size - new_w) // 2, (size - new_h) // 2, *map(float, origin))

    def apply(self, image: RGBImage) -> RGBImage:
        """The square input picture: `image` resized into the centre of a black square."""
        new_w = max(1, round(image.shape[1] * self.scale))
        new_h = max(1, round(image.shape[0] * self.scale))
        shrinking = self.scale < 1.0
        resized = cv2.resize(
            image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )
        canvas = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        canvas[self.pad_y : self.pad_y + new_h, self.pad_x : self.pad_x + new_w] = resized
        return canvas

    def to_source(self, points: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Normalised (…, 2) model coordinates → pixel coordinates of the source picture."""
        pixels = points * np.float32(self.size)
        x = (pixels[..., 0] - self.pad_x) / self.scale + self.origin_x
        y = (pixels[..., 1] - self.pad_y) / self.scale + self.origin_y
        return np.stack([x, y], axis=-1).astype(np.float32)


def plan_windows(
    width: int,
    height: int,
    tiles: tuple[int, int] = (1, 1),
    overlap: float = 0.25,
    roi: tuple[float, float, float, float] | None = None,
    full_frame: bool = True,
) -> list[tuple[int, int, int, int]]:
    """Pixel windows (x0, y0, x1, y1) to run the detector on.

    The region is the ROI (fractions of the frame) or the whole frame. With `tiles = (cols, rows)`
    above (1, 1), the region is covered by cols x rows equal tiles that overlap by `overlap` of a tile,
    so a face cut by one tile's edge is whole in its neighbour; `full_frame` adds the region itself
    for faces larger than a tile.
    """
    rx0, ry0, rx1, ry1 = (0.0, 0.0, 1.0, 1.0) if roi is None else roi
    left, top = min(round(rx0 * width), width - 1), min(round(ry0 * height), height - 1)
    right = min(width, max(left + 1, round(rx1 * width)))
    bottom = min(height, max(top + 1, round(ry1 * height)))
    cols, rows = tiles
    if cols == 1 and rows == 1:
        return [(left, top, right, bottom)]
    windows = _tile_axis(left, right, cols, overlap), _tile_axis(top, bottom, rows, overlap)
    planned = [(x0, y0, x1, y1) for (y0, y1) in windows[1] for (x0, x1) in windows[0]]
    if full_frame:
        planned.insert(0, (left, top, right, bottom))
    return planned


def _tile_axis(start: int, stop: int, count: int, overlap: float) -> list[tuple[int, int]]:
    length = stop - start
    tile = length / (count - (count - 1) * overlap)
    step = tile * (1.0 - overlap)
    spans = []
    for i in range(count):
        a = min(start + round(i * step), stop - 1)
        b = stop if i == count - 1 else min(stop, start + round(i * step + tile))
        spans.append((a, max(a + 1, b)))
    return spans

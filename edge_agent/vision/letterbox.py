"""Fit any picture into a square model input without distorting it, and map points back.

The picture is scaled so its longer side fills the square, centred, and the rest is black (zero
pixels). `Letterbox.to_source` turns normalised model coordinates into pixels of the source picture.
"""

from __future__ import annotations

import math
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
    left, top, right, bottom = region_window(width, height, roi)
    cols, rows = tiles
    if cols == 1 and rows == 1:
        return [(left, top, right, bottom)]
    windows = _tile_axis(left, right, cols, overlap), _tile_axis(top, bottom, rows, overlap)
    planned = [(x0, y0, x1, y1) for (y0, y1) in windows[1] for (x0, x1) in windows[0]]
    if full_frame:
        planned.insert(0, (left, top, right, bottom))
    return planned


MIN_INPUT_FACE_PX = 16
"""The face width, in model input pixels, the planned passes bring the smallest face to find up to.

Measured with full-range BlazeFace on square crops around the labelled faces of the four shared scene
clips, every 15th frame (docs/detection.md): a face of 16-19 input pixels is found in 94 % of frames, of
20 px or more in 99 %, of 12-15 px in 83 %, under 8 px almost never. A track needs the face in most
frames, not all, so 16 px buys a third fewer windows than 20 px for a few points of per-frame recall.
"""


def plan_grid(
    width: int,
    height: int,
    min_face_px: float,
    input_size: int,
    roi: tuple[float, float, float, float] | None = None,
) -> list[tuple[int, int, int, int]]:
    """Windows that find every face at least `min_face_px` wide in a `width` x `height` frame (or ROI).

    The first window is the whole region: it finds the faces that come out at `MIN_INPUT_FACE_PX` or more
    when the region is scaled to the model's `input_size`. Where that is not small enough, levels of tiles
    follow, finest first: a level's tiles bring its smallest face up to `MIN_INPUT_FACE_PX`, and overlap
    by the smallest face the next coarser level (or the whole region) finds, so every face in between lies
    whole inside one tile. An overlap may not pass half a tile; where it would, a coarser level is added
    (it may be the region's own size along one side). No tiles at all when the finest level's tiles would
    be nearly the region (three quarters of its longer side or more): they would hardly zoom.
    """
    left, top, right, bottom = region_window(width, height, roi)
    longest = max(right - left, bottom - top)
    region_finds = longest * MIN_INPUT_FACE_PX / input_size
    levels: list[tuple[float, float]] = []  # (tile side, smallest face found), finest first
    smallest = float(min_face_px)
    while smallest < region_finds:
        tile = max(1.0, input_size * smallest / MIN_INPUT_FACE_PX)
        if not levels and tile >= 0.75 * longest:
            break  # tiles would hardly zoom: the whole region is the plan
        levels.append((tile, smallest))
        smallest = tile / 2.0
    windows = [(left, top, right, bottom)]
    for index, (tile, _) in enumerate(levels):
        coarser_finds = levels[index + 1][1] if index + 1 < len(levels) else region_finds
        overlap = min(coarser_finds, tile / 2.0)
        xs = _even_spans(left, right, tile, overlap)
        ys = _even_spans(top, bottom, tile, overlap)
        windows += [(x0, y0, x1, y1) for (y0, y1) in ys for (x0, x1) in xs]
    return windows


def smallest_face_found(windows: list[tuple[int, int, int, int]], input_size: int) -> float:
    """The narrowest face, in source pixels, that the finest of `windows` brings up to `MIN_INPUT_FACE_PX`."""
    finest = min(max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in windows)
    return finest * MIN_INPUT_FACE_PX / input_size


def region_window(
    width: int, height: int, roi: tuple[float, float, float, float] | None
) -> tuple[int, int, int, int]:
    """The ROI (fractions of the frame) in pixels, at least one pixel, or the whole frame."""
    rx0, ry0, rx1, ry1 = (0.0, 0.0, 1.0, 1.0) if roi is None else roi
    left, top = min(round(rx0 * width), width - 1), min(round(ry0 * height), height - 1)
    right = min(width, max(left + 1, round(rx1 * width)))
    bottom = min(height, max(top + 1, round(ry1 * height)))
    return left, top, right, bottom


def _even_spans(start: int, stop: int, tile: float, overlap: float) -> list[tuple[int, int]]:
    """Spans of length `tile` (or the whole axis when shorter) from `start` to `stop`, evenly spaced, with
    neighbours sharing at least `overlap` pixels."""
    length = stop - start
    if tile >= length:
        return [(start, stop)]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1) if count > 1 else 0.0
    return _spans(start, stop, count, tile, step)


def _tile_axis(start: int, stop: int, count: int, overlap: float) -> list[tuple[int, int]]:
    length = stop - start
    tile = length / (count - (count - 1) * overlap)
    return _spans(start, stop, count, tile, tile * (1.0 - overlap))


def _spans(start: int, stop: int, count: int, tile: float, step: float) -> list[tuple[int, int]]:
    """`count` spans of length `tile`, `step` apart from `start`, the last one ending at `stop`; each at
    least one pixel and inside start..stop."""
    spans = []
    for i in range(count):
        a = min(start + round(i * step), stop - 1)
        b = stop if i == count - 1 else min(stop, start + round(i * step + tile))
        spans.append((a, max(a + 1, b)))
    return spans

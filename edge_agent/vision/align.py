"""Face alignment: the 150x150 face chip dlib's face descriptor expects, without dlib.

dlib's `compute_face_descriptor(img, shape)` aligns a face in three steps, reproduced here:

1. `get_face_chip_details(shape, 150, 0.25)`: the least-squares similarity transform from dlib's
   mean-face template (5 points, padded) to the 5 landmarks, turned into a chip rectangle and angle
   (`chip_transform`, `ChipDetails`).
2. `extract_image_chips`: when the face is much bigger than the chip, the image is first halved
   with `pyramid_down<2>` (a 5x5 binomial filter in integer arithmetic) as many times as keeps the
   chip rectangle larger than the chip, then the chip is sampled with bilinear interpolation
   (`extract_chip`, `pyramid_down`).
3. The landmarks come from dlib's 5-point shape predictor run on a rectangle from dlib's HOG face
   detector. We run the same predictor (`edge_agent.vision.shape_predictor`) on a rectangle mapped
   from BlazeFace's box and keypoints (`edge_agent.vision.alignment_fit`), fitted by
   `tools/fit_alignment.py` and stored in `models/alignment.json`.

Without a landmark model, `AlignmentModel.keypoint_transform` aligns from BlazeFace's eyes, nose tip
and mouth centre with a template fitted on the same photos: cheaper, and less faithful to dlib.

Transforms are 2x3 affine matrices `A` that map chip coordinates to image coordinates:
`image_xy = A[:, :2] @ chip_xy + A[:, 2]` ("image <- chip").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge_agent.types import RGBImage

FloatArray = npt.NDArray[np.float64]

CHIP_SIZE = 150
CHIP_PADDING = 0.25
"""dlib's face-recognition chip: 150x150 pixels, padding 0.25 (dlib's own default padding is 0.2)."""

# dlib's mean face for its 5-point landmarks (get_face_chip_details in
# dlib/image_transforms/interpolation.h), in units of the unpadded face square, in the predictor's
# part order: outer and inner corner of the eye on the image's right, outer and inner corner of the
# eye on the image's left, base of the nose.
DLIB_MEAN_FACE_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)

_BINOMIAL = np.array([1, 4, 6, 4, 1], dtype=np.float32)

TEMPLATE_KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center")
"""The BlazeFace keypoints the no-landmark route aligns with (the ears are too unstable)."""


# ---- geometry ----------------------------------------------------------------------------------


def similarity_transform(source: npt.ArrayLike, target: npt.ArrayLike) -> FloatArray:
    """The least-squares similarity (rotation, uniform scale, shift) taking `source` to `target`.

    Same result as dlib's `find_similarity_transform` (Umeyama's method, no reflection): in 2-D
    its SVD reduces to the closed form used here, `[[a, -b], [b, a]]` with a, b from the centred
    point sets. Returns the 2x3 matrix A with target ~= A[:, :2] @ source + A[:, 2].
    """
    src = np.asarray(source, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(dst) or len(src) < 2:
        raise ValueError(f"need two matching sets of >= 2 points, got {len(src)} and {len(dst)}")
    count = len(src)
    mean_src, mean_dst = src.sum(axis=0) / count, dst.sum(axis=0) / count
    s, d = src - mean_src, dst - mean_dst
    spread = float((s * s).sum()) / count
    if spread == 0.0:
        linear = np.eye(2)
    else:
        a = float((s * d).sum()) / count / spread
        b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / count / spread
        linear = np.array([[a, -b], [b, a]])
    shift = mean_dst - linear @ mean_src
    return np.hstack([linear, shift[:, None]])


def apply_affine(transform: FloatArray, points: npt.ArrayLike) -> FloatArray:
    """Map (N, 2) points with a 2x3 affine matrix."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.asarray(pts @ transform[:, :2].T + transform[:, 2], dtype=np.float64)


def chip_template(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> FloatArray:
    """Where dlib's 5 landmarks land in a `size` chip with `padding` (chip pixels)."""
    return np.asarray((padding + DLIB_MEAN_FACE_5) / (2 * padding + 1) * size, dtype=np.float64)


def chip_transform(
    points5: npt.ArrayLike, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> FloatArray:
    """dlib's `get_face_chip_details` for 5 landmarks, as the similarity "image <- chip".

    The matrix maps dlib's padded mean face (chip coordinates) onto the landmarks; `ChipDetails`
    turns it into dlib's chip rectangle and angle, and `extract_chip` samples the chip from it.
    """
    points = np.asarray(points5, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"chip_transform needs (5, 2) landmarks, got shape {points.shape}")
    if size < 1 or padding < 0:
        raise ValueError(f"need size >= 1 and padding >= 0, got size={size}, padding={padding}")
    return similarity_transform(chip_template(size, padding), points)


@dataclass(frozen=True, slots=True)
class ChipDetails:
    """dlib's `chip_details` for a square chip: a rectangle in the image, an angle and the size.

    The rectangle follows dlib's `drectangle` conventions: corners are pixel centres and the width
    is `right - left + 1`. The chip is the rectangle rotated by `angle` radians about its centre.
    """

    left: float
    top: float
    right: float
    bottom: float
    angle: float
    size: int

    @classmethod
    def from_similarity(cls, transform: FloatArray, size: int = CHIP_SIZE) -> ChipDetails:
        """What dlib's chip_details constructor derives from a chip-to-image similarity."""
        scale_x, scale_y = float(transform[0, 0]), float(transform[1, 0])
        angle = math.atan2(scale_y, scale_x)
        scale = math.hypot(scale_x, scale_y)
        cx, cy = apply_affine(transform, [[size / 2.0, size / 2.0]])[0]
        half = (size * scale - 1.0) / 2.0  # dlib's centered_drect: width counts both end pixels
        return cls(cx - half, cy - half, cx + half, cy + half, angle, size)

    @property
    def width(self) -> float:
        return self.right - self.left + 1.0

    @property
    def height(self) -> float:
        return self.bottom - self.top + 1.0


def _rotate_about(center: tuple[float, float], point: tuple[float, float], angle: float) -> FloatArray:
    cos, sin = math.cos(angle), math.sin(angle)
    dx, dy = point[0] - center[0], point[1] - center[1]
    return np.array([cos * dx - sin * dy + center[0], sin * dx + cos * dy + center[1]])


def _corner_transform(rect: tuple[float, float, float, float], angle: float, size: int) -> FloatArray:
    """The affine map taking chip corners (0,0), (size-1,0), (0,size-1) to the rotated rect's."""
    left, top, right, bottom = rect
    center = ((left + right) / 2.0, (top + bottom) / 2.0)
    tl = _rotate_about(center, (left, top), angle)
    tr = _rotate_about(center, (right, top), angle)
    bl = _rotate_about(center, (left, bottom), angle)
    span = max(size - 1, 1)
    return np.column_stack([(tr - tl) / span, (bl - tl) / span, tl])


# ---- chip extraction ---------------------------------------------------------------------------


def pyramid_down(image: RGBImage) -> RGBImage:
    """dlib's `pyramid_down<2>`: a 5x5 [1 4 6 4 1] filter, every other pixel, integer maths.

    The output is ((rows - 3) // 2, (cols - 3) // 2); output pixel (r, c) is centred on input
    pixel (2r + 2, 2c + 2) and is the weighted sum // 256. Images of 8 or fewer rows or columns
    give an empty one, as in dlib. OpenCV does the filtering in float32, which is exact here (the
    sums are integers below 2**16), so the result is dlib's to the bit.
    """
    rows, cols = image.shape[:2]
    if rows <= 8 or cols <= 8:
        return np.zeros((0, 0, *image.shape[2:]), dtype=np.uint8)
    out_rows, out_cols = (rows - 3) // 2, (cols - 3) // 2
    filtered = cv2.sepFilter2D(image, cv2.CV_32F, _BINOMIAL, _BINOMIAL, borderType=cv2.BORDER_REPLICATE)
    centres = filtered[2 : 2 + 2 * out_rows : 2, 2 : 2 + 2 * out_cols : 2]
    return np.asarray(np.floor(centres / 256.0), dtype=np.uint8).reshape(out_rows, out_cols, *image.shape[2:])


def _rect_down(rect: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """dlib's `pyramid_down<2>::rect_down`: where a rectangle lands one pyramid level down."""
    left, top, right, bottom = rect
    return (left / 2.0 - 1.25, top / 2.0 - 0.75, right / 2.0 - 1.25, bottom / 2.0 - 0.75)


def _rect_area(rect: tuple[float, float, float, float]) -> float:
    left, top, right, bottom = rect
    if left > right or top > bottom:
        return 0.0
    return (right - left + 1.0) * (bottom - top + 1.0)


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _crop_box(details: ChipDetails, grow: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The integer region (l, t, r, b inclusive) dlib crops before building the pyramid."""
    center = ((details.left + details.right) / 2.0, (details.top + details.bottom) / 2.0)
    corners = np.array(
        [
            _rotate_about(center, (x, y), details.angle)
            for x, y in (
                (details.left, details.top),
                (details.right, details.top),
                (details.left, details.bottom),
                (details.right, details.bottom),
            )
        ]
    )
    # Grow, clip to the image, then round each side (dlib's drectangle -> rectangle); only the
    # rounded box can be empty, as in dlib.
    left = _round_half_up(max(float(corners[:, 0].min()) - grow, 0.0))
    top = _round_half_up(max(float(corners[:, 1].min()) - grow, 0.0))
    right = _round_half_up(min(float(corners[:, 0].max()) + grow, width - 1.0))
    bottom = _round_half_up(min(float(corners[:, 1].max()) + grow, height - 1.0))
    return None if left > right or top > bottom else (left, top, right, bottom)


def bilinear_sample(source: RGBImage, transform: FloatArray, size: int) -> RGBImage:
    """dlib's `transform_image` with `interpolate_bilinear`: a `size` chip, "source <- chip" map.

    A chip pixel whose 2x2 neighbourhood is not wholly inside `source` is black (dlib's rule, which
    also blackens the last row and column); values are truncated, not rounded, as dlib does.
    """
    cols, rows = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    x = ((transform[0, 0] * cols + transform[0, 1] * rows) + transform[0, 2]).ravel()
    y = ((transform[1, 0] * cols + transform[1, 1] * rows) + transform[1, 2]).ravel()
    height, width = source.shape[:2]
    channels = source.shape[2:]
    if height < 2 or width < 2:
        return np.zeros((size, size, *channels), dtype=np.uint8)
    left, top = np.floor(x), np.floor(y)
    inside = (left >= 0) & (top >= 0) & (left + 1 < width) & (top + 1 < height)
    lr = (x - left)[:, None]
    tb = (y - top)[:, None]
    corner = np.clip(top, 0, height - 2).astype(np.intp) * width + np.clip(left, 0, width - 2).astype(np.intp)
    pixels = source.reshape(height * width, -1)
    tl, tr = pixels[corner], pixels[corner + 1]
    bl, br = pixels[corner + width], pixels[corner + width + 1]
    value = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    value[~inside] = 0
    return np.asarray(value, dtype=np.uint8).reshape(size, size, *channels)


def extract_chip(image: RGBImage, transform: FloatArray, size: int = CHIP_SIZE) -> RGBImage:
    """The `size` x `size` chip dlib's `extract_image_chip` cuts for a chip-to-image similarity.

    `transform` is "image <- chip" (from `chip_transform`, or any similarity). When the chip
    rectangle is more than about twice the chip, the covering region is first reduced with
    `pyramid_down` as dlib does, so big faces are not aliased.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"extract_chip needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    details = ChipDetails.from_similarity(transform, size)
    if details.angle == 0 and details.width == size and details.height == size:
        return _copy_chip(image, details)
    depth, grow = 0, 2.0
    rect = _rect_down((details.left, details.top, details.right, details.bottom))
    while _rect_area(rect) > size * size:
        rect = _rect_down(rect)
        depth += 1
        grow = grow * 2 + 2
    height, width = image.shape[:2]
    box = _crop_box(details, grow, width, height)
    if box is None:
        return np.zeros((size, size, 3), dtype=np.uint8)
    source = image[box[1] : box[3] + 1, box[0] : box[2] + 1]
    rect = (details.left - box[0], details.top - box[1], details.right - box[0], details.bottom - box[1])
    for _ in range(depth):
        source = pyramid_down(source)
        rect = _rect_down(rect)
    return bilinear_sample(source, _corner_transform(rect, details.angle, size), size)


def _copy_chip(image: RGBImage, details: ChipDetails) -> RGBImage:
    """dlib's shortcut for an unrotated chip exactly the size of its rectangle: a plain copy."""
    size = details.size
    left, top = _round_half_up(details.left), _round_half_up(details.top)
    chip = np.zeros((size, size, 3), dtype=np.uint8)
    height, width = image.shape[:2]
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + size, width), min(top + size, height)
    if x0 < x1 and y0 < y1:
        chip[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return chip

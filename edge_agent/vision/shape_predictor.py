"""dlib's face landmark shape predictor (an ensemble of regression trees) in numpy.

The model is the cascade of Kazemi & Sullivan (2014) as dlib implements it
(`dlib/image_processing/shape_predictor.h`). Shapes live in a normalised frame where the face
rectangle's top-left corner is (0, 0) and its bottom-right corner (1, 1). Starting from the mean
shape, each cascade level

1. finds the similarity transform from the mean shape to the current estimate,
2. reads its pool of feature pixels: each is an offset from one landmark of the mean shape, moved
   with that transform, mapped into the image through the rectangle and rounded to a pixel
   (grey level, 0 outside the image),
3. walks every tree of the level (node i goes to 2i+1 when the difference of its two pixels
   exceeds the threshold, else 2i+2) and adds the leaves' shape updates.

The final shape is mapped into the image and, like dlib's, rounded to whole pixels (dlib returns
integer points); `subpixel=True` keeps the fractions.

Every step uses dlib's number types (float32 where dlib uses float, float64 where it uses double,
the same order of additions), so the landmarks agree with dlib's exactly on almost every face.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.errors import ModelError
from edge_agent.files import atomic_write_bytes
from edge_agent.vision.align import similarity_transform
from edge_agent.vision.dlib_format import DlibReader, decode_floats

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float64]
Rect = tuple[float, float, float, float]

_NPZ_KEYS = ("initial_shape", "split_pixels", "split_thresholds", "leaf_values", "anchor_idx", "deltas")
_DAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class ShapePredictor:
    """A loaded shape predictor: C cascade levels of T trees of depth D over P landmarks.

    - initial_shape (P, 2) float32: the mean shape in the rectangle's unit frame.
    - split_pixels (C, T, 2^D - 1, 2) int32: the two feature-pool pixels each split compares.
    - split_thresholds (C, T, 2^D - 1) float32.
    - leaf_values (C, T, 2^D, P, 2) float32: the shape update at each leaf.
    - anchor_idx (C, F) int32 and deltas (C, F, 2) float32: each level's F feature pixels, as the
      landmark they hang from and their offset from it in the mean shape.
    """

    initial_shape: F32
    split_pixels: I32
    split_thresholds: F32
    leaf_values: F32
    anchor_idx: I32
    deltas: F32

    def __post_init__(self) -> None:
        problem = _shape_problem(self)
        if problem:
            raise ModelError(f"inconsistent shape predictor arrays: {problem}")

    # ---- sizes ----------------------------------------------------------------------------------

    @property
    def num_parts(self) -> int:
        return int(self.initial_shape.shape[0])

    @property
    def num_cascades(self) -> int:
        return int(self.split_pixels.shape[0])

    @property
    def trees_per_cascade(self) -> int:
        return int(self.split_pixels.shape[1])

    @property
    def tree_depth(self) -> int:
        return int(self.split_pixels.shape[2] + 1).bit_length() - 1

    @property
    def feature_pool_size(self) -> int:
        return int(self.anchor_idx.shape[1])

    # ---- loading and saving ---------------------------------------------------------------------

    @classmethod
    def from_dat(cls, path: Path) -> ShapePredictor:
        """Load a model saved by dlib (`shape_predictor_5_face_landmarks.dat` and the like)."""
        return _parse_dat(DlibReader.open(Path(path)))

    def save_npz(self, path: Path) -> None:
        """Write the arrays, compressed and in compact dtypes: the file the agent ships and loads.

        The archive is byte-for-byte reproducible (fixed entry order and timestamps), so a
        manifest can pin its sha256.
        """
        pixels = self.split_pixels
        arrays = {
            "initial_shape": self.initial_shape,
            "split_pixels": pixels.astype(np.int16)
            if pixels.max(initial=0) <= np.iinfo(np.int16).max
            else pixels,
            "split_thresholds": self.split_thresholds,
            "leaf_values": self.leaf_values,
            "anchor_idx": self.anchor_idx.astype(np.uint8) if self.num_parts <= 256 else self.anchor_idx,
            "deltas": self.deltas,
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, "w") as entry:
                    np.lib.format.write_array(entry, np.ascontiguousarray(array), allow_pickle=False)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load_npz(cls, path: Path) -> ShapePredictor:
        """Load what `save_npz` wrote; `ModelError` if the file is missing, corrupt or foreign."""
        try:
            with np.load(Path(path), allow_pickle=False) as archive:
                missing = [key for key in _NPZ_KEYS if key not in archive.files]
                if missing:
                    raise ModelError(f"{path}: not a shape predictor archive (missing {', '.join(missing)})")
                arrays = {key: archive[key] for key in _NPZ_KEYS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{path}: cannot read shape predictor archive ({exc})") from exc
        try:
            return cls(
                initial_shape=_f32(arrays["initial_shape"]),
                split_pixels=_i32(arrays["split_pixels"]),
                split_thresholds=_f32(arrays["split_thresholds"]),
                leaf_values=_f32(arrays["leaf_values"]),
                anchor_idx=_i32(arrays["anchor_idx"]),
                deltas=_f32(arrays["deltas"]),
            )
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from exc

    # ---- inference ------------------------------------------------------------------------------

    def predict(
        self, image: npt.NDArray[np.uint8], rect: Sequence[float], *, subpixel: bool = False
    ) -> FloatArray:
        """The landmarks (P, 2) as (x, y) pixels for the face in `rect` = (left, top, right, bottom).

        `image` is (H, W) grey or (H, W, 3) RGB uint8; RGB pixels are read as dlib reads them,
        (r + g + b) // 3. `rect` follows dlib's rectangle: (left, top) and (right, bottom) are the
        corner pixels (dlib.rectangle(l, t, r, b) -> (l, t, r, b)); fractions are allowed.
        """
        sampler = _IntensitySampler(image)
        box = _check_rect(rect)
        shape = self.initial_shape.copy()
        for level in range(self.num_cascades):
            features = sampler.sample(self._feature_points(level, shape), box)
            shape = self._apply_trees(level, features, shape)
        points = _to_image(shape, box)
        return points if subpixel else np.floor(points + 0.5)

    def _feature_points(self, level: int, shape: F32) -> F32:
        """The level's feature pixels in the unit frame, moved along with the current shape."""
        tform = similarity_transform(self.initial_shape, shape)[:, :2].astype(np.float32)
        deltas = self.deltas[level]
        anchors = shape[self.anchor_idx[level]]
        x = (tform[0, 0] * deltas[:, 0] + tform[0, 1] * deltas[:, 1]) + anchors[:, 0]
        y = (tform[1, 0] * deltas[:, 0] + tform[1, 1] * deltas[:, 1]) + anchors[:, 1]
        return np.stack([x, y], axis=1)

    def _apply_trees(self, level: int, features: F32, shape: F32) -> F32:
        """Walk all trees of one level at once and add their leaves to the shape."""
        trees, splits = self.split_pixels.shape[1:3]
        pixels = self.split_pixels[level].reshape(-1, 2)
        go_left = (features[pixels[:, 0]] - features[pixels[:, 1]]) > self.split_thresholds[level].ravel()
        first_split = np.arange(trees) * splits
        node = np.zeros(trees, dtype=np.intp)
        for _ in range(self.tree_depth):
            node = 2 * node + 2 - go_left[first_split + node]
        leaf_rows = np.arange(trees) * (splits + 1) + (node - splits)
        leaves = self.leaf_values[level].reshape(trees * (splits + 1), -1)[leaf_rows]
        # dlib adds the trees' updates one after another in float32: cumsum keeps that order.
        steps = np.concatenate([shape.reshape(1, -1), leaves], axis=0)
        return np.asarray(np.cumsum(steps, axis=0, dtype=np.float32)[-1], dtype=np.float32).reshape(
            shape.shape
        )


# ---- helpers -----------------------------------------------------------------------------------


class _IntensitySampler:
    """Reads dlib's grey level at integer pixels of a grey or RGB image, 0 outside it."""

    def __init__(self, image: npt.NDArray[np.uint8]) -> None:
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
            raise ValueError(
                f"shape predictor needs an (H, W) or (H, W, 3) uint8 image, got {image.shape} {image.dtype}"
            )
        self._image = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        self._height, self._width = image.shape[:2]

    def sample(self, unit_points: F32, box: Rect) -> F32:
        pixels = np.floor(_to_image(unit_points, box) + 0.5)
        x, y = pixels[:, 0], pixels[:, 1]
        inside = (x >= 0) & (x < self._width) & (y >= 0) & (y < self._height)
        values = np.zeros(len(unit_points), dtype=np.float32)
        xi, yi = x[inside].astype(np.intp), y[inside].astype(np.intp)
        picked = self._image[yi, xi]
        if picked.ndim == 2:  # RGB: dlib's rgb -> grey rule, integer mean of the three channels
            picked = picked.astype(np.uint16).sum(axis=1) // 3
        values[inside] = picked
        return values


def _to_image(unit_points: npt.NDArray[np.floating], box: Rect) -> FloatArray:
    """dlib's unnormalizing_tform: (0, 0) -> (left, top), (1, 1) -> (right, bottom), in doubles."""
    left, top, right, bottom = box
    pts = unit_points.astype(np.float64)
    x = (right - left) * pts[:, 0] + left
    y = (bottom - top) * pts[:, 1] + top
    return np.stack([x, y], axis=1)


def _check_rect(rect: Sequence[float]) -> Rect:
    values = tuple(float(v) for v in rect)
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"rect must be four finite numbers (left, top, right, bottom), got {rect!r}")
    left, top, right, bottom = values
    if right <= left or bottom <= top:
        raise ValueError(f"rect needs right > left and bottom > top, got {values}")
    return left, top, right, bottom


def _f32(array: npt.NDArray[np.generic]) -> F32:
    return np.ascontiguousarray(array, dtype=np.float32)


def _i32(array: npt.NDArray[np.generic]) -> I32:
    return np.ascontiguousarray(array, dtype=np.int32)


def _shape_problem(model: ShapePredictor) -> str | None:
    """What is wrong with the arrays' shapes and values, or None when they fit together."""
    parts = model.initial_shape.shape[0] if model.initial_shape.ndim == 2 else 0
    if model.initial_shape.shape != (parts, 2) or parts < 2:
        return f"initial_shape {model.initial_shape.shape}, expected (P >= 2, 2)"
    if model.split_pixels.ndim != 4 or model.split_pixels.shape[3] != 2:
        return f"split_pixels {model.split_pixels.shape}, expected (C, T, S, 2)"
    cascades, trees, splits = model.split_pixels.shape[:3]
    if splits < 1 or (splits + 1) & splits:
        return f"{splits} splits per tree is not a full binary tree (2^D - 1)"
    pool = model.anchor_idx.shape[1] if model.anchor_idx.ndim == 2 else -1
    expected = {
        "split_thresholds": (model.split_thresholds.shape, (cascades, trees, splits)),
        "leaf_values": (model.leaf_values.shape, (cascades, trees, splits + 1, parts, 2)),
        "anchor_idx": (model.anchor_idx.shape, (cascades, pool)),
        "deltas": (model.deltas.shape, (cascades, pool, 2)),
    }
    for name, (actual, wanted) in expected.items():
        if actual != wanted:
            return f"{name} {actual}, expected {wanted}"
    if model.split_pixels.size and not 0 <= model.split_pixels.min() <= model.split_pixels.max() < pool:
        return f"split pixel index outside the feature pool of {pool}"
    if model.anchor_idx.size and not 0 <= model.anchor_idx.min() <= model.anchor_idx.max() < parts:
        return f"anchor index outside the {parts} landmarks"
    return None


# ---- dlib's .dat format ------------------------------------------------------------------------


def _parse_dat(reader: DlibReader) -> ShapePredictor:
    """Read dlib's serialised shape_predictor: version, initial shape, forests, anchors, deltas."""
    version = reader.read_int()
    if version != _DAT_VERSION:
        raise reader.error(f"not a dlib shape_predictor (version {version}, expected {_DAT_VERSION})")
    initial = reader.read_matrix()
    if initial.shape[1] != 1 or initial.shape[0] % 2 or initial.shape[0] < 4:
        raise reader.error(f"initial shape of size {initial.shape} is not a column of (x, y) pairs")
    parts = initial.shape[0] // 2
    splits, thresholds, leaves = _read_forests(reader, parts)
    cascades = len(splits)
    anchors = [reader.read_vector(DlibReader.read_uint) for _ in range(reader.read_size(limit=cascades))]
    deltas = [_read_points(reader) for _ in range(reader.read_size(limit=cascades))]
    reader.expect_end()
    if len(anchors) != cascades or len(deltas) != cascades:
        raise reader.error(f"{cascades} forests but {len(anchors)} anchor and {len(deltas)} delta lists")
    try:
        thresholds_array = np.array(thresholds, dtype=np.float32)
        return ShapePredictor(
            initial_shape=initial.reshape(parts, 2).astype(np.float32),
            split_pixels=np.array(splits, dtype=np.int64)
            .reshape(*thresholds_array.shape, 2)
            .astype(np.int32),
            split_thresholds=thresholds_array,
            leaf_values=np.array(leaves, dtype=np.float32),
            anchor_idx=np.array(anchors, dtype=np.int64).astype(np.int32),
            deltas=np.array(deltas, dtype=np.float32),
        )
    except ValueError as exc:  # ragged lists: trees or pools of different sizes
        raise reader.error(f"trees or feature pools differ in size ({exc})") from exc
    except ModelError as exc:
        raise reader.error(str(exc)) from exc


def _read_forests(
    reader: DlibReader, parts: int
) -> tuple[list[list[int]], list[FloatArray], list[FloatArray]]:
    """All cascade levels: per level the split pixel indices (flat), thresholds and leaf values.

    The integers are decoded level by level: converting per leaf would cost far more than reading.
    """
    splits: list[list[int]] = []
    thresholds: list[FloatArray] = []
    leaves: list[FloatArray] = []
    for _ in range(reader.read_size()):
        trees = reader.read_size()
        pixel_ints: list[int] = []
        threshold_ints: list[int] = []
        leaf_ints: list[int] = []
        for _ in range(trees):
            _read_tree(reader, parts, pixel_ints, threshold_ints, leaf_ints)
        try:
            thresholds.append(decode_floats(threshold_ints).reshape(trees, -1))
            leaves.append(decode_floats(leaf_ints).reshape(trees, -1, parts, 2))
        except ValueError as exc:
            raise reader.error(f"bad value in cascade level {len(splits)}: {exc}") from None
        if any(idx < 0 for idx in pixel_ints):
            raise reader.error(f"negative split pixel index in cascade level {len(splits)}")
        splits.append(pixel_ints)
    return splits, thresholds, leaves


def _read_tree(
    reader: DlibReader, parts: int, pixel_ints: list[int], threshold_ints: list[int], leaf_ints: list[int]
) -> None:
    """One regression_tree (splits idx1, idx2, thresh; then leaves), appended as raw integers."""
    count = reader.read_size()
    raw = reader.read_ints(4 * count)
    for i in range(0, len(raw), 4):
        pixel_ints += raw[i : i + 2]
        threshold_ints += raw[i + 2 : i + 4]
    num_leaves = reader.read_size()
    if num_leaves != count + 1:
        raise reader.error(f"tree with {count} splits has {num_leaves} leaves (expected {count + 1})")
    for _ in range(num_leaves):
        rows, cols = reader.read_matrix_shape()
        if (rows, cols) != (2 * parts, 1):
            raise reader.error(f"leaf of shape {rows}x{cols}, expected {2 * parts}x1")
        leaf_ints += reader.read_ints(2 * rows)


def _read_points(reader: DlibReader) -> FloatArray:
    """A std::vector of dlib::vector<float, 2>."""
    count = reader.read_size()
    return reader.read_floats(2 * count).reshape(count, 2)

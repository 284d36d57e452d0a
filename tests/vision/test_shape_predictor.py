"""dlib's 5-point shape predictor re-implemented in numpy, checked against dlib on real photos.

Measured with this suite's inputs and with tools/fit_alignment.py: on 2,565 predictions over 855
lfw-devtrain faces (dlib's HOG rectangle and two random integer shifts of it) and on every
people/ and strangers/ photo, our landmarks equal dlib's exactly (dlib returns whole pixels). The
tolerance below (95% identical, none off by more than 1 px) leaves room only for a rare tie broken
differently by another CPU's floating point, not for a wrong tree, pixel or transform.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import dlib
import face_recognition_models
import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.capture.media import read_image
from edge_agent.errors import ModelError
from edge_agent.lab.evaluation.datasets import people_and_strangers
from edge_agent.types import RGBImage
from edge_agent.vision.alignment_fit import AlignmentModel
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.dlib_format import DlibReader
from edge_agent.vision.shape_predictor import ShapePredictor

REPO = Path(__file__).resolve().parents[2]
DAT = Path(face_recognition_models.pose_predictor_five_point_model_location())
Rect = tuple[int, int, int, int]
# A fixed, uneven shift of every rectangle: a second, different input per photo.
SHIFT = (7, -5, 3, 9)


@pytest.fixture(scope="module")
def predictor() -> ShapePredictor:
    return ShapePredictor.from_dat(DAT)


@pytest.fixture(scope="module")
def reference() -> Callable[[npt.NDArray[np.uint8], Rect], npt.NDArray[np.float64]]:
    model = dlib.shape_predictor(str(DAT))

    def predict(image: npt.NDArray[np.uint8], rect: Rect) -> npt.NDArray[np.float64]:
        shape = model(image, dlib.rectangle(*rect))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    return predict


@pytest.fixture(scope="module")
def photo_rects(
    faces_dir: Path, make_detector: Callable[..., FaceDetector]
) -> list[tuple[str, RGBImage, Rect]]:
    """Every people/ and strangers/ photo with the rectangle our alignment hands the predictor
    for its largest BlazeFace face, rounded to whole pixels so dlib can take it too."""
    alignment = AlignmentModel.load(REPO / "models" / "alignment.json")
    detector = make_detector(model="full_range")
    out = []
    for path in people_and_strangers(faces_dir):
        image = read_image(path)
        face = max(detector.detect(image), key=lambda f: f.box.area)
        left, top, right, bottom = (round(v) for v in alignment.landmark_rect(face))
        out.append((f"{path.parent.name}/{path.name}", image, (left, top, right, bottom)))
    assert len(out) >= 19
    return out


def shifted(rect: Rect) -> Rect:
    left, top, right, bottom = rect
    return left + SHIFT[0], top + SHIFT[1], right + SHIFT[2], bottom + SHIFT[3]


def test_reads_dlibs_five_point_model(predictor: ShapePredictor) -> None:
    assert predictor.num_parts == 5
    assert (predictor.num_cascades, predictor.trees_per_cascade, predictor.tree_depth) == (15, 500, 4)
    assert predictor.feature_pool_size == 800
    # The mean shape sits inside the unit square of the face rectangle, eyes above the nose.
    assert np.all((predictor.initial_shape > 0) & (predictor.initial_shape < 1))
    assert predictor.initial_shape[4, 1] > predictor.initial_shape[:4, 1].max()


def test_npz_keeps_every_value_and_is_smaller(predictor: ShapePredictor, tmp_path: Path) -> None:
    path = tmp_path / "sp5.npz"
    predictor.save_npz(path)
    loaded = ShapePredictor.load_npz(path)
    for name in ("initial_shape", "split_pixels", "split_thresholds", "leaf_values", "anchor_idx", "deltas"):
        mine, theirs = getattr(predictor, name), getattr(loaded, name)
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), name
    assert path.stat().st_size < 0.7 * DAT.stat().st_size


def test_landmarks_equal_dlibs_on_real_photos(
    predictor: ShapePredictor,
    reference: Callable[[npt.NDArray[np.uint8], Rect], npt.NDArray[np.float64]],
    photo_rects: list[tuple[str, RGBImage, Rect]],
) -> None:
    identical, worst = 0, (0.0, "")
    cases = list(photo_rects) + [
        (f"{name} shifted", image, shifted(rect)) for name, image, rect in photo_rects
    ]
    for name, image, rect in cases:
        ours, theirs = predictor.predict(image, rect), reference(image, rect)
        gap = float(np.abs(ours - theirs).max())
        identical += gap == 0
        worst = max(worst, (gap, name))
    assert worst[0] <= 1.0, f"landmarks {worst[0]} px from dlib's on {worst[1]}"
    assert identical >= 0.95 * len(cases), f"only {identical} of {len(cases)} predictions equal dlib's"


def test_rgb_pixels_are_read_as_dlibs_grey_level(
    predictor: ShapePredictor,
    reference: Callable[[npt.NDArray[np.uint8], Rect], npt.NDArray[np.float64]],
    photo_rects: list[tuple[str, RGBImage, Rect]],
) -> None:
    """dlib turns RGB into grey as (r + g + b) // 3; any other rule (luma, rounding) moves points."""
    for _, image, rect in photo_rects[:4]:
        grey = (image.astype(np.uint16).sum(axis=2) // 3).astype(np.uint8)
        assert np.array_equal(predictor.predict(image, rect), predictor.predict(grey, rect))
        assert np.array_equal(predictor.predict(grey, rect), reference(grey, rect))
    _, image, rect = photo_rects[0]
    luma = np.asarray(image @ np.array([0.299, 0.587, 0.114]), dtype=np.uint8)
    assert not np.array_equal(predictor.predict(luma, rect), predictor.predict(image, rect))


def test_subpixel_landmarks_round_to_dlibs_whole_pixels(
    predictor: ShapePredictor, photo_rects: list[tuple[str, RGBImage, Rect]]
) -> None:
    _, image, rect = photo_rects[0]
    fine = predictor.predict(image, rect, subpixel=True)
    assert np.array_equal(np.floor(fine + 0.5), predictor.predict(image, rect))
    assert not np.array_equal(fine, np.round(fine))


def test_faces_partly_outside_the_image_match_dlib(
    predictor: ShapePredictor,
    reference: Callable[[npt.NDArray[np.uint8], Rect], npt.NDArray[np.float64]],
    photo_rects: list[tuple[str, RGBImage, Rect]],
) -> None:
    """Feature pixels outside the image read as 0 in dlib; cut the photo through the face."""
    _, image, (left, top, right, bottom) = photo_rects[3]
    y0 = top + (bottom - top) // 3
    cut = np.ascontiguousarray(image[y0:, : (left + right) // 2])
    rect = (left, top - y0, right, bottom - y0)
    assert np.array_equal(predictor.predict(cut, rect), reference(cut, rect))


def test_bad_inputs_are_rejected(predictor: ShapePredictor) -> None:
    image = np.zeros((50, 50, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="rect"):
        predictor.predict(image, (10, 10, 5, 40))
    with pytest.raises(ValueError, match="rect"):
        predictor.predict(image, (0, 0, math.nan, 40))
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(image.astype(np.float32), (0, 0, 40, 40))


# ---- the dlib serialisation reader ------------------------------------------------------------


def test_reader_decodes_bytes_written_by_dlib() -> None:
    """dlib's pickling state is its own serialisation: integers, doubles and special values."""
    values = [1.5, -2.0, 0.0, math.inf, -math.inf, 1e-300, math.pi, -123456789.125]
    state = dlib.vector([*values, math.nan]).__getstate__()[0]
    reader = DlibReader(state)
    column = reader.read_matrix()
    reader.expect_end()
    assert column.shape == (9, 1)
    assert column[:8, 0].tolist() == values and math.isnan(column[8, 0])

    rect = DlibReader(dlib.rectangle(-1, 2, 300, 70000).__getstate__()[0])
    assert rect.read_ints(4) == [-1, 2, 300, 70000]
    assert rect.at_end

    # A std::string and a std::vector<long>: a size, then the bytes / the items.
    reader = DlibReader(b"\x01\x03abc\x01\x02\x01\x00\x82\x00\x01")
    assert reader.read_string() == b"abc"
    assert reader.read_vector(DlibReader.read_int) == [0, -256]
    assert reader.at_end


def test_reader_reports_corruption_with_its_position() -> None:
    with pytest.raises(ModelError, match=r"control byte 0x00 \(at byte 0"):
        DlibReader(b"\x00").read_int()
    with pytest.raises(ModelError, match="truncated"):
        DlibReader(b"\x02\x01", "x.dat").read_int()
    with pytest.raises(ModelError, match="negative"):
        DlibReader(b"\x81\x05").read_uint()
    with pytest.raises(ModelError, match="exceeds"):
        DlibReader(b"\x02\xff\xff\x01").read_vector(DlibReader.read_int)
    with pytest.raises(ModelError, match="inf/nan"):
        DlibReader(b"\x01\x01\x02\xff\x7f").read_floats(1)
    reader = DlibReader(b"\x01\x05\x00")
    reader.read_int()
    with pytest.raises(ModelError, match="1 unexpected trailing bytes"):
        reader.expect_end()


def test_broken_model_files_raise_model_error(tmp_path: Path, predictor: ShapePredictor) -> None:
    data = DAT.read_bytes()
    cases = {
        "truncated.dat": data[:5000],
        "version.dat": b"\x01\x02" + data[2:5000],
        "text.dat": b"not a model\n",
        "empty.dat": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelError, match=name):
            ShapePredictor.from_dat(tmp_path / name)
    with pytest.raises(ModelError, match="cannot read"):
        ShapePredictor.from_dat(tmp_path / "missing.dat")

    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    arrays = {
        "initial_shape": predictor.initial_shape,
        "split_pixels": predictor.split_pixels,
        "split_thresholds": predictor.split_thresholds,
        "leaf_values": predictor.leaf_values[:, :, :8],
        "anchor_idx": predictor.anchor_idx,
        "deltas": predictor.deltas,
    }
    np.savez(tmp_path / "inconsistent.npz", **arrays)  # type: ignore[arg-type]
    for name, message in (
        ("garbage.npz", "cannot read"),
        ("other.npz", "missing"),
        ("inconsistent.npz", "leaf_values"),
        ("missing.npz", "cannot read"),
    ):
        with pytest.raises(ModelError, match=message):
            ShapePredictor.load_npz(tmp_path / name)

"""dlib's face chip without dlib: chip geometry, pyramid and sampling, and both BlazeFace routes.

Measured on every people/ and strangers/ photo (largest face; dlib's reference is HOG upsample 1,
its 5-point predictor and `compute_face_descriptor`): our chip from dlib's own landmarks equals
`dlib.get_face_chip` to the bit (mean absolute error 0.000 on all 19, faces 145 to 1,376 px wide,
0 to 3 pyramid levels), so its descriptor is dlib's. End to end from BlazeFace, distance to dlib's
full-pipeline descriptor: landmark route median 0.037 (max 0.087), keypoint-template route median
0.150 (max 0.209).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlib
import face_recognition_models
import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.capture.media import read_image
from edge_agent.errors import ModelError
from edge_agent.lab.evaluation.datasets import people_and_strangers
from edge_agent.types import Face, RGBImage
from edge_agent.vision import align, alignment_fit
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.shape_predictor import ShapePredictor

REPO = Path(__file__).resolve().parents[2]
ALIGNMENT = REPO / "models" / "alignment.json"
# Small enough for dlib's HOG detector (upsample 1, as dlib's reference pipeline) to stay quick.
END_TO_END = (
    "alex_lacamoire/img3.png",
    "kit_harington/john1.jpeg",
    "kit_harington/john2.jpeg",
    "lin_manuel_miranda/img1.png",
    "rose_leslie/img2.jpg",
    "barack_obama/obama2.jpg",
)


@pytest.fixture(scope="module")
def alignment() -> alignment_fit.AlignmentModel:
    return alignment_fit.AlignmentModel.load(ALIGNMENT)


@pytest.fixture(scope="module")
def dlib_predictor() -> Any:
    return dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())


@pytest.fixture(scope="module")
def photos(
    faces_dir: Path,
    make_detector: Callable[..., FaceDetector],
    alignment: alignment_fit.AlignmentModel,
    dlib_predictor: Any,
) -> list[tuple[str, RGBImage, Face, Any]]:
    """Each people/ and strangers/ photo, its largest BlazeFace face, and dlib's 5 landmarks for it
    (dlib's predictor on our rectangle: HOG on every photo would take seconds)."""
    detector = make_detector(model="full_range")
    out = []
    for path in people_and_strangers(faces_dir):
        image = read_image(path)
        face = max(detector.detect(image), key=lambda f: f.box.area)
        rect = dlib.rectangle(*(round(v) for v in alignment.landmark_rect(face)))
        out.append((f"{path.parent.name}/{path.name}", image, face, dlib_predictor(image, rect)))
    assert len(out) >= 19
    return out


def points_of(shape: Any) -> npt.NDArray[np.float64]:
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def test_similarity_transform_recovers_a_known_one() -> None:
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 150, (5, 2))
    angle, scale, shift = 0.3, 2.5, np.array([40.0, -7.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = source @ (scale * rotation).T + shift
    found = align.similarity_transform(source, target)
    assert np.allclose(found, np.hstack([scale * rotation, shift[:, None]]), atol=1e-12)
    # A mirrored target still gets a rotation (dlib allows no reflection).
    mirrored = align.similarity_transform(source, target * [-1, 1])
    assert np.linalg.det(mirrored[:, :2]) > 0


def test_chip_geometry_equals_dlibs(photos: list[tuple[str, RGBImage, Face, Any]]) -> None:
    for name, _, _, shape in photos:
        theirs = dlib.get_face_chip_details(shape, 150, 0.25)
        ours = align.ChipDetails.from_similarity(align.chip_transform(points_of(shape)))
        r = theirs.rect
        gap = np.abs(
            np.array([ours.left, ours.top, ours.right, ours.bottom])
            - [r.left(), r.top(), r.right(), r.bottom()]
        )
        assert gap.max() < 1e-9, name
        assert abs(ours.angle - theirs.angle) < 1e-12, name


def test_chips_equal_dlibs_pixel_for_pixel(photos: list[tuple[str, RGBImage, Face, Any]]) -> None:
    widths = []
    for name, image, _, shape in photos:
        transform = align.chip_transform(points_of(shape))
        ours = align.extract_chip(image, transform)
        theirs = dlib.get_face_chip(image, shape, 150, 0.25)
        error = np.abs(ours.astype(int) - theirs.astype(int))
        assert ours.shape == (150, 150, 3) and ours.dtype == np.uint8
        assert error.mean() < 0.01 and error.max() <= 1, f"{name}: mean {error.mean():.3f} max {error.max()}"
        widths.append(align.ChipDetails.from_similarity(transform).width)
    # The photos exercise plain bilinear sampling (< 2x the chip) and three pyramid levels (> 8x).
    assert min(widths) < 300 and max(widths) > 1200


def test_chip_of_a_face_cut_by_the_image_edge_equals_dlibs(
    photos: list[tuple[str, RGBImage, Face, Any]],
) -> None:
    """Outside the image dlib's chip is black, including its rule for the last row and column."""
    name, image, _, shape = photos[5]
    points = points_of(shape)
    x0, y0 = int(points[:, 0].mean()), int(points[:, 1].min())
    cut = np.ascontiguousarray(image[y0:, x0:])
    moved = dlib.full_object_detection(
        dlib.rectangle(0, 0, 10, 10), [dlib.point(int(x) - x0, int(y) - y0) for x, y in points]
    )
    ours = align.extract_chip(cut, align.chip_transform(points - [x0, y0]))
    theirs = dlib.get_face_chip(cut, moved, 150, 0.25)
    assert (theirs == 0).all(axis=2).mean() > 0.3, "the cut should blacken much of the chip"
    assert np.array_equal(ours, theirs), name


def test_pyramid_down_equals_dlibs(photos: list[tuple[str, RGBImage, Face, Any]]) -> None:
    image = photos[0][1]
    for rows, cols in ((301, 457), (200, 200), (9, 12)):
        crop = np.ascontiguousarray(image[:rows, :cols])
        assert np.array_equal(align.pyramid_down(crop), dlib.pyramid_down(2)(crop)), (rows, cols)
    assert align.pyramid_down(image[:8, :50]).size == 0


def test_alignment_file_describes_its_fit(alignment: alignment_fit.AlignmentModel) -> None:
    document = json.loads(ALIGNMENT.read_text())
    fit = document["fit"]
    assert fit["photos"].startswith("lfw-devtrain/") and fit["faces"] >= 300
    assert fit["held_out"]["chip_shift_px_landmark_route"]["median"] < 1.0
    assert alignment.template.shape == (4, 2) and alignment.size == 150


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "not valid JSON"),
        ('{"schema_version": 2}', "schema_version"),
        ('{"schema_version": 1}', "landmark_rect"),
    ],
)
def test_broken_alignment_files_raise_model_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "alignment.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModelError, match=message):
        alignment_fit.AlignmentModel.load(path)


def test_wrong_coefficient_shapes_raise_model_error() -> None:
    document = json.loads(ALIGNMENT.read_text())
    document["landmark_rect"]["coefficients"] = document["landmark_rect"]["coefficients"][:-1]
    with pytest.raises(ModelError, match="rect coefficients"):
        alignment_fit.AlignmentModel.from_dict(document)


def test_both_routes_come_close_to_dlibs_descriptor(
    photos: list[tuple[str, RGBImage, Face, Any]],
    alignment: alignment_fit.AlignmentModel,
    dlib_predictor: Any,
) -> None:
    """dlib's full pipeline (HOG upsample 1 → 5 landmarks → chip → ResNet) against its ResNet on our
    chips: from BlazeFace with our landmarks, and with the keypoint template alone."""
    facerec = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    predictor = ShapePredictor.from_dat(
        Path(face_recognition_models.pose_predictor_five_point_model_location())
    )
    hog = dlib.get_frontal_face_detector()
    routes: dict[str, list[float]] = {"dlib landmarks": [], "landmarks": [], "template": []}
    for name, image, face, _ in photos:
        if name not in END_TO_END:
            continue
        rect = max(hog(image, 1), key=lambda r: r.area())
        shape = dlib_predictor(image, rect)
        reference = np.array(facerec.compute_face_descriptor(image, shape))
        points = predictor.predict(image, alignment.landmark_rect(face))
        chips = {
            "dlib landmarks": align.extract_chip(image, align.chip_transform(points_of(shape))),
            "landmarks": align.extract_chip(image, align.chip_transform(points)),
            "template": align.extract_chip(image, alignment.keypoint_transform(face)),
        }
        for route, chip in chips.items():
            routes[route].append(
                float(np.linalg.norm(np.array(facerec.compute_face_descriptor(chip)) - reference))
            )
    assert len(routes["landmarks"]) == len(END_TO_END)
    assert max(routes["dlib landmarks"]) < 1e-6
    # Measured on these six: landmarks median 0.049, max 0.084; template median 0.143, max 0.209.
    assert np.median(routes["landmarks"]) <= 0.08 and max(routes["landmarks"]) < 0.12, routes["landmarks"]
    assert np.median(routes["template"]) < 0.25 and max(routes["template"]) < 0.35, routes["template"]
    assert np.median(routes["landmarks"]) < 0.6 * np.median(routes["template"])

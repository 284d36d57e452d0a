"""Face detection on real photos: a regression baseline on hand-labelled boxes, and known cases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.capture.media import read_image
from edge_agent.lab.bench.detect import MIN_IOU, labelled_detection_set, score
from edge_agent.types import Box
from edge_agent.vision.detect import FaceDetector

Make = Callable[..., FaceDetector]

# Measured on ../shared/faces/detection (9 photos, 43 labelled faces) at IoU >= 0.3 with
# `edge-agent bench detect`; a drop of even one face fails, so a change that costs recall is seen.
BASELINES: dict[str, tuple[dict[str, object], int, int]] = {
    "full_range float32": ({"model": "full_range", "precision": "float32"}, 42, 0),
    "full_range int8": ({"model": "full_range", "precision": "int8"}, 42, 0),
    "short_range float32 2x2 tiles": ({"model": "short_range", "tiles": (2, 2)}, 42, 2),
    "short_range int8 2x2 tiles": ({"model": "short_range", "precision": "int8", "tiles": (2, 2)}, 41, 3),
}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_labelled_set_recall_and_precision_do_not_drop(
    name: str, faces_dir: Path, make_detector: Make
) -> None:
    overrides, true_positives, false_positives = BASELINES[name]
    detector = make_detector(**overrides)
    data = labelled_detection_set(faces_dir)
    counts = score(lambda image: [f.box for f in detector.detect(image)], data)
    assert counts.true_positives + counts.false_negatives == 43
    assert counts.true_positives >= true_positives, f"recall fell to {counts.recall:.3f}"
    assert counts.false_positives <= false_positives, f"precision fell to {counts.precision:.3f}"
    assert MIN_IOU == 0.3


def test_every_people_photo_has_a_face(faces_dir: Path, make_detector: Make) -> None:
    detector = make_detector()
    photos = sorted(p for p in (faces_dir / "people").rglob("*") if p.is_file())
    assert len(photos) == 15  # the folder README says 18, but its own per-person counts sum to 15
    missed = [p.name for p in photos if not detector.detect(read_image(p))]
    assert missed == []


def test_no_face_among_dogs(faces_dir: Path, make_detector: Make) -> None:
    assert make_detector().detect(read_image(faces_dir / "hard" / "no_faces_dogs.jpg")) == []


def test_rgba_png_is_read_and_its_face_found(faces_dir: Path, make_detector: Make) -> None:
    path = faces_dir / "hard" / "32bit.png"
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.shape[2] == 4
    image = read_image(path)
    assert image.shape[2] == 3
    faces = make_detector().detect(image)
    assert len(faces) == 1
    assert 0 < faces[0].box.x0 < faces[0].box.x1 <= image.shape[1]


def test_boxes_follow_resolution(faces_dir: Path, make_detector: Make) -> None:
    """The same photo at 240p and 1080p: the box scales with the picture (letterbox mapping)."""
    detector = make_detector()
    small = detector.detect(read_image(faces_dir / "resolution" / "obama-240p.jpg"))
    large = detector.detect(read_image(faces_dir / "resolution" / "obama-1080p.jpg"))
    assert len(small) == len(large) == 1
    factor = 1080 / 240
    scaled = Box(*(v * factor for v in small[0].box.as_list()))
    assert scaled.iou(large[0].box) > 0.85


@pytest.mark.parametrize("pad", [(0, 600), (500, 0)], ids=["wide", "tall"])
def test_padding_to_other_aspect_ratio_keeps_the_box(
    pad: tuple[int, int], faces_dir: Path, make_detector: Make
) -> None:
    """Extra black on the right or bottom must not move the face: boxes map back exactly."""
    image = read_image(faces_dir / "people" / "alex_lacamoire" / "img3.png")
    padded = np.asarray(
        cv2.copyMakeBorder(image, 0, pad[0], 0, pad[1], cv2.BORDER_CONSTANT, value=0), np.uint8
    )
    detector = make_detector()
    original, moved = detector.detect(image), detector.detect(padded)
    assert len(original) == len(moved) == 1
    assert original[0].box.iou(moved[0].box) > 0.8
    np.testing.assert_allclose(original[0].keypoints[:4], moved[0].keypoints[:4], atol=8.0)


def test_keypoints_are_ordered_and_inside_the_face(faces_dir: Path, make_detector: Make) -> None:
    face = make_detector().detect(read_image(faces_dir / "resolution" / "obama-720p.jpg"))[0]
    right_eye, left_eye = face.keypoint("right_eye"), face.keypoint("left_eye")
    nose, mouth = face.keypoint("nose_tip"), face.keypoint("mouth_center")
    assert right_eye[0] < left_eye[0]  # the subject's right eye is on the picture's left
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
    for x, y in (right_eye, left_eye, nose, mouth):
        assert face.box.x0 <= x <= face.box.x1 and face.box.y0 <= y <= face.box.y1


def test_small_distant_face_needs_tiles_or_roi(faces_dir: Path, make_detector: Make) -> None:
    """A ~44 px face in a 1080p frame: missed on the whole frame, found by the default plan (tiles sized
    for 40 px faces), by explicit tiles and by an ROI."""
    photo = read_image(faces_dir / "resolution" / "obama-480p.jpg")
    reference = make_detector().detect(photo)[0].box
    scale, (x, y) = 0.35, (1300, 600)
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    frame[y : y + small.shape[0], x : x + small.shape[1]] = small
    expected = Box(*(v * scale + o for v, o in zip(reference.as_list(), (x, y, x, y), strict=True)))

    assert make_detector(tiles=(1, 1)).detect(frame) == []
    assert make_detector().detect_photo(frame) == []  # a photo is searched whole
    for overrides in ({}, {"tiles": (3, 3)}, {"roi": (0.6, 0.5, 1.0, 1.0)}):
        faces = make_detector(**overrides).detect(frame)
        assert len(faces) == 1, overrides
        assert faces[0].box.iou(expected) > 0.6, overrides


def test_min_face_size_and_score_filter(faces_dir: Path, make_detector: Make) -> None:
    image = read_image(faces_dir / "groups" / "multiface.jpg")
    faces = make_detector().detect(image)
    assert len(faces) >= 2
    widths = sorted(f.box.width for f in faces)
    cutoff = int((widths[0] + widths[-1]) / 2)
    kept = make_detector(min_face_px=2 * cutoff, tiles=(1, 1)).detect(image)  # drops under min_face_px / 2
    assert 0 < len(kept) < len(faces)
    assert all(f.box.width >= cutoff for f in kept)
    best = max(f.score for f in faces)
    assert make_detector(min_score=min(0.99, best + 0.005)).detect(image) == []


def test_detect_rejects_wrong_image_shape(make_detector: Make) -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        make_detector().detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        make_detector().detect(np.zeros((10, 10, 3), np.float32))


def test_a_photo_is_searched_whole_whatever_the_tiles(faces_dir: Path, make_detector: Make) -> None:
    """`detect_photo` searches the whole picture in one window, also with hand-given tiles and no
    whole-frame pass (whose plan starts with a tile): the faces are those of the one-window detector."""
    image = read_image(faces_dir / "groups" / "multiface.jpg")
    whole = make_detector(tiles=(1, 1)).detect(image)
    assert len(whole) >= 2
    for overrides in ({}, {"tiles": (2, 2), "full_frame": False}):
        found = make_detector(**overrides).detect_photo(image)
        assert [f.box for f in found] == [f.box for f in whole], overrides

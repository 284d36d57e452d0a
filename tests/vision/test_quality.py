"""Face quality parts respond to what they measure, on real faces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.capture.media import read_image
from edge_agent.types import Face, RGBImage
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.quality import assess, head_pose
from edge_agent.vision.settings import QualitySettings


@pytest.fixture(scope="module")
def biden(faces_dir: Path) -> RGBImage:
    return read_image(faces_dir / "people" / "joe_biden" / "biden.jpg")


def _face(detector: FaceDetector, image: RGBImage) -> Face:
    faces = detector.detect(image)
    assert len(faces) == 1
    return faces[0]


def _chip(image: RGBImage, face: Face) -> RGBImage:
    x0, y0, x1, y1 = (int(v) for v in face.box.as_list())
    return as_rgb(cv2.resize(np.ascontiguousarray(image[max(0, y0) : y1, max(0, x0) : x1]), (150, 150)))


def as_rgb(image: object) -> RGBImage:
    """OpenCV's results are typed loosely; these are uint8 RGB pictures."""
    array = np.asarray(image)
    assert array.dtype == np.uint8
    return array


def test_a_frontal_well_lit_face_passes_the_default_gates(
    biden: RGBImage, make_detector: Callable[..., FaceDetector]
) -> None:
    face = _face(make_detector(), biden)
    quality = assess(face, _chip(biden, face))
    print(quality.as_dict())
    assert quality.failures(QualitySettings()) == []
    assert abs(quality.yaw_deg) < 25 and abs(quality.roll_deg) < 15
    assert 0.5 < quality.score <= 1.0


def test_blur_lowers_sharpness_and_darkness_lowers_brightness(
    biden: RGBImage, make_detector: Callable[..., FaceDetector]
) -> None:
    face = _face(make_detector(), biden)
    chip = _chip(biden, face)
    sharp = assess(face, chip)
    blurred = assess(face, as_rgb(cv2.GaussianBlur(chip, (0, 0), 3)))
    dark = assess(face, (chip // 8).astype(np.uint8))
    assert blurred.sharpness < sharp.sharpness / 4
    assert dark.brightness < sharp.brightness / 4
    reasons = dark.failures(QualitySettings(min_sharpness=sharp.sharpness / 2))
    assert any(r.startswith("brightness") for r in reasons)
    assert any(r.startswith("sharpness") for r in reasons)


def test_roll_follows_an_in_plane_rotation(
    biden: RGBImage, make_detector: Callable[..., FaceDetector]
) -> None:
    detector = make_detector()
    upright = head_pose(_face(detector, biden))[1]
    h, w = biden.shape[:2]
    for degrees in (-20, 20):
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)  # positive: anticlockwise on screen
        roll = head_pose(_face(detector, as_rgb(cv2.warpAffine(biden, turn, (w, h)))))[1]
        print(f"rotated {degrees}: roll {roll:.1f} (upright {upright:.1f})")
        # BlazeFace's eye keypoints are a few pixels off on small eyes: the tilt is found to ~10 degrees
        assert upright - roll == pytest.approx(degrees, abs=10)


def test_yaw_changes_sign_in_a_mirror(faces_dir: Path, make_detector: Callable[..., FaceDetector]) -> None:
    """A clearly turned head (BlazeFace's keypoints wobble by ~5-10 degrees around frontal)."""
    detector = make_detector()
    image = read_image(faces_dir / "people" / "kit_harington" / "john2.jpeg")
    yaw = head_pose(_face(detector, image))[0]
    mirrored_yaw = head_pose(_face(detector, np.ascontiguousarray(image[:, ::-1])))[0]
    print(f"yaw {yaw:.1f}, mirrored {mirrored_yaw:.1f}")
    assert abs(yaw) > 25 and abs(mirrored_yaw) > 25
    assert np.sign(yaw) == -np.sign(mirrored_yaw)


def test_small_faces_fail_the_size_gate(biden: RGBImage, make_detector: Callable[..., FaceDetector]) -> None:
    small = as_rgb(cv2.resize(biden, None, fx=0.12, fy=0.12, interpolation=cv2.INTER_AREA))
    face = _face(make_detector(), small)
    quality = assess(face, _chip(small, face))
    assert any(r.startswith("face ") for r in quality.failures(QualitySettings(min_face_px=40)))

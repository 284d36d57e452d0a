"""Face quality: the measurable reasons a face may give a poor descriptor, each exposed on its own.

The live pipeline gates on the parts (`QualitySettings`), not on the combined score: a reviewer can then
be told *why* a face was not searched (too small, blurred, turned away, too dark). The combined `score`
only ranks faces of one track to pick the best shot.

- `face_px`: width of the detector's box in source pixels. The descriptor network sees a 150 px chip;
  faces far below about 40 px are up-sampled and lose identity detail.
- `sharpness`: variance of the Laplacian of the grey aligned chip (motion blur and defocus lower it).
  Measured on the chip, so it does not grow with the source resolution.
- `yaw_deg`: head turn estimated from BlazeFace's nose tip and ear (tragion) keypoints in the frame
  rotated to level the eyes, with a cylindrical head model: 0 frontal, ±90 profile; positive when the
  nose is nearer the subject's left ear (the ear on the image's right side for a frontal face).
- `roll_deg`: in-plane tilt of the eye line (alignment undoes it; large values often mean a bad detection).
- `brightness`: mean grey level (0..255) of the central half of the chip, where the face is.

Besides these, a face cut off at the frame edge is refused (`truncation_failures`): the dlib chip and
landmarks of a half-visible face describe a different face. Each refusal carries a short reason code
(`REASONS`) that the live pipeline counts (aggregate only) and a human-readable detail.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Final, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from edge_agent.types import Face
from edge_agent.vision.settings import QualitySettings

SHARPNESS_GOOD = 100.0  # Laplacian variance at which sharpness counts as fully good in `score`
SIZE_GOOD_PX = 80.0  # box width at which size counts as fully good in `score`

# Gate reason codes, in the order the live pipeline checks them: the detector's box and keypoints decide
# the first three before any alignment is paid for, the aligned chip the last two.
REASONS: Final = ("size", "truncated", "pose", "blur", "brightness")
# The keypoints alignment needs (dlib's 5-point rectangle and the keypoint template both start from them).
ALIGNMENT_KEYPOINTS: Final = ("right_eye", "left_eye", "nose_tip", "mouth_center")


class Rejection(NamedTuple):
    """Why a gate refused a face: `reason` is one of `REASONS`, `detail` says by how much."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class FaceQuality:
    face_px: float
    sharpness: float
    yaw_deg: float
    roll_deg: float
    brightness: float

    @property
    def score(self) -> float:
        """0..1, the geometric mean of the parts, each scaled to 0..1 (for ranking, not gating)."""
        parts = (
            min(1.0, self.face_px / SIZE_GOOD_PX),
            min(1.0, self.sharpness / SHARPNESS_GOOD),
            max(0.0, math.cos(math.radians(self.yaw_deg))),
            max(0.0, math.cos(math.radians(self.roll_deg))),
            max(0.0, 1.0 - abs(self.brightness - 128.0) / 128.0),
        )
        if min(parts) <= 0.0:
            return 0.0
        return float(math.exp(sum(math.log(p) for p in parts) / len(parts)))

    def failures(self, gates: QualitySettings) -> list[str]:
        """The gates this face fails, as short reasons; empty when it may be searched."""
        return [rejection.detail for rejection in self.rejections(gates)]

    def rejections(self, gates: QualitySettings) -> list[Rejection]:
        """The gates this face's measurements fail (size, pose, blur, brightness), in `REASONS` order.
        Truncation needs the frame, so it is `truncation_failures`' job."""
        found = size_failures(self.face_px, gates) + pose_failures(self.yaw_deg, self.roll_deg, gates)
        if self.sharpness < gates.min_sharpness:
            found.append(Rejection("blur", f"sharpness {self.sharpness:.1f} < {gates.min_sharpness:g}"))
        if not gates.min_brightness <= self.brightness <= gates.max_brightness:
            found.append(
                Rejection(
                    "brightness",
                    f"brightness {self.brightness:.0f} outside {gates.min_brightness:g}.."
                    f"{gates.max_brightness:g}",
                )
            )
        return found

    def as_dict(self) -> dict[str, float]:
        values = {key: round(value, 2) for key, value in asdict(self).items()}
        values["score"] = round(self.score, 3)
        return values


def size_failures(face_px: float, gates: QualitySettings) -> list[Rejection]:
    if face_px < gates.min_face_px:
        return [Rejection("size", f"face {face_px:.0f} px < {gates.min_face_px} px")]
    return []


def pose_failures(yaw_deg: float, roll_deg: float, gates: QualitySettings) -> list[Rejection]:
    reasons = []
    if abs(yaw_deg) > gates.max_yaw_deg:
        reasons.append(Rejection("pose", f"yaw {yaw_deg:.0f} deg beyond {gates.max_yaw_deg:g}"))
    if abs(roll_deg) > gates.max_roll_deg:
        reasons.append(Rejection("pose", f"roll {roll_deg:.0f} deg beyond {gates.max_roll_deg:g}"))
    return reasons


def edge_gap(face: Face, frame_size: tuple[int, int]) -> float:
    """How far inside the frame the detector's box stays: its smallest distance to a frame edge, as a
    fraction of its width (left, right) or height (top, bottom). The detector clamps boxes to the frame,
    so a face that reaches past an edge has a gap of 0 on that side."""
    width, height = frame_size
    box = face.box
    across = min(box.x0, width - box.x1) / max(box.width, 1e-6)
    down = min(box.y0, height - box.y1) / max(box.height, 1e-6)
    return min(across, down)


def truncation_failures(face: Face, frame_size: tuple[int, int], gates: QualitySettings) -> list[Rejection]:
    """A face cut off at the frame edge: a keypoint that alignment needs lies outside the frame, or the
    box comes nearer an edge than `gates.edge_margin` (a box that reached past it was clamped onto it)."""
    width, height = frame_size
    outside = [
        name
        for name in ALIGNMENT_KEYPOINTS
        if not (0.0 <= face.keypoint(name)[0] < width and 0.0 <= face.keypoint(name)[1] < height)
    ]
    if outside:
        return [Rejection("truncated", f"{', '.join(outside)} outside the frame")]
    gap = edge_gap(face, frame_size)
    if gap < gates.edge_margin:
        return [Rejection("truncated", f"box {gap:.0%} from the frame edge < {gates.edge_margin:.0%}")]
    return []


def detector_gate_failures(
    face: Face, frame_size: tuple[int, int], gates: QualitySettings
) -> list[Rejection]:
    """The gates the detector's box and keypoints decide alone (size, truncation, pose): checked before
    paying for alignment; the chip's gates (blur, brightness) follow in `FaceQuality.rejections`."""
    return (
        size_failures(face.box.width, gates)
        + truncation_failures(face, frame_size, gates)
        + pose_failures(*head_pose(face), gates)
    )


def detector_gates_pass(face: Face, frame_size: tuple[int, int], gates: QualitySettings) -> bool:
    return not detector_gate_failures(face, frame_size, gates)


def head_pose(face: Face) -> tuple[float, float]:
    """(yaw, roll) in degrees from BlazeFace's keypoints; see the module docstring for conventions."""
    right_eye = np.array(face.keypoint("right_eye"))
    left_eye = np.array(face.keypoint("left_eye"))
    dx, dy = left_eye - right_eye
    roll = math.atan2(dy, dx)
    rotation = np.array([[math.cos(-roll), -math.sin(-roll)], [math.sin(-roll), math.cos(-roll)]])
    levelled_x = [
        float((rotation @ np.array(face.keypoint(name)))[0]) for name in ("right_ear", "nose_tip", "left_ear")
    ]
    right_ear, nose, left_ear = levelled_x
    span = left_ear - right_ear
    if span <= 1e-6:
        yaw = 90.0 if nose >= (left_ear + right_ear) / 2 else -90.0
    else:
        position = (nose - right_ear) / span  # 0.5 for a frontal face
        yaw = math.degrees(math.asin(max(-1.0, min(1.0, 2.0 * position - 1.0))))
    return yaw, math.degrees(roll)


def assess(face: Face, chip: npt.NDArray[np.uint8]) -> FaceQuality:
    """The quality of one detected face, from its keypoints and its aligned RGB chip."""
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    h, w = grey.shape
    centre = grey[h // 4 : h - h // 4, w // 4 : w - w // 4]
    yaw, roll = head_pose(face)
    return FaceQuality(
        face_px=float(face.box.width),
        sharpness=sharpness,
        yaw_deg=yaw,
        roll_deg=roll,
        brightness=float(centre.mean()),
    )

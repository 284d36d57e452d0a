"""dlib's own face-recognition pipeline, the reference every accuracy claim is measured against.

HOG detector (upsample 1) → `shape_predictor_5_face_landmarks` → `get_face_chip(size 150, padding 0.25)`
→ `dlib_face_recognition_resnet_model_v1`. Needs `dlib-bin` and `face_recognition_models` (the `dev` and
`tools` extras); the agent itself never imports dlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.errors import EdgeAgentError
from edge_agent.lab.fingerprint import source_fingerprint
from edge_agent.types import RGBImage
from edge_agent.vision.align import CHIP_PADDING, CHIP_SIZE
from edge_agent.vision.embed import mean_of_chip_and_mirror
from edge_agent.vision.pick import Pick, pick_face


@dataclass(frozen=True)
class DlibFace:
    rect: tuple[int, int, int, int]  # left, top, right, bottom (dlib's inclusive corners)
    landmarks: npt.NDArray[np.float64]  # (5, 2)
    chip: RGBImage


class DlibPipeline:
    name = "dlib reference (HOG + 5-point landmarks + ResNet)"

    def __init__(self, upsample: int = 1) -> None:
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as exc:
            raise EdgeAgentError(
                f"the dlib reference needs dlib-bin and face_recognition_models ({exc.name} is missing): "
                "pip install -e '.[dev]'"
            ) from None
        self._dlib: Any = dlib
        code = source_fingerprint("edge_agent.lab.evaluation.dlib_reference", "edge_agent.vision.pick")
        models = getattr(frm, "__version__", "?")
        self.fingerprint = f"dlib {dlib.__version__} models {models} upsample {upsample} {code}"
        self._upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def face(self, image: RGBImage, pick: Pick = "centre") -> DlibFace | None:
        """The chosen face (nearest the centre, or largest) with its landmarks and chip; the others
        are not aligned at all."""
        rects = list(self._detector(image, self._upsample))
        if not rects:
            return None
        corners = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
        chosen = pick_face(corners, image.shape[1], image.shape[0], pick)
        shape = self._predictor(image, rects[chosen])
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        chip = np.asarray(self._dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING), dtype=np.uint8)
        return DlibFace(corners[chosen], points, chip)

    def describe_chip(self, chip: RGBImage) -> npt.NDArray[np.float32]:
        return np.asarray(self._net.compute_face_descriptor(chip), dtype=np.float32)

    def describe_chip_and_mirror(self, chip: RGBImage) -> npt.NDArray[np.float32]:
        """dlib's network under the project's `chip_and_mirror` views rule: the mean of its descriptors of
        the chip and of the chip mirrored left to right (to compare like with like)."""
        return mean_of_chip_and_mirror(self.describe_chip, chip)

    def describe(self, image: RGBImage, pick: Pick = "centre") -> npt.NDArray[np.float32] | None:
        face = self.face(image, pick)
        return None if face is None else self.describe_chip(face.chip)

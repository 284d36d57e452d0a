"""BlazeFace face detection: letterbox → TFLite → SSD decode → weighted NMS → pixel boxes.

One `FaceDetector` per thread: a TFLite interpreter is not safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.errors import ModelError
from edge_agent.types import Box, Face, RGBImage
from edge_agent.vision.anchors import decode_boxes, generate_anchors, sigmoid_scores
from edge_agent.vision.letterbox import Letterbox, plan_grid, plan_windows, region_window
from edge_agent.vision.manifest import DetectorSpec, ModelCatalog, ModelFile
from edge_agent.vision.nms import best_of_overlapping, weighted_nms
from edge_agent.vision.runtime import (
    Interpreter,
    dequantize_output,
    load_interpreter,
    quantize_input,
)
from edge_agent.vision.settings import DetectorSettings, RuntimeSettings

FloatArray = npt.NDArray[np.float32]

# How each manifest `normalisation` turns RGB uint8 pixels into the model's input values.
NORMALISERS: dict[str, Callable[[RGBImage], FloatArray]] = {
    "minus_one_to_one": lambda pixels: pixels.astype(np.float32) / 127.5 - 1.0,
}


@dataclass(frozen=True)
class RawDetections:
    """Decoded, thresholded detections of one window, before NMS, in source pixels."""

    boxes: FloatArray
    keypoints: FloatArray
    scores: FloatArray

    def as_tuple(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        return self.boxes, self.keypoints, self.scores


class FaceDetector:
    """Finds faces in RGB frames of any size with a BlazeFace model described by the manifest."""

    def __init__(
        self,
        spec: DetectorSpec,
        model: ModelFile,
        interpreter: Interpreter,
        settings: DetectorSettings,
    ) -> None:
        self.spec = spec
        self.model = model
        self.settings = settings
        self._interpreter = interpreter
        self._anchors = generate_anchors(spec.anchors, spec.input_size)
        self._input, self._regressors, self._classifiers = self._bind_tensors()

    @classmethod
    def from_settings(
        cls,
        settings: DetectorSettings,
        runtime: RuntimeSettings,
        catalog: ModelCatalog | None = None,
    ) -> FaceDetector:
        catalog = catalog or ModelCatalog.load()
        spec, model = catalog.detector(settings.model, settings.precision)
        interpreter = load_interpreter(catalog.verified_path(model), runtime.threads, runtime.backend)
        return cls(spec, model, interpreter, settings)

    @property
    def model_id(self) -> str:
        return self.model.id

    def _bind_tensors(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        inputs = self._interpreter.get_input_details()
        size = self.spec.input_size
        if len(inputs) != 1 or tuple(inputs[0]["shape"]) != (1, size, size, 3):
            shapes = [tuple(d["shape"]) for d in inputs]
            raise ModelError(
                f"{self.model.file}: expected one input of shape (1, {size}, {size}, 3), got {shapes}"
            )
        anchors = len(self._anchors)
        width = 4 + 2 * self.spec.keypoints
        by_shape = {tuple(d["shape"]): d for d in self._interpreter.get_output_details()}
        regressors = by_shape.get((1, anchors, width))
        classifiers = by_shape.get((1, anchors, 1))
        if regressors is None or classifiers is None:
            raise ModelError(
                f"{self.model.file}: expected outputs (1, {anchors}, {width}) and "
                f"(1, {anchors}, 1), got {sorted(by_shape)}"
            )
        return inputs[0], regressors, classifiers

    def plan(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The windows (x0, y0, x1, y1) that together find every face of a `width` x `height` frame: the
        whole frame or ROI first, then tiles (`detector.tiles`: planned from `min_face_px`, or given)."""
        s = self.settings
        if s.tiles == "auto":
            return plan_grid(width, height, s.min_face_px, self.spec.input_size, s.roi)
        return plan_windows(width, height, s.tiles, s.tile_overlap, s.roi, s.full_frame)

    def detect(self, image: RGBImage) -> list[Face]:
        """Faces in `image` (H, W, 3 uint8 RGB), best score first, boxes in its pixels: every planned
        window is searched."""
        _check_image(image)
        return self.detect_in(image, self.plan(image.shape[1], image.shape[0]))

    def detect_photo(self, image: RGBImage) -> list[Face]:
        """Faces in a photo (enrolment, compare, embed): the whole picture (or ROI) in one window, no tiles.

        A photo's resolution says nothing of its faces' size, unlike a camera's: planned tiles on a
        high-resolution portrait found false faces in the background (2 of the 26 shared portraits and
        group photos gained one or three), and the thresholds are calibrated on whole photos."""
        _check_image(image)
        return self.detect_in(image, [region_window(image.shape[1], image.shape[0], self.settings.roi)])

    def detect_in(self, image: RGBImage, windows: Sequence[tuple[int, int, int, int]]) -> list[Face]:
        """Faces found in the given windows of `image` (from `plan`, or a subset of it), best score first:
        with the planned tiles, weighted NMS within each window (as MediaPipe does), the best of
        overlapping detections across windows (`edge_agent.vision.nms`), and no face cut by a tile edge
        (`_whole_in`); with one window or hand-given tiles, weighted NMS over all of them."""
        _check_image(image)
        height, width = image.shape[:2]
        s = self.settings
        raw = [self._detect_window(image, window) for window in windows]
        if not raw:
            return []
        if s.tiles == "auto" and len(raw) > 1:
            # The plan's overlap keeps every face whole in some window: drop faces cut by a window's
            # edge, merge within each window, then keep the best of detections overlapping across
            # windows (two scales give two complete answers; their mean can be neither).
            region = region_window(width, height, s.roi)
            merged = []
            for found, window in zip(raw, windows, strict=True):
                whole = found if window == region else _whole_in(found, window, width, height)
                merged.append(RawDetections(*weighted_nms(*whole.as_tuple(), s.nms_iou)))
            boxes, keypoints, scores = best_of_overlapping(*_concatenated(merged).as_tuple(), s.nms_iou)
        else:
            # one window, or tiles given by hand (their overlap may cut a face in every tile): weighted
            # NMS over all windows' detections, which merges a cut face's parts with the whole one
            boxes, keypoints, scores = weighted_nms(*_concatenated(raw).as_tuple(), s.nms_iou)
        narrowest = s.min_face_px / 2.0
        faces = []
        for box, points, score in zip(boxes, keypoints, scores, strict=True):
            x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
            x1, y1 = min(float(width), float(box[2])), min(float(height), float(box[3]))
            if x1 - x0 < narrowest or y1 <= y0:
                continue
            faces.append(Face(Box(x0, y0, x1, y1), points.astype(np.float32), float(score)))
        return faces

    def _detect_window(self, image: RGBImage, window: tuple[int, int, int, int]) -> RawDetections:
        x0, y0, x1, y1 = window
        crop = image[y0:y1, x0:x1]
        letterbox = Letterbox.fit(crop.shape[1], crop.shape[0], self.spec.input_size, (x0, y0))
        regressors, logits = self._run(letterbox.apply(crop))
        scores = sigmoid_scores(logits)
        keep = scores >= self.settings.min_score
        boxes, keypoints = decode_boxes(regressors[keep], self._anchors[keep], self.spec.input_size)
        corners = letterbox.to_source(boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        return RawDetections(corners, letterbox.to_source(keypoints), scores[keep])

    def _run(self, square: RGBImage) -> tuple[FloatArray, FloatArray]:
        """Model outputs for one letterboxed input: regressors (N, 16) and score logits (N,)."""
        tensor = NORMALISERS[self.spec.normalisation](square)[None]
        self._interpreter.set_tensor(int(self._input["index"]), quantize_input(tensor, self._input))
        self._interpreter.invoke()
        regressors = dequantize_output(
            self._interpreter.get_tensor(int(self._regressors["index"])), self._regressors
        )
        logits = dequantize_output(
            self._interpreter.get_tensor(int(self._classifiers["index"])), self._classifiers
        )
        return regressors[0], logits[0, :, 0]


def _concatenated(parts: Sequence[RawDetections]) -> RawDetections:
    return RawDetections(
        np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.keypoints for p in parts]),
        np.concatenate([p.scores for p in parts]),
    )


CUT_MARGIN_PX = 2.0
"""A detection reaching this near a window edge inside the frame is a face cut by the window."""


def _whole_in(
    found: RawDetections, window: tuple[int, int, int, int], width: int, height: int
) -> RawDetections:
    """The detections of `window` that are not cut by one of its edges inside the frame.

    A face cut by a tile's edge gives a partial box there; it lies whole in a neighbouring tile or in
    the whole-frame pass (the plan's overlap is made for it), and averaged by weighted NMS into the whole
    face's detection it would pull that detection's box and keypoints off the face."""
    x0, y0, x1, y1 = window
    boxes = found.boxes
    keep = np.ones(len(boxes), dtype=bool)
    if x0 > 0:
        keep &= boxes[:, 0] > x0 + CUT_MARGIN_PX
    if y0 > 0:
        keep &= boxes[:, 1] > y0 + CUT_MARGIN_PX
    if x1 < width:
        keep &= boxes[:, 2] < x1 - CUT_MARGIN_PX
    if y1 < height:
        keep &= boxes[:, 3] < y1 - CUT_MARGIN_PX
    return RawDetections(boxes[keep], found.keypoints[keep], found.scores[keep])


def _check_image(image: RGBImage) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"detect needs an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}"
        )

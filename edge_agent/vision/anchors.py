"""SSD anchors and box decoding for MediaPipe BlazeFace.

MediaPipe's `SsdAnchorsCalculator` with `fixed_anchor_size: true` gives every anchor width = height = 1,
so an anchor is just a centre: for each stride, a ceil(input / stride) square grid, `per_cell` anchors
per cell, centre ((col + offset) / grid, (row + offset) / grid). The regressor for an anchor is
(dx, dy, w, h, then x, y of each keypoint) in input pixels, relative to the anchor centre.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from edge_agent.vision.manifest import AnchorSpec

FloatArray = npt.NDArray[np.float32]
SCORE_CLIP = 100.0  # MediaPipe's score_clipping_thresh for BlazeFace


def generate_anchors(spec: AnchorSpec, input_size: int) -> FloatArray:
    """Anchor centres as an (N, 2) array of normalised (x, y), in the model's output order."""
    centres: list[tuple[float, float]] = []
    for stride, per_cell in zip(spec.strides, spec.per_cell, strict=True):
        grid = math.ceil(input_size / stride)
        for row in range(grid):
            for col in range(grid):
                centre = ((col + spec.offset) / grid, (row + spec.offset) / grid)
                centres.extend([centre] * per_cell)
    return np.asarray(centres, dtype=np.float32)


def sigmoid_scores(logits: FloatArray) -> FloatArray:
    clipped = np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
    return (1.0 / (1.0 + np.exp(-clipped))).astype(np.float32)


def decode_boxes(
    regressors: FloatArray, anchors: FloatArray, input_size: int
) -> tuple[FloatArray, FloatArray]:
    """Regressor rows to normalised boxes (N, 4: x0, y0, x1, y1) and keypoints (N, K, 2)."""
    if regressors.ndim != 2 or regressors.shape[0] != anchors.shape[0]:
        raise ValueError(
            f"regressors must be (N, 4 + 2K) with N = {anchors.shape[0]} anchors, got {regressors.shape}"
        )
    if (regressors.shape[1] - 4) % 2 != 0 or regressors.shape[1] < 4:
        raise ValueError(f"regressor rows must hold 4 + 2K values, got {regressors.shape[1]}")
    scaled = regressors.astype(np.float32) / float(input_size)
    cx = scaled[:, 0] + anchors[:, 0]
    cy = scaled[:, 1] + anchors[:, 1]
    half_w = scaled[:, 2] / 2.0
    half_h = scaled[:, 3] / 2.0
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    count = (regressors.shape[1] - 4) // 2
    keypoints = scaled[:, 4:].reshape(len(scaled), count, 2) + anchors[:, None, :]
    return boxes.astype(np.float32), keypoints.astype(np.float32)

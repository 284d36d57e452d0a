"""Weighted non-maximum suppression, as MediaPipe uses for BlazeFace.

Take the best remaining detection; every remaining detection overlapping it by more than the IoU
threshold (itself included) joins its cluster; the cluster's box and keypoints are the score-weighted
mean of its members, its score the best member's. Averaging steadies boxes and keypoints from frame
to frame, which plain NMS (keep the best, drop the rest) does not.

Across detection windows (tiles at other scales) the detector uses plain NMS (`best_of_overlapping`): a
face seen at two scales gives two complete answers, and averaging them can give neither (on a face
turned on its side one scale found the eyes at 58 degrees, another at -35, their mean at 28).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def iou_one_to_many(box: FloatArray, boxes: FloatArray) -> FloatArray:
    """IoU of one (4,) box against (N, 4) boxes, all as x0, y0, x1, y1."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0.0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0.0, None)
    inter = iw * ih
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 0.0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0).astype(np.float32)


def weighted_nms(
    boxes: FloatArray, keypoints: FloatArray, scores: FloatArray, iou_threshold: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Merge overlapping detections; returns boxes, keypoints and scores, best first."""
    if not (len(boxes) == len(keypoints) == len(scores)):
        raise ValueError(
            f"boxes, keypoints and scores must be equally long, "
            f"got {len(boxes)}, {len(keypoints)}, {len(scores)}"
        )
    order = np.argsort(-scores, kind="stable")
    remaining = order
    out_boxes, out_keypoints, out_scores = [], [], []
    while remaining.size:
        top = remaining[0]
        overlap = iou_one_to_many(boxes[top], boxes[remaining])
        members = remaining[overlap > iou_threshold]
        members = members if members.size else remaining[:1]
        weights = scores[members].astype(np.float64)
        total = weights.sum()
        out_boxes.append((boxes[members] * weights[:, None]).sum(axis=0) / total)
        out_keypoints.append((keypoints[members] * weights[:, None, None]).sum(axis=0) / total)
        out_scores.append(scores[top])
        remaining = remaining[overlap <= iou_threshold]
        remaining = remaining[remaining != top]
    if not out_boxes:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros((0, *keypoints.shape[1:]), np.float32),
            np.zeros((0,), np.float32),
        )
    return (
        np.asarray(out_boxes, np.float32),
        np.asarray(out_keypoints, np.float32),
        np.asarray(out_scores, np.float32),
    )


def best_of_overlapping(
    boxes: FloatArray, keypoints: FloatArray, scores: FloatArray, iou_threshold: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Plain NMS: the best-scoring detection of each group overlapping by more than the threshold."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    remaining = order
    while remaining.size:
        top = int(remaining[0])
        kept.append(top)
        overlap = iou_one_to_many(boxes[top], boxes[remaining])
        remaining = remaining[(overlap <= iou_threshold) & (remaining != top)]
    index = np.asarray(kept, dtype=np.intp)
    return boxes[index], keypoints[index], scores[index]

"""Weighted NMS and IoU against values worked out by hand."""

import numpy as np
import pytest

from edge_agent.types import Box
from edge_agent.vision.nms import iou_one_to_many, weighted_nms


def test_iou_hand_computed() -> None:
    box = np.array([0, 0, 10, 10], np.float32)
    others = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], np.float32)
    # identical: 1; half shifted: 50 / (100 + 100 - 50); apart: 0; degenerate: 0
    np.testing.assert_allclose(iou_one_to_many(box, others), [1.0, 1 / 3, 0.0, 0.0], atol=1e-6)
    assert Box(0, 0, 10, 10).iou(Box(5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_overlapping_detections_merge_by_score_weight() -> None:
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [1, 0, 11, 10]], np.float32)
    keypoints = np.zeros((3, 6, 2), np.float32)
    keypoints[0, 0] = [2, 2]
    keypoints[2, 0] = [5, 2]
    scores = np.array([0.9, 0.8, 0.6], np.float32)
    # IoU of boxes 0 and 2 = 90 / 110 > 0.3: one cluster, weights 0.9 and 0.6
    out_boxes, out_keypoints, out_scores = weighted_nms(boxes, keypoints, scores, 0.3)
    assert len(out_boxes) == 2
    np.testing.assert_allclose(out_boxes[0], [0.4, 0.0, 10.4, 10.0], atol=1e-5)
    np.testing.assert_allclose(out_keypoints[0, 0], [3.2, 2.0], atol=1e-5)  # (2*.9 + 5*.6) / 1.5
    np.testing.assert_allclose(out_scores, [0.9, 0.8])
    np.testing.assert_allclose(out_boxes[1], [50, 50, 60, 60])


def test_below_threshold_stays_apart() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)  # IoU 1/3
    scores = np.array([0.7, 0.9], np.float32)
    out_boxes, _, out_scores = weighted_nms(boxes, np.zeros((2, 6, 2), np.float32), scores, 0.5)
    np.testing.assert_allclose(out_scores, [0.9, 0.7])
    np.testing.assert_allclose(out_boxes, [[5, 0, 15, 10], [0, 0, 10, 10]])


def test_empty_and_mismatched_input() -> None:
    boxes, keypoints, scores = weighted_nms(
        np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32), np.zeros(0, np.float32), 0.3
    )
    assert boxes.shape == (0, 4) and keypoints.shape == (0, 6, 2) and scores.shape == (0,)
    with pytest.raises(ValueError, match="equally long"):
        weighted_nms(
            np.zeros((2, 4), np.float32), np.zeros((1, 6, 2), np.float32), np.zeros(2, np.float32), 0.3
        )

"""Anchor generation and box decoding against values worked out by hand."""

import numpy as np
import pytest

from edge_agent.vision.anchors import decode_boxes, generate_anchors, sigmoid_scores
from edge_agent.vision.manifest import AnchorSpec

SHORT = AnchorSpec(strides=(8, 16), per_cell=(2, 6))
FULL = AnchorSpec(strides=(4,), per_cell=(1,))


def test_short_range_layout_matches_mediapipe() -> None:
    anchors = generate_anchors(SHORT, 128)
    # 16x16 cells x 2 + 8x8 cells x 6 = 512 + 384
    assert anchors.shape == (896, 2)
    # first cell of the stride-8 grid, twice: (0 + 0.5) / 16
    np.testing.assert_allclose(anchors[0], [0.03125, 0.03125])
    np.testing.assert_allclose(anchors[1], [0.03125, 0.03125])
    # second cell of the first row: (1 + 0.5) / 16
    np.testing.assert_allclose(anchors[2], [0.09375, 0.03125])
    # first row ends at column 15, then row 1 starts: index 32 = (0.5/16, 1.5/16)
    np.testing.assert_allclose(anchors[32], [0.03125, 0.09375])
    # stride-16 grid starts at index 512 with six anchors at (0.5 / 8, 0.5 / 8)
    np.testing.assert_allclose(anchors[512:518], [[0.0625, 0.0625]] * 6)
    np.testing.assert_allclose(anchors[-1], [0.9375, 0.9375])


def test_full_range_layout() -> None:
    anchors = generate_anchors(FULL, 192)
    assert anchors.shape == (2304, 2)
    # row 1, column 1 of the 48x48 grid: index 48 + 1, centre 1.5 / 48
    np.testing.assert_allclose(anchors[49], [1.5 / 48, 1.5 / 48])


def test_decode_box_and_keypoints_relative_to_anchor() -> None:
    anchors = np.array([[0.5, 0.5]], np.float32)
    # offsets in input pixels (input 128): centre +12.8 / -6.4, size 25.6 x 12.8
    raw = np.zeros((1, 16), np.float32)
    raw[0, :4] = [12.8, -6.4, 25.6, 12.8]
    raw[0, 4:6] = [-12.8, 0.0]  # first keypoint 0.1 left of the anchor
    raw[0, 14:16] = [0.0, 64.0]  # last keypoint 0.5 below it
    boxes, keypoints = decode_boxes(raw, anchors, 128)
    # centre (0.6, 0.45), half size (0.1, 0.05)
    np.testing.assert_allclose(boxes[0], [0.5, 0.4, 0.7, 0.5], atol=1e-6)
    assert keypoints.shape == (1, 6, 2)
    np.testing.assert_allclose(keypoints[0, 0], [0.4, 0.5], atol=1e-6)
    np.testing.assert_allclose(keypoints[0, 5], [0.5, 1.0], atol=1e-6)


def test_decode_nothing() -> None:
    boxes, keypoints = decode_boxes(np.zeros((0, 16), np.float32), np.zeros((0, 2), np.float32), 128)
    assert boxes.shape == (0, 4)
    assert keypoints.shape == (0, 6, 2)


@pytest.mark.parametrize(
    ("shape", "anchors"),
    [((3, 16), 2), ((2, 15), 2), ((2,), 2)],
)
def test_decode_rejects_wrong_shapes(shape: tuple[int, ...], anchors: int) -> None:
    with pytest.raises(ValueError, match="regressor"):
        decode_boxes(np.zeros(shape, np.float32), np.zeros((anchors, 2), np.float32), 128)


def test_sigmoid_values_and_clipping() -> None:
    logits = np.array([0.0, np.log(3.0), -1e6, 1e6], np.float32)
    with np.errstate(over="raise"):
        scores = sigmoid_scores(logits)
    np.testing.assert_allclose(scores[:2], [0.5, 0.75], atol=1e-6)
    assert 0.0 <= scores[2] < 1e-40
    assert scores[3] == pytest.approx(1.0)

"""Letterbox geometry and tiling plans, worked out by hand."""

import numpy as np
import pytest

from edge_agent.vision.letterbox import Letterbox, plan_windows


def test_wide_picture_is_centred_vertically_and_maps_back() -> None:
    box = Letterbox.fit(200, 100, 128)
    assert (box.scale, box.pad_x, box.pad_y) == (0.64, 0, 32)
    points = np.array([[0.5, 0.5], [0.0, 0.25], [1.0, 0.75]], np.float32)
    np.testing.assert_allclose(box.to_source(points), [[100, 50], [0, 0], [200, 100]], atol=1e-4)


def test_tall_picture_and_window_origin() -> None:
    box = Letterbox.fit(50, 200, 128, origin=(10.0, 20.0))
    assert (box.scale, box.pad_x, box.pad_y) == (0.64, 48, 0)
    # model x 0.5 is the picture's centre column; add the window origin
    np.testing.assert_allclose(box.to_source(np.array([[0.5, 0.0]], np.float32)), [[35, 20]])


def test_apply_fills_centre_and_pads_black() -> None:
    image = np.full((100, 200, 3), 255, np.uint8)
    square = Letterbox.fit(200, 100, 128).apply(image)
    assert square.shape == (128, 128, 3)
    assert square[:32].max() == 0 and square[96:].max() == 0
    assert square[32:96].min() == 255


def test_single_window_is_the_frame_or_roi() -> None:
    assert plan_windows(640, 480) == [(0, 0, 640, 480)]
    assert plan_windows(640, 480, roi=(0.25, 0.5, 0.75, 1.0)) == [(160, 240, 480, 480)]


def test_tiles_overlap_and_cover() -> None:
    windows = plan_windows(1000, 500, tiles=(2, 2), overlap=0.25)
    # the full frame first, then 2x2 tiles 571 px wide (1000 / 1.75), stepping 429 px
    assert windows[0] == (0, 0, 1000, 500)
    assert windows[1:] == [
        (0, 0, 571, 286),
        (429, 0, 1000, 286),
        (0, 214, 571, 500),
        (429, 214, 1000, 500),
    ]
    assert len(plan_windows(1000, 500, tiles=(3, 1), full_frame=False)) == 3


@pytest.mark.parametrize(
    ("size", "tiles", "roi"),
    [
        ((3, 3), (8, 8), None),
        ((100, 50), (1, 1), (0.999, 0.0, 1.0, 1.0)),
        ((1, 1), (8, 8), (0.5, 0.5, 0.6, 0.6)),
    ],
)
def test_windows_stay_inside_tiny_pictures(
    size: tuple[int, int], tiles: tuple[int, int], roi: tuple[float, float, float, float] | None
) -> None:
    width, height = size
    for x0, y0, x1, y1 in plan_windows(width, height, tiles=tiles, roi=roi):
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def test_empty_picture_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        Letterbox.fit(0, 10, 128)

"""Letterbox geometry and tiling plans, worked out by hand."""

import math

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.vision.letterbox import (
    MIN_INPUT_FACE_PX,
    Letterbox,
    plan_grid,
    plan_windows,
    smallest_face_found,
)


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


# ---- planned grids (tiles = "auto") ----------------------------------------------------------------------

INPUT_SIZE = 192  # full-range BlazeFace


def covered(windows: list[tuple[int, int, int, int]], width: int, height: int) -> npt.NDArray[np.bool_]:
    """Which pixels of a `width` x `height` frame lie in at least one of `windows`."""
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in windows:
        mask[y0:y1, x0:x1] = True
    return mask


def held_whole(
    tiles: list[tuple[int, int, int, int]], side: int, region: tuple[int, int, int, int], step: int
) -> npt.NDArray[np.bool_]:
    """For each top-left corner on a `step` grid of `region`, whether some tile holds the `side` x `side`
    box there whole."""
    left, top, right, bottom = region
    xs = np.arange(left, right - side + 1, step)[None, :, None]
    ys = np.arange(top, bottom - side + 1, step)[:, None, None]
    t = np.array(tiles)
    x0, y0, x1, y1 = (t[:, i][None, None, :] for i in range(4))
    fits = (x0 <= xs) & (y0 <= ys) & (xs + side <= x1) & (ys + side <= y1)
    return np.asarray(fits.any(axis=2), dtype=np.bool_)


@pytest.mark.parametrize(("width", "height", "windows"), [(1280, 720, 9), (1920, 1080, 19)])
def test_planned_grid_finds_a_40px_face_anywhere(width: int, height: int, windows: int) -> None:
    plan = plan_grid(width, height, 40, INPUT_SIZE)
    assert plan[0] == (0, 0, width, height)  # the whole frame first, for the large faces
    tiles = plan[1:]
    assert len(plan) == windows  # 1 + 4x2 tiles on 720p, 1 + 6x3 on 1080p (edge_agent/engine/detection.py)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert 40 * INPUT_SIZE / max(x1 - x0, y1 - y0) >= MIN_INPUT_FACE_PX
    assert smallest_face_found(plan, INPUT_SIZE) <= 40
    assert covered(tiles, width, height).all()
    # Faces too small for the whole frame (under `finds` px) lie whole inside a tile, wherever they are.
    finds = max(width, height) * MIN_INPUT_FACE_PX / INPUT_SIZE
    for side in (40, 60, math.floor(finds)):
        assert held_whole(tiles, side, plan[0], step=5).all(), side
    # The check can fail: two tiles that only touch do not hold the 40 px faces across their edge.
    abutting = [(0, 0, 480, 480), (480, 0, 960, 480)]
    assert not held_whole(abutting, 40, (0, 0, 960, 480), step=5).all()


def test_a_frame_whose_whole_window_suffices_needs_no_tiles() -> None:
    plan = plan_grid(640, 480, 60, INPUT_SIZE)
    assert plan == [(0, 0, 640, 480)]
    assert smallest_face_found(plan, INPUT_SIZE) == pytest.approx(640 * MIN_INPUT_FACE_PX / INPUT_SIZE)
    assert smallest_face_found(plan, INPUT_SIZE) <= 60


def test_smaller_faces_need_finer_tiles() -> None:
    coarse, fine = plan_grid(1920, 1080, 40, INPUT_SIZE), plan_grid(1920, 1080, 30, INPUT_SIZE)
    assert len(fine) > len(coarse)
    assert smallest_face_found(fine, INPUT_SIZE) <= 30 < smallest_face_found(coarse, INPUT_SIZE)


def test_planned_grid_keeps_to_the_roi() -> None:
    roi = (0.5, 0.25, 1.0, 1.0)
    region = (960, 270, 1920, 1080)
    plan = plan_grid(1920, 1080, 40, INPUT_SIZE, roi=roi)
    assert plan[0] == region
    tiles = plan[1:]
    assert tiles and len(plan) < len(plan_grid(1920, 1080, 40, INPUT_SIZE))
    for x0, y0, x1, y1 in tiles:
        assert 960 <= x0 < x1 <= 1920 and 270 <= y0 < y1 <= 1080
        assert 40 * INPUT_SIZE / max(x1 - x0, y1 - y0) >= MIN_INPUT_FACE_PX
    mask = covered(tiles, 1920, 1080)
    assert mask[270:1080, 960:1920].all()
    assert not mask[:270].any() and not mask[:, :960].any()
    finds = max(960, 810) * MIN_INPUT_FACE_PX / INPUT_SIZE
    for side in (40, 60, math.floor(finds)):
        assert held_whole(tiles, side, region, step=5).all(), side

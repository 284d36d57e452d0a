"""The detection schedule: which windows of a realistic plan are searched frame after frame."""

from __future__ import annotations

import pytest

from edge_agent.engine.detection import DetectionSchedule, Window
from edge_agent.types import Box
from edge_agent.vision.letterbox import plan_grid
from edge_agent.vision.settings import DetectorSettings

INPUT_SIZE = 192  # full-range BlazeFace, the default detector
WIDTH, HEIGHT = 1280, 720


def detector(**overrides: object) -> DetectorSettings:
    return DetectorSettings.model_validate(overrides)


class CountingPlan:
    """`plan_grid` for the settings' `min_face_px` and ROI, counting how often a plan is made."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self.calls: list[tuple[int, int]] = []

    def __call__(self, width: int, height: int) -> list[Window]:
        self.calls.append((width, height))
        return plan_grid(width, height, self.settings.min_face_px, INPUT_SIZE, self.settings.roi)


def schedule(**overrides: object) -> tuple[DetectionSchedule, list[Window]]:
    """A schedule over the 1280x720 plan, and that plan (the whole frame, then the tiles)."""
    settings = detector(**overrides)
    return DetectionSchedule(settings, CountingPlan(settings)), CountingPlan(settings)(WIDTH, HEIGHT)


def inside(box: Box, window: Window) -> bool:
    x0, y0, x1, y1 = window
    return x0 <= box.x0 and y0 <= box.y0 and box.x1 <= x1 and box.y1 <= y1


def test_the_plan_is_the_whole_frame_and_eight_tiles() -> None:
    _, plan = schedule()
    assert plan[0] == (0, 0, WIDTH, HEIGHT)
    assert len(plan) == 9


@pytest.mark.parametrize("sweep_frames", [2, 3, 5, 8, 30])
def test_each_tile_is_searched_once_in_any_sweep_frames_frames(sweep_frames: int) -> None:
    s, plan = schedule(sweep_frames=sweep_frames)
    region, tiles = plan[0], plan[1:]
    searched = [s.windows(WIDTH, HEIGHT, []) for _ in range(3 * sweep_frames + 1)]
    for windows in searched:
        assert windows[0] == region  # the whole frame, first, every frame
        assert region not in windows[1:]
        assert set(windows[1:]) <= set(tiles)
        assert len(windows[1:]) == len(set(windows[1:]))  # no tile twice in a frame
        assert len(windows) - 1 <= -(-len(tiles) // sweep_frames)  # about a share of the tiles, not all
    for start in range(len(searched) - sweep_frames + 1):
        seen = {window for windows in searched[start : start + sweep_frames] for window in windows[1:]}
        assert seen == set(tiles)
    # ... and no sooner than needed: one frame fewer misses a tile (with a tile for each turn).
    if sweep_frames <= len(tiles):
        fewer = {window for windows in searched[: sweep_frames - 1] for window in windows[1:]}
        assert fewer != set(tiles)


def test_sweep_frames_one_searches_every_window_every_frame() -> None:
    s, plan = schedule(sweep_frames=1)
    for _ in range(4):
        assert s.windows(WIDTH, HEIGHT, []) == plan


@pytest.mark.parametrize(
    "box",
    [
        Box(10, 10, 70, 70),  # a corner
        Box(610, 330, 670, 390),  # the centre
        Box(1200, 640, 1270, 710),  # the far corner
        Box(470, 200, 530, 260),  # across the edge of the first tile
        Box(700, 420, 800, 520),  # a larger face, across two rows
    ],
)
def test_the_tile_holding_an_unsettled_face_is_searched_every_frame(box: Box) -> None:
    s, plan = schedule(sweep_frames=3)
    tiles = plan[1:]
    assert any(inside(box, tile) for tile in tiles)  # the plan has a tile that holds it whole
    for _ in range(6):
        windows = s.windows(WIDTH, HEIGHT, [box])
        assert windows[0] == plan[0]
        assert any(inside(box, tile) for tile in windows[1:])


def test_unsettled_faces_add_their_tiles_to_the_turn() -> None:
    s, plan = schedule(sweep_frames=4)
    boxes = [Box(10, 10, 70, 70), Box(1200, 640, 1270, 710)]
    plain, _ = schedule(sweep_frames=4)
    for _ in range(8):
        turn = plain.windows(WIDTH, HEIGHT, [])
        windows = s.windows(WIDTH, HEIGHT, boxes)
        assert set(turn) <= set(windows)  # the sweep goes on as without them
        extra = set(windows) - set(turn)
        assert len(extra) <= len(boxes)
        assert windows[1:] == sorted(windows[1:], key=plan.index)  # in plan order, once each
        assert len(windows) == len(set(windows))


def test_the_plan_is_made_once_per_frame_size() -> None:
    settings = detector()
    plan = CountingPlan(settings)
    s = DetectionSchedule(settings, plan)
    for _ in range(3):
        s.windows(WIDTH, HEIGHT, [])
    assert plan.calls == [(WIDTH, HEIGHT)]
    windows = s.windows(1920, 1080, [])
    assert windows[0] == (0, 0, 1920, 1080)
    assert plan.calls == [(WIDTH, HEIGHT), (1920, 1080)]


def test_a_small_frame_searches_the_whole_frame_only() -> None:
    settings = detector(min_face_px=60)
    s = DetectionSchedule(settings, CountingPlan(settings))
    for _ in range(3):
        assert s.windows(640, 480, [Box(100, 100, 160, 160)]) == [(0, 0, 640, 480)]


def test_the_roi_is_the_region_searched() -> None:
    s, plan = schedule(roi=(0.5, 0.0, 1.0, 1.0), sweep_frames=2)
    region = (640, 0, 1280, 720)
    assert plan[0] == region
    seen: set[Window] = set()
    for _ in range(2):
        windows = s.windows(WIDTH, HEIGHT, [])
        assert windows[0] == region
        for x0, y0, x1, y1 in windows[1:]:
            assert inside(Box(x0, y0, x1, y1), region)
        seen.update(windows[1:])
    assert seen == set(plan[1:])


def test_the_finest_tile_holding_a_face_is_chosen_in_a_plan_of_two_levels() -> None:
    """At 4K with 40 px faces the plan has 480 px tiles and a coarser level of 2880 px tiles; a 45 px
    face being identified must get a 480 px tile (the coarse level finds faces of 240 px and up)."""
    settings = detector(sweep_frames=30)  # this frame's turn is the first tile alone, far from the face
    plan = plan_grid(3840, 2160, settings.min_face_px, INPUT_SIZE)
    sides = {max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in plan[1:]}
    assert len(sides) > 1, sides  # two levels of tiles
    box = Box(1900.0, 1000.0, 1945.0, 1045.0)
    chosen = DetectionSchedule(settings, lambda w, h: plan).windows(3840, 2160, [box])
    holding = [w for w in chosen[1:] if inside(box, w)]
    assert holding and min(max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in holding) == min(sides)


def test_tiles_given_by_hand_are_all_searched_every_frame() -> None:
    settings = detector(tiles=(3, 2))
    plan = [(0, 0, WIDTH, HEIGHT), *[(i * 400, 0, i * 400 + 480, 720) for i in range(3)]]
    sched = DetectionSchedule(settings, lambda w, h: plan)
    for _ in range(4):
        assert sched.windows(WIDTH, HEIGHT, []) == plan

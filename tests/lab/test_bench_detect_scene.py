"""`edge-agent bench detect --scene` on the shared crowd clip: the planned tiles find the small faces the
whole frame misses, and the live schedule searches fewer windows than the plan."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from edge_agent.capture.media import read_frames
from edge_agent.cli.main import build_parser
from edge_agent.lab.bench.detect_scene import (
    DEFAULT_PLAN,
    WHOLE_FRAME,
    SceneClip,
    SceneReport,
    SceneResult,
    default_scene,
    format_scene_table,
    load_scene,
    run_live_schedule,
    run_planned,
)
from edge_agent.lab.bench.labels import MatchCounts
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.settings import DetectorSettings

EVERY = 60  # 11 of crowd.mp4's 660 frames: fast, and still ~60 labelled faces


@pytest.fixture(scope="module")
def crowd(faces_dir: Path) -> SceneClip:
    clip = default_scene(faces_dir)
    assert clip is not None, f"no {faces_dir}/video/scenes/crowd.mp4 in the shared faces"
    return load_scene(clip, EVERY)


def test_crowd_truth_is_loaded_for_the_scored_frames(crowd: SceneClip) -> None:
    assert [f.index for f in crowd.frames] == list(range(0, 660, EVERY))
    assert crowd.size == (1280, 720)
    assert crowd.faces >= 5 * len(crowd.frames)  # ~16 faces on screen once the crowd has come in


def test_planned_tiles_find_more_crowd_faces_than_the_whole_frame(
    crowd: SceneClip, catalog: ModelCatalog
) -> None:
    whole = run_planned(WHOLE_FRAME, DetectorSettings(tiles=(1, 1)), 1, catalog, crowd)
    default = run_planned(DEFAULT_PLAN, DetectorSettings(), 1, catalog, crowd)
    print(f"recall: whole frame {whole.counts.recall:.3f}, default {default.counts.recall:.3f}")
    assert whole.windows_per_frame == 1
    assert default.windows_per_frame is not None and default.windows_per_frame > 1
    assert default.counts.recall > whole.counts.recall


def test_live_schedule_searches_a_part_of_the_plan(crowd: SceneClip, catalog: ModelCatalog) -> None:
    settings = DetectorSettings()
    frames = itertools.islice(read_frames(crowd.path), 2 * EVERY + 1)  # scored frames 0, 60 and 120
    live = run_live_schedule(settings, 1, catalog, crowd, frames)
    planned = run_planned(DEFAULT_PLAN, settings, 1, catalog, crowd).windows_per_frame
    assert live.timed_frames == 2 * EVERY + 1
    assert live.windows_per_frame is not None and planned is not None
    assert 1 < live.windows_per_frame < planned
    assert live.counts.true_positives + live.counts.false_negatives == sum(
        len(f.labels.boxes) for f in crowd.frames[:3]
    )


def test_scene_table_rows_and_ratio(crowd: SceneClip) -> None:
    results = (
        SceneResult(WHOLE_FRAME, 5.0, MatchCounts(4, 0, 6), 1, 11),
        SceneResult("dlib HOG (upsample 1)", 250.0, MatchCounts(2, 1, 8), None, 11),
    )
    table = format_scene_table(SceneReport(crowd, results, 1, "blazeface_x", 660))
    assert f"{len(crowd.frames)} frames, {crowd.faces} labelled faces" in table
    assert "| whole frame (tiles 1x1) | 5.00 | 50.0 | 0.400 | 1.000 | 1.00 |" in table
    assert "| dlib HOG (upsample 1) | 250.00 | 1.0 | 0.200 | 0.667 | n/a |" in table


def test_bench_detect_takes_repeated_scenes() -> None:
    args = build_parser().parse_args(["bench", "detect", "--scene", "a.mp4", "--scene", "b.mp4"])
    assert args.scene == [Path("a.mp4"), Path("b.mp4")]
    assert args.scene_every == 10
    assert build_parser().parse_args(["bench", "detect"]).scene is None

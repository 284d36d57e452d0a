"""The false-alert bench ("Congress test") on a slice of lfw-devtrain: its photo counts against a direct
float64 search, and its replay of the vote against the live run it recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import load_settings
from edge_agent.lab.bench.false_alerts import ACLU_FIGURE, FalseAlertBench, congress_split
from edge_agent.lab.bench.false_alerts_report import format_report
from edge_agent.lab.bench.false_alerts_run import run_false_alert_bench
from edge_agent.lab.bench.watchlist_vectors import describe_real_faces
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog

MAX_PHOTOS = 400
PEOPLE = 60
SEED = 3


@pytest.fixture(scope="module")
def bench(
    faces_dir: Path, catalog: ModelCatalog, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FalseAlertBench, Path]:
    cache = tmp_path_factory.mktemp("bench-cache")
    settings = load_settings(None, use_environment=False)
    faces = FacePipeline.from_settings(settings, catalog)
    result = run_false_alert_bench(
        settings,
        faces,
        faces_dir,
        people=PEOPLE,
        sizes=[600],
        track_sizes=[600],
        mated_tracks=12,
        stranger_tracks=30,
        max_photos=MAX_PHOTOS,
        seconds=1.0,
        seed=SEED,
        cache=cache / "walks.npz",
        descriptor_cache=cache / "lfw.npz",
    )
    return result, cache


def test_photo_counts_are_those_of_a_direct_search(
    bench: tuple[FalseAlertBench, Path], faces_dir: Path
) -> None:
    result, cache = bench
    real = describe_real_faces(faces_dir, MAX_PHOTOS, cache / "lfw.npz")
    split = congress_split(real, PEOPLE, SEED)
    gallery = real.vectors[list(split.enrolled)].astype(np.float64)
    strangers = real.vectors[list(split.strangers)].astype(np.float64)
    nearest = np.sqrt(((strangers[:, None, :] - gallery[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    rows = [row for row in result.photos if row.size == PEOPLE]
    assert len(rows) >= 9  # every calibrated point
    for row in rows:
        assert row.strangers == len(split.strangers)
        assert row.stranger_alerts == int((nearest < row.point.threshold).sum()), row.point.target_fmr
    alerts = [row.stranger_alerts for row in sorted(rows, key=lambda r: -r.point.target_fmr)]
    assert alerts == sorted(alerts, reverse=True) and alerts[0] > alerts[-1]
    padded = {row.point.target_fmr: row.stranger_alerts for row in result.photos if row.size == 600}
    assert all(padded[row.point.target_fmr] >= row.stranger_alerts for row in rows)  # more templates


def test_the_replay_at_the_live_point_gives_the_live_runs_decisions(
    bench: tuple[FalseAlertBench, Path],
) -> None:
    result, _ = bench
    live = result.live.chosen.point
    (replayed,) = [row for row in result.tracks if row.size == PEOPLE and row.point == live]
    assert replayed.strangers == result.live_strangers == 30
    assert replayed.mated == result.live_mated == 12
    assert replayed.stranger_alerts == result.live_stranger_alerts
    assert replayed.true_matches == result.live_true
    assert result.looks >= 42  # every track was looked at


def test_the_report_prints_the_published_figure_beside_ours(bench: tuple[FalseAlertBench, Path]) -> None:
    result, _ = bench
    text = format_report(result)
    assert ACLU_FIGURE in text and "published figure, not a run of theirs" in text
    assert "| 1e-06 |" in text and "What the budget picks" in text

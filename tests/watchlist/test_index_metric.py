"""The index and the exact checks measure with the one metric the embedder's manifest entry names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.face_metric import EUCLIDEAN, face_metric
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist.index import TemplateIndex


def test_every_manifest_embedder_names_a_known_metric() -> None:
    for spec in ModelCatalog.load().manifest.embedders.values():
        assert face_metric(spec.metric) is EUCLIDEAN


def test_the_index_reports_the_metrics_exact_distances(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    vectors = (rng.normal(size=(50, 128)) * 0.1).astype(np.float32)
    index = TemplateIndex.build(
        tmp_path / "m.usearch", 128, "f32", EUCLIDEAN, np.arange(50, dtype=np.int64), vectors
    )
    probe = (rng.normal(size=128) * 0.1).astype(np.float32)
    keys, reported = index.search(probe, 50)
    exact = [EUCLIDEAN.distance(vectors[key], probe) for key in keys]
    assert list(reported) == pytest.approx(exact, rel=1e-4)
    assert exact == sorted(exact)  # the index ranks as the metric does
    assert EUCLIDEAN.nearest(probe, vectors) == pytest.approx(min(exact), abs=1e-12)

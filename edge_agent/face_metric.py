"""How far apart two face descriptors are: the one definition, chosen by the embedder's manifest entry.

Each embedder in `models/manifest.toml` names its `metric` (`EmbedderSpec.metric`, typed by `MetricName`
here). The embedder's same/different answer, the watchlist's usearch index, and the watchlist's exact
checks of what the index proposes (a subject's best template, exclusions) all take their distances from
the `FaceMetric` of that name, so no two of them can disagree on what a distance is or which way it runs
(smaller is more alike, and a calibrated threshold is a distance).

This is a base module: `vision/` and `watchlist/` do not import each other, and both need it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge_agent.errors import EdgeAgentError

MetricName = Literal["euclidean"]
F32 = npt.NDArray[np.float32]
Vectors = npt.NDArray[np.floating]


class FaceMetric(ABC):
    """One metric, computed the same way wherever a face distance is needed."""

    name: MetricName
    usearch_kind: str
    """The usearch `metric` an index of this metric is built with (it must rank as `distance` does)."""

    @abstractmethod
    def distance(self, a: Vectors, b: Vectors) -> float:
        """The exact distance between two 1-d descriptors of the same length."""

    @abstractmethod
    def nearest(self, probe: Vectors, vectors: Vectors) -> float:
        """The exact distance from `probe` to the nearest row of the (m, d) `vectors`."""

    @abstractmethod
    def from_index(self, reported: npt.ArrayLike) -> F32:
        """usearch's reported values for an index of `usearch_kind`, as distances of this metric."""


class Euclidean(FaceMetric):
    """dlib's metric (its descriptors are not unit-normalised). Exact distances are taken in float64
    from the stored float32 vectors; usearch ranks by the squared distance (`l2sq`: the same order
    without a square root per comparison), so its values are rooted here, in float32."""

    name: MetricName = "euclidean"
    usearch_kind = "l2sq"

    def distance(self, a: Vectors, b: Vectors) -> float:
        if a.shape != b.shape or a.ndim != 1:
            raise EdgeAgentError(f"descriptors must be 1-d of the same length, got {a.shape} and {b.shape}")
        return float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)))

    def nearest(self, probe: Vectors, vectors: Vectors) -> float:
        # The row-wise norm sums in another order than the 1-d one above: the two can differ in the last
        # bit, so each keeps its own exact expression rather than one being written as the other.
        return float(np.linalg.norm(vectors.astype(np.float64) - probe, axis=1).min())

    def from_index(self, reported: npt.ArrayLike) -> F32:
        rooted: F32 = np.sqrt(np.maximum(np.asarray(reported, dtype=np.float32), 0.0))
        return rooted


EUCLIDEAN = Euclidean()
METRICS: dict[MetricName, FaceMetric] = {"euclidean": EUCLIDEAN}


def face_metric(name: MetricName) -> FaceMetric:
    """The metric a manifest entry names."""
    return METRICS[name]

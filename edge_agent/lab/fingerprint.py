"""Cache keys for the lab's descriptor caches (evaluation runs, the watchlist benchmark).

A cached descriptor is only valid while every input that shapes it is unchanged: the model files, the
detector settings and the code itself. The agent never caches descriptors, so it never needs this: the
lab computes the key from a pipeline when it looks up a cache, and hashes the source of the modules that
shape a descriptor only then.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Protocol, runtime_checkable

from edge_agent.vision.faces import FacePipeline

# The code that shapes the project pipeline's descriptor.
VISION_MODULES = tuple(
    f"edge_agent.vision.{name}"
    for name in (
        "align",
        "alignment_fit",
        "anchors",
        "detect",
        "embed",
        "faces",
        "letterbox",
        "nms",
        "shape_predictor",
    )
)


@runtime_checkable
class Fingerprinted(Protocol):
    """A describer that names its own inputs (the dlib reference: library and model versions)."""

    fingerprint: str


def source_fingerprint(*modules: str) -> str:
    """A hash of the named modules' source, so a describer's cache dies with a change to its code."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        source = importlib.import_module(name).__file__
        if source is not None:
            digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


def pipeline_fingerprint(pipeline: FacePipeline) -> str:
    """Changes with any model file, detector setting or vision code that shapes the pipeline's output."""
    embedder = pipeline.embedder
    parts = [
        pipeline.detector.model.sha256,
        embedder.model.sha256,
        embedder.spec.views,
        pipeline.aligner.fingerprint,
    ]
    code = source_fingerprint(*VISION_MODULES)
    return "|".join([*parts, pipeline.detector.settings.model_dump_json(), code])


def describer_fingerprint(describer: object) -> str:
    """The cache key part of any describer the lab runs: the project pipeline's is computed here, other
    describers (the dlib reference) carry their own `fingerprint`."""
    if isinstance(describer, FacePipeline):
        return pipeline_fingerprint(describer)
    if isinstance(describer, Fingerprinted):
        return describer.fingerprint
    raise TypeError(f"{type(describer).__name__} has no fingerprint to key a descriptor cache with")

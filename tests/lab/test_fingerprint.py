"""Descriptor-cache keys are the lab's: computed from a pipeline when a cache is looked up, never by the
pipeline itself at start."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edge_agent.config import load_settings
from edge_agent.lab.fingerprint import VISION_MODULES, describer_fingerprint, pipeline_fingerprint
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog


def test_the_pipeline_key_follows_models_settings_and_code(catalog: ModelCatalog) -> None:
    settings = load_settings(None, use_environment=False)
    pipeline = FacePipeline.from_settings(settings, catalog)
    assert not hasattr(pipeline, "fingerprint")
    key = pipeline_fingerprint(pipeline)
    assert key == describer_fingerprint(pipeline) == pipeline_fingerprint(pipeline)
    assert pipeline.detector.model.sha256 in key and pipeline.embedder.model.sha256 in key
    stricter = settings.model_copy(
        update={"detector": settings.detector.model_copy(update={"min_score": 0.75})}
    )
    assert pipeline_fingerprint(FacePipeline.from_settings(stricter, catalog)) != key
    assert "edge_agent.vision.faces" in VISION_MODULES


def test_other_describers_carry_their_own_key() -> None:
    @dataclass
    class Named:
        fingerprint: str

    assert describer_fingerprint(Named("dlib 19.24")) == "dlib 19.24"
    with pytest.raises(TypeError, match="no fingerprint"):
        describer_fingerprint(object())

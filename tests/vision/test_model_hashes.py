"""The models named in events and status carry the sha256 of the files the agent actually loaded."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from edge_agent.config import Settings
from edge_agent.engine.match_event import models_of
from edge_agent.errors import ModelError
from edge_agent.events.schema import StatusMessage
from edge_agent.vision.embed import FaceEmbedder
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.settings import RuntimeSettings


def _disk_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_models_field_names_the_loaded_files_by_hash(catalog: ModelCatalog) -> None:
    settings = Settings()
    faces = FacePipeline.from_settings(settings, catalog)
    models = models_of(faces)
    detector_file = catalog.path_of(faces.detector.model)
    embedder_file = catalog.path_of(faces.embedder.model)
    assert models.detector == faces.detector.model_id and models.embedder == faces.embedder.model_id
    assert models.detector_sha256 == _disk_sha256(detector_file)
    assert models.embedder_sha256 == _disk_sha256(embedder_file)
    assert models.detector_sha256 != models.embedder_sha256
    status = StatusMessage(device_id="d", state="online", agent_version="0", models=models)
    sent = json.loads(status.to_json())
    assert sent["models"]["embedder_sha256"] == _disk_sha256(embedder_file)


def test_a_model_file_that_differs_from_the_manifest_is_not_loaded(
    tmp_path: Path, catalog: ModelCatalog
) -> None:
    shutil.copy(catalog.root / "manifest.toml", tmp_path / "manifest.toml")
    _, entry = catalog.embedder("dlib_resnet_v1", "auto")
    data = bytearray(catalog.path_of(entry).read_bytes())
    data[-1] ^= 0xFF  # one flipped byte: still a TFLite file, no longer the manifest's
    (tmp_path / entry.file).write_bytes(bytes(data))
    changed = ModelCatalog.load(tmp_path)
    with pytest.raises(ModelError, match=r"sha256 .* does not match the manifest"):
        FaceEmbedder.for_file(changed, entry, RuntimeSettings(threads=1), None)

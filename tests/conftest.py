"""Shared fixtures: the real face photos from ../shared/faces and real detectors."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.events.schema import MatchEvent
from edge_agent.lab.demo.kit import default_kit
from edge_agent.lab.evaluation.datasets import people_and_strangers
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.settings import DetectorSettings, RuntimeSettings
from tests.kits.agent_kit import agent_settings
from tests.kits.broker import Broker, Pki

REPO = Path(__file__).resolve().parent.parent
DEMO_KIT = default_kit()


def _faces_dir() -> Path:
    configured = os.environ.get("EDGE_AGENT_TEST_FACES")
    return Path(configured) if configured else REPO.parent / "shared" / "faces"


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The shared face photos; absent only on a developer machine without ../shared (never in CI)."""
    folder = _faces_dir()
    if not (folder / "README.md").is_file():
        message = f"shared face photos not found at {folder} (set EDGE_AGENT_TEST_FACES)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


@dataclass(frozen=True)
class DlibReferenceFace:
    """dlib's own answer for one photo's largest face: its chip, its descriptor, and the mean of its
    descriptors of the chip and the mirrored chip (the project's `chip_and_mirror` views)."""

    chip: npt.NDArray[np.uint8]
    descriptor: npt.NDArray[np.float32]
    chip_and_mirror: npt.NDArray[np.float32]

    def under(self, views: str) -> npt.NDArray[np.float32]:
        """The descriptor under a manifest `views` rule."""
        return self.chip_and_mirror if views == "chip_and_mirror" else self.descriptor


@pytest.fixture(scope="session")
def dlib_reference(faces_dir: Path) -> dict[Path, DlibReferenceFace]:
    """dlib's pipeline (HOG + 5-point + ResNet) on every people/ and strangers/ photo, run once."""
    from edge_agent.capture.media import read_image
    from edge_agent.lab.evaluation.dlib_reference import DlibPipeline

    pipeline = DlibPipeline()
    found = {}
    for path in people_and_strangers(faces_dir):
        face = pipeline.face(read_image(path), "largest")
        assert face is not None, f"dlib found no face in {path}"
        found[path] = DlibReferenceFace(
            face.chip, pipeline.describe_chip(face.chip), pipeline.describe_chip_and_mirror(face.chip)
        )
    return found


@pytest.fixture(scope="session")
def catalog() -> ModelCatalog:
    return ModelCatalog.load()


@pytest.fixture(scope="module")
def faces(catalog: ModelCatalog) -> FacePipeline:
    """The live agent's face pipeline at its default settings, one per test module: a module that
    changes its operating point (a fleet `set_target_fmr`) does not change another's."""
    return FacePipeline.from_settings(agent_settings(Path("/nonexistent"), None, port=1), catalog)


@pytest.fixture(scope="session")
def make_detector(catalog: ModelCatalog) -> Callable[..., FaceDetector]:
    """Build a real detector from settings overrides, cached per distinct settings."""
    cache: dict[str, FaceDetector] = {}

    def make(**overrides: object) -> FaceDetector:
        settings = DetectorSettings.model_validate(overrides)
        key = settings.model_dump_json()
        if key not in cache:
            cache[key] = FaceDetector.from_settings(settings, RuntimeSettings(threads=1), catalog)
        return cache[key]

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests (model rebuilds, downloads) run only with EDGE_AGENT_TEST_SLOW=1 (`make test-slow`)."""
    if os.environ.get("EDGE_AGENT_TEST_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with `make test-slow` (EDGE_AGENT_TEST_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def project_descriptors(faces_dir: Path, catalog: ModelCatalog) -> dict[Path, npt.NDArray[np.float32]]:
    """The project pipeline's descriptor of the largest face of every people/ and strangers/ photo."""
    from edge_agent.capture.media import read_image
    from edge_agent.config import load_settings
    from edge_agent.vision.faces import FacePipeline

    pipeline = FacePipeline.from_settings(load_settings(None, use_environment=False), catalog)
    found = {}
    for path in people_and_strangers(faces_dir):
        described, _ = pipeline.describe_one(read_image(path), "largest")
        assert described is not None, f"no face found in {path}"
        found[path] = described.descriptor
    return found


# ---- events and MQTT: match events for transport tests, a real mosquitto per test (tests/kits/broker.py) --


@pytest.fixture
def make_match_event() -> Callable[..., MatchEvent]:
    """Builds a plausible, fully filled `MatchEvent` (no faces involved); keyword arguments override."""
    import uuid
    from datetime import UTC, datetime

    from edge_agent.events.schema import FalseMatchRate, Models, Quality

    def make(**overrides: Any) -> MatchEvent:
        now = datetime.now(UTC)
        fields: dict[str, Any] = {
            "event_id": uuid.uuid4(),
            "device_id": "edge-1",
            "camera_id": "cam-1",
            "captured_at": now,
            "decided_at": now,
            "subject_id": "s-0123456789ab",
            "watchlist": "default",
            "distance": 0.41,
            "threshold": 0.5,
            "false_match_rate": FalseMatchRate(target=1e-4, upper_95=2.3e-4, calibrated_on="lfw-devtrain"),
            "frames_agreeing": 3,
            "frames_seen": 5,
            "track_id": 7,
            "box": (120.0, 80.0, 220.0, 200.0),
            "frame_size": (1280, 720),
            "quality": Quality(
                face_px=100.0, sharpness=140.0, yaw_deg=8.0, roll_deg=-3.0, brightness=121.0, score=0.93
            ),
            "models": Models(detector="blazeface_full_range_float32", embedder="dlib_resnet_v1_dyn8"),
            "agent_version": "0.1.0",
        }
        fields.update(overrides)
        return MatchEvent(**fields)

    return make


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Makes brokers (not started) in the test's folder; all are killed at the end, and their logs are
    printed then, which pytest shows only for a failed test."""
    made: list[Broker] = []

    def make(**options: Any) -> Broker:
        broker = Broker(tmp_path / f"broker-{len(made)}", **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.kill()
        print("\n".join(broker.log().splitlines()[-150:]))


@pytest.fixture
def broker(broker_factory: Callable[..., Broker]) -> Broker:
    """A running anonymous mosquitto with persistence, on its own loopback port."""
    started = broker_factory()
    started.start()
    return started


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A test CA with a server certificate for 127.0.0.1/localhost and a client certificate."""
    from tests.kits.broker import make_pki

    return make_pki(tmp_path / "pki")


@pytest.fixture
def central_key_file(tmp_path: Path) -> Path:
    """A fresh Ed25519 key of the central side (fleet commands, bundles, the console's verdicts)."""
    from edge_agent.signed import generate_key

    path = tmp_path / "central.pem"
    generate_key(path)
    return path

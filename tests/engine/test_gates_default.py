"""The blur and truncation gates are on by default, their defaults follow from the shared data
(tools/measure_gates.py), and the live pipeline counts what its gates refuse, by reason."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.capture.media import read_image
from edge_agent.capture.runner import Captured
from edge_agent.config import Settings
from edge_agent.engine.live import LivePipeline
from edge_agent.events.schema import Counters
from edge_agent.events.store import EventStore
from edge_agent.types import Frame, RGBImage
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.quality import REASONS, assess, detector_gate_failures, edge_gap
from edge_agent.vision.settings import QualitySettings
from tests.conftest import REPO
from tests.kits.agent_kit import agent_settings, enrol_demo_people, open_watchlist

sys.path.insert(0, str(REPO / "tools"))
import measure_gates


@pytest.fixture(scope="module")
def faces(catalog: ModelCatalog) -> FacePipeline:
    return FacePipeline.from_settings(Settings(), catalog)


def test_blur_and_truncation_gates_are_on_by_default() -> None:
    gates = QualitySettings()
    assert gates.min_sharpness > 0.0
    assert gates.edge_margin > 0.0


def test_the_blur_default_is_the_measured_quantile(faces_dir: Path, faces: FacePipeline) -> None:
    """The documented procedure, rerun: 1% quantile of the sharp shared faces, rounded down."""
    measured = measure_gates.measure(faces_dir, faces, QualitySettings())
    assert len(measured) > 200  # photos and clips, not a handful
    threshold = measure_gates.threshold_of([m.sharpness for m in measured])
    assert QualitySettings().min_sharpness == threshold
    refused = sum(m.sharpness < threshold for m in measured)
    assert refused <= 0.01 * len(measured)
    # whole faces in the shared data never come near the frame edge the truncation gate watches
    assert min(edge_gap(m.face, m.frame_size) for m in measured) > QualitySettings().edge_margin


def _cut_through_face(image: RGBImage, faces: FacePipeline, fraction: float) -> RGBImage:
    face = max(faces.detector.detect(image), key=lambda f: f.box.area)
    x = round(face.box.x0 + fraction * face.box.width)
    return np.ascontiguousarray(image[:, x:])


def test_a_face_cut_at_the_frame_edge_is_refused_as_truncated(faces_dir: Path, faces: FacePipeline) -> None:
    image = read_image(faces_dir / "people" / "joe_biden" / "biden.jpg")
    whole = max(faces.detector.detect(image), key=lambda f: f.box.area)
    size = (image.shape[1], image.shape[0])
    assert detector_gate_failures(whole, size, QualitySettings()) == []
    part = _cut_through_face(image, faces, 0.25)
    cut = min(faces.detector.detect(part), key=lambda f: f.box.x0)
    reasons = detector_gate_failures(cut, (part.shape[1], part.shape[0]), QualitySettings())
    assert [r.reason for r in reasons] == ["truncated"], reasons


def _blurred_until_refused(image: RGBImage, faces: FacePipeline, gates: QualitySettings) -> RGBImage:
    """The photo blurred more and more until its still-detected face fails the blur gate."""
    for sigma in (2.0, 3.0, 4.0, 6.0, 8.0, 12.0):
        soft = np.ascontiguousarray(cv2.GaussianBlur(image, (0, 0), sigma), np.uint8)
        found = faces.detector.detect(soft)
        if not found:
            break
        face = max(found, key=lambda f: f.box.area)
        chip, _ = faces.aligner.align(soft, face)
        if [r.reason for r in assess(face, chip).rejections(gates)] == ["blur"]:
            return soft
    pytest.fail("no blur level left the face detectable and below the blur gate")


def test_the_live_pipeline_counts_refused_faces_by_reason(
    tmp_path: Path, faces_dir: Path, catalog: ModelCatalog
) -> None:
    settings = agent_settings(tmp_path, None, port=1)
    faces = FacePipeline.from_settings(settings, catalog)
    enrol_demo_people(settings, faces)
    image = read_image(faces_dir / "people" / "joe_biden" / "biden.jpg")
    # The default blur gate is low (the shared clips hold soft faces): a Gaussian blur strong enough to
    # pass under it loses the face to the detector first. The count is tested at half this face's own
    # sharpness instead.
    whole = max(faces.detector.detect(image), key=lambda f: f.box.area)
    sharpness = assess(whole, faces.aligner.align(image, whole)[0]).sharpness
    gates = settings.quality.model_copy(update={"min_sharpness": sharpness / 2})
    settings = settings.model_copy(update={"quality": gates})
    small: RGBImage = np.ascontiguousarray(
        cv2.resize(image, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA), np.uint8
    )
    frames = {
        "truncated": _cut_through_face(image, faces, 0.25),
        "blur": _blurred_until_refused(image, faces, settings.quality),
        "size": small,
    }
    start = datetime(2026, 3, 1, tzinfo=UTC)
    with open_watchlist(settings, faces) as watchlist, EventStore.from_settings(settings.events) as store:
        pipeline = LivePipeline(settings, faces, watchlist, store, "t")
        for i, (reason, picture) in enumerate(frames.items()):
            before = pipeline.counters.as_dict()
            # each picture in a recording of its own: a fresh track
            frame = Frame(picture, source_id=reason, index=0, captured_at=start + timedelta(seconds=i))
            assert pipeline.process(Captured(frame, 0.0)) == []
            after = pipeline.counters.as_dict()
            if reason == "size" and after["faces_seen"] == before["faces_seen"]:
                continue  # the detector's own minimum dropped it first: nothing reached the gates
            changed = {
                k: after[k] - before[k] for k in after if k.startswith("rejected_") and after[k] != before[k]
            }
            assert changed == {f"rejected_{reason}": after["faces_seen"] - before["faces_seen"]}, changed
        totals = pipeline.counters.as_dict()
    assert totals["rejected_truncated"] >= 1 and totals["rejected_blur"] >= 1
    assert totals["embeddings"] == 0
    assert {f"rejected_{r}" for r in REASONS} <= set(totals)
    assert Counters(**totals).rejected_blur == totals["rejected_blur"]  # health carries them

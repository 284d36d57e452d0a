"""The pipeline stages on the demo clip, without a broker: which tracks the performer's face lands in."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from edge_agent.capture.opencv import OpenCVSource
from edge_agent.capture.runner import Captured
from edge_agent.engine.live import LivePipeline, Matcher
from edge_agent.events.store import EventStore
from edge_agent.types import Candidate
from edge_agent.vision.embed import Descriptor
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from tests.kits.agent_kit import DEMO_CLIP, agent_settings, enrol_demo_people, open_watchlist


class RecordingMatcher(Matcher):
    """The real matcher, keeping what it answered so the test can look at every embedding's verdict."""

    def __init__(self, matcher: Matcher) -> None:
        super().__init__(matcher.watchlist)
        self.answers: list[Candidate] = []

    def candidate(self, track_id: int, captured_at: datetime, descriptor: Descriptor) -> Candidate:
        answer = super().candidate(track_id, captured_at, descriptor)
        self.answers.append(answer)
        return answer


def test_the_performer_is_one_track_across_the_scene(tmp_path: Path, catalog: ModelCatalog) -> None:
    # a fixed rate: "close to him" means under the usual 1e-4 threshold, whatever the watchlist's size
    settings = agent_settings(tmp_path, None, port=1)
    settings = settings.model_copy(
        update={"decision": settings.decision.model_copy(update={"operating_point": "target_fmr"})}
    )
    faces = FacePipeline.from_settings(settings, catalog)
    people = enrol_demo_people(settings, faces)
    lin = people["lin_manuel_miranda"]
    with open_watchlist(settings, faces) as watchlist, EventStore.from_settings(settings.events) as store:
        pipeline = LivePipeline(settings, faces, watchlist, store, "t")
        recorder = RecordingMatcher(pipeline.matcher)
        pipeline.matcher = recorder
        source = OpenCVSource("c", str(DEMO_CLIP), live=False)
        source.open()
        events = []
        while (frame := source.read()) is not None:
            events += pipeline.process(Captured(frame, 0.0))
        source.close()
    threshold = faces.embedder.threshold
    lin_tracks = {a.track_id for a in recorder.answers if a.subject_id == lin and a.distance < threshold}
    assert len(lin_tracks) == 1, recorder.answers  # every embedding close to him is in one track
    assert [(e.subject_id, e.track_id) for e in events] == [(lin, lin_tracks.pop())]
    # the event names the model files it came from by their hash on disk
    for role, model in (("detector", faces.detector.model), ("embedder", faces.embedder.model)):
        on_disk = hashlib.sha256(catalog.path_of(model).read_bytes()).hexdigest()
        assert getattr(events[0].models, f"{role}_sha256") == on_disk
    # embedding is selective: far fewer embeddings than faces seen
    assert pipeline.counters.embeddings < pipeline.counters.faces_seen / 4
    print(
        f"\nframes {pipeline.counters.frames}, faces {pipeline.counters.faces_seen}, tracks "
        f"{pipeline.counters.tracks}, embeddings {pipeline.counters.embeddings}, events {len(events)}"
    )


def test_a_new_recording_starts_tracks_and_cool_down_afresh(tmp_path: Path, catalog: ModelCatalog) -> None:
    """Two docked clips of the same scene (the demo clip twice, with the same recording time): each gives
    its event. Carried over, the first clip's cool-down would silence the second, whose clock restarts."""
    from dataclasses import replace

    settings = agent_settings(tmp_path, None, port=1)
    faces = FacePipeline.from_settings(settings, catalog)
    lin = enrol_demo_people(settings, faces)["lin_manuel_miranda"]
    with open_watchlist(settings, faces) as watchlist, EventStore.from_settings(settings.events) as store:
        pipeline = LivePipeline(settings, faces, watchlist, store, "t")
        events = []
        for clip_id in ("clip-a", "clip-b"):
            source = OpenCVSource("c", str(DEMO_CLIP), live=False)
            source.open()
            while (frame := source.read()) is not None:
                events += pipeline.process(Captured(replace(frame, meta={"clip_id": clip_id}), 0.0))
            source.close()
    assert [event.subject_id for event in events] == [lin, lin]
    assert settings.decision.cooldown_s >= 60  # far longer than the clip: only the new recording allows it

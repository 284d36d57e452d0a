"""The body-cam source through the real agent: events at the clip's recording time, a crash-looping clip
given up, and progress reported after the source closed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from edge_agent.capture.bodycam.source import MAX_ATTEMPTS, BodycamSource
from edge_agent.service import Agent
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from tests.capture.bodycam.clip_kit import (
    DEMO_FRAMES,
    T1,
    T2,
    Log,
    camera,
    run_once,
    statuses,
    with_creation_time,
)
from tests.kits.agent_kit import DEMO_CLIP, MATCH_TOPIC, agent_settings, enrol_demo_people, payloads
from tests.kits.broker import Broker, Subscriber


def test_the_agent_reports_the_performer_in_a_docked_clip_at_its_recording_time(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog
) -> None:
    """`once`: the agent processes the clip docked before it started, sends the match, moves the clip and
    exits 0. The event's captured_at is the clip's recording time plus the offset of one of its frames."""
    dock = tmp_path / "dock"
    clip = with_creation_time(DEMO_CLIP, dock / "unit3" / "clip.mp4", T1)
    bodycam = {
        "folder": dock,
        "state_path": tmp_path / "bodycam.db",
        "stable_s": 0.1,
        "poll_s": 0.05,
        "once": True,
        "after": "move",
        "move_to": tmp_path / "archive",
    }
    settings = agent_settings(
        tmp_path, broker, camera={"type": "bodycam", "id": "dock-1", "bodycam": bodycam}
    )
    faces = FacePipeline.from_settings(settings, catalog)
    people = enrol_demo_people(settings, faces)
    subscriber = Subscriber(broker, MATCH_TOPIC).start()

    assert Agent(settings, catalog=catalog).run() == 0

    events = payloads(subscriber.wait_for(1, MATCH_TOPIC, timeout_s=10))
    assert {event["subject_id"] for event in events} == {people["lin_manuel_miranda"]}
    assert {event["camera_id"] for event in events} == {"dock-1"}
    offsets = {round(index / 29.97, 6) for index in range(DEMO_FRAMES)}
    for event in events:
        offset = (datetime.fromisoformat(event["captured_at"]) - T1).total_seconds()
        assert round(offset, 6) in offsets, event["captured_at"]
    assert statuses(settings.camera) == {"clip.mp4": ("done", DEMO_FRAMES, None)}
    assert not clip.exists() and (tmp_path / "archive" / "unit3" / "clip.mp4").is_file()


def test_a_clip_that_keeps_crashing_the_agent_is_given_up(dock: Path) -> None:
    """Opened MAX_ATTEMPTS times without one frame processed (each run "crashes": no close): failed."""
    with_creation_time(DEMO_CLIP, dock / "crasher.mp4", T1)
    with_creation_time(DEMO_CLIP, dock / "next.mp4", T2)
    settings = camera(dock)
    for _ in range(MAX_ATTEMPTS):
        crashed = BodycamSource(settings)
        crashed.open()
        frame = crashed.read()
        assert frame is not None and frame.meta["clip_frame"] == "0"
    log = Log()
    frames = run_once(settings, log)
    assert {f.clip for f in frames} == {"next.mp4"}
    assert log.about("crasher.mp4 failed: opened 3 times without progress")


def test_a_last_frame_reported_after_close_still_marks_the_clip_done(dock: Path) -> None:
    with_creation_time(DEMO_CLIP, dock / "clip.mp4", T1)
    settings = camera(dock, once=False)
    source = BodycamSource(settings)
    source.open()
    frames = [source.read() for _ in range(DEMO_FRAMES)]
    for frame in frames[:-1]:
        assert frame is not None
        source.processed(frame)
    source.close()  # the capture thread ends first (a fatal error), the worker still finishes its frame
    last = frames[-1]
    assert last is not None and last.meta["clip_last"] == "1"
    source.processed(last)
    assert statuses(settings) == {"clip.mp4": ("done", DEMO_FRAMES, None)}

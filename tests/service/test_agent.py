"""The live agent end to end: real clips, real models, a real mosquitto started by each test."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from edge_agent.config import Settings
from edge_agent.events.store import EventStore
from edge_agent.fleet.anchor import device_key, device_key_path
from edge_agent.service import Agent
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from tests.kits.agent_kit import (
    DEVICE,
    MATCH_TOPIC,
    PREFIX,
    agent_settings,
    decided_at_rate,
    enrol_demo_people,
    enrol_photos,
    files_under,
    open_watchlist,
    payloads,
    table_rows,
)
from tests.kits.broker import Broker, Subscriber
from tests.kits.waiting import wait_until


def run_agent(settings: Settings, catalog: ModelCatalog) -> Agent:
    agent = Agent(settings, catalog=catalog)
    assert agent.run() == 0
    return agent


def committed_event_ids(events_db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{events_db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT event_id FROM review ORDER BY decided_at")]
    finally:
        conn.close()


def test_demo_clip_gives_events_for_the_enrolled_performer_only(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog, faces: FacePipeline
) -> None:
    settings = agent_settings(tmp_path, broker)
    people = enrol_demo_people(settings, faces)
    subscriber = Subscriber(broker, f"{PREFIX}/{DEVICE}/#").start()

    agent = run_agent(settings, catalog)

    events = payloads(subscriber.wait_for(1, MATCH_TOPIC, timeout_s=10))
    time.sleep(0.5)  # anything else in flight
    events = payloads(subscriber.messages(MATCH_TOPIC))
    subjects = {event["subject_id"] for event in events}
    assert subjects == {people["lin_manuel_miranda"]}, events
    assert len({event["track_id"] for event in events}) == 1  # one track, one event for him
    event = events[0]
    assert event["review_required"] is True
    assert event["distance"] < event["threshold"]
    assert event["false_match_rate"]["target"] == decided_at_rate(agent, event)
    assert faces.embedder.calibration is not None
    assert (
        event["threshold"] == faces.embedder.calibration.for_target(decided_at_rate(agent, event)).threshold
    )
    if event["frames_agreeing"] > 1:
        assert event["frames_agreeing"] >= settings.decision.k
    # the false alerts a day the operating point costs, for the two people enrolled (engine/budget.py)
    assert agent.pipeline is not None
    point = agent.pipeline.operating.chosen.point
    rate = event["false_match_rate"]
    assert rate["templates"] == len(people)
    per_track = min(1.0, settings.decision.track_factor * len(people) * point.target_fmr)
    assert rate["expected_false_alerts_per_day"] == pytest.approx(
        settings.decision.faces_per_day * per_track, rel=1e-3
    )
    per_track_upper = min(1.0, settings.decision.track_factor * len(people) * point.fmr_upper_95)
    assert rate["false_alerts_per_day_upper_95"] == pytest.approx(
        settings.decision.faces_per_day * per_track_upper, rel=1e-3
    )
    assert rate["false_alerts_per_day_upper_95"] <= settings.decision.false_alerts_per_day  # the budget held
    health = payloads(subscriber.messages(f"{PREFIX}/{DEVICE}/health"))
    assert health and all(h["operating_point"]["target_fmr"] == point.target_fmr for h in health)
    assert health[-1]["operating_point"]["templates"] == len(people)
    assert (
        health[-1]["operating_point"]["budget_met"] is True
        and health[-1]["operating_point"].get("problem") is None
    )
    assert "face_jpeg" not in event  # off by default
    assert agent.pipeline is not None and agent.pipeline.counters.matches == len(events)
    # the device keeps the sent match (event + embedding) for the reviewer, marked sent
    assert committed_event_ids(settings.events.path) == [event["event_id"]]
    assert table_rows(settings.events.path)["outbox"] == 0
    statuses = payloads(subscriber.messages(f"{PREFIX}/{DEVICE}/status"))
    assert [s["state"] for s in statuses][-2:] == ["online", "offline"]


@pytest.mark.parametrize("clip", ["demo", "walkers"])
@pytest.mark.parametrize("watchlist", ["empty", "unrelated"])
def test_privacy_unknown_faces_leave_no_trace(
    tmp_path: Path,
    broker: Broker,
    catalog: ModelCatalog,
    faces: FacePipeline,
    faces_dir: Path,
    clip: str,
    watchlist: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nobody in the clip is on the watchlist: only status and health are published, no table gains a
    row (the aggregate counters only change their values), and no file appears."""
    device = tmp_path / "device"  # the agent's folder; the test broker keeps its own files beside it
    device.mkdir()
    monkeypatch.chdir(device)  # anything written relative to the working directory would show
    source = faces_dir / "video" / "walkers.mp4" if clip == "walkers" else None
    settings = agent_settings(device, broker, camera={"source": str(source)} if source else {})
    if watchlist == "unrelated":
        enrol_photos(settings, faces, sorted((faces_dir / "people" / "obama").glob("*"))[:1])
    else:
        open_watchlist(settings, faces).close()
    EventStore.from_settings(settings.events).close()  # an existing device: its event store is there
    device_key(device_key_path(settings.watchlist.path))  # and its audit-anchor key (made at first start)
    before_rows = {db: table_rows(db) for db in (settings.watchlist.path, settings.events.path)}
    before_files = files_under(device)
    subscriber = Subscriber(broker, "#").start()

    agent = run_agent(settings, catalog)
    new_files = {path.name for path in files_under(device) - before_files}
    subscriber.wait_for(2, f"{PREFIX}/{DEVICE}/status")  # online, then offline at the clean stop

    topics = {message.topic for message in subscriber.messages()}
    assert topics <= {f"{PREFIX}/{DEVICE}/status", f"{PREFIX}/{DEVICE}/health"}, topics
    assert agent.pipeline is not None
    counters = agent.pipeline.counters
    assert counters.frames > 50 and counters.faces_seen > 50 and counters.matches == 0
    # Only aggregate counters change: `counters` (values only) and `counter_days` (per-day counts for
    # transparency reports: one row per UTC day and counter at most, so a run across midnight adds up to
    # two rows per counter; nothing per person).
    aggregate = {"counters", "counter_days"}
    for db, rows in before_rows.items():
        after = table_rows(db)
        assert {t: n for t, n in after.items() if t not in aggregate} == {
            t: n for t, n in rows.items() if t not in aggregate
        }, db
    events_after = table_rows(settings.events.path)
    assert events_after["counters"] == before_rows[settings.events.path]["counters"]
    assert events_after["counter_days"] <= 2 * len(counters.as_dict())
    assert new_files == set(), new_files
    health = payloads(subscriber.messages(f"{PREFIX}/{DEVICE}/health"))
    assert all(h["counters"]["matches"] == 0 for h in health)  # how many depends on the run's length


def test_events_made_while_the_broker_is_down_arrive_after_it_returns(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog, faces: FacePipeline
) -> None:
    """The clip loops with no cool-down, so the performer gives an event on every pass; the broker is
    stopped for the first passes. Every committed event must arrive once the broker is back."""
    settings = agent_settings(
        tmp_path, broker, camera={"loop": True}, decision={"cooldown_s": 0.0}, events={"drain_timeout_s": 30}
    )
    enrol_demo_people(settings, faces)
    subscriber = Subscriber(broker, MATCH_TOPIC, client_id="loss-test").start()
    broker.stop()  # graceful: the broker keeps the subscriber's session and queues for it

    agent = Agent(settings, catalog=catalog)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while len(_committed(settings)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_committed(settings)) >= 3, "the agent made no events"
        assert agent.store is not None and agent.store.depth() >= 3  # waiting in the outbox
        broker.start()
        deadline = time.monotonic() + 30
        while agent.store.depth() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        agent.stop()
        runner.join(60)
    committed = _committed(settings)
    received = subscriber.wait_for(len(committed), MATCH_TOPIC, timeout_s=15)
    received_ids = [event["event_id"] for event in payloads(received)]
    assert set(received_ids) == set(committed)
    first_arrival = list(dict.fromkeys(received_ids))
    assert first_arrival == committed  # in order
    assert table_rows(settings.events.path)["outbox"] == 0


def _committed(settings: Settings) -> list[str]:
    if not settings.events.path.exists():
        return []
    return committed_event_ids(settings.events.path)


def test_a_camera_that_dies_is_reopened_and_health_says_so(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog
) -> None:
    """A stream source whose 'camera' (a file played as a stream) vanishes: the agent stays up, health
    reports the reconnecting camera with its error, and frames flow again when it returns."""
    stream = tmp_path / "camera.mp4"
    clip = Path(agent_settings(tmp_path, None, port=1).camera.source)
    stream.write_bytes(clip.read_bytes())
    settings = agent_settings(
        tmp_path,
        broker,
        camera={"source": str(stream), "kind": "stream", "reconnect_min_s": 0.1, "reconnect_max_s": 0.3},
    )
    subscriber = Subscriber(broker, f"{PREFIX}/{DEVICE}/health").start()
    agent = Agent(settings, catalog=catalog)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        _wait(lambda: agent.runner is not None and agent.runner.frames > 20, "frames from the camera")
        stream.unlink()  # the camera is gone: the end of the stream, and reopening fails
        _wait(lambda: _health_state(subscriber) == "reconnecting", "health saying reconnecting")
        reconnecting = payloads(subscriber.messages())[-1]["camera"]
        assert reconnecting["reconnects"] >= 1
        assert "camera.mp4" in reconnecting["last_error"]
        assert runner.is_alive()
        frames_before = agent.runner.frames if agent.runner else 0
        stream.write_bytes(clip.read_bytes())  # the camera is back
        _wait(lambda: agent.runner is not None and agent.runner.frames > frames_before + 20, "frames again")
        _wait(lambda: _health_state(subscriber) == "streaming", "health saying streaming")
    finally:
        agent.stop()
        runner.join(30)
    assert not runner.is_alive()


def _health_state(subscriber: Subscriber) -> str | None:
    messages = subscriber.messages()
    return json.loads(messages[-1].payload)["camera"]["state"] if messages else None


def test_listen_prints_valid_events_and_names_invalid_payloads(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog, faces: FacePipeline
) -> None:
    """`edge-agent listen` follows the agent's topics, checks each payload against its schema, and
    reports a malformed one on stderr (exit 1) without stopping."""
    import subprocess
    import sys

    import paho.mqtt.publish as publish

    settings = agent_settings(tmp_path, broker)
    enrol_demo_people(settings, faces)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    env |= {"EDGE_AGENT_MQTT__HOST": "127.0.0.1", "EDGE_AGENT_MQTT__PORT": str(broker.port)}
    listener = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "listen", "--count", "1", "--timeout", "60", "--matches-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _wait(lambda: broker.log_count("edge-agent-listen-") > 0, "the listener to connect")
        time.sleep(0.5)  # its SUBSCRIBE
        publish.single(
            f"{PREFIX}/{DEVICE}/events/match",
            b'{"schema": "edge-agent.match/1"}',
            hostname="127.0.0.1",
            port=broker.port,
            qos=1,
        )
        run_agent(settings, catalog)
        out, err = listener.communicate(timeout=60)
    finally:
        listener.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1 and lines[0]["kind"] == "match"
    assert lines[0]["payload"]["review_required"] is True
    assert "invalid payload on edge-agent/test-cam/events/match" in err and "event_id" in err
    assert listener.returncode == 1  # it saw an invalid payload


def test_face_crop_when_enabled_is_the_aligned_chip_only(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog, faces: FacePipeline
) -> None:
    import base64

    import cv2
    import numpy as np

    settings = agent_settings(tmp_path, broker, events={"face_crop": True})
    enrol_demo_people(settings, faces)
    subscriber = Subscriber(broker, MATCH_TOPIC).start()
    run_agent(settings, catalog)
    event = payloads(subscriber.wait_for(1, MATCH_TOPIC))[0]
    data = base64.b64decode(event["face_jpeg"])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    size = faces.embedder.spec.input_size
    assert image is not None and image.shape == (size, size, 3)  # the chip, never the frame


def test_a_reload_that_fails_keeps_the_agent_running(
    tmp_path: Path,
    broker: Broker,
    catalog: ModelCatalog,
    faces: FacePipeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGHUP after the watchlist file was replaced by one from a newer schema: the agent says so in one
    line and keeps watching with the watchlist it has."""
    settings = agent_settings(tmp_path, broker, camera={"loop": True})
    open_watchlist(settings, faces).close()
    agent = Agent(settings, catalog=catalog)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        _wait(lambda: agent.runner is not None and agent.runner.frames > 10, "frames")
        conn = sqlite3.connect(settings.watchlist.path)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        with caplog.at_level("INFO", logger="edge_agent"):
            agent.reload()
            _wait(lambda: "watchlist reload failed" in caplog.text, "the reload to fail")
        frames = agent.runner.frames if agent.runner else 0
        _wait(lambda: agent.runner is not None and agent.runner.frames > frames + 10, "frames after it")
        assert runner.is_alive()
    finally:
        agent.stop()
        runner.join(30)


_wait = functools.partial(wait_until, timeout_s=30.0)


def test_a_stop_with_a_frozen_broker_takes_no_longer_than_the_drain_timeout(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog, faces: FacePipeline
) -> None:
    """SIGTERM while the broker is frozen (SIGSTOP: the TCP connection stays open, nothing answers) and
    an event waits in the outbox: the whole stop (drain, then `offline` and its wait) fits in
    `events.drain_timeout_s`, and the event stays in the outbox for the next start."""
    drain_timeout_s = 3.0
    settings = agent_settings(
        tmp_path,
        broker,
        camera={"loop": True},
        decision={"cooldown_s": 0.0},
        events={"drain_timeout_s": drain_timeout_s},
    )
    enrol_demo_people(settings, faces)
    subscriber = Subscriber(broker, MATCH_TOPIC).start()
    agent = Agent(settings, catalog=catalog)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        subscriber.wait_for(1, MATCH_TOPIC, timeout_s=30)
        broker.pause()
        time.sleep(0.5)  # an acknowledgement the broker sent just before it froze is taken first
        _wait(lambda: agent.store is not None and agent.store.depth() >= 1, "an event waiting in the outbox")
    finally:
        stopped = time.monotonic()
        agent.stop()
        runner.join(30)
        took = time.monotonic() - stopped
        broker.resume()
    assert not runner.is_alive()
    print(f"stop with a frozen broker: {took:.2f} s (drain_timeout_s {drain_timeout_s})")
    assert took <= drain_timeout_s + 0.5, f"stop took {took:.2f} s"
    assert table_rows(settings.events.path)["outbox"] >= 1  # kept for the next start

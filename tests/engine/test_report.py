"""Transparency reports: the counts equal what the real pipeline produced on the demo clip, per period,
aggregate only (no subject id or name anywhere), as JSON that validates and as a retained MQTT message."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.capture.opencv import OpenCVSource
from edge_agent.capture.runner import Captured
from edge_agent.cli.main import main
from edge_agent.config import Settings, settings_as_toml
from edge_agent.engine.live import LivePipeline
from edge_agent.engine.transparency import build_report, render_markdown
from edge_agent.events.listen import check_payload
from edge_agent.events.schema import Counters, MatchEvent, TransparencyReport
from edge_agent.events.store import EventStore
from edge_agent.lab.mosquitto import free_port
from edge_agent.service import Agent
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist import audit
from edge_agent.watchlist.store import Watchlist
from tests.kits.agent_kit import (
    DEMO_CLIP,
    DEVICE,
    MATCH_TOPIC,
    PREFIX,
    agent_settings,
    enrol_demo_people,
    open_watchlist,
)
from tests.kits.broker import Broker, Subscriber

EMBEDDING_DIMENSIONS = 128  # the configured embedder's (dlib's descriptor)

REPORT_TOPIC = f"{PREFIX}/{DEVICE}/report"
FLUSH_EVERY = 100  # frames between counter flushes, as the agent's health timer would


@dataclass(frozen=True)
class DemoRun:
    folder: Path
    names: dict[str, str]  # subject id -> display name
    events: list[MatchEvent]
    counters: dict[str, int]
    days: tuple[date, date]  # the UTC days the run began and ended on


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, catalog: ModelCatalog) -> DemoRun:
    """The real LivePipeline on the demo clip with the demo people enrolled; counters flushed into the
    event store by the agent's own code, every FLUSH_EVERY frames and at the end."""
    folder = tmp_path_factory.mktemp("device")
    first_day = datetime.now(UTC).date()
    settings = agent_settings(folder, None, port=1)
    faces = FacePipeline.from_settings(settings, catalog)
    people = enrol_demo_people(settings, faces)
    agent = Agent(settings, catalog=catalog)  # for its counter flush only: it is not run
    events: list[MatchEvent] = []
    with open_watchlist(settings, faces) as watchlist, EventStore.from_settings(settings.events) as store:
        pipeline = LivePipeline(settings, faces, watchlist, store, MATCH_TOPIC)
        source = OpenCVSource("c", str(DEMO_CLIP), live=False)
        source.open()
        while (frame := source.read()) is not None:
            events += pipeline.process(Captured(frame, 0.0))
            if pipeline.counters.frames % FLUSH_EVERY == 0:
                agent._flush_counters(pipeline, store)
        source.close()
        agent._flush_counters(pipeline, store)
        assert store.counters() == pipeline.counters.as_dict()  # every count reached the store
    names = {subject_id: name for name, subject_id in people.items()}
    return DemoRun(folder, names, events, pipeline.counters.as_dict(), (first_day, datetime.now(UTC).date()))


def settings_for(folder: Path, broker: Broker | None = None) -> Settings:
    return agent_settings(folder, broker, port=None if broker is not None else free_port())


def write_config(folder: Path, settings: Settings) -> Path:
    config = folder / "agent.toml"
    config.write_text(settings_as_toml(settings))
    return config


def assert_nobody_named(text: str, run: DemoRun) -> None:
    for subject_id, name in run.names.items():
        assert subject_id not in text
        assert name not in text and name.replace("_", " ") not in text.lower()


def enrol_rows(settings: Settings) -> int:
    conn = sqlite3.connect(settings.watchlist.path)
    try:
        return sum(row.action == "enroll" for row in audit.rows(conn))
    finally:
        conn.close()


def test_the_report_counts_what_the_pipeline_produced(demo_run: DemoRun) -> None:
    settings = settings_for(demo_run.folder)
    report = build_report(settings, *demo_run.days)
    assert report.counters == Counters(**demo_run.counters)
    assert report.counters.frames == 275
    assert report.counters.faces_seen > report.counters.tracks > 0
    assert report.counters.embeddings > 0
    assert report.counters.matches == len(demo_run.events) == 1
    assert report.matches_by_watchlist == dict(Counter(event.watchlist for event in demo_run.events))
    assert report.reviews_required == len(demo_run.events)
    assert all(event.review_required for event in demo_run.events)
    changes = report.watchlist_changes
    assert changes.enrolments == enrol_rows(settings) == len(demo_run.names) == 2
    assert (changes.imports, changes.removals, changes.expiries) == (0, 0, 0)
    assert (report.commands.accepted, report.commands.rejected) == (0, 0)
    assert report.audit.verified and report.audit.rows == 3  # two enrolments, one match
    conn = sqlite3.connect(settings.watchlist.path)
    try:
        assert report.audit.head == audit.head(conn)
    finally:
        conn.close()
    assert report.counted_since == demo_run.days[0]
    assert (report.device_id, report.period.since, report.period.until) == (DEVICE, *demo_run.days)


@pytest.mark.parametrize("shift", [-1, 1, -400])
def test_a_period_without_the_run_counts_nothing(demo_run: DemoRun, shift: int) -> None:
    first, last = demo_run.days
    day = (first if shift < 0 else last) + timedelta(days=shift)
    report = build_report(settings_for(demo_run.folder), day, day)
    assert report.counters == Counters(frames=0, faces_seen=0, tracks=0, embeddings=0, matches=0)
    assert report.matches_by_watchlist == {} and report.reviews_required == 0
    assert report.watchlist_changes.enrolments == 0
    assert report.audit.verified and report.audit.rows == 3  # the chain is checked whole, whatever the period
    if shift < 0:
        assert f"Per-day counting on this device began: {first.isoformat()}" in render_markdown(report)


def test_markdown_and_json_from_the_command_name_nobody(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, settings_for(demo_run.folder))
    since, until = (day.isoformat() for day in demo_run.days)
    assert main(["--config", str(config), "report", "--since", since, "--until", until]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith(f"# Transparency report: {DEVICE}\n")
    assert "| frames processed | 275 |" in markdown
    assert f"| demo | {len(demo_run.events)} |" in markdown
    assert f"| embeddings computed | {demo_run.counters['embeddings']} |" in markdown
    assert_nobody_named(markdown, demo_run)

    assert main(["--config", str(config), "report", "--since", since, "--json"]) == 0  # until: today
    text = capsys.readouterr().out
    report = TransparencyReport.model_validate_json(text)
    assert report.counters == Counters(**demo_run.counters)
    checked = check_payload(REPORT_TOPIC, text.encode())
    assert checked.error is None and checked.kind == "report"
    assert json.loads(text)["schema"] == "edge-agent.report/1"
    assert_nobody_named(text, demo_run)


def test_matches_stay_counted_after_the_review_window_and_a_removal(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    """The audit log is the permanent record: the review store's purge and the subject's removal change
    nothing in a past period's matches; the removal and remote commands are counted on their day."""
    folder = tmp_path / "device"
    shutil.copytree(demo_run.folder, folder)
    settings = agent_settings(folder, None, port=1, events={"review_days": 0.0})
    with EventStore.from_settings(settings.events) as store:
        assert store.purge_reviews() == len(demo_run.events)
    matched = demo_run.events[0].subject_id
    now = datetime.now(UTC)
    with Watchlist.for_settings(settings, EMBEDDING_DIMENSIONS) as watchlist:
        watchlist.remove(matched, actor="op", why="test")  # through the store: the audit chain stays whole
    conn = sqlite3.connect(settings.watchlist.path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for action in ("command", "command", "command_rejected"):
            audit.append(conn, actor="fleet", action=action, subject_id=None, details={}, at=now)
        conn.execute("COMMIT")
    finally:
        conn.close()
    report = build_report(settings, demo_run.days[0], now.date())
    assert report.matches_by_watchlist == {"demo": len(demo_run.events)}
    assert report.watchlist_changes.removals == 1
    assert (report.commands.accepted, report.commands.rejected) == (2, 1)
    assert report.audit.verified


def test_a_broken_audit_chain_is_reported(demo_run: DemoRun, tmp_path: Path) -> None:
    folder = tmp_path / "device"
    shutil.copytree(demo_run.folder, folder)
    settings = settings_for(folder)
    conn = sqlite3.connect(settings.watchlist.path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit SET actor = 'someone else' WHERE id = 2")
    finally:
        conn.close()
    report = build_report(settings, *demo_run.days)
    assert not report.audit.verified and "row 2" in report.audit.detail
    assert "Chain verified: NO (row 2: hash does not match its contents)" in render_markdown(report)


def test_publish_sends_a_retained_report(
    demo_run: DemoRun, tmp_path: Path, broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, settings_for(demo_run.folder, broker))
    since = demo_run.days[0].isoformat()
    assert main(["--config", str(config), "report", "--since", since, "--json", "--publish"]) == 0
    captured = capsys.readouterr()
    assert f"report published (retained) on {REPORT_TOPIC}" in captured.err
    subscriber = Subscriber(broker, REPORT_TOPIC).start()  # after the publish: only a retained one arrives
    try:
        (message,) = subscriber.wait_for(1, REPORT_TOPIC)
    finally:
        subscriber.close()
    assert message.retain
    assert message.payload.decode() == captured.out.strip()
    report = TransparencyReport.model_validate_json(message.payload)
    assert report.counters.frames == 275
    assert_nobody_named(message.payload.decode(), demo_run)


def test_an_unreachable_broker_is_one_line(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(demo_run.folder)  # a port nobody listens on
    config = write_config(tmp_path, settings)
    since = demo_run.days[0].isoformat()
    assert main(["--config", str(config), "report", "--since", since, "--publish"]) == 1
    err = capsys.readouterr().err
    assert err == f"edge-agent: cannot reach broker 127.0.0.1:{settings.mqtt.port}: Connection refused\n"


def test_a_refused_login_is_one_line(
    demo_run: DemoRun,
    tmp_path: Path,
    broker_factory: Callable[..., Broker],
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker = broker_factory(users={"agent": "agent-secret"})
    broker.start()
    config = write_config(tmp_path, settings_for(demo_run.folder, broker))  # no credentials
    assert (
        main(["--config", str(config), "report", "--since", demo_run.days[0].isoformat(), "--publish"]) == 1
    )
    err = capsys.readouterr().err
    assert err == f"edge-agent: broker 127.0.0.1:{broker.port} refused the connection: not authorized\n"


def test_bad_periods_and_missing_stores_are_one_line(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, settings_for(demo_run.folder))
    assert main(["--config", str(config), "report", "--since", "2026-03-05", "--until", "2026-03-01"]) == 2
    assert capsys.readouterr().err == "edge-agent: --since 2026-03-05 is after --until 2026-03-01\n"
    with pytest.raises(SystemExit):
        main(["--config", str(config), "report", "--since", "last week"])
    assert "'last week' is not a date (YYYY-MM-DD)" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    empty = write_config(tmp_path / "empty", settings_for(tmp_path / "empty"))
    assert main(["--config", str(empty), "report", "--since", "2026-03-01"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "events.db: no event store there" in err
    assert not (tmp_path / "empty" / "events.db").exists()  # looking created nothing


def test_matches_come_from_the_durable_audit_rows_not_the_volatile_counter(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    """A kill -9 loses the counts since the last flush: here the per-day `matches` counter lost the match
    (as if the agent died after committing it, before storing its counts). The report's matches are the
    audit log's, so `counters.matches` and the per-watchlist table still agree with the events."""
    folder = tmp_path / "device"
    shutil.copytree(demo_run.folder, folder)
    settings = settings_for(folder)
    conn = sqlite3.connect(settings.events.path, isolation_level=None)
    try:
        conn.execute("UPDATE counter_days SET value = 0 WHERE name = 'matches'")
    finally:
        conn.close()
    report = build_report(settings, *demo_run.days)
    assert report.counters.matches == sum(report.matches_by_watchlist.values()) == len(demo_run.events) == 1
    assert report.counters.frames == 275  # the other counts are the stored ones
    markdown = render_markdown(report)
    assert "| match events (decided, from the audit log) | 1 |" in markdown

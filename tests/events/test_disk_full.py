"""Storage faults are states: a disk that fills, a read-only file system and a corrupt events.db.

A live agent (real models, the demo clip looping with no cool-down so the enrolled performer gives an
event on every pass, a real mosquitto) writes its databases on a small tmpfs mounted for the test. The
checks: the agent stays up, health says what the storage state is, nothing is logged as a traceback, and
every match it decided reaches the broker once writes land again (those committed before the fault, and
those held in memory during it), none lost, the outbox empty at the end.

Mounting needs root (and a kernel that lets this process mount): without it the tests that mount are
skipped with the reason printed.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from edge_agent.capture.runner import Captured
from edge_agent.config import Settings
from edge_agent.events.schema import MatchEvent
from edge_agent.events.store import EventStore
from edge_agent.service import Agent
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from tests.kits.agent_kit import DEVICE, MATCH_TOPIC, PREFIX, agent_settings, enrol_demo_people, payloads
from tests.kits.broker import Broker, Subscriber
from tests.kits.waiting import wait_until

HEALTH_TOPIC = f"{PREFIX}/{DEVICE}/health"
DISK_SIZE = "8m"


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_SIZE mounted under tmp_path; skipped (reason printed) where mounting fails."""
    if os.geteuid() != 0:
        reason = f"mounting a tmpfs needs root (euid {os.geteuid()})"
        print(reason)
        pytest.skip(reason)
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", "tmpfs", str(disk))
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}"
        print(reason)
        pytest.skip(reason)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


def fill(disk: Path) -> Path:
    """Writes a filler file until the file system says ENOSPC; returns it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


class LiveAgent:
    """An in-process agent on its own thread, recording every match it decided (committed or held) and
    every exception that escapes any thread."""

    def __init__(self, settings: Settings, catalog: ModelCatalog) -> None:
        self.decided: list[str] = []
        self.agent = Agent(settings, catalog=catalog, on_event=self._on_event)
        self.result: list[object] = []
        self.thread = threading.Thread(target=self._run, name="agent")

    def _on_event(self, event: MatchEvent, _captured: Captured) -> None:
        self.decided.append(str(event.event_id))

    def _run(self) -> None:
        try:
            self.result.append(self.agent.run())
        except BaseException as exc:  # the test reports it
            self.result.append(exc)

    def __enter__(self) -> LiveAgent:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.agent.stop()
        self.thread.join(60)

    @property
    def store(self) -> EventStore:
        assert self.agent.store is not None
        return self.agent.store


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that end any thread (paho's, the sender, capture): a fault must end none."""
    errors: list[str] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        errors.append(
            f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}"
        )

    monkeypatch.setattr(threading, "excepthook", hook)
    return errors


def looping(folder: Path, broker: Broker, **sections: Any) -> Settings:
    return agent_settings(
        folder,
        broker,
        camera={"loop": True},
        decision={"cooldown_s": 0.0},
        events={"drain_timeout_s": 10.0, **sections.pop("events", {})},
        **sections,
    )


def storage(subscriber: Subscriber, database: str = "events") -> dict[str, Any] | None:
    health = subscriber.messages(HEALTH_TOPIC)
    if not health:
        return None
    found: dict[str, Any] = json.loads(health[-1].payload)["storage"][database]
    return found


def stored_ids(events_db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{events_db}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT event_id FROM review")}
    finally:
        conn.close()


def no_tracebacks(caplog: pytest.LogCaptureFixture, thread_errors: list[str]) -> None:
    assert thread_errors == []
    assert not [r for r in caplog.records if r.exc_info is not None or "Traceback" in r.getMessage()]


def test_a_disk_that_fills_holds_matches_and_delivers_them_all_when_space_returns(
    small_disk: Path,
    broker: Broker,
    catalog: ModelCatalog,
    faces: FacePipeline,
    caplog: pytest.LogCaptureFixture,
    thread_errors: list[str],
) -> None:
    """Both databases on the disk that fills: the event store holds what it cannot commit, the watchlist
    holds its match audit rows; nothing is sent before it is stored, and all of it is sent afterwards."""
    settings = looping(small_disk, broker)
    enrol_demo_people(settings, faces)
    subscriber = Subscriber(broker, f"{PREFIX}/{DEVICE}/#").start()
    caplog.set_level(logging.INFO, logger="edge_agent")
    started = time.monotonic()
    with LiveAgent(settings, catalog) as live:
        _wait(lambda: len(subscriber.messages(MATCH_TOPIC)) >= 1, "a first event delivered")
        filler = fill(small_disk)
        _wait(lambda: (storage(subscriber) or {}).get("state") == "full", "health saying the disk is full")
        _wait(lambda: live.store.held >= 2, "matches held in memory while the disk is full")
        assert live.thread.is_alive()
        full = storage(subscriber)
        assert full is not None and "full" in (full["last_error"] or "")
        held_ids = set(live.store.held_ids())  # the store's own word: decided, not stored, not sent
        assert held_ids <= set(live.decided)
        assert not held_ids & {json.loads(m.payload)["event_id"] for m in subscriber.messages(MATCH_TOPIC)}
        filler.unlink()  # space returns
        _wait(lambda: live.store.held == 0 and live.store.depth() == 0, "held matches stored and sent")
        _wait(lambda: (storage(subscriber) or {}).get("state") == "ok", "health saying ok again")
        decided = list(live.decided)
    assert live.result == [0]
    received = {event["event_id"] for event in payloads(subscriber.wait_for(1, MATCH_TOPIC))}
    assert set(decided) <= received  # every decided match arrived: none lost
    assert set(decided) <= stored_ids(settings.events.path)
    assert live.store.faults.lost == 0
    assert len(held_ids) >= 2
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("event store") and ": disk full (" in line for line in lines) == 1, lines
    assert sum(line.startswith("event store") and "writable again" in line for line in lines) == 1, lines
    assert sum(line.startswith("watchlist") and ": disk full (" in line for line in lines) == 1, lines
    no_tracebacks(caplog, thread_errors)
    print(
        f"disk full: {len(decided)} decided ({len(held_ids)} during the full period), {len(received)} "
        f"received, in {time.monotonic() - started:.1f} s"
    )


def hold_then_deliver(
    settings: Settings,
    broker: Broker,
    catalog: ModelCatalog,
    caplog: pytest.LogCaptureFixture,
    thread_errors: list[str],
    state: str,
    release: Callable[[], None],
) -> None:
    """A live agent whose event store starts in `state`: health says so, a decided match is held and not
    sent; after `release()` every decided match is stored and reaches the broker, with no traceback."""
    subscriber = Subscriber(broker, f"{PREFIX}/{DEVICE}/#").start()
    caplog.set_level(logging.INFO, logger="edge_agent")
    with LiveAgent(settings, catalog) as live:
        _wait(lambda: (storage(subscriber) or {}).get("state") == state, f"health saying {state}")
        _wait(lambda: live.store.held >= 1, "a match held in memory")
        assert live.thread.is_alive() and subscriber.messages(MATCH_TOPIC) == []
        release()
        _wait(lambda: live.store.held == 0 and live.store.depth() == 0, "held matches stored and sent")
        decided = list(live.decided)
    assert live.result == [0]
    received = {event["event_id"] for event in payloads(subscriber.wait_for(len(decided), MATCH_TOPIC))}
    assert set(decided) <= received
    no_tracebacks(caplog, thread_errors)


def test_a_start_on_a_full_disk_stays_up_and_catches_up(
    small_disk: Path,
    tmp_path: Path,
    broker: Broker,
    catalog: ModelCatalog,
    faces: FacePipeline,
    caplog: pytest.LogCaptureFixture,
    thread_errors: list[str],
) -> None:
    """The event store (from an earlier run) on a disk already full; the watchlist elsewhere."""
    settings = looping(tmp_path, broker, events={"path": small_disk / "events.db"})
    enrol_demo_people(settings, faces)
    EventStore.from_settings(settings.events).close()
    filler = fill(small_disk)
    hold_then_deliver(settings, broker, catalog, caplog, thread_errors, "full", filler.unlink)


def test_a_read_only_file_system_is_a_state_until_it_is_writable(
    small_disk: Path,
    tmp_path: Path,
    broker: Broker,
    catalog: ModelCatalog,
    faces: FacePipeline,
    caplog: pytest.LogCaptureFixture,
    thread_errors: list[str],
) -> None:
    """The event store's file system mounted read-only (`mount -o remount,ro`) before the start, made
    writable (`remount,rw`) while the agent runs: read_only in health, then everything delivered."""
    settings = looping(tmp_path, broker, events={"path": small_disk / "events.db"})
    enrol_demo_people(settings, faces)
    EventStore.from_settings(settings.events).close()
    remounted = _mount("-o", "remount,ro", str(small_disk))
    assert remounted.returncode == 0, remounted.stderr

    def writable() -> None:
        remounted = _mount("-o", "remount,rw", str(small_disk))
        assert remounted.returncode == 0, remounted.stderr

    hold_then_deliver(settings, broker, catalog, caplog, thread_errors, "read_only", writable)


def test_a_corrupt_event_store_is_moved_aside_and_a_fresh_one_used(
    tmp_path: Path,
    broker: Broker,
    catalog: ModelCatalog,
    faces: FacePipeline,
    caplog: pytest.LogCaptureFixture,
    thread_errors: list[str],
) -> None:
    settings = agent_settings(tmp_path, broker)  # one pass of the clip: one event
    enrol_demo_people(settings, faces)
    garbage = b"this is not an SQLite database, whatever its name says\n" * 200
    settings.events.path.write_bytes(garbage)
    subscriber = Subscriber(broker, f"{PREFIX}/{DEVICE}/#").start()
    caplog.set_level(logging.INFO, logger="edge_agent")
    with LiveAgent(settings, catalog) as live:
        _wait(lambda: not live.thread.is_alive(), "the clip's end")
    assert live.result == [0]
    (aside,) = tmp_path.glob("events.db.corrupt-*")
    assert aside.read_bytes() == garbage  # kept, untouched, for whoever investigates
    event = payloads(subscriber.wait_for(1, MATCH_TOPIC))[0]
    assert stored_ids(settings.events.path) == {event["event_id"]} == set(live.decided)
    health = storage(subscriber)
    assert health is not None and health["state"] == "ok" and health["moved_aside"] == str(aside)
    assert any("moved aside" in r.getMessage() and aside.name in r.getMessage() for r in caplog.records)
    no_tracebacks(caplog, thread_errors)


_wait = functools.partial(wait_until, timeout_s=30.0)

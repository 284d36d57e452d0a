"""The SQLite outbox: durable, ordered, bounded (and counted), one transaction per match, private."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.errors import EdgeAgentError
from edge_agent.events.database import KNOWN_COUNTERS, create_v1
from edge_agent.events.schema import MatchEvent
from edge_agent.events.settings import EventSettings
from edge_agent.events.store import EventStore
from edge_agent.sqlite_schema import migrate

TOPIC = "edge-agent/edge-1/events/match"
MakeEvent = Callable[..., MatchEvent]


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def vector(seed: int) -> npt.NDArray[np.float32]:
    values = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return values / np.linalg.norm(values)


def open_store(path: Path, clock: FakeClock | None = None, **bounds: float) -> EventStore:
    options = {"max_events": 100, "max_age_s": 3600.0, "review_days": 30.0, **bounds}
    return EventStore.open(
        path,
        max_events=int(options["max_events"]),
        max_age_s=options["max_age_s"],
        review_days=options["review_days"],
        clock=clock or FakeClock(),
    )


def row_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}


def test_a_match_is_one_outbox_row_and_one_review_row(tmp_path: Path, make_match_event: MakeEvent) -> None:
    path = tmp_path / "deep" / "events.db"
    event = make_match_event()
    embedding = vector(1)
    with open_store(path) as store:
        seq = store.commit_match(event, TOPIC, embedding)
        (message,) = store.pending()
        assert (message.seq, message.message_id, message.topic) == (seq, str(event.event_id), TOPIC)
        assert message.payload == event.to_json()
        assert message.created_at.tzinfo is not None
        kept = store.review(str(event.event_id))
        assert kept is not None
        assert kept[0] == event.to_json()
        np.testing.assert_array_equal(kept[1], embedding)
        assert kept[1].dtype == np.float32
        assert store.depth() == 1
    with sqlite3.connect(path) as conn:
        blob, sent_at = conn.execute("SELECT embedding, sent_at FROM review").fetchone()
    assert blob == embedding.astype("<f4").tobytes()
    assert sent_at is None


def test_pending_is_in_seq_order_and_pages(tmp_path: Path, make_match_event: MakeEvent) -> None:
    with open_store(tmp_path / "events.db") as store:
        seqs = [store.commit_match(make_match_event(), TOPIC, vector(i)) for i in range(7)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 7
        assert [m.seq for m in store.pending(limit=3)] == seqs[:3]
        assert [m.seq for m in store.pending(after_seq=seqs[2], limit=3)] == seqs[3:6]
        assert [m.seq for m in store.pending(after_seq=seqs[-1])] == []


def test_mark_sent_removes_the_row_and_stamps_the_review_idempotently(
    tmp_path: Path, make_match_event: MakeEvent
) -> None:
    path = tmp_path / "events.db"
    clock = FakeClock()
    event = make_match_event()
    with open_store(path, clock) as store:
        seq = store.commit_match(event, TOPIC, vector(2))
        clock.advance(5)
        store.mark_sent(seq)
        store.mark_sent(seq)
        assert store.depth() == 0
        assert store.pending() == []
        assert store.review(str(event.event_id)) is not None
    with sqlite3.connect(path) as conn:
        (sent_at,) = conn.execute("SELECT sent_at FROM review").fetchone()
    assert datetime.fromisoformat(sent_at) == clock.now


def test_seq_never_goes_back_after_the_newest_row_is_sent(
    tmp_path: Path, make_match_event: MakeEvent
) -> None:
    path = tmp_path / "events.db"
    with open_store(path) as store:
        first = store.commit_match(make_match_event(), TOPIC, vector(3))
        store.mark_sent(first)
    with open_store(path) as store:
        second = store.enqueue("result-1", "edge-agent/edge-1/cmd/result", b"{}")
    assert second > first


def test_unsent_messages_survive_reopening(tmp_path: Path, make_match_event: MakeEvent) -> None:
    path = tmp_path / "events.db"
    events = [make_match_event() for _ in range(3)]
    with open_store(path) as store:
        for i, event in enumerate(events):
            store.commit_match(event, TOPIC, vector(i))
        store.enqueue("result-1", "edge-agent/edge-1/cmd/result", b'{"ok": true}')
    with open_store(path) as store:
        pending = store.pending()
    assert [m.message_id for m in pending] == [*(str(e.event_id) for e in events), "result-1"]
    assert pending[-1].payload == b'{"ok": true}'


def test_count_bound_drops_the_oldest_and_counts_them(tmp_path: Path, make_match_event: MakeEvent) -> None:
    path = tmp_path / "events.db"
    events = [make_match_event() for _ in range(5)]
    with open_store(path, max_events=3) as store:
        for i, event in enumerate(events):
            store.commit_match(event, TOPIC, vector(i))
        assert store.depth() == 3
        assert store.dropped() == 2
        assert [m.message_id for m in store.pending()] == [str(e.event_id) for e in events[2:]]
    with open_store(path, max_events=3) as store:
        assert store.dropped() == 2  # persisted


def test_age_bound_drops_old_unsent_messages(tmp_path: Path, make_match_event: MakeEvent) -> None:
    clock = FakeClock()
    with open_store(tmp_path / "events.db", clock, max_age_s=60.0) as store:
        store.commit_match(make_match_event(), TOPIC, vector(1))
        clock.advance(30)
        young = store.commit_match(make_match_event(), TOPIC, vector(2))
        assert store.oldest_age_s() == pytest.approx(30.0)
        clock.advance(31)
        assert store.enforce_bounds() == 1
        assert [m.seq for m in store.pending()] == [young]
        assert store.oldest_age_s() == pytest.approx(31.0)
        assert store.enforce_bounds() == 0
        assert store.dropped() == 1
        clock.advance(60)
        assert store.enforce_bounds() == 1
        assert store.oldest_age_s() is None
        assert store.dropped() == 2


def test_purge_reviews_deletes_records_past_the_review_window(
    tmp_path: Path, make_match_event: MakeEvent
) -> None:
    clock = FakeClock()
    old = make_match_event(decided_at=clock.now - timedelta(days=31))
    sent_old = make_match_event(decided_at=clock.now - timedelta(days=40))
    recent = make_match_event(decided_at=clock.now - timedelta(days=29))
    with open_store(tmp_path / "events.db", clock, review_days=30.0) as store:
        store.commit_match(old, TOPIC, vector(1))
        store.mark_sent(store.commit_match(sent_old, TOPIC, vector(2)))
        store.commit_match(recent, TOPIC, vector(3))
        assert store.purge_reviews() == 2
        assert store.review(str(old.event_id)) is None
        assert store.review(str(sent_old.event_id)) is None
        assert store.review(str(recent.event_id)) is not None
        assert store.depth() == 2  # the unsent events themselves still go out


def test_counters_add_up_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with open_store(path) as store:
        assert store.counters() == dict.fromkeys(KNOWN_COUNTERS, 0)
        store.add_counters({"frames": 10, "faces_seen": 3})
        store.add_counters({"frames": 5, "tracks": 0})
    with open_store(path) as store:
        counters = store.counters()
    assert counters["frames"] == 15
    assert counters["faces_seen"] == 3
    assert counters["tracks"] == 0


def test_no_match_adds_no_row_anywhere(tmp_path: Path) -> None:
    """Privacy: without a match, only the aggregate counters change: the values in `counters`, and
    `counter_days` gets one row per UTC day and counter at most; no other table gains a row."""
    path = tmp_path / "events.db"
    clock = FakeClock()
    with open_store(path, clock) as store:
        before = row_counts(path)
        for _ in range(3):
            store.add_counters(dict.fromkeys(KNOWN_COUNTERS, 7))
            clock.advance(3600)  # the same UTC day (12:00 to 15:00)
        store.enforce_bounds()
        store.purge_reviews()
        after = row_counts(path)
    assert after == {**before, "counter_days": len(KNOWN_COUNTERS)}
    assert set(before) >= {"outbox", "review", "counters", "counter_days"}
    assert before["outbox"] == before["review"] == before["counter_days"] == 0


def test_counters_are_also_kept_per_utc_day(tmp_path: Path) -> None:
    clock = FakeClock()  # 2026-03-01 12:00 UTC
    with open_store(tmp_path / "events.db", clock) as store:
        store.add_counters({"frames": 10, "faces_seen": 2})
        clock.advance(11 * 3600 + 59 * 60)  # 23:59, still the 1st
        store.add_counters({"frames": 5})
        clock.advance(120)  # 00:01 on the 2nd
        store.add_counters({"frames": 1, "matches": 1})
        clock.advance(2 * 86400)  # the 4th
        store.add_counters({"frames": 100})
        day = date(2026, 3, 1)
        assert store.counters_between(day, day) == {
            **dict.fromkeys(KNOWN_COUNTERS, 0),
            "frames": 15,
            "faces_seen": 2,
        }
        assert store.counters_between(date(2026, 3, 2), date(2026, 3, 3))["frames"] == 1
        assert store.counters_between(day, date(2026, 3, 4))["frames"] == 116 == store.counters()["frames"]
        assert store.counters_between(date(2026, 2, 1), date(2026, 2, 28)) == dict.fromkeys(KNOWN_COUNTERS, 0)
        assert store.first_counted_day() == day


def test_a_v1_store_is_upgraded_in_place(tmp_path: Path, make_match_event: MakeEvent) -> None:
    """A store written before per-day counters: its rows and totals stay; per-day counting starts now."""
    path = tmp_path / "events.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path, "event store", (create_v1,))  # exactly what a v1 edge-agent created
    conn.execute("UPDATE counters SET value = 40 WHERE name = 'frames'")
    conn.close()
    clock = FakeClock()
    with open_store(path, clock) as store:
        store.commit_match(make_match_event(), TOPIC, vector(1))
        assert store.first_counted_day() is None
        store.add_counters({"frames": 2})
        assert store.counters()["frames"] == 42  # the v1 total carries on
        assert store.counters_between(date(2026, 3, 1), date(2026, 3, 1))["frames"] == 2
        assert store.first_counted_day() == date(2026, 3, 1)
        assert store.depth() == 1
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 4


def test_a_bad_embedding_writes_nothing(tmp_path: Path, make_match_event: MakeEvent) -> None:
    path = tmp_path / "events.db"
    with open_store(path) as store:
        before = row_counts(path)
        bad = np.full(128, np.nan, dtype=np.float32)
        with pytest.raises(EdgeAgentError, match="non-finite"):
            store.commit_match(make_match_event(), TOPIC, bad)
        with pytest.raises(EdgeAgentError, match="vector or stack of vectors"):
            store.commit_match(make_match_event(), TOPIC, np.zeros((2, 2, 32), dtype=np.float32))
        with pytest.raises(EdgeAgentError, match="vector or stack of vectors"):
            store.commit_match(make_match_event(), TOPIC, np.zeros((0, 128), dtype=np.float32))
        assert row_counts(path) == before


def test_the_same_event_twice_is_refused_and_rolled_back(tmp_path: Path, make_match_event: MakeEvent) -> None:
    event = make_match_event()
    with open_store(tmp_path / "events.db") as store:
        store.commit_match(event, TOPIC, vector(1))
        with pytest.raises(EdgeAgentError, match=str(event.event_id)):
            store.commit_match(event, TOPIC, vector(1))
        assert store.depth() == 1


def test_a_corrupt_database_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not a database, just some text " * 200)
    with pytest.raises(EdgeAgentError, match=f"{path}: not a usable event store") as caught:
        open_store(path)
    assert "\n" not in str(caught.value)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(EdgeAgentError, match="newer than this edge-agent"):
        open_store(path)


def test_from_settings_uses_the_configured_bounds(tmp_path: Path) -> None:
    settings = EventSettings(path=tmp_path / "e" / "events.db", outbox_max_events=2, review_days=1.0)
    with EventStore.from_settings(settings) as store:
        assert (store.max_events, store.review_days) == (2, 1.0)
        assert store.path.is_file()


def test_commits_and_acks_from_two_threads(tmp_path: Path, make_match_event: MakeEvent) -> None:
    """The worker commits while the network thread marks rows sent: nothing lost, nothing left."""
    total = 200
    with open_store(tmp_path / "events.db", max_events=1000) as store:
        committed = threading.Event()

        def commit() -> None:
            for i in range(total):
                store.commit_match(make_match_event(), TOPIC, vector(i))
            committed.set()

        worker = threading.Thread(target=commit)
        worker.start()
        acked = 0
        while not (committed.is_set() and store.depth() == 0):
            for message in store.pending(limit=10):
                store.mark_sent(message.seq)
                acked += 1
        worker.join()
        assert acked == total
        assert store.dropped() == 0


def test_storage_faults_are_named_from_real_errors(tmp_path: Path) -> None:
    from edge_agent.events.storage import storage_fault

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(sqlite3.DatabaseError) as corrupt:
        sqlite3.connect(garbage).execute("SELECT * FROM sqlite_master").fetchall()
    assert storage_fault(corrupt.value, tmp_path) == "corrupt"
    real = tmp_path / "real.db"
    sqlite3.connect(real).execute("CREATE TABLE t (x)").connection.close()
    read_only = sqlite3.connect(f"file:{real}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as refused:
        read_only.execute("INSERT INTO t VALUES (1)")
    read_only.close()
    assert storage_fault(refused.value, tmp_path) == "read_only"
    assert storage_fault(OSError(28, "No space left on device"), tmp_path) == "full"
    assert storage_fault(sqlite3.IntegrityError("UNIQUE constraint failed"), tmp_path) is None


def test_a_corrupt_store_is_moved_aside_in_survive_mode_only(
    tmp_path: Path, make_match_event: MakeEvent
) -> None:
    path = tmp_path / "events.db"
    garbage = b"garbage, not SQLite\n" * 300
    path.write_bytes(garbage)
    with pytest.raises(EdgeAgentError, match="not a usable event store"):
        open_store(path)  # the CLI and reports: one line, nothing moved
    assert path.read_bytes() == garbage
    lines: list[str] = []
    with EventStore.open(
        path, max_events=10, max_age_s=60.0, review_days=1.0, survive_faults=True, log=lines.append
    ) as store:
        (aside,) = tmp_path.glob("events.db.corrupt-*")
        assert aside.read_bytes() == garbage
        assert store.faults.ok and store.faults.moved_aside == str(aside)
        assert store.commit_match(make_match_event(), TOPIC, vector(1)) >= 1
        assert store.depth() == 1
    assert any("moved aside" in line and aside.name in line for line in lines)


def test_an_unopenable_store_starts_unopened_holds_matches_and_opens_later(
    tmp_path: Path, make_match_event: MakeEvent
) -> None:
    """Survive mode: a folder that cannot be created (a file is in the way) is a fault state, not an
    exception; matches wait in memory, in order, and are committed once `retry()` can open the store."""
    blocker = tmp_path / "events"
    blocker.write_text("a file where the folder should be")
    path = blocker / "events.db"
    store = EventStore.open(path, max_events=10, max_age_s=60.0, review_days=1.0, survive_faults=True)
    try:
        assert store.faults.state == "error" and store.depth() == 0 and store.pending() == []
        events = [make_match_event() for _ in range(3)]
        assert [store.commit_or_hold(event, TOPIC, vector(i)) for i, event in enumerate(events)] == [None] * 3
        assert store.held == 3 and store.add_counters({"frames": 5}) is False
        assert store.retry(force=True) == 0  # still in the way
        blocker.unlink()
        assert store.retry(force=True) == 3
        assert store.faults.ok and store.held == 0
        assert [m.message_id for m in store.pending()] == [str(event.event_id) for event in events]
    finally:
        store.close()

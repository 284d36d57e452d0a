"""The durable outbox of messages to publish, the reviewer's copy of each match, and aggregate counters.

One SQLite file (WAL, `synchronous=FULL`): a message is on disk when `commit_match`/`enqueue` returns, and
leaves the outbox only when the broker has acknowledged it (`mark_sent`), so a power cut or a broker outage
loses nothing that was committed. `seq` is an AUTOINCREMENT key: it never goes back, even after the newest
row is deleted, so "everything after the last seq handed to MQTT" is always a correct question.

The outbox is bounded by count and by age; past a bound the oldest unsent rows are dropped, and the total
dropped is kept on disk (`outbox_state`) so health reports it across restarts. A dropped row may be one
that MQTT was still waiting to see acknowledged; it then counts as dropped even if the broker got it.

Privacy: only a decided match writes rows (outbox + review). Frames, faces and embeddings of anyone else
are never stored; without a match the only tables that change are the aggregate counters: `counters`
(running totals, whose rows for the pipeline's counters are created with the database, so counting never
adds a row there) and `counter_days` (the same counts per UTC day, for transparency reports over a
period: at most one row per day and counter, nothing per person). A day's counts are those stored that
day: the agent stores them every `mqtt.health_interval_s` and at stop.

Review retention (`review_days`) bounds how long a matched face's embedding stays on the device, whether
or not its event has been sent: `purge_reviews` deletes every review row decided longer ago than that.
The event itself does not depend on the review row: an unsent one stays in the outbox until sent or
dropped by the outbox's own bounds.

The store is used from two threads (the inference worker commits, paho's network thread marks messages
sent): one connection, opened with `check_same_thread=False`, every call under one lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt

from edge_agent.config import EventSettings
from edge_agent.errors import EdgeAgentError
from edge_agent.events.schema import MatchEvent
from edge_agent.sqlite_schema import migrate, statements

Clock = Callable[[], datetime]
F32 = npt.NDArray[np.float32]

# The pipeline's aggregate counters (edge_agent.events.schema.Counters); their rows exist from the start.
KNOWN_COUNTERS = ("frames", "faces_seen", "tracks", "embeddings", "matches")

_V1 = (
    """CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX outbox_created ON outbox (created_at)",
    """CREATE TABLE review (
        event_id TEXT PRIMARY KEY,
        subject_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        embedding BLOB NOT NULL,
        decided_at TEXT NOT NULL,
        sent_at TEXT
    )""",
    "CREATE INDEX review_decided ON review (decided_at)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE outbox_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        dropped INTEGER NOT NULL
    )""",
    "INSERT INTO outbox_state (id, dropped) VALUES (1, 0)",
)

# v2: the counters per UTC day ('2026-03-01'), so a report can cover a period. A v1 store's running totals
# belong to no day: per-day counting starts at the upgrade.
_V2 = (
    """CREATE TABLE counter_days (
        day TEXT NOT NULL,
        name TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (day, name)
    )""",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def db_time(moment: datetime) -> str:
    """Fixed-width UTC text (microseconds), so times compare correctly as text in SQL."""
    if moment.tzinfo is None:
        raise EdgeAgentError(f"time {moment.isoformat()} has no time zone")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class OutboxMessage:
    seq: int  # strictly increasing: the send order
    message_id: str  # the event_id for match events (subscribers deduplicate by it)
    topic: str
    payload: bytes
    created_at: datetime  # UTC


def _create_v1(conn: sqlite3.Connection) -> None:
    statements(*_V1)(conn)
    conn.executemany("INSERT INTO counters (name, value) VALUES (?, 0)", [(n,) for n in KNOWN_COUNTERS])


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    migrate(conn, path, "event store", (_create_v1, statements(*_V2)))


def _embedding_blob(embedding: F32) -> bytes:
    vector = np.asarray(embedding)
    if vector.ndim != 1 or vector.size == 0 or not np.issubdtype(vector.dtype, np.floating):
        raise EdgeAgentError(f"embedding must be a non-empty 1-D float vector, got shape {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise EdgeAgentError("embedding has non-finite values")
    return vector.astype("<f4").tobytes()


class EventStore:
    """The outbox, the review store and the counters in one SQLite database (see the module docstring)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        max_events: int,
        max_age_s: float,
        review_days: float,
        clock: Clock,
    ) -> None:
        self.conn = conn
        self.path = path
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.review_days = review_days
        self.clock = clock
        self._lock = threading.Lock()

    # ---- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        max_events: int,
        max_age_s: float,
        review_days: float,
        clock: Clock = utc_now,
    ) -> EventStore:
        """Opens (creating folders and tables if needed) the store at `path`."""
        if max_events < 1 or max_age_s <= 0 or review_days < 0:
            raise EdgeAgentError(
                f"{path}: outbox bounds must be positive (max_events={max_events}, max_age_s={max_age_s}, "
                f"review_days={review_days})"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeAgentError(f"{path}: cannot create its folder ({exc.strerror or exc})") from None
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA secure_delete = ON")  # a purged embedding is overwritten, not just freed
            _migrate(conn, path)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise EdgeAgentError(f"{path}: not a usable event store database ({exc})") from None
        except EdgeAgentError:
            if conn is not None:
                conn.close()
            raise
        return cls(
            conn, path, max_events=max_events, max_age_s=max_age_s, review_days=review_days, clock=clock
        )

    @classmethod
    def from_settings(cls, settings: EventSettings, clock: Clock = utc_now) -> EventStore:
        return cls.open(
            settings.path,
            max_events=settings.outbox_max_events,
            max_age_s=settings.outbox_max_age_s,
            review_days=settings.review_days,
            clock=clock,
        )

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The lock plus one explicit write transaction: all of it lands, or none of it."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # ---- writing -------------------------------------------------------------------------------

    def commit_match(self, event: MatchEvent, topic: str, embedding: F32) -> int:
        """Stores a decided match (outbox row + review row) in one transaction; returns its seq.

        Durable when it returns. Does not touch the counters (the pipeline counts matches itself).
        """
        blob = _embedding_blob(embedding)
        event_id = str(event.event_id)
        payload = event.to_json()
        try:
            with self._transaction() as conn:
                seq = self._insert(conn, event_id, topic, payload)
                conn.execute(
                    "INSERT INTO review (event_id, subject_id, payload, embedding, decided_at, sent_at) "
                    "VALUES (?, ?, ?, ?, ?, NULL)",
                    (event_id, event.subject_id, payload, blob, db_time(event.decided_at)),
                )
                self._enforce(conn)
        except sqlite3.IntegrityError:
            raise EdgeAgentError(f"{self.path}: event {event_id} is already stored") from None
        return seq

    def enqueue(self, message_id: str, topic: str, payload: bytes) -> int:
        """Stores any other message that must survive a restart (e.g. a command result); returns its seq."""
        with self._transaction() as conn:
            seq = self._insert(conn, message_id, topic, payload)
            self._enforce(conn)
        return seq

    def _insert(self, conn: sqlite3.Connection, message_id: str, topic: str, payload: bytes) -> int:
        if not topic or not message_id:
            raise EdgeAgentError("an outbox message needs a topic and a message id")
        cursor = conn.execute(
            "INSERT INTO outbox (message_id, topic, payload, created_at) VALUES (?, ?, ?, ?)",
            (message_id, topic, bytes(payload), db_time(self.clock())),
        )
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def mark_sent(self, seq: int) -> None:
        """The broker acknowledged `seq`: it leaves the outbox and its review row (if any) is marked sent.

        Idempotent: a seq already gone (sent before, or dropped by the bounds) changes nothing.
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT message_id FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if row is not None:
                conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                conn.execute(
                    "UPDATE review SET sent_at = ? WHERE event_id = ? AND sent_at IS NULL",
                    (db_time(self.clock()), row[0]),
                )

    def enforce_bounds(self) -> int:
        """Drops the oldest unsent messages past `max_events` and those older than `max_age_s`; returns how
        many were dropped now (the running total is `dropped()`)."""
        with self._transaction() as conn:
            return self._enforce(conn)

    def _enforce(self, conn: sqlite3.Connection) -> int:
        cutoff = db_time(self.clock() - timedelta(seconds=self.max_age_s))
        dropped = conn.execute("DELETE FROM outbox WHERE created_at < ?", (cutoff,)).rowcount
        (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        if count > self.max_events:
            dropped += conn.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                (count - self.max_events,),
            ).rowcount
        if dropped:
            conn.execute("UPDATE outbox_state SET dropped = dropped + ? WHERE id = 1", (dropped,))
        return int(dropped)

    def purge_reviews(self) -> int:
        """Deletes review rows (sent or not) decided more than `review_days` ago; returns how many."""
        cutoff = db_time(self.clock() - timedelta(days=self.review_days))
        with self._transaction() as conn:
            deleted = int(conn.execute("DELETE FROM review WHERE decided_at < ?", (cutoff,)).rowcount)
        if deleted:
            self.wipe_wal()
        return deleted

    def wipe_wal(self) -> None:
        """Move the WAL into the database and truncate it, so deleted rows' old pages leave the WAL too."""
        with self._lock:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def add_counters(self, deltas: Mapping[str, int]) -> None:
        """Adds to aggregate counters: the running totals and today's (UTC) row, in one transaction. The
        known totals (`KNOWN_COUNTERS`) exist from the start, so this only updates their rows; a name
        outside them gets its row on its first non-zero update, and each day's row likewise."""
        items = [(name, int(delta)) for name, delta in deltas.items() if delta]
        if not items:
            return
        day = self.clock().astimezone(UTC).date().isoformat()
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                items,
            )
            conn.executemany(
                "INSERT INTO counter_days (day, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (day, name) DO UPDATE SET value = value + excluded.value",
                [(day, name, delta) for name, delta in items],
            )

    # ---- reading -------------------------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Unsent messages with seq > `after_seq`, oldest first, at most `limit`."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT seq, message_id, topic, payload, created_at FROM outbox WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [
            OutboxMessage(int(seq), str(mid), str(topic), bytes(payload), datetime.fromisoformat(created))
            for seq, mid, topic, payload, created in rows
        ]

    def depth(self) -> int:
        with self._lock:
            (count,) = self.conn.execute("SELECT count(*) FROM outbox").fetchone()
        return int(count)

    def oldest_age_s(self) -> float | None:
        """Seconds since the oldest unsent message was stored; None when the outbox is empty."""
        with self._lock:
            (oldest,) = self.conn.execute("SELECT min(created_at) FROM outbox").fetchone()
        if oldest is None:
            return None
        return max(0.0, (self.clock() - datetime.fromisoformat(oldest)).total_seconds())

    def dropped(self) -> int:
        """Messages dropped by the bounds since the store was created (persisted)."""
        with self._lock:
            (count,) = self.conn.execute("SELECT dropped FROM outbox_state WHERE id = 1").fetchone()
        return int(count)

    def review(self, event_id: str) -> tuple[bytes, F32] | None:
        """The kept payload and matched-face embedding of an event, or None (unknown or purged)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT payload, embedding FROM review WHERE event_id = ?", (event_id,)
            ).fetchone()
        if row is None:
            return None
        return bytes(row[0]), np.frombuffer(row[1], dtype="<f4").astype(np.float32)

    def counters(self) -> dict[str, int]:
        with self._lock:
            rows = self.conn.execute("SELECT name, value FROM counters ORDER BY name").fetchall()
        return {str(name): int(value) for name, value in rows}

    def counters_between(self, first: date, last: date) -> dict[str, int]:
        """The counters summed over the UTC days `first` to `last` (both included); the known ones
        (`KNOWN_COUNTERS`) are always there, 0 when nothing was counted."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT name, sum(value) FROM counter_days WHERE day BETWEEN ? AND ? GROUP BY name",
                (first.isoformat(), last.isoformat()),
            ).fetchall()
        return {**dict.fromkeys(KNOWN_COUNTERS, 0), **{str(name): int(value) for name, value in rows}}

    def first_counted_day(self) -> date | None:
        """The first UTC day with per-day counts (None before any): earlier counts belong to no day."""
        with self._lock:
            (first,) = self.conn.execute("SELECT min(day) FROM counter_days").fetchone()
        return None if first is None else date.fromisoformat(first)

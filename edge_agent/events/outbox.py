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

Storage faults (the agent's store, opened with `survive_faults=True`). A full disk (SQLITE_FULL, ENOSPC),
a read-only file system or database (SQLITE_READONLY, EROFS, EACCES), an I/O error (SQLITE_IOERR) or a
corrupt file (SQLITE_CORRUPT, SQLITE_NOTADB) is a state of the store (`faults`: ok, full, read_only,
corrupt, error), logged once per change and reported in health, never an exception for the agent:
- a decided match that cannot be committed is *held*: kept in memory, in decision order, and committed
  by `retry()` once writes land again. Held matches are not sent (only a committed row is published),
  so the privacy rule holds. At most `held_max` are held; past that the oldest held one is dropped and
  counted (`faults.lost`, logged): it was never stored and is never sent. Held matches still in memory
  at `close()` are lost with the process; the close logs how many.
- counters that cannot be added are kept by the caller (`add_counters` returns False) and added later;
  an acknowledgement that cannot be marked is remembered and marked later (the row is not sent again
  meanwhile); bounds, purges and reads that fail change nothing and report the fault.
- a store that cannot be opened at all (a new database on a full or read-only disk, a migration that
  needs space) starts unopened and `retry()` opens it later.
- a corrupt file is moved aside (`events.db.corrupt-<UTC time>`, its -wal/-shm beside it) and a fresh
  store is created in its place, at open or when a write finds the corruption. What was in the corrupt
  file cannot be trusted and is not read again: its unsent events are not sent, its counters start over.
`retry()` is cheap to call often: it does nothing while the store is healthy and tries again at most every
`RETRY_S` while it is not.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from edge_agent.config import EventSettings
from edge_agent.errors import EdgeAgentError
from edge_agent.events.schema import MatchEvent
from edge_agent.events.storage import (
    STATE_TEXT,
    WriteState,
    move_aside,
    one_line,
    storage_fault,
)
from edge_agent.sqlite_schema import migrate, statements

Clock = Callable[[], datetime]
Log = Callable[[str], None]
F32 = npt.NDArray[np.float32]
T = TypeVar("T")

RETRY_S = 2.0  # a store in a fault state tries to write again at most this often
HELD_MAX = 500  # decided matches kept in memory while the store cannot be written

# The pipeline's aggregate counters (edge_agent.events.schema.Counters); their rows exist from the start
# (v1's five from v1, the quality gates' from v3), so counting never adds a row to `counters`.
KNOWN_COUNTERS = (
    "frames",
    "faces_seen",
    "tracks",
    "embeddings",
    "matches",
    "rejected_size",
    "rejected_truncated",
    "rejected_pose",
    "rejected_blur",
    "rejected_brightness",
)

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
    conn.executemany("INSERT INTO counters (name, value) VALUES (?, 0)", [(n,) for n in KNOWN_COUNTERS[:5]])


def _counter_rows_v3(conn: sqlite3.Connection) -> None:
    """v3: the rows of every known counter (the quality gates' rejections), so counting adds none."""
    conn.executemany(
        "INSERT INTO counters (name, value) VALUES (?, 0) ON CONFLICT (name) DO NOTHING",
        [(n,) for n in KNOWN_COUNTERS],
    )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    migrate(conn, path, "event store", (_create_v1, statements(*_V2), _counter_rows_v3))


def _embedding_blob(embedding: F32) -> bytes:
    """One embedding, or the (m, d) stack of a track's agreeing shots, as little-endian float32 bytes
    (`review` returns them flat; the reader knows d)."""
    vector = np.asarray(embedding)
    if vector.ndim not in (1, 2) or vector.size == 0 or not np.issubdtype(vector.dtype, np.floating):
        raise EdgeAgentError(
            f"embedding must be a non-empty float vector or stack of vectors, got shape {vector.shape}"
        )
    if not np.all(np.isfinite(vector)):
        raise EdgeAgentError("embedding has non-finite values")
    return vector.astype("<f4").tobytes()


def _no_log(_line: str) -> None:
    pass


@dataclass(frozen=True)
class _Held:
    """A decided match that could not be committed yet."""

    event_id: str
    subject_id: str
    topic: str
    payload: bytes
    embedding: bytes
    decided_at: str


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")  # a purged embedding is overwritten, not just freed
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


class EventStore:
    """The outbox, the review store and the counters in one SQLite database (see the module docstring)."""

    def __init__(
        self,
        conn: sqlite3.Connection | None,
        path: Path,
        *,
        max_events: int,
        max_age_s: float,
        review_days: float,
        clock: Clock,
        survive_faults: bool = False,
        log: Log = _no_log,
        held_max: int = HELD_MAX,
    ) -> None:
        self._conn = conn
        self.path = path
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.review_days = review_days
        self.clock = clock
        self.survive_faults = survive_faults
        self.held_max = held_max
        self.faults = WriteState(f"event store {path}", log, clock)
        self._lock = threading.Lock()
        self._held: deque[_Held] = deque()
        self._unmarked: set[int] = set()  # acknowledged seqs not yet deleted (the store could not write)
        self._dropped = 0  # the last total read, for health while the store cannot be read
        self._next_retry = 0.0

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
        survive_faults: bool = False,
        log: Log = _no_log,
        held_max: int = HELD_MAX,
    ) -> EventStore:
        """Opens (creating folders and tables if needed) the store at `path`.

        `survive_faults`: a storage fault (see the module docstring) is a state, not an exception: a
        corrupt file is moved aside and a fresh one created; a store that cannot be opened now starts
        unopened and `retry()` opens it later. A newer schema still raises (that is no fault of the disk).
        """
        if max_events < 1 or max_age_s <= 0 or review_days < 0 or held_max < 1:
            raise EdgeAgentError(
                f"{path}: outbox bounds must be positive (max_events={max_events}, max_age_s={max_age_s}, "
                f"review_days={review_days})"
            )
        store = cls(
            None,
            path,
            max_events=max_events,
            max_age_s=max_age_s,
            review_days=review_days,
            clock=clock,
            survive_faults=survive_faults,
            log=log,
            held_max=held_max,
        )
        if survive_faults:
            with store._lock:
                store._open_locked()
            return store
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeAgentError(f"{path}: cannot create its folder ({exc.strerror or exc})") from None
        try:
            store._conn = _connect(path)
        except sqlite3.Error as exc:
            raise EdgeAgentError(f"{path}: not a usable event store database ({exc})") from None
        return store

    def _open_locked(self) -> bool:
        """Opens the database (survive mode), moving a corrupt one aside; True when open."""
        for attempt in range(2):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = _connect(self.path)
                return True
            except (sqlite3.Error, OSError) as exc:
                state = storage_fault(exc, self.path.parent)
                if state is None:
                    raise EdgeAgentError(f"{self.path}: not a usable event store database ({exc})") from None
                if state == "corrupt" and attempt == 0 and self._set_aside_locked(exc):
                    continue
                self.faults.failed(state, exc, "open")
                return False
        return False

    def _set_aside_locked(self, exc: BaseException) -> bool:
        """Moves a corrupt database aside (closing it first); True when moved."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        self._unmarked.clear()  # those rows went with the file
        try:
            target = move_aside(self.path, self.clock())
        except OSError as error:
            self.faults.failed(storage_fault(error, self.path.parent) or "error", error, "move aside")
            return False
        self.faults.moved_aside = str(target)
        self.faults.note(
            f"corrupt ({one_line(exc)}): moved aside to {target.name} and started afresh; what it held "
            "cannot be trusted and is not sent"
        )
        return True

    @classmethod
    def from_settings(
        cls,
        settings: EventSettings,
        clock: Clock = utc_now,
        *,
        survive_faults: bool = False,
        log: Log = _no_log,
    ) -> EventStore:
        return cls.open(
            settings.path,
            max_events=settings.outbox_max_events,
            max_age_s=settings.outbox_max_age_s,
            review_days=settings.review_days,
            clock=clock,
            survive_faults=survive_faults,
            log=log,
        )

    def close(self) -> None:
        with self._lock:
            if self._held:
                self.faults.note(
                    f"{len(self._held)} decided match(es) could not be stored before this stop and are lost "
                    "(never stored, never sent)"
                )
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise EdgeAgentError(f"{self.path}: the event store is not open ({self.faults.last_error})")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The lock plus one explicit write transaction: all of it lands, or none of it. A failed COMMIT
        (a full disk) rolls back too; SQLite may already have rolled back itself."""
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def _fault(self, exc: BaseException, doing: str) -> bool:
        """True when `exc` is a storage fault that survive mode turns into a state (recorded here)."""
        if not self.survive_faults:
            return False
        state = storage_fault(exc, self.path.parent)
        if state is None:
            return False
        self.faults.failed(state, exc, doing)
        return True

    def _write(self, doing: str, work: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """One write transaction; (False, None) when a storage fault stopped it (survive mode)."""
        if self.survive_faults and self._conn is None:
            return False, None
        try:
            with self._transaction() as conn:
                result = work(conn)
        except sqlite3.Error as exc:
            if not self._fault(exc, doing):
                raise
            return False, None
        return True, result

    def _read(self, doing: str, work: Callable[[sqlite3.Connection], T], default: T) -> T:
        """One read under the lock; `default` when the store is unopened or a storage fault stopped it."""
        with self._lock:
            if self.survive_faults and self._conn is None:
                return default
            try:
                return work(self.conn)
            except sqlite3.Error as exc:
                if not self._fault(exc, doing):
                    raise
                return default

    # ---- writing -------------------------------------------------------------------------------

    def commit_match(self, event: MatchEvent, topic: str, embedding: F32) -> int:
        """Stores a decided match (outbox row + review row) in one transaction; returns its seq.

        Durable when it returns. Does not touch the counters (the pipeline counts matches itself). In
        survive mode, where a match may be held instead, the agent calls `commit_or_hold`; this raises
        when the match was held (it is still committed later).
        """
        seq = self.commit_or_hold(event, topic, embedding)
        if seq is None:
            raise EdgeAgentError(
                f"{self.path}: {STATE_TEXT[self.faults.state]}: event {event.event_id} held, not stored"
            )
        return seq

    def commit_or_hold(self, event: MatchEvent, topic: str, embedding: F32) -> int | None:
        """`commit_match`, but in survive mode a storage fault holds the match in memory instead (None):
        `retry()` commits it, after any held before it, once the store can be written again."""
        held = _Held(
            str(event.event_id),
            event.subject_id,
            topic,
            event.to_json(),
            _embedding_blob(embedding),
            db_time(event.decided_at),
        )
        if not topic:
            raise EdgeAgentError("an outbox message needs a topic and a message id")
        with self._lock:
            waiting = bool(self._held) or (self.survive_faults and not self.faults.ok)
        if waiting:  # keep the decision order: behind those held before; retry() stores it
            self._hold(held)
            return None
        try:
            done, seq = self._write("commit a match", lambda conn: self._commit_held(conn, held))
        except sqlite3.IntegrityError:
            raise EdgeAgentError(f"{self.path}: event {held.event_id} is already stored") from None
        if not done:
            self._hold(held)
            return None
        return seq

    def _commit_held(self, conn: sqlite3.Connection, held: _Held) -> int:
        seq = self._insert(conn, held.event_id, held.topic, held.payload)
        conn.execute(
            "INSERT INTO review (event_id, subject_id, payload, embedding, decided_at, sent_at) "
            "VALUES (?, ?, ?, ?, ?, NULL)",
            (held.event_id, held.subject_id, held.payload, held.embedding, held.decided_at),
        )
        self._enforce(conn)
        return seq

    def _hold(self, held: _Held) -> None:
        with self._lock:
            self._held.append(held)
            overflow = len(self._held) > self.held_max
            if overflow:
                self._held.popleft()
                self.faults.lost += 1
            self.faults.held = len(self._held)
            lost = self.faults.lost
        if overflow and (lost == 1 or lost % 100 == 0):
            self.faults.note(
                f"{lost} decided match(es) lost so far: more than {self.held_max} held in memory "
                "(the oldest held is dropped, never stored, never sent)"
            )

    @property
    def held(self) -> int:
        """Decided matches held in memory, not yet stored (and so not sent)."""
        with self._lock:
            return len(self._held)

    def retry(self, force: bool = False) -> int:
        """While in a fault state (or holding matches): at most every `RETRY_S` (always with `force`),
        reopen if needed, mark remembered acknowledgements, commit held matches in order. Returns how
        many held matches were stored now. Does nothing while healthy."""
        with self._lock:
            idle = self.faults.ok and not self._held and not self._unmarked and self._conn is not None
        if idle or not self.survive_faults:
            return 0
        now = time.monotonic()
        if not force and now < self._next_retry:
            return 0
        self._next_retry = now + RETRY_S
        if not self.faults.room(self.path.parent):
            return 0
        with self._lock:
            if self.faults.state == "corrupt" and self._conn is not None:
                error = sqlite3.DatabaseError(self.faults.last_error or "corrupt")
                if not self._set_aside_locked(error):
                    return 0
            if self._conn is None and not self._open_locked():
                return 0
            unmarked = sorted(self._unmarked)
        for seq in unmarked:
            if not self._write("mark sent", functools.partial(self._mark, seq=seq))[0]:
                return 0
            with self._lock:
                self._unmarked.discard(seq)
        stored = 0
        while True:
            with self._lock:
                if not self._held:
                    break
                held = self._held[0]
            try:
                done, _ = self._write("commit a held match", functools.partial(self._commit_held, held=held))
            except sqlite3.IntegrityError:
                done = True  # it was stored after all (a COMMIT that reported failure but landed)
            if not done:
                return stored
            with self._lock:
                if self._held and self._held[0] is held:
                    self._held.popleft()
                self.faults.held = len(self._held)
            stored += 1
        if not self.faults.ok and not (stored or unmarked):  # nothing written yet: prove it can be
            probe = "UPDATE outbox_state SET dropped = dropped WHERE id = 1"
            if not self._write("write", lambda conn: conn.execute(probe))[0]:
                return stored
        self.faults.recovered(self.path.parent, stored)
        return stored

    def enqueue(self, message_id: str, topic: str, payload: bytes) -> int:
        """Stores any other message that must survive a restart (e.g. a command result); returns its seq.
        Raises (also in survive mode) when it cannot be stored: the caller decides."""
        try:
            with self._transaction() as conn:
                seq = self._insert(conn, message_id, topic, payload)
                self._enforce(conn)
        except sqlite3.Error as exc:
            self._fault(exc, "enqueue")
            raise
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

        Idempotent: a seq already gone (sent before, or dropped by the bounds) changes nothing. In survive
        mode an acknowledgement that cannot be written is remembered, marked by `retry()`, and its row is
        not handed out by `pending()` again meanwhile.
        """
        if not self._write("mark sent", lambda conn: self._mark(conn, seq))[0]:
            with self._lock:
                self._unmarked.add(seq)

    def _mark(self, conn: sqlite3.Connection, seq: int) -> None:
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
        return self._write("enforce the outbox bounds", self._enforce)[1] or 0

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

        def purge(conn: sqlite3.Connection) -> int:
            return int(conn.execute("DELETE FROM review WHERE decided_at < ?", (cutoff,)).rowcount)

        deleted = self._write("purge review rows", purge)[1] or 0
        if deleted:
            self.wipe_wal()
        return deleted

    def wipe_wal(self) -> None:
        """Move the WAL into the database and truncate it, so deleted rows' old pages leave the WAL too."""
        self._read("checkpoint", lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"), None)

    def add_counters(self, deltas: Mapping[str, int]) -> bool:
        """Adds to aggregate counters: the running totals and today's (UTC) row, in one transaction. The
        known totals (`KNOWN_COUNTERS`) exist from the start, so this only updates their rows; a name
        outside them gets its row on its first non-zero update, and each day's row likewise. False (survive
        mode) when a storage fault stopped it: nothing was added, the caller keeps the deltas."""
        items = [(name, int(delta)) for name, delta in deltas.items() if delta]
        if not items:
            return True
        day = self.clock().astimezone(UTC).date().isoformat()

        def add(conn: sqlite3.Connection) -> None:
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

        return self._write("add counters", add)[0]

    # ---- reading -------------------------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Unsent messages with seq > `after_seq`, oldest first, at most `limit` (none while unreadable)."""

        def read(conn: sqlite3.Connection) -> list[tuple[int, str, str, bytes, str]]:
            return list(
                conn.execute(
                    "SELECT seq, message_id, topic, payload, created_at FROM outbox WHERE seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                ).fetchall()
            )

        empty: list[tuple[int, str, str, bytes, str]] = []
        rows = self._read("read the outbox", read, empty)
        with self._lock:
            acked = set(self._unmarked)
        return [
            OutboxMessage(int(seq), str(mid), str(topic), bytes(payload), datetime.fromisoformat(created))
            for seq, mid, topic, payload, created in rows
            if int(seq) not in acked
        ]

    def depth(self) -> int:
        """Messages stored and not yet acknowledged (0 while the store cannot be read)."""
        (count,) = self._read(
            "count the outbox", lambda c: c.execute("SELECT count(*) FROM outbox").fetchone(), (0,)
        )
        with self._lock:
            return max(0, int(count) - len(self._unmarked))

    def oldest_age_s(self) -> float | None:
        """Seconds since the oldest unsent message was stored; None when the outbox is empty."""
        (oldest,) = self._read(
            "read the outbox", lambda c: c.execute("SELECT min(created_at) FROM outbox").fetchone(), (None,)
        )
        if oldest is None:
            return None
        return max(0.0, (self.clock() - datetime.fromisoformat(oldest)).total_seconds())

    def dropped(self) -> int:
        """Messages dropped by the bounds since the store was created (persisted; the last total read
        while the store cannot be read)."""
        row = self._read(
            "read the outbox state",
            lambda c: c.execute("SELECT dropped FROM outbox_state WHERE id = 1").fetchone(),
            None,
        )
        if row is not None:
            self._dropped = int(row[0])
        return self._dropped

    def review(self, event_id: str) -> tuple[bytes, F32] | None:
        """The kept payload and matched-face embeddings of an event (flat: one or several of the model's
        size, see `_embedding_blob`), or None (unknown or purged)."""
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

"""The event store's SQLite file: its tables, their migrations, and how a connection to it is opened.

One file (WAL, `synchronous=FULL`, `secure_delete`): `outbox` (messages to publish), `review` (the
reviewer's copy of each decided match), `counters` and `counter_days` (aggregate counts), `outbox_state`
(the running total of dropped messages). `seq` is an AUTOINCREMENT key: it never goes back, even after
the newest row is deleted, so "everything after the last seq handed to MQTT" is always a correct question.
Times are stored as fixed-width UTC text (`db_time`), so they compare correctly as text in SQL.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.errors import EdgeAgentError
from edge_agent.sqlite_schema import migrate, statements

# The pipeline's aggregate counters (edge_agent.events.schema.Counters); their rows exist from the start
# (v1's five from v1, the quality gates' from v3, track splits from v4), so counting never adds a row to
# `counters`.
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
    "splits",
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


def create_v1(conn: sqlite3.Connection) -> None:
    statements(*_V1)(conn)
    conn.executemany("INSERT INTO counters (name, value) VALUES (?, 0)", [(n,) for n in KNOWN_COUNTERS[:5]])


def _counter_rows(conn: sqlite3.Connection) -> None:
    """v3 (the quality gates' rejections), v4 (track splits): the rows of every known counter, so counting
    adds none."""
    conn.executemany(
        "INSERT INTO counters (name, value) VALUES (?, 0) ON CONFLICT (name) DO NOTHING",
        [(n,) for n in KNOWN_COUNTERS],
    )


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the event store at `path`, its schema brought up to date (created if new)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")  # a purged embedding is overwritten, not just freed
        migrate(conn, path, "event store", (create_v1, statements(*_V2), _counter_rows, _counter_rows))
    except BaseException:
        conn.close()
        raise
    return conn


def open_database(path: Path) -> sqlite3.Connection:
    """`connect`, creating the folder first; a one-line EdgeAgentError when either cannot be done."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeAgentError(f"{path}: cannot create its folder ({exc.strerror or exc})") from None
    try:
        return connect(path)
    except sqlite3.Error as exc:
        raise EdgeAgentError(f"{path}: not a usable event store database ({exc})") from None

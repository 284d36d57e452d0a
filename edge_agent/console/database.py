"""The console's SQLite file: what reached it from the fleet, who may use it, and its own audit log.

One file (WAL, `synchronous=FULL`), connections in autocommit mode with explicit transactions:

- `events`: each match event once (`event_id` is the key: the outbox re-sends, the broker redelivers),
  the decoded face chip apart from the JSON, and its review (state, reviewer, comment, the signed
  command, when the broker took it, and the device's answer): a verdict is stored with its command
  before anything is sent, so a broker that is down delays it and loses nothing;
- `devices`: each device's last status, health and report, and when it was last heard;
- `results`: every command answer (`cmd/result`) as received;
- `accounts`, `sessions`, `login_failures`, `known_logins`: reviewers and admins, their logins, the
  failed attempts that slow a password guesser down, and the addresses each account logged in from
  (`throttle.py`);
- `audit`: every reviewer's and admin's action, hash-chained as the devices' own log is
  (`edge_agent.watchlist.audit`), append-only.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_agent.errors import EdgeAgentError
from edge_agent.sqlite_schema import migrate, statements
from edge_agent.watchlist import audit

_V1 = (
    """CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        camera_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        watchlist TEXT NOT NULL,
        captured_at TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        payload TEXT NOT NULL,
        face_jpeg BLOB,
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'confirmed', 'false_match')),
        reviewed_by TEXT,
        reviewed_at TEXT,
        comment TEXT,
        command_envelope BLOB,
        command_nonce TEXT,
        command_sent_at TEXT,
        answer TEXT,
        answered_at TEXT
    )""",
    "CREATE INDEX events_state_captured ON events (state, captured_at)",
    "CREATE INDEX events_nonce ON events (command_nonce)",
    """CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        last_seen TEXT NOT NULL,
        status TEXT,
        status_at TEXT,
        health TEXT,
        health_at TEXT,
        report TEXT,
        report_at TEXT
    )""",
    """CREATE TABLE results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        nonce TEXT,
        received_at TEXT NOT NULL,
        payload TEXT NOT NULL
    )""",
    "CREATE INDEX results_nonce ON results (nonce)",
    """CREATE TABLE accounts (
        username TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('reviewer', 'admin')),
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    )""",
    """CREATE TABLE sessions (
        token_sha256 TEXT PRIMARY KEY,
        username TEXT NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    )""",
    """CREATE TABLE login_failures (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_at REAL NOT NULL
    )""",
    *audit.TABLE,
)
_V2 = (
    """CREATE TABLE known_logins (
        key TEXT PRIMARY KEY,
        last_at REAL NOT NULL
    )""",
    "ALTER TABLE events ADD COLUMN command_sends INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE devices ADD COLUMN online_at TEXT",
    "CREATE INDEX login_failures_last_at ON login_failures (last_at)",
    "CREATE INDEX known_logins_last_at ON known_logins (last_at)",
    "CREATE INDEX events_unanswered ON events (reviewed_at) "
    "WHERE command_nonce IS NOT NULL AND answer IS NULL",
)


class ConsoleDatabase:
    """The open console database; `transaction()` for every write (BEGIN IMMEDIATE ... COMMIT).

    One connection serves the web server's threads and the MQTT thread: a lock keeps one thread's
    transaction from taking in another's statements."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeAgentError(f"{path}: cannot create its folder ({exc.strerror or exc})") from None
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            migrate(self.conn, path, "console database", (statements(*_V1), statements(*_V2)))
        except sqlite3.Error as exc:
            raise EdgeAgentError(f"{path}: not a usable console database ({exc})") from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # also after a COMMIT that failed (a full disk)
                    self.conn.execute("ROLLBACK")
                raise

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads that take several statements (no other thread's write between)."""
        with self._lock:
            yield self.conn

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of its own, inside one read transaction: a long read (the whole audit
        chain) sees one state of the file and holds up no other thread (WAL lets it read beside them)."""
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("BEGIN")
            yield conn
        finally:
            conn.close()

    def rows(self, sql: str, *params: object) -> list[sqlite3.Row]:
        with self._lock:
            return list(self.conn.execute(sql, params))

    def row(self, sql: str, *params: object) -> sqlite3.Row | None:
        with self._lock:
            found: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return found

    def close(self) -> None:
        with self._lock:
            self.conn.close()

"""The watchlist's SQLite schema and its migrations (the database is the source of truth).

`PRAGMA user_version` holds the schema version; `migrate` brings an older database up to date inside one
transaction and refuses a newer one. Connections are opened in autocommit mode (`isolation_level=None`)
and every write names its transaction explicitly. The audit table refuses UPDATE and DELETE (triggers);
its rows are chained by hash (`edge_agent.watchlist.audit`). Times are UTC ISO-8601 strings
(`2026-11-23T12:00:00+00:00`), so they sort and compare as text.

Versions: 1 subjects, templates, audit; 2 adds `exclusions`, a reviewer's `false_match` verdict kept as the
wrongly matched face's embedding (float32 little-endian), so that face no longer matches that subject;
3 adds the fleet command tables (nonces, keys, settings).

4 puts subject rows in the audit chain and adds the tables of refused fleet commands:
- from now on every audit row that creates or changes a subject carries `subject_sha256`, the hash of the
  subject row's canonical content (`subject_hashes.subject_sha256`), and `audit.verify` compares every
  subject row with the latest hash the chain recorded for it;
- migrating an existing database records the current hash of every subject it holds in ONE audit row
  (action `schema_migration`, actor `edge-agent:migration`, subject_id NULL, details
  `{"schema_version": 4, "subject_sha256": {subject id: hash}}`), so edits made after the upgrade are
  caught; an edit made before the upgrade cannot be told from the truth and is recorded as it stands.
  A database without subjects gets no such row;
- `command_refusals` (one row per refused command: when, the refusal reason code, the envelope's
  SHA-256, and the one-line why) and `command_refusal_counts` (per UTC day and reason), written by
  `edge_agent.fleet.state`.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from edge_agent.sqlite_schema import migrate as migrate_file
from edge_agent.sqlite_schema import statements
from edge_agent.watchlist import audit, subject_hashes

_V1 = (
    """CREATE TABLE subjects (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        watchlist TEXT NOT NULL,
        reason TEXT NOT NULL CHECK (length(trim(reason)) > 0),
        source TEXT NOT NULL CHECK (length(trim(source)) > 0),
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'removed', 'expired'))
    )""",
    "CREATE INDEX subjects_status_expiry ON subjects (status, expires_at)",
    """CREATE TABLE templates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        subject_id TEXT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        embedding BLOB NOT NULL,
        quality REAL NOT NULL,
        photo_sha256 TEXT NOT NULL CHECK (length(photo_sha256) = 64),
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX templates_subject ON templates (subject_id)",
    "CREATE INDEX templates_model ON templates (model_id)",
    *audit.TABLE,
)


_V2 = (
    """CREATE TABLE exclusions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        subject_id TEXT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        embedding BLOB NOT NULL,
        event_id TEXT NOT NULL UNIQUE CHECK (length(trim(event_id)) > 0),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        created_by TEXT NOT NULL CHECK (length(trim(created_by)) > 0)
    )""",
    "CREATE INDEX exclusions_subject ON exclusions (subject_id, model_id)",
    "CREATE INDEX exclusions_expiry ON exclusions (expires_at)",
)


# v3: fleet commands (edge_agent.fleet.state): nonces seen (replays are refused), command keys
# added or retired by `rotate_keys`, settings set by command.
_V3 = (
    """CREATE TABLE command_nonces (
        nonce TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        signer TEXT NOT NULL,
        expires_at TEXT NOT NULL
    )""",
    "CREATE INDEX command_nonces_expiry ON command_nonces (expires_at)",
    """CREATE TABLE command_keys (
        public_key TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('added', 'retired')),
        changed_at TEXT NOT NULL,
        changed_by TEXT NOT NULL
    )""",
    "CREATE TABLE fleet_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL, set_at TEXT NOT NULL)",
)


_V4_TABLES = (
    """CREATE TABLE command_refusals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        reason TEXT NOT NULL,
        envelope_sha256 TEXT NOT NULL,
        why TEXT NOT NULL
    )""",
    "CREATE INDEX command_refusals_at ON command_refusals (at)",
    """CREATE TABLE command_refusal_counts (
        day TEXT NOT NULL,
        reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (day, reason)
    )""",
)


def _v4(conn: sqlite3.Connection) -> None:
    """The refusal tables, and one audit row recording the hash of every subject already there."""
    statements(*_V4_TABLES)(conn)
    digests = subject_hashes.subject_digests(conn)
    if digests:
        audit.append(
            conn,
            actor="edge-agent:migration",
            action="schema_migration",
            subject_id=None,
            details={"schema_version": 4, subject_hashes.SUBJECT_HASH_KEY: digests},
            at=datetime.now(UTC),
        )


MIGRATIONS = (statements(*_V1), statements(*_V2), statements(*_V3), _v4)
SCHEMA_VERSION = len(MIGRATIONS)
assert subject_hashes.SUBJECT_HASHES_SINCE == 4 <= SCHEMA_VERSION


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Brings the watchlist database to SCHEMA_VERSION; returns the version it had before."""
    return migrate_file(conn, path, "watchlist", MIGRATIONS)

"""The watchlist's append-only audit log: every row is chained to the one before it by SHA-256.

A row's hash covers its own id, time, actor, action, subject, details and the previous row's hash, so
editing, deleting or reordering any row breaks the chain at that row (`verify` names it). Cutting rows
off the end leaves a shorter chain that still verifies: a device that must prove nothing was removed
publishes `head` somewhere else (an anchor) and compares later.

The functions take a connection in autocommit mode (`isolation_level=None`) and run inside the caller's
open transaction: the audit row commits, or rolls back, together with the change it records. They never
BEGIN or COMMIT themselves.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
"""The prev_hash of row 1."""

_COLUMNS = "id, at, actor, action, subject_id, details, prev_hash, hash"


@dataclass(frozen=True)
class AuditRow:
    """One audit entry exactly as stored; `details_json` is the canonical JSON text that was hashed."""

    id: int
    at: str
    actor: str
    action: str
    subject_id: str | None
    details_json: str
    prev_hash: str
    hash: str

    @property
    def details(self) -> dict[str, object]:
        """The details as a dictionary (an empty one if the stored text is not a JSON object)."""
        try:
            parsed = json.loads(self.details_json)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


@dataclass(frozen=True)
class AuditCheck:
    """The result of `verify`: ok, how many rows were read, and the first bad row with its reason."""

    ok: bool
    rows: int
    first_bad_id: int | None
    reason: str


def canonical_json(value: object) -> str:
    """The one JSON spelling of `value`: sorted keys, no spaces, UTF-8 text, no NaN or infinity."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def row_hash(
    row_id: int, at: str, actor: str, action: str, subject_id: str | None, details_json: str, prev_hash: str
) -> str:
    """SHA-256 (hex) of the canonical JSON array of a row's stored columns; details enter as their text."""
    fields = [row_id, at, actor, action, subject_id, details_json, prev_hash]
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def utc_text(at: datetime) -> str:
    """A timezone-aware time as the stored UTC ISO-8601 text; a naive time is a programming error."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"audit times must be timezone-aware, got {at.isoformat()}")
    return at.astimezone(UTC).isoformat()


def append(
    conn: sqlite3.Connection,
    *,
    actor: str,
    action: str,
    subject_id: str | None,
    details: Mapping[str, object],
    at: datetime,
) -> AuditRow:
    """Adds one row after the current last one; must run inside the caller's open write transaction.

    Outside a transaction two writers could read the same last row and fork the chain, so that is
    refused (RuntimeError) rather than silently allowed.
    """
    if not conn.in_transaction:
        raise RuntimeError("audit.append must run inside the caller's transaction (BEGIN IMMEDIATE ...)")
    last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    row_id, prev_hash = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
    at_text = utc_text(at)
    details_json = canonical_json(dict(details))
    digest = row_hash(row_id, at_text, actor, action, subject_id, details_json, prev_hash)
    row = AuditRow(row_id, at_text, actor, action, subject_id, details_json, prev_hash, digest)
    conn.execute(
        f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (row.id, row.at, row.actor, row.action, row.subject_id, row.details_json, row.prev_hash, row.hash),
    )
    return row


def verify(conn: sqlite3.Connection) -> AuditCheck:
    """Recomputes every hash in id order and checks the links and that ids run 1, 2, 3, ... without gaps."""
    previous_hash, count = GENESIS_HASH, 0
    for expected_id, stored in enumerate(_raw_rows(conn), start=1):
        count += 1
        problem = _check_row(expected_id, stored, previous_hash)
        if problem is not None:
            bad_id, reason = problem
            return AuditCheck(ok=False, rows=count, first_bad_id=bad_id, reason=reason)
        previous_hash = str(stored[7])
    noun = "row" if count == 1 else "rows"
    return AuditCheck(ok=True, rows=count, first_bad_id=None, reason=f"{count} {noun}, hash chain intact")


def rows(conn: sqlite3.Connection, subject_id: str | None = None, limit: int | None = None) -> list[AuditRow]:
    """Rows in id order, optionally only one subject's; with `limit`, the most recent `limit` of them."""
    params: list[object] = []
    query = f"SELECT {_COLUMNS} FROM audit"
    if subject_id is not None:
        query += " WHERE subject_id = ?"
        params.append(subject_id)
    query += " ORDER BY id DESC"
    if limit is not None:
        query += " LIMIT ?"
        params.append(max(limit, 0))
    found = [_to_row(stored) for stored in conn.execute(query, params)]
    found.reverse()
    return found


def head(conn: sqlite3.Connection) -> str:
    """The last row's hash (GENESIS_HASH for an empty log): publish it to anchor the log elsewhere."""
    last = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    return GENESIS_HASH if last is None else str(last[0])


def _raw_rows(conn: sqlite3.Connection) -> Iterator[tuple[object, ...]]:
    yield from conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY id")


def _check_row(expected_id: int, stored: tuple[object, ...], previous_hash: str) -> tuple[int, str] | None:
    """The first thing wrong with one row, as (bad id, one-line reason), or None."""
    row_id = stored[0]
    if not isinstance(row_id, int) or row_id < expected_id:
        return expected_id, f"row {expected_id}: unexpected id {row_id!r}"
    if row_id > expected_id:
        missing = (
            f"row {expected_id} is missing"
            if row_id == expected_id + 1
            else (f"rows {expected_id} to {row_id - 1} are missing")
        )
        return expected_id, missing
    if _recomputed(stored) != stored[7]:
        return row_id, f"row {row_id}: hash does not match its contents"
    if stored[6] != previous_hash:
        if row_id == 1:
            return row_id, "row 1: prev_hash is not the genesis hash"
        return row_id, f"row {row_id}: prev_hash does not match row {row_id - 1}"
    return None


def _recomputed(stored: tuple[object, ...]) -> str | None:
    """The hash a row's columns should have; None when a column holds a type no append could write."""
    row_id, at, actor, action, subject_id, details_json, prev_hash, _ = stored
    texts = (at, actor, action, details_json, prev_hash)
    if not isinstance(row_id, int) or not all(isinstance(text, str) for text in texts):
        return None
    if subject_id is not None and not isinstance(subject_id, str):
        return None
    return row_hash(row_id, str(at), str(actor), str(action), subject_id, str(details_json), str(prev_hash))


def _to_row(stored: tuple[Any, ...]) -> AuditRow:
    row_id, at, actor, action, subject_id, details_json, prev_hash, digest = stored
    return AuditRow(
        id=int(row_id),
        at=str(at),
        actor=str(actor),
        action=str(action),
        subject_id=None if subject_id is None else str(subject_id),
        details_json=str(details_json),
        prev_hash=str(prev_hash),
        hash=str(digest),
    )

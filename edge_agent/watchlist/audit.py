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
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_agent.errors import EdgeAgentError
from edge_agent.signed import canonical
from edge_agent.watchlist import subject_hashes

GENESIS_HASH = "0" * 64
"""The prev_hash of row 1."""

_COLUMNS = "id, at, actor, action, subject_id, details, prev_hash, hash"

# The table and its append-only triggers, the same in every store that keeps a chained audit log (the
# watchlist; the console's own log of reviewers' actions).
TABLE = (
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject_id TEXT,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)

ANCHOR_SCHEMA = "edge-agent.audit-anchor/1"
_ANCHOR_TEXT = re.compile(r"^([0-9]{1,18}):([0-9a-f]{64})$")


@dataclass(frozen=True)
class AuditRow:
    """One audit entry exactly as stored; `details_json` is the canonical JSON text that was hashed
    (`edge_agent.signed.canonical`, the spelling signed envelopes use too: changing it would break every
    stored chain, so it never changes)."""

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
    subject_id: str | None = None
    """The subject whose row no longer matches the chain, when that is what failed."""


@dataclass(frozen=True)
class Anchor:
    """The chain head: the last row's id and hash (0 and GENESIS_HASH for an empty log), and its time.

    Ids run 1, 2, 3, ... without gaps in a chain that verifies, so `row_id` is also the row count."""

    row_id: int
    hash: str
    at: str | None = None

    @property
    def text(self) -> str:
        """The canonical text form, `<row id>:<hash hex>`, that `parse` and `--against` read."""
        return f"{self.row_id}:{self.hash}"

    @classmethod
    def parse(cls, text: str, what: str = "anchor") -> Anchor:
        """`<row id>:<64 lowercase hex>`, or the JSON of `anchor_payload`; one-line error otherwise."""
        stripped = text.strip()
        if stripped.startswith("{"):
            return cls._from_json(stripped, what)
        match = _ANCHOR_TEXT.match(stripped)
        if match is None:
            shown = stripped if len(stripped) <= 80 else f"{stripped[:77]}..."
            raise EdgeAgentError(f"{what}: {shown!r} is not an audit anchor (<row id>:<64 hex digits>)")
        return cls(int(match.group(1)), match.group(2))

    @classmethod
    def _from_json(cls, text: str, what: str) -> Anchor:
        try:
            payload = json.loads(text)
        except ValueError:
            raise EdgeAgentError(f"{what}: not JSON and not an audit anchor") from None
        if not isinstance(payload, dict):
            raise EdgeAgentError(f"{what}: the JSON is not an audit anchor object")
        row_id, digest = payload.get("row_id"), payload.get("hash")
        if isinstance(row_id, bool) or not isinstance(row_id, int) or not isinstance(digest, str):
            raise EdgeAgentError(f"{what}: the JSON needs an integer row_id and a text hash")
        parsed = cls.parse(f"{row_id}:{digest}", what)
        at = payload.get("head_at")
        return cls(parsed.row_id, parsed.hash, at if isinstance(at, str) else None)


def row_hash(
    row_id: int, at: str, actor: str, action: str, subject_id: str | None, details_json: str, prev_hash: str
) -> str:
    """SHA-256 (hex) of the canonical JSON array of a row's stored columns; details enter as their text."""
    fields = [row_id, at, actor, action, subject_id, details_json, prev_hash]
    return hashlib.sha256(canonical(fields).encode()).hexdigest()


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
    details_json = canonical(dict(details))
    digest = row_hash(row_id, at_text, actor, action, subject_id, details_json, prev_hash)
    row = AuditRow(row_id, at_text, actor, action, subject_id, details_json, prev_hash, digest)
    conn.execute(
        f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (row.id, row.at, row.actor, row.action, row.subject_id, row.details_json, row.prev_hash, row.hash),
    )
    return row


def verify(conn: sqlite3.Connection) -> AuditCheck:
    """`verify_chain`; then that every subject row still has the content the chain last recorded for it
    (`subject_hashes`)."""
    recorded: dict[str, tuple[str, int]] = {}
    chain = verify_chain(conn, lambda stored: subject_hashes.record_subject_hashes(stored, recorded))
    if not chain.ok:
        return chain
    count = chain.rows
    mismatch = subject_hashes.first_subject_mismatch(conn, recorded)
    if mismatch is not None:
        contradicted, subject_id, reason = mismatch
        return AuditCheck(
            ok=False, rows=count, first_bad_id=contradicted, reason=reason, subject_id=subject_id
        )
    return chain


def verify_chain(
    conn: sqlite3.Connection, each: Callable[[tuple[object, ...]], None] | None = None
) -> AuditCheck:
    """Recomputes every hash in id order and checks the links and that ids run 1, 2, 3, ... without gaps
    (`each` sees every row that passed, in order)."""
    previous_hash, count = GENESIS_HASH, 0
    for expected_id, stored in enumerate(_raw_rows(conn), start=1):
        count += 1
        problem = _check_row(expected_id, stored, previous_hash)
        if problem is not None:
            bad_id, reason = problem
            return AuditCheck(ok=False, rows=count, first_bad_id=bad_id, reason=reason)
        previous_hash = str(stored[7])
        if each is not None:
            each(stored)
    noun = "row" if count == 1 else "rows"
    return AuditCheck(ok=True, rows=count, first_bad_id=None, reason=f"{count} {noun}, hash chain intact")


def verify_against(conn: sqlite3.Connection, published: Anchor) -> AuditCheck:
    """`verify`, and that the chain still holds the published anchor's row with the anchor's hash: a
    chain cut after that row, or rewritten up to it, fails."""
    check = verify(conn)
    if not check.ok:
        return check
    if published.row_id == 0:
        if published.hash != GENESIS_HASH:
            reason = "the anchor names row 0 with a hash other than the genesis hash"
            return AuditCheck(False, check.rows, None, reason)
        return check
    stored = conn.execute("SELECT hash FROM audit WHERE id = ?", (published.row_id,)).fetchone()
    if stored is None:
        return AuditCheck(
            ok=False,
            rows=check.rows,
            first_bad_id=check.rows + 1,
            reason=(
                f"the anchor's row {published.row_id} is missing: the chain ends at row {check.rows}, "
                "so rows were cut off its end"
            ),
        )
    if str(stored[0]) != published.hash:
        return AuditCheck(
            ok=False,
            rows=check.rows,
            first_bad_id=published.row_id,
            reason=(
                f"row {published.row_id}: hash differs from the anchor's, so the chain was rewritten "
                f"up to row {published.row_id}"
            ),
        )
    noun = "row" if check.rows == 1 else "rows"
    return AuditCheck(
        True, check.rows, None, f"{check.rows} {noun}, hash chain intact, holds anchor {published.text}"
    )


def anchor(conn: sqlite3.Connection) -> Anchor:
    """The chain head, to publish where this device cannot rewrite it (see `anchor_payload`)."""
    last = conn.execute("SELECT id, hash, at FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    if last is None:
        return Anchor(0, GENESIS_HASH, None)
    return Anchor(int(last[0]), str(last[1]), str(last[2]))


def anchor_payload(conn: sqlite3.Connection, *, device_id: str, now: datetime) -> dict[str, object]:
    """The anchor as a JSON-ready dict to sign and publish (retained): schema, device_id, row_id, hash,
    anchor (the `<row id>:<hash>` text), head_at (the head row's time, None for an empty log) and at
    (`now`, when the anchor was taken). `Anchor.parse` reads its JSON back for `verify --against`."""
    head_row = anchor(conn)
    return {
        "schema": ANCHOR_SCHEMA,
        "device_id": device_id,
        "row_id": head_row.row_id,
        "hash": head_row.hash,
        "anchor": head_row.text,
        "head_at": head_row.at,
        "at": utc_text(now),
    }


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
    """The last row's hash (GENESIS_HASH for an empty log); `anchor` adds its row id, to publish."""
    return anchor(conn).hash


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

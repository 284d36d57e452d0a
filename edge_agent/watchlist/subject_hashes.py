"""What the audit chain records of each subject row, and the check that the subjects table still says it.

Every write that changes a subject row records the hash of the row's content as it then is (details key
`SUBJECT_HASH_KEY`; a migration row records the hashes of every subject at once). `audit.verify` reads the
last hash the chain records for each subject and compares it with the row now in the table, so a subject
edited, added or deleted outside edge-agent (with the sqlite3 shell, say) fails verification and is named.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping

from edge_agent.signed import canonical

SUBJECT_COLUMNS = (
    "id",
    "display_name",
    "watchlist",
    "reason",
    "source",
    "created_by",
    "created_at",
    "expires_at",
    "status",
)
"""The subject columns whose content the chain records (all of them)."""

SUBJECT_HASH_KEY = "subject_sha256"
"""The details key: a hash (text) in a subject's own row, {subject id: hash} in a migration row."""

SUBJECT_HASHES_SINCE = 4
"""The watchlist schema version from which the chain records subject hashes; older files are not
checked for them (a read-only look at a file no edge-agent of that version has opened yet)."""


def subject_sha256(values: Mapping[str, object]) -> str:
    """SHA-256 (hex) of a subject row's canonical content: the SUBJECT_COLUMNS, each as stored. A column
    that is not text (which no edge-agent write makes) is tagged with its type, so it cannot collide."""
    content = {name: _plain(values.get(name)) for name in SUBJECT_COLUMNS}
    return hashlib.sha256(canonical(content).encode()).hexdigest()


def subject_digest(conn: sqlite3.Connection, subject_id: str) -> str | None:
    """The current hash of one subject row, or None when there is no such row."""
    columns = ", ".join(SUBJECT_COLUMNS)
    stored = conn.execute(f"SELECT {columns} FROM subjects WHERE id = ?", (subject_id,)).fetchone()
    return None if stored is None else subject_sha256(dict(zip(SUBJECT_COLUMNS, stored, strict=True)))


def subject_digests(conn: sqlite3.Connection) -> dict[str, str]:
    """The current hash of every subject row, by subject id."""
    columns = ", ".join(SUBJECT_COLUMNS)
    found = {}
    for stored in conn.execute(f"SELECT {columns} FROM subjects ORDER BY rowid"):
        values = dict(zip(SUBJECT_COLUMNS, stored, strict=True))
        found[str(values["id"])] = subject_sha256(values)
    return found


def _plain(value: object) -> object:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return {"sqlite_type": "blob", "hex": value.hex()}
    return {"sqlite_type": type(value).__name__, "repr": repr(value)}


def record_subject_hashes(stored: tuple[object, ...], recorded: dict[str, tuple[str, int]]) -> None:
    """Notes the subject hashes one verified row records: (hash, row id), later rows overriding."""
    details_json = stored[5]
    if not isinstance(details_json, str) or f'"{SUBJECT_HASH_KEY}"' not in details_json:
        return
    try:
        details = json.loads(details_json)
    except ValueError:
        return
    if not isinstance(details, dict):
        return
    row_id, subject_id, value = int(str(stored[0])), stored[4], details.get(SUBJECT_HASH_KEY)
    if isinstance(subject_id, str) and isinstance(value, str):
        recorded[subject_id] = (value, row_id)
    elif subject_id is None and isinstance(value, dict):
        for listed, digest in value.items():
            if isinstance(digest, str):
                recorded[str(listed)] = (digest, row_id)


def first_subject_mismatch(
    conn: sqlite3.Connection, recorded: dict[str, tuple[str, int]]
) -> tuple[int | None, str, str] | None:
    """The first subject (by the audit row it contradicts) whose row differs from the chain's record,
    as (audit row id or None, subject id, one-line reason), or None."""
    problems: list[tuple[int, str, int | None, str]] = []
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if int(version) < SUBJECT_HASHES_SINCE:
        return None
    current = subject_digests(conn)
    for subject_id, digest in current.items():
        if subject_id not in recorded:
            reason = f"subject {subject_id} was added outside edge-agent: no audit row records it"
            problems.append((0, subject_id, None, reason))
            continue
        expected, row_id = recorded[subject_id]
        if digest != expected:
            reason = (
                f"subject {subject_id} was edited outside edge-agent: its row no longer matches "
                f"audit row {row_id}"
            )
            problems.append((row_id, subject_id, row_id, reason))
    for subject_id, (_, row_id) in recorded.items():
        if subject_id not in current:
            reason = (
                f"subject {subject_id} was deleted outside edge-agent: audit row {row_id} records it, "
                "the subjects table has no such row"
            )
            problems.append((row_id, subject_id, row_id, reason))
    if not problems:
        return None
    _, subject_id, bad_id, reason = min(problems, key=lambda problem: (problem[0], problem[1]))
    return bad_id, subject_id, reason

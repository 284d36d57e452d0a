"""Retiring subjects (removal, expiry): their templates and exclusions are deleted in SQLite, the row stays
with its new status, and the audit row records what was deleted.

Deletion deletes: `secure_delete` overwrites the freed pages and the WAL is checkpointed and truncated,
so the deleted templates leave the file too. The caller then rebuilds the index from SQLite
(`edge_agent.watchlist.index_sync`); a purge of many subjects rebuilds once. Expired subjects never match
whether or not a purge has run (the search reads only live subjects).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from edge_agent.errors import EdgeAgentError
from edge_agent.watchlist import audit, subject_hashes, tables
from edge_agent.watchlist.records import Subject, utc_text
from edge_agent.watchlist.tables import Clock, transaction


def retire(
    conn: sqlite3.Connection,
    clock: Clock,
    subject_id: str,
    *,
    status: str,
    action: str,
    actor: str,
    details: dict[str, Any],
) -> tuple[Subject, list[int]]:
    """Status check, deletion of templates and exclusions, and audit row in one write transaction, so
    two processes retiring the same subject cannot both do it. Returns the subject and the deleted
    template ids; the caller then rebuilds the index."""
    with transaction(conn):
        subject = tables.subject(conn, subject_id)
        if subject.status != "active":
            raise EdgeAgentError(f"subject {subject.id} is already {subject.status}")
        ids = [
            int(row[0])
            for row in conn.execute("SELECT id FROM templates WHERE subject_id = ?", (subject.id,))
        ]
        exclusions = [
            int(row[0])
            for row in conn.execute("SELECT id FROM exclusions WHERE subject_id = ?", (subject.id,))
        ]
        conn.execute("DELETE FROM templates WHERE subject_id = ?", (subject.id,))
        conn.execute("DELETE FROM exclusions WHERE subject_id = ?", (subject.id,))
        conn.execute("UPDATE subjects SET status = ? WHERE id = ?", (status, subject.id))
        details = {
            **details,
            "display_name": subject.display_name,
            "templates_deleted": ids,
            "exclusions_deleted": exclusions,
            subject_hashes.SUBJECT_HASH_KEY: subject_hashes.subject_digest(conn, subject.id),
        }
        audit.append(conn, actor=actor, action=action, subject_id=subject.id, details=details, at=clock())
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the deleted templates' pages leave the WAL
    return tables.subject(conn, subject.id), ids


def expired_subject_ids(conn: sqlite3.Connection, now: datetime) -> list[str]:
    """The active subjects whose expiry has passed at `now`, by id."""
    rows = conn.execute(
        "SELECT id FROM subjects WHERE status = 'active' AND expires_at <= ? ORDER BY id", (utc_text(now),)
    ).fetchall()
    return [row["id"] for row in rows]

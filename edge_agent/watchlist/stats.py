"""The watchlist in numbers (`edge-agent watchlist stats`): subjects by status, templates, the index, and
the audit chain's head."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from edge_agent.watchlist import audit
from edge_agent.watchlist.index import TemplateIndex
from edge_agent.watchlist.records import utc_text


@dataclass(frozen=True)
class Stats:
    subjects: dict[str, int]
    live_subjects: int
    templates: int
    index_vectors: int
    index_dtype: str
    index_bytes_on_disk: int
    audit_rows: int
    audit_head: str
    audit_anchor: str


def watchlist_stats(conn: sqlite3.Connection, index: TemplateIndex, now: datetime) -> Stats:
    by_status = {
        row["status"]: int(row["n"])
        for row in conn.execute("SELECT status, count(*) AS n FROM subjects GROUP BY status")
    }
    live = conn.execute(
        "SELECT count(*) FROM subjects WHERE status = 'active' AND expires_at > ?", (utc_text(now),)
    ).fetchone()[0]
    templates = conn.execute("SELECT count(*) FROM templates").fetchone()[0]
    audit_rows = conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    on_disk = index.path.stat().st_size if index.path.is_file() else 0
    head = audit.anchor(conn)
    return Stats(
        subjects=by_status,
        live_subjects=int(live),
        templates=int(templates),
        index_vectors=len(index),
        index_dtype=index.dtype,
        index_bytes_on_disk=on_disk,
        audit_rows=int(audit_rows),
        audit_head=head.hash,
        audit_anchor=head.text,
    )

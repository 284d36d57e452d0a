"""Writing one enrolment into SQLite: the subject row, its template rows and the audit row that records
them (what the subject is, the hash of its row, each template's photo hash and quality, never an
embedding). Runs inside the caller's write transaction; the caller updates the index after the commit."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import sqlite_utils

from edge_agent.errors import EdgeAgentError
from edge_agent.watchlist import audit, subject_hashes
from edge_agent.watchlist.records import Enrolment, NewSubject, NewTemplate, utc_text


def insert_enrolment(
    db: sqlite_utils.Database,
    model_id: str,
    subject_id: str,
    enrolment: Enrolment,
    *,
    action: str,
    context: dict[str, Any],
    now: datetime,
) -> list[int]:
    """Inserts the subject, its templates and the audit row; returns the new template ids."""
    created = utc_text(now)
    _insert_subject(db, subject_id, enrolment.subject, created)
    ids = [_insert_template(db.conn, model_id, subject_id, t, created) for t in enrolment.templates]
    _audit_enrolment(db.conn, model_id, subject_id, ids, enrolment, action, context, now)
    return ids


def _audit_enrolment(
    conn: sqlite3.Connection,
    model_id: str,
    subject_id: str,
    ids: list[int],
    enrolment: Enrolment,
    action: str,
    context: dict[str, Any],
    now: datetime,
) -> None:
    subject = enrolment.subject
    audit.append(
        conn,
        actor=subject.created_by,
        action=action,
        subject_id=subject_id,
        details={
            **context,
            "display_name": subject.display_name,
            "watchlist": subject.watchlist,
            "reason": subject.reason,
            "source": subject.source,
            "expires_at": utc_text(subject.expires_at),
            "model_id": model_id,
            subject_hashes.SUBJECT_HASH_KEY: subject_hashes.subject_digest(conn, subject_id),
            "templates": [
                {"id": i, "photo_sha256": t.photo_sha256, "quality": round(t.quality, 4)}
                for i, t in zip(ids, enrolment.templates, strict=True)
            ],
        },
        at=now,
    )


def _insert_subject(db: sqlite_utils.Database, subject_id: str, subject: NewSubject, created: str) -> None:
    if db.conn.execute("SELECT 1 FROM subjects WHERE id = ?", (subject_id,)).fetchone():
        raise EdgeAgentError(f"subject {subject_id} already exists")
    db.table("subjects").insert(
        {
            "id": subject_id,
            "display_name": subject.display_name.strip(),
            "watchlist": subject.watchlist.strip(),
            "reason": subject.reason.strip(),
            "source": subject.source.strip(),
            "created_by": subject.created_by.strip(),
            "created_at": created,
            "expires_at": utc_text(subject.expires_at),
            "status": "active",
        }
    )


def _insert_template(
    conn: sqlite3.Connection, model_id: str, subject_id: str, template: NewTemplate, created: str
) -> int:
    cursor = conn.execute(
        "INSERT INTO templates (subject_id, model_id, embedding, quality, photo_sha256, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            subject_id,
            model_id,
            template.embedding.astype("<f4").tobytes(),
            float(template.quality),
            template.photo_sha256,
            created,
        ),
    )
    assert cursor.lastrowid is not None
    return int(cursor.lastrowid)

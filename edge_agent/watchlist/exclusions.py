"""Exclusions: a reviewer's `false_match` verdicts, each the embedding of a face that was wrongly matched
to a subject.

A probe nearer to one of a subject's live exclusions than to that subject's best own template does not
return that subject (`drop_excluded`, in the embedder's metric). Only faces a reviewer has seen are kept,
each until its expiry, and never longer than its subject: removal or expiry of the subject deletes them
(`edge_agent.watchlist.retirement`). Audit rows carry the event id, expiry and how many embeddings, never
an embedding.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from edge_agent.errors import EdgeAgentError
from edge_agent.face_metric import FaceMetric
from edge_agent.watchlist import audit, tables
from edge_agent.watchlist.records import utc_text
from edge_agent.watchlist.tables import F32, transaction


@dataclass(frozen=True)
class Exclusion:
    """A reviewer's verdict that one match event's face is not this subject (the embedding is not here)."""

    id: int
    subject_id: str
    event_id: str
    created_at: str
    expires_at: str
    created_by: str


EXCLUSION_COLUMNS = "id, subject_id, event_id, created_at, expires_at, created_by"


def add_exclusion(
    conn: sqlite3.Connection,
    model_id: str,
    dimensions: int,
    *,
    subject_id: str,
    event_id: str,
    embedding: F32,
    actor: str,
    expires_at: datetime,
    now: datetime,
) -> Exclusion:
    """Keeps a reviewer's verdict in one transaction with its audit row; any refusal writes nothing. See
    `Watchlist.add_exclusion`."""
    embeddings = _checked_embeddings(embedding, dimensions)
    expiry = _checked_verdict(event_id, actor, expires_at, now)
    with transaction(conn):
        subject = tables.subject(conn, subject_id)
        if not subject.is_live(now):
            state = subject.status if subject.status != "active" else "expired"
            raise EdgeAgentError(f"subject {subject.id} is {state}; exclusions are for live subjects only")
        if conn.execute("SELECT 1 FROM exclusions WHERE event_id = ?", (event_id,)).fetchone():
            raise EdgeAgentError(f"event {event_id} already has an exclusion")
        cursor = conn.execute(
            "INSERT INTO exclusions (subject_id, model_id, embedding, event_id, created_at, expires_at, "
            "created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                subject.id,
                model_id,
                embeddings.astype("<f4").tobytes(),
                event_id,
                utc_text(now),
                expiry,
                actor.strip(),
            ),
        )
        assert cursor.lastrowid is not None
        details: dict[str, object] = {"event_id": event_id, "expires_at": expiry, "model_id": model_id}
        if len(embeddings) > 1:
            details["embeddings"] = len(embeddings)
        audit.append(
            conn, actor=actor.strip(), action="exclusion", subject_id=subject.id, details=details, at=now
        )
    return exclusion(conn, int(cursor.lastrowid))


def _checked_embeddings(embedding: F32, dimensions: int) -> F32:
    """One embedding or an (m, d) stack of them, as (m, d), refused unless finite and of the model's size."""
    if (
        not isinstance(embedding, np.ndarray)
        or embedding.ndim not in (1, 2)
        or embedding.shape[-1] != dimensions
        or embedding.size == 0
    ):
        shape = tuple(embedding.shape) if isinstance(embedding, np.ndarray) else type(embedding).__name__
        raise EdgeAgentError(f"an exclusion embedding must have {dimensions} values, got shape {shape}")
    embeddings = embedding.reshape(-1, dimensions)
    if not np.all(np.isfinite(embeddings)):
        raise EdgeAgentError("an exclusion embedding holds NaN or infinite values")
    return embeddings


def _checked_verdict(event_id: str, actor: str, expires_at: datetime, now: datetime) -> str:
    """Refuses a verdict without an event or a reviewer, or one that has already expired; the expiry text."""
    if not event_id.strip():
        raise EdgeAgentError("an exclusion needs the event id of the reviewed match")
    if not actor.strip():
        raise EdgeAgentError("an exclusion needs the reviewer (actor)")
    expiry = utc_text(expires_at)  # a time without a zone is refused here, before any comparison
    if expires_at <= now:
        raise EdgeAgentError(f"exclusion expiry {expiry} is not in the future")
    return expiry


def purge_expired_exclusions(conn: sqlite3.Connection, actor: str, now: datetime) -> int:
    """Deletes every exclusion whose expiry has passed, an audit row each; returns how many."""
    with transaction(conn):
        rows = conn.execute(
            f"SELECT {EXCLUSION_COLUMNS} FROM exclusions WHERE expires_at <= ? ORDER BY id",
            (utc_text(now),),
        ).fetchall()
        for row in rows:
            conn.execute("DELETE FROM exclusions WHERE id = ?", (row["id"],))
            audit.append(
                conn,
                actor=actor,
                action="exclusion_expired",
                subject_id=row["subject_id"],
                details={"event_id": row["event_id"], "expires_at": row["expires_at"]},
                at=now,
            )
    if rows:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the deleted embeddings leave the WAL
    return len(rows)


def exclusions(conn: sqlite3.Connection, subject_id: str) -> list[Exclusion]:
    """A subject's exclusions, oldest first, expired ones not yet purged included (check expires_at)."""
    rows = conn.execute(
        f"SELECT {EXCLUSION_COLUMNS} FROM exclusions WHERE subject_id = ? ORDER BY id", (subject_id,)
    )
    return [Exclusion(**dict(row)) for row in rows]


def exclusion(conn: sqlite3.Connection, exclusion_id: int) -> Exclusion:
    row = conn.execute(f"SELECT {EXCLUSION_COLUMNS} FROM exclusions WHERE id = ?", (exclusion_id,)).fetchone()
    return Exclusion(**dict(row))


def drop_excluded(
    conn: sqlite3.Connection,
    model_id: str,
    metric: FaceMetric,
    probe: F32,
    best: dict[str, tuple[float, int]],
    now: datetime,
) -> None:
    """Removes from `best` (subject id → (distance, template id)) each subject with a live exclusion
    nearer to the probe than its best template. One indexed query; with no exclusions it finds no rows
    and nothing else runs."""
    if not best:
        return
    marks = ",".join("?" * len(best))
    rows = conn.execute(
        f"SELECT subject_id, embedding FROM exclusions "
        f"WHERE subject_id IN ({marks}) AND model_id = ? AND expires_at > ?",
        (*best, model_id, utc_text(now)),
    ).fetchall()
    for row in rows:
        subject_id = row["subject_id"]
        if subject_id not in best:
            continue
        # an exclusion may hold several embeddings (every view of the track that voted for the match)
        vectors = np.frombuffer(row["embedding"], dtype="<f4").reshape(-1, probe.shape[0])
        if metric.nearest(probe, vectors) < best[subject_id][0]:
            del best[subject_id]

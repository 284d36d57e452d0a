"""The review table: the reviewer's copy of each decided match (its payload and matched-face embeddings).

Only a decided match writes a row here; nobody else's face or embedding is ever stored. Review retention
(`events.review_days`) bounds how long a matched face's embedding stays on the device, whether or not its
event has been sent: `purge_decided_before` deletes every row decided before the cutoff. The event itself
does not depend on its review row: an unsent one stays in the outbox until sent or dropped by the
outbox's own bounds.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

import numpy as np
import numpy.typing as npt

from edge_agent.errors import EdgeAgentError
from edge_agent.events.database import db_time
from edge_agent.events.held import HeldMatch

F32 = npt.NDArray[np.float32]


def embedding_blob(embedding: F32) -> bytes:
    """One embedding, or the (m, d) stack of a track's agreeing shots, as little-endian float32 bytes
    (`review_of` returns them flat; the reader knows d)."""
    vector = np.asarray(embedding)
    if vector.ndim not in (1, 2) or vector.size == 0 or not np.issubdtype(vector.dtype, np.floating):
        raise EdgeAgentError(
            f"embedding must be a non-empty float vector or stack of vectors, got shape {vector.shape}"
        )
    if not np.all(np.isfinite(vector)):
        raise EdgeAgentError("embedding has non-finite values")
    return vector.astype("<f4").tobytes()


def insert(conn: sqlite3.Connection, match: HeldMatch) -> None:
    """The review row of a decided match, not yet sent (sqlite3.IntegrityError when already stored)."""
    conn.execute(
        "INSERT INTO review (event_id, subject_id, payload, embedding, decided_at, sent_at) "
        "VALUES (?, ?, ?, ?, ?, NULL)",
        (match.event_id, match.subject_id, match.payload, match.embedding, match.decided_at),
    )


def purge_decided_before(conn: sqlite3.Connection, cutoff: datetime) -> int:
    """Deletes the rows (sent or not) decided before `cutoff`; returns how many."""
    return int(conn.execute("DELETE FROM review WHERE decided_at < ?", (db_time(cutoff),)).rowcount)


def review_of(conn: sqlite3.Connection, event_id: str) -> tuple[bytes, F32] | None:
    """The kept payload and matched-face embeddings (flat) of an event, or None (unknown or purged)."""
    row = conn.execute("SELECT payload, embedding FROM review WHERE event_id = ?", (event_id,)).fetchone()
    if row is None:
        return None
    return bytes(row[0]), np.frombuffer(row[1], dtype="<f4").astype(np.float32)

"""The SQLite access every part of the watchlist shares: the write transaction, and reading subjects and
templates back. The connection is in autocommit mode (`isolation_level=None`), so a change is atomic only
inside `transaction`, which is also where its audit row is appended."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.errors import EdgeAgentError
from edge_agent.watchlist.records import Subject, utc_text

Clock = Callable[[], datetime]
F32 = npt.NDArray[np.float32]

SUBJECT_QUERY = """
    SELECT s.*, (SELECT count(*) FROM templates t WHERE t.subject_id = s.id) AS templates
    FROM subjects s
"""


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One SQLite write transaction: everything inside it lands, or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def subject(conn: sqlite3.Connection, subject_id: str) -> Subject:
    row = conn.execute(f"{SUBJECT_QUERY} WHERE s.id = ?", (subject_id,)).fetchone()
    if row is None:
        raise EdgeAgentError(f"no subject with id {subject_id!r}")
    return Subject.from_row(dict(row))


def subjects(conn: sqlite3.Connection, include_inactive: bool) -> list[Subject]:
    where = "" if include_inactive else "WHERE s.status = 'active'"
    rows = conn.execute(f"{SUBJECT_QUERY} {where} ORDER BY s.created_at, s.id").fetchall()
    return [Subject.from_row(dict(row)) for row in rows]


def templates(conn: sqlite3.Connection, subject_id: str) -> list[dict[str, Any]]:
    """A subject's templates without their embeddings: id, model, quality, photo hash, time."""
    rows = conn.execute(
        "SELECT id, model_id, quality, photo_sha256, created_at FROM templates WHERE subject_id = ? "
        "ORDER BY id",
        (subject_id,),
    )
    return [dict(row) for row in rows]


def live_templates(conn: sqlite3.Connection, model_id: str, now: datetime) -> int:
    """Templates of this model a probe can match now (their subject active and not expired): the
    comparisons a search makes, which the alert budget is computed for."""
    row = conn.execute(
        "SELECT count(*) FROM templates t JOIN subjects s ON s.id = t.subject_id "
        "WHERE t.model_id = ? AND s.status = 'active' AND s.expires_at > ?",
        (model_id, utc_text(now)),
    ).fetchone()
    return int(row[0])


def template_ids(conn: sqlite3.Connection, model_id: str) -> set[int]:
    rows = conn.execute("SELECT id FROM templates WHERE model_id = ?", (model_id,))
    return {int(row[0]) for row in rows}


def stored_vector(blob: bytes, dimensions: int, db_path: Path) -> F32:
    """A template's embedding as stored (little-endian float32); refused unless it has the model's length."""
    vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    if vector.shape[0] != dimensions:
        raise EdgeAgentError(
            f"{db_path}: a stored template has {vector.shape[0]} values, the model needs {dimensions}"
        )
    return vector

"""Finding a probe's nearest live subjects: the usearch index proposes templates, SQLite's float32
templates give each candidate subject its exact distance (its best template, in the embedder's metric),
and a subject's live exclusions can veto it (`edge_agent.watchlist.exclusions`).

Expired subjects never match, whether or not `purge_expired` has run.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.errors import EdgeAgentError
from edge_agent.watchlist import tables
from edge_agent.watchlist.exclusions import drop_excluded
from edge_agent.watchlist.index import TemplateIndex
from edge_agent.watchlist.records import Match, utc_text
from edge_agent.watchlist.tables import F32, Clock, stored_vector

CANDIDATES = 32  # templates the index proposes for a search of one subject (k=1), each re-scored exactly


def nearest_subjects(
    conn: sqlite3.Connection,
    db_path: Path,
    model_id: str,
    index: TemplateIndex,
    clock: Clock,
    probe: F32,
    k: int,
) -> list[Match]:
    """The `k` nearest live subjects, each by its best template, with exact float32 distances; a subject
    is left out when the probe is nearer to one of its live exclusions than to its best template."""
    if probe.ndim != 1 or probe.shape[0] != index.dimensions:
        raise EdgeAgentError(f"a probe must have {index.dimensions} values, got shape {tuple(probe.shape)}")
    now = clock()
    count = max(4 * k, CANDIDATES)
    while True:
        keys, _ = index.search(probe, count)
        matches = _best_per_subject(conn, db_path, model_id, index, probe, keys, now)
        if len(matches) >= k or count >= len(index):
            return matches[:k]
        count *= 4


def _best_per_subject(
    conn: sqlite3.Connection,
    db_path: Path,
    model_id: str,
    index: TemplateIndex,
    probe: F32,
    keys: npt.NDArray[np.int64],
    now: datetime,
) -> list[Match]:
    if len(keys) == 0:
        return []
    marks = ",".join("?" * len(keys))
    rows = conn.execute(
        f"SELECT t.id AS template_id, t.embedding, t.subject_id FROM templates t "
        f"JOIN subjects s ON s.id = t.subject_id "
        f"WHERE t.id IN ({marks}) AND s.status = 'active' AND s.expires_at > ?",
        (*[int(key) for key in keys], utc_text(now)),
    ).fetchall()
    best: dict[str, tuple[float, int]] = {}
    for row in rows:
        distance = index.metric.distance(stored_vector(row["embedding"], index.dimensions, db_path), probe)
        current = best.get(row["subject_id"])
        if current is None or distance < current[0]:
            best[row["subject_id"]] = (distance, int(row["template_id"]))
    drop_excluded(conn, model_id, index.metric, probe, best, now)
    ranked = sorted(best.items(), key=lambda item: item[1][0])
    return [
        Match(tables.subject(conn, sid), template_id, distance) for sid, (distance, template_id) in ranked
    ]

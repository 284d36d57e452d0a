"""Keeping one embedding model's usearch index equal to SQLite's templates of that model.

SQLite is the source of truth. The index is updated after each commit and saved atomically; a crash
between the two leaves the index behind SQLite, which the next open detects (its keys differ from
SQLite's template ids) and repairs by rebuilding the index from SQLite.

Deletion deletes: after templates were deleted in SQLite the index is REBUILT from SQLite and saved over
the old file, because usearch's own removal only marks a vector and keeps its bytes in the file. The
rebuild is O(N log N) in the templates left (about 125 s at 1M f16 vectors on 8 x86 cores, well under a
second at 10k). An index file of another embedding model that holds a deleted template is deleted too (it
is rebuilt from SQLite when that model is next opened). Every index save happens under an advisory lock on
the index folder and writes what SQLite holds at that moment, so a process whose index in memory is older
than another's removal does not write the removed vector back (it rebuilds instead).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_agent.errors import EdgeAgentError
from edge_agent.watchlist.index import TemplateIndex, discard_temporary, index_lock, keys_in_file
from edge_agent.watchlist.tables import F32, stored_vector, template_ids


class SyncedIndex:
    """The index of `model_id`'s templates in the watchlist database at `db_path`, and its upkeep."""

    def __init__(self, conn: sqlite3.Connection, db_path: Path, model_id: str, index: TemplateIndex) -> None:
        self.conn = conn
        self.db_path = db_path
        self.model_id = model_id
        self.index = index

    def reconcile(self, found: bool) -> str | None:
        """Rebuilds the index when its keys differ from SQLite's, or its file still holds deleted vectors
        (an index saved by an edge-agent before deletion rebuilt it); says so, or None when it agreed.
        Runs under `index_lock`."""
        expected = template_ids(self.conn, self.model_id)
        have = self.index.keys()
        deleted = self.index.deleted_on_disk
        if have == expected and (found or not expected) and deleted == 0:
            return None
        self.rebuild_locked()
        before = f"the index had {len(have)} vector(s)" if found else "there was no readable index"
        if deleted:
            before += f" and its file still held {deleted} deleted one(s)"
        return f"watchlist index rebuilt from SQLite: {before}, SQLite has {len(expected)} template(s)"

    def rebuild(self) -> None:
        """Replaces the index, in memory and on disk, with one built from SQLite's templates now."""
        with index_lock(self.index.path.parent):
            self.rebuild_locked()

    def rebuild_locked(self) -> None:
        """`rebuild` for a caller that holds `index_lock`."""
        rows = self.conn.execute(
            "SELECT id, embedding FROM templates WHERE model_id = ? ORDER BY id", (self.model_id,)
        ).fetchall()
        old = self.index
        keys = np.array([row["id"] for row in rows], dtype=np.int64)
        vectors = (
            np.stack([stored_vector(row["embedding"], old.dimensions, self.db_path) for row in rows])
            if rows
            else np.zeros((0, old.dimensions), np.float32)
        )
        fresh = TemplateIndex.build(old.path, old.dimensions, old.dtype, old.metric, keys, vectors)
        fresh.save()
        self.index = fresh

    def added(self, ids: Sequence[int], vectors: Sequence[F32]) -> None:
        """After an enrolment's commit: adds its vectors to the index and saves, or, when the index in
        memory is not SQLite's templates before the enrolment (another process removed or added some
        since), rebuilds the index from SQLite instead, so no save brings back a deleted vector."""
        with index_lock(self.index.path.parent):
            expected = template_ids(self.conn, self.model_id)
            have = self.index.keys()
            if have.isdisjoint(ids) and have | set(ids) == expected:
                if ids:
                    self.index.add(np.array(ids, dtype=np.int64), np.stack(vectors))
                self.index.save()
            else:
                self.rebuild_locked()

    def deleted(self, deleted: Sequence[int]) -> None:
        """After templates were deleted in SQLite: the index is rebuilt from SQLite and saved over the old
        file (usearch's removal would only mark them), and another model's index file holding any of them
        is deleted (it is rebuilt from SQLite when that model is next opened)."""
        folder = self.index.path.parent
        with index_lock(folder):
            self.rebuild_locked()
            gone = set(deleted)
            for other in sorted(folder.glob("*.usearch")):
                if other != self.index.path and gone and not gone.isdisjoint(keys_in_file(other)):
                    try:
                        other.unlink()
                    except OSError as exc:
                        raise EdgeAgentError(
                            f"cannot delete {other}, which holds deleted templates: {exc.strerror}"
                        ) from None
                discard_temporary(other)

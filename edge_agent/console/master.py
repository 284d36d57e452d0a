"""The master watchlist the console exports to the devices, read for its reviewers.

It is an ordinary edge-agent watchlist (`[watchlist] path` in the console's config), enrolled with
`edge-agent watchlist enroll` at the enrolment station: subjects with reason, source, owner and expiry,
and their templates (embeddings, never photos). The review pages read only its subjects, through a
read-only connection, so a page never loads the index or holds a lock an enrolment would wait on, and
read again only when the file (or its write-ahead log) changed since the last read.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from edge_agent.watchlist import tables
from edge_agent.watchlist.records import Subject


def master_subjects(path: Path) -> dict[str, Subject] | None:
    """Every subject of the master watchlist by id (removed and expired ones too); empty without one,
    None when it could not be read now (locked, or being replaced)."""
    if not path.is_file():
        return {}
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        conn.row_factory = sqlite3.Row
        return {subject.id: subject for subject in tables.subjects(conn, include_inactive=True)}
    except sqlite3.Error:
        return None
    finally:
        conn.close()


class MasterSubjects:
    """`master_subjects(path)`, kept while the watchlist's files stay as they were; after a failed read,
    the last subjects read, and it tries again at the next call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._subjects: dict[str, Subject] = {}

    def subjects(self) -> dict[str, Subject]:
        stamp = tuple(_stamp(self.path.with_name(self.path.name + end)) for end in ("", "-wal"))
        with self._lock:
            if stamp != self._stamp:
                found = master_subjects(self.path)
                if found is not None:
                    self._subjects, self._stamp = found, stamp
            return self._subjects


def _stamp(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except OSError:
        return (0, -1)
    return (info.st_mtime_ns, info.st_size)

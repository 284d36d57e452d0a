"""Which body-cam clips were processed and how far: one SQLite table, so a restart neither skips nor repeats.

A clip is keyed by a fingerprint of its content (size + first and last MiB), not by its path or mtime: the
same recording docked again, copied back from a backup or renamed is still recognised, and a different
recording that reuses a camera's file name (FILE0001.MP4 after the card was wiped) is a new clip. The
path, size and mtime where it was last seen are kept too, so a known file is recognised without reading it.

Statuses: pending (complete, waiting its turn) → processing (frames_done of them committed by the worker)
→ done; or skipped (no recording time) / failed (damaged, unreadable: never retried unless the file
changes, which makes it another fingerprint). `attempts` counts openings without progress, so a clip that
crashes the decoder is given up after a few starts instead of crash-looping the agent.

House style: autocommit connection, explicit BEGIN IMMEDIATE for writes, WAL, synchronous=FULL,
`user_version` migrations. The capture thread and the inference worker share one connection under a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from edge_agent.errors import CaptureError
from edge_agent.sqlite_schema import migrate, statements

ClipStatus = Literal["pending", "processing", "done", "skipped", "failed"]
FINAL: frozenset[str] = frozenset({"done", "skipped", "failed"})

_V1 = (
    """CREATE TABLE clips (
        fingerprint TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'done', 'skipped', 'failed')),
        frames_done INTEGER NOT NULL DEFAULT 0 CHECK (frames_done >= 0),
        attempts INTEGER NOT NULL DEFAULT 0,
        recorded_at TEXT,
        error TEXT,
        first_seen_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX clips_file ON clips (path, size, mtime_ns)",
)
_COLUMNS = "fingerprint, path, size, mtime_ns, status, frames_done, attempts, recorded_at, error"


@dataclass(frozen=True)
class Clip:
    fingerprint: str
    path: Path
    size: int
    mtime_ns: int
    status: ClipStatus
    frames_done: int  # frames whose events are committed: the next one to deliver
    attempts: int  # openings since the last recorded progress
    recorded_at: datetime | None  # UTC
    error: str | None

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> Clip:
        fingerprint, path, size, mtime_ns, status, frames_done, attempts, recorded_at, error = row
        return cls(
            str(fingerprint),
            Path(str(path)),
            int(str(size)),
            int(str(mtime_ns)),
            status,  # type: ignore[arg-type]  # the CHECK constraint holds it to ClipStatus
            int(str(frames_done)),
            int(str(attempts)),
            None if recorded_at is None else datetime.fromisoformat(str(recorded_at)),
            None if error is None else str(error),
        )


def _now() -> str:
    return _iso(datetime.now(UTC))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    migrate(conn, path, "body-cam state", (statements(*_V1),), CaptureError)


class ClipState:
    """The `clips` table (see the module docstring); every call is one short transaction under a lock."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> ClipState:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return cls(_connect(path), path)
        except OSError as exc:
            raise CaptureError(f"{path}: cannot create the body-cam state ({exc.strerror or exc})") from None
        except sqlite3.Error as exc:
            raise CaptureError(f"{path}: not a usable body-cam state database ({exc})") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock. After `close` (the worker may report a last frame after the
        capture thread closed the source) one is opened for this one call."""
        with self._lock:
            conn = self._conn if self._conn is not None else _connect(self.path)
            try:
                yield conn
            finally:
                if conn is not self._conn:
                    conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _one(self, where: str, args: tuple[object, ...]) -> Clip | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM clips WHERE {where} ORDER BY rowid DESC LIMIT 1", args
            ).fetchone()
        return None if row is None else Clip.from_row(row)

    # ---- looking up ----------------------------------------------------------------------------

    def by_file(self, path: Path, size: int, mtime_ns: int) -> Clip | None:
        """The clip last seen as exactly this file (no need to read it)."""
        return self._one("path = ? AND size = ? AND mtime_ns = ?", (str(path), size, mtime_ns))

    def by_fingerprint(self, fingerprint: str) -> Clip | None:
        return self._one("fingerprint = ?", (fingerprint,))

    def all(self) -> list[Clip]:
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM clips ORDER BY rowid").fetchall()
        return [Clip.from_row(row) for row in rows]

    # ---- writing -------------------------------------------------------------------------------

    def add(
        self,
        fingerprint: str,
        path: Path,
        size: int,
        mtime_ns: int,
        *,
        status: ClipStatus,
        recorded_at: datetime | None,
        error: str | None = None,
    ) -> Clip:
        now = _now()
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO clips (fingerprint, path, size, mtime_ns, status, recorded_at, error, "
                "first_seen_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fingerprint,
                    str(path),
                    size,
                    mtime_ns,
                    status,
                    None if recorded_at is None else _iso(recorded_at),
                    error,
                    now,
                    now,
                ),
            )
        clip = self.by_fingerprint(fingerprint)
        assert clip is not None
        return clip

    def relocate(self, fingerprint: str, path: Path, size: int, mtime_ns: int) -> None:
        """The same content was found as another file (renamed, copied again)."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE clips SET path = ?, size = ?, mtime_ns = ?, updated_at = ? WHERE fingerprint = ?",
                (str(path), size, mtime_ns, _now(), fingerprint),
            )

    def start(self, fingerprint: str) -> None:
        """The clip is opened for reading: one more attempt."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE clips SET status = 'processing', attempts = attempts + 1, updated_at = ? "
                "WHERE fingerprint = ? AND status IN ('pending', 'processing')",
                (_now(), fingerprint),
            )

    def unstart(self, fingerprint: str) -> None:
        """The clip's reading was stopped cleanly: that opening does not count as a failed attempt."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE clips SET attempts = max(attempts - 1, 0) WHERE fingerprint = ?", (fingerprint,)
            )

    def progress(self, fingerprint: str, frames_done: int, *, done: bool) -> None:
        """Frames up to `frames_done` have their events committed; `done` after the clip's last frame.

        Only a clip being processed moves (one marked failed while its last frames were in flight stays
        failed); frames_done never goes back.
        """
        with self._transaction() as conn:
            conn.execute(
                "UPDATE clips SET frames_done = max(frames_done, ?), attempts = 0, updated_at = ?, "
                "status = CASE WHEN ? THEN 'done' ELSE status END "
                "WHERE fingerprint = ? AND status = 'processing'",
                (frames_done, _now(), done, fingerprint),
            )

    def finish(
        self, fingerprint: str, status: Literal["skipped", "failed", "done"], reason: str | None
    ) -> None:
        with self._transaction() as conn:
            conn.execute(
                "UPDATE clips SET status = ?, error = ?, updated_at = ? WHERE fingerprint = ?",
                (status, reason, _now(), fingerprint),
            )

"""Storage faults as states: what an error from SQLite or the file system means (full, read-only,
corrupt, an I/O error), whether one database's writes land now, and moving a corrupt file aside.

Used by the event store and by the match audit of the watchlist: a full disk, a read-only file system or
a corrupt file is something the agent reports and waits out, never a crash (see `EventStore`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from edge_agent.events.schema import StorageHealth

Clock = Callable[[], datetime]
Log = Callable[[str], None]
StorageState = Literal["ok", "full", "read_only", "corrupt", "error"]

RECOVER_FREE_B = 1 << 20  # a full disk counts as writable again with this much free


def utc_now() -> datetime:
    return datetime.now(UTC)


_FULL = {sqlite3.SQLITE_FULL}
_READ_ONLY = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM}
_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_ERRNO = {
    errno.ENOSPC: "full",
    errno.EDQUOT: "full",
    errno.EROFS: "read_only",
    errno.EACCES: "read_only",
    errno.EPERM: "read_only",
}
STATE_TEXT: dict[str, str] = {
    "ok": "writable",
    "full": "disk full",
    "read_only": "read-only",
    "corrupt": "corrupt",
    "error": "storage error",
}


def storage_fault(exc: BaseException, folder: Path) -> StorageState | None:
    """The storage state an exception from SQLite or the file system means; None when it is no storage
    fault (a constraint, a programming error: those still raise). An I/O error or a file that cannot be
    opened says little by itself, so the folder is asked (is it read-only, is there room)."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return None
    if isinstance(exc, OSError):
        return _ERRNO.get(exc.errno or 0, "error")  # type: ignore[return-value]
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else int(code) & 0xFF
    if primary in _FULL:
        return "full"
    if primary in _READ_ONLY:
        return "read_only"
    if primary in _CORRUPT or "not a database" in str(exc) or "malformed" in str(exc):
        return "corrupt"
    return _probe(folder)  # an I/O error, a file that cannot be opened, busy, ...: full, read-only or error


def _probe(folder: Path) -> StorageState:
    """What writing one byte into `folder` says: full, read_only, or error (it can be written)."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read_only"
    except OSError:
        return "error"
    probe = folder / f".edge-agent-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return _ERRNO.get(exc.errno or 0, "error")  # type: ignore[return-value]
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return "error"


def free_bytes(folder: Path) -> int:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class WriteState:
    """Whether one database's writes land: its state, since when, the last error, and the matches it
    holds in memory or lost. Logs one line per change of state. Thread-safe."""

    def __init__(
        self,
        what: str,
        log: Log,
        clock: Clock = utc_now,
        holding: str = "decided matches are held in memory meanwhile (not sent until stored)",
    ) -> None:
        self.what = what
        self.holding = holding
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self.state: StorageState = "ok"
        self.since = clock()
        self.last_error: str | None = None
        self.held = 0
        self.lost = 0
        self.moved_aside: str | None = None
        self._monotonic_since = time.monotonic()

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def failed(self, state: StorageState, exc: BaseException, doing: str) -> None:
        error = f"{doing}: {one_line(exc)}"
        with self._lock:
            changed = state != self.state
            self.last_error = error
            if changed:
                self.state, self.since, self._monotonic_since = state, self._clock(), time.monotonic()
        if changed:
            self._log(f"{self.what}: {STATE_TEXT[state]} ({error}); not writing until it can, {self.holding}")

    def recovered(self, folder: Path, stored: int = 0) -> bool:
        """A write landed: back to ok, unless the disk was full and still has less than `RECOVER_FREE_B`
        free (a write that found a free page is no recovery: the next one fails again). True when ok."""
        with self._lock:
            if self.state == "ok":
                return True
            if self.state == "full" and free_bytes(folder) < RECOVER_FREE_B:
                return False
            before, took = self.state, time.monotonic() - self._monotonic_since
            self.state, self.since = "ok", self._clock()
            held, lost = self.held, self.lost
        self._log(
            f"{self.what}: writable again after {took:.1f} s {STATE_TEXT[before]}; {stored} held now stored, "
            f"{held} still held, {lost} lost past the in-memory limit since start"
        )
        return True

    def room(self, folder: Path) -> bool:
        """False while the disk is full and has not yet `RECOVER_FREE_B` free: no point trying."""
        return self.state != "full" or free_bytes(folder) >= RECOVER_FREE_B

    def note(self, line: str) -> None:
        self._log(f"{self.what}: {line}")

    def health(self) -> StorageHealth:
        with self._lock:
            return StorageHealth(
                state=self.state,
                since=self.since,
                last_error=self.last_error,
                held=self.held,
                lost=self.lost,
                moved_aside=self.moved_aside,
            )


def move_aside(path: Path, at: datetime) -> Path:
    """Renames a corrupt database (and its -wal/-shm) to `<name>.corrupt-<UTC time>`; returns the new path."""
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.rename(target.with_name(target.name + suffix))
    if path.exists():
        path.rename(target)
    return target

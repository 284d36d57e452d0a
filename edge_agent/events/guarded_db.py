"""The event store's one SQLite connection, under one lock, with its storage faults turned into states.

The store is used from two threads (the inference worker commits, paho's network thread marks messages
sent): one connection, opened with `check_same_thread=False`, every call under one lock (`lock`, which the
store also takes for its own bookkeeping).

In survive mode (the agent's store) a full disk, a read-only file system or database, an I/O error or a
corrupt file is a state (`faults`, see `edge_agent.events.storage`), never an exception: a write or read
that meets one reports it and changes nothing; a database that cannot be opened stays unopened until
`open_locked()` succeeds; a corrupt file is moved aside (`events.db.corrupt-<UTC time>`, its -wal/-shm
beside it) and a fresh one created in its place. Outside survive mode every fault raises.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from edge_agent.errors import EdgeAgentError
from edge_agent.events.database import connect, open_database
from edge_agent.events.storage import WriteState, move_aside, one_line, storage_fault

Clock = Callable[[], datetime]
Log = Callable[[str], None]
T = TypeVar("T")


class GuardedDatabase:
    """One event store file: its connection, lock and fault state (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock,
        survive_faults: bool,
        log: Log,
        on_set_aside: Callable[[], None],
    ) -> None:
        """`on_set_aside` is called (under `lock`) when a corrupt file was moved aside: whatever the caller
        remembered about its rows went with it."""
        self.path = path
        self.clock = clock
        self.survive_faults = survive_faults
        self.faults = WriteState(f"event store {path}", log, clock)
        self.lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._on_set_aside = on_set_aside

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise EdgeAgentError(f"{self.path}: the event store is not open ({self.faults.last_error})")
        return self._conn

    def open_strict(self) -> None:
        """Opens the database; a one-line EdgeAgentError when it cannot (outside survive mode)."""
        self._conn = open_database(self.path)

    def open_locked(self) -> bool:
        """Opens the database (survive mode), moving a corrupt one aside; True when open."""
        for attempt in range(2):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = connect(self.path)
                return True
            except (sqlite3.Error, OSError) as exc:
                state = storage_fault(exc, self.path.parent)
                if state is None:
                    raise EdgeAgentError(f"{self.path}: not a usable event store database ({exc})") from None
                if state == "corrupt" and attempt == 0 and self.set_aside_locked(exc):
                    continue
                self.faults.failed(state, exc, "open")
                return False
        return False

    def set_aside_locked(self, exc: BaseException) -> bool:
        """Moves a corrupt database aside (closing it first); True when moved."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        self._on_set_aside()
        try:
            target = move_aside(self.path, self.clock())
        except OSError as error:
            self.faults.failed(storage_fault(error, self.path.parent) or "error", error, "move aside")
            return False
        self.faults.moved_aside = str(target)
        self.faults.note(
            f"corrupt ({one_line(exc)}): moved aside to {target.name} and started afresh; what it held "
            "cannot be trusted and is not sent"
        )
        return True

    def close_locked(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The lock plus one explicit write transaction: all of it lands, or none of it. A failed COMMIT
        (a full disk) rolls back too; SQLite may already have rolled back itself."""
        with self.lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def fault(self, exc: BaseException, doing: str) -> bool:
        """True when `exc` is a storage fault that survive mode turns into a state (recorded here)."""
        if not self.survive_faults:
            return False
        state = storage_fault(exc, self.path.parent)
        if state is None:
            return False
        self.faults.failed(state, exc, doing)
        return True

    def write(self, doing: str, work: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """One write transaction; (False, None) when a storage fault stopped it (survive mode)."""
        if self.survive_faults and self._conn is None:
            return False, None
        try:
            with self.transaction() as conn:
                result = work(conn)
        except sqlite3.Error as exc:
            if not self.fault(exc, doing):
                raise
            return False, None
        return True, result

    def read(self, doing: str, work: Callable[[sqlite3.Connection], T], default: T) -> T:
        """One read under the lock; `default` when the store is unopened or a storage fault stopped it."""
        with self.lock:
            if self.survive_faults and self._conn is None:
                return default
            try:
                return work(self.conn)
            except sqlite3.Error as exc:
                if not self.fault(exc, doing):
                    raise
                return default

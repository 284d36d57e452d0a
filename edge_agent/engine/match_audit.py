"""The audit row of each decided match, written to the watchlist even through storage faults."""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.events.held import HELD_MAX, Held
from edge_agent.events.storage import WriteState, storage_fault
from edge_agent.events.store import RETRY_S
from edge_agent.watchlist.store import Watchlist


class MatchAudit:
    """The watchlist audit row of each decided match (`Watchlist.record_match`), surviving storage faults:
    a row that cannot be written (the watchlist's disk is full, read-only, failing) is held in memory, in
    order, and written by `retry()` when it can be (its `at` is then the time it was written; the details
    carry the event id and capture time). At most `held_max` are held; past that the oldest is dropped and
    counted in `faults.lost`. The state is reported in health (`storage.watchlist`) and logged on change."""

    def __init__(self, watchlist: Callable[[], Watchlist], actor: str, held_max: int = HELD_MAX) -> None:
        self._watchlist = watchlist
        self.actor = actor
        self.faults = WriteState(
            f"watchlist {watchlist().path}",
            logging.getLogger("edge_agent").info,
            holding="match audit rows are held in memory meanwhile",
        )
        self._held: Held[tuple[str, dict[str, Any]]] = Held(
            self.faults, held_max, what="match audit row(s)", dropped="never written to the audit log"
        )
        self._next_retry = 0.0

    def record(self, subject_id: str, details: dict[str, Any]) -> None:
        self._held.add((subject_id, details))
        if len(self._held) == 1:  # nothing held before it: write now
            self._write_held()

    def retry(self, force: bool = False) -> None:
        """Writes held rows, at most every `RETRY_S` (always with `force`); nothing to do when none."""
        now = time.monotonic()
        if not self._held or (not force and now < self._next_retry):
            return
        self._next_retry = now + RETRY_S
        if self.faults.room(self._folder()):
            self._write_held()

    def _folder(self) -> Path:
        return Path(self._watchlist().path).parent

    def _write_held(self) -> None:
        stored = 0
        while (held := self._held.first()) is not None:
            subject_id, details = held
            record = functools.partial(
                Watchlist.record_match, subject_id=subject_id, actor=self.actor, details=details
            )
            if not self.guarded("match audit", record):
                break
            self._held.stored(held)
            stored += 1
        if stored and not self._held:
            self.faults.recovered(self._folder(), stored)

    def guarded(self, doing: str, write: Callable[[Watchlist], object]) -> bool:
        """Runs one write on the watchlist; a SQLite error is a storage state (logged on change, in health),
        not an exception: rolled back, False. True when it landed (with nothing held, the state is then ok
        again)."""
        watchlist = self._watchlist()
        try:
            write(watchlist)
        except sqlite3.Error as exc:
            if watchlist.conn.in_transaction:  # a failed COMMIT leaves the transaction open
                with contextlib.suppress(sqlite3.Error):
                    watchlist.conn.execute("ROLLBACK")
            self.faults.failed(storage_fault(exc, self._folder()) or "error", exc, doing)
            return False
        if not self._held:
            self.faults.recovered(self._folder())
        return True

"""The event store: the durable outbox of messages to publish, the reviewer's copy of each match, and the
aggregate counters, in one SQLite file (`edge_agent.events.database`).

A message is on disk when `commit_match`/`enqueue` returns, and leaves the outbox only when the broker has
acknowledged it (`mark_sent`), so a power cut or a broker outage loses nothing that was committed. The
outbox is bounded by count and by age (`edge_agent.events.outbox`); review rows by `review_days`
(`edge_agent.events.review`); the counters hold nothing per person (`edge_agent.events.counters`).

Privacy: only a decided match writes rows (outbox + review). Frames, faces and embeddings of anyone else
are never stored; without a match the only tables that change are the aggregate counters.

Storage faults (the agent's store, opened with `survive_faults=True`). A full disk, a read-only file
system or database, an I/O error or a corrupt file is a state of the store (`faults`: ok, full, read_only,
corrupt, error), logged once per change and reported in health, never an exception for the agent
(`edge_agent.events.guarded_db`):
- a decided match that cannot be committed is *held* in memory, in decision order, and committed by
  `retry()` once writes land again (`edge_agent.events.held`);
- counters that cannot be added are kept by the caller (`add_counters` returns False) and added later;
  an acknowledgement that cannot be marked is remembered and marked later (the row is not sent again
  meanwhile); bounds, purges and reads that fail change nothing and report the fault.
- a store that cannot be opened at all (a new database on a full or read-only disk, a migration that
  needs space) starts unopened and `retry()` opens it later.
- a corrupt file is moved aside and a fresh store is created in its place, at open or when a write finds
  the corruption. What was in the corrupt file cannot be trusted and is not read again: its unsent events
  are not sent, its counters start over.
`retry()` is cheap to call often: it does nothing while the store is healthy and tries again at most every
`RETRY_S` while it is not.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType

from edge_agent.errors import EdgeAgentError
from edge_agent.events import counters, outbox, review
from edge_agent.events.database import db_time, utc_now
from edge_agent.events.guarded_db import GuardedDatabase
from edge_agent.events.held import HELD_MAX, Held, HeldMatch
from edge_agent.events.outbox import OutboxMessage
from edge_agent.events.review import F32
from edge_agent.events.schema import MatchEvent
from edge_agent.events.settings import EventSettings
from edge_agent.events.storage import STATE_TEXT

Clock = Callable[[], datetime]
Log = Callable[[str], None]

RETRY_S = 2.0  # a store in a fault state tries to write again at most this often


def _no_log(_line: str) -> None:
    pass


class EventStore:
    """The outbox, the review store and the counters in one SQLite database (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        max_events: int,
        max_age_s: float,
        review_days: float,
        clock: Clock,
        survive_faults: bool = False,
        log: Log = _no_log,
        held_max: int = HELD_MAX,
    ) -> None:
        self.path = path
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.review_days = review_days
        self.clock = clock
        self.survive_faults = survive_faults
        self.held_max = held_max
        self._unmarked: set[int] = set()  # acknowledged seqs not yet deleted (the store could not write)
        self._db = GuardedDatabase(
            path, clock=clock, survive_faults=survive_faults, log=log, on_set_aside=self._unmarked.clear
        )
        self.faults = self._db.faults
        self._held: Held[HeldMatch] = Held(self.faults, held_max)
        self._dropped = 0  # the last total read, for health while the store cannot be read
        self._next_retry = 0.0

    # ---- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        max_events: int,
        max_age_s: float,
        review_days: float,
        clock: Clock = utc_now,
        survive_faults: bool = False,
        log: Log = _no_log,
        held_max: int = HELD_MAX,
    ) -> EventStore:
        """Opens (creating folders and tables if needed) the store at `path`.

        `survive_faults`: a storage fault (see the module docstring) is a state, not an exception: a
        corrupt file is moved aside and a fresh one created; a store that cannot be opened now starts
        unopened and `retry()` opens it later. A newer schema still raises (that is no fault of the disk).
        """
        if max_events < 1 or max_age_s <= 0 or review_days < 0 or held_max < 1:
            raise EdgeAgentError(
                f"{path}: outbox bounds must be positive (max_events={max_events}, max_age_s={max_age_s}, "
                f"review_days={review_days})"
            )
        store = cls(
            path,
            max_events=max_events,
            max_age_s=max_age_s,
            review_days=review_days,
            clock=clock,
            survive_faults=survive_faults,
            log=log,
            held_max=held_max,
        )
        if survive_faults:
            with store._db.lock:
                store._db.open_locked()
        else:
            store._db.open_strict()
        return store

    @classmethod
    def from_settings(
        cls,
        settings: EventSettings,
        clock: Clock = utc_now,
        *,
        survive_faults: bool = False,
        log: Log = _no_log,
    ) -> EventStore:
        return cls.open(
            settings.path,
            max_events=settings.outbox_max_events,
            max_age_s=settings.outbox_max_age_s,
            review_days=settings.review_days,
            clock=clock,
            survive_faults=survive_faults,
            log=log,
        )

    def close(self) -> None:
        with self._db.lock:
            self._held.note_lost()
            self._db.close_locked()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        return self._db.conn

    # ---- writing -------------------------------------------------------------------------------

    def commit_match(self, event: MatchEvent, topic: str, embedding: F32) -> int:
        """Stores a decided match (outbox row + review row) in one transaction; returns its seq.

        Durable when it returns. Does not touch the counters (the pipeline counts matches itself). In
        survive mode, where a match may be held instead, the agent calls `commit_or_hold`; this raises
        when the match was held (it is still committed later).
        """
        seq = self.commit_or_hold(event, topic, embedding)
        if seq is None:
            raise EdgeAgentError(
                f"{self.path}: {STATE_TEXT[self.faults.state]}: event {event.event_id} held, not stored"
            )
        return seq

    def commit_or_hold(self, event: MatchEvent, topic: str, embedding: F32) -> int | None:
        """`commit_match`, but in survive mode a storage fault holds the match in memory instead (None):
        `retry()` commits it, after any held before it, once the store can be written again."""
        held = HeldMatch(
            str(event.event_id),
            event.subject_id,
            topic,
            event.to_json(),
            review.embedding_blob(embedding),
            db_time(event.decided_at),
        )
        if not topic:
            raise EdgeAgentError("an outbox message needs a topic and a message id")
        if len(self._held) or (self.survive_faults and not self.faults.ok):
            self._held.add(held)  # keep the decision order: behind those held before; retry() stores it
            return None
        try:
            done, seq = self._db.write("commit a match", functools.partial(self._commit_held, held=held))
        except sqlite3.IntegrityError:
            raise EdgeAgentError(f"{self.path}: event {held.event_id} is already stored") from None
        if not done:
            self._held.add(held)
            return None
        return seq

    def _commit_held(self, conn: sqlite3.Connection, held: HeldMatch) -> int:
        seq = outbox.insert(conn, held.event_id, held.topic, held.payload, self.clock())
        review.insert(conn, held)
        self._enforce(conn)
        return seq

    @property
    def held(self) -> int:
        """Decided matches held in memory, not yet stored (and so not sent)."""
        return len(self._held)

    def held_ids(self) -> list[str]:
        """The event ids of the matches held now, in decision order."""
        return [str(item.event_id) for item in self._held.items()]

    def retry(self, force: bool = False) -> int:
        """While in a fault state (or holding matches): at most every `RETRY_S` (always with `force`),
        reopen if needed, mark remembered acknowledgements, commit held matches in order. Returns how
        many held matches were stored now. Does nothing while healthy."""
        with self._db.lock:
            idle = self.faults.ok and not len(self._held) and not self._unmarked and self._db.is_open
        if idle or not self.survive_faults:
            return 0
        now = time.monotonic()
        if not force and now < self._next_retry:
            return 0
        self._next_retry = now + RETRY_S
        if not self.faults.room(self.path.parent) or not self._reopen():
            return 0
        marked = self._mark_remembered()
        if marked is None:
            return 0
        stored, all_stored = self._store_held()
        if not all_stored:
            return stored
        if not self.faults.ok and not (stored or marked):  # nothing written yet: prove it can be
            probe = "UPDATE outbox_state SET dropped = dropped WHERE id = 1"
            if not self._db.write("write", lambda conn: conn.execute(probe))[0]:
                return stored
        self.faults.recovered(self.path.parent, stored)
        return stored

    def _reopen(self) -> bool:
        """Moves a corrupt database aside and opens the store when it is not open; True when open."""
        with self._db.lock:
            if self.faults.state == "corrupt" and self._db.is_open:
                error = sqlite3.DatabaseError(self.faults.last_error or "corrupt")
                if not self._db.set_aside_locked(error):
                    return False
            return self._db.is_open or self._db.open_locked()

    def _mark_remembered(self) -> int | None:
        """Marks the acknowledgements that could not be written; how many, or None when one failed."""
        with self._db.lock:
            unmarked = sorted(self._unmarked)
        for seq in unmarked:
            if not self._db.write("mark sent", functools.partial(self._mark, seq=seq))[0]:
                return None
            with self._db.lock:
                self._unmarked.discard(seq)
        return len(unmarked)

    def _store_held(self) -> tuple[int, bool]:
        """Commits held matches, oldest first, until none is left or a write fails: (how many were stored
        now, whether none is left)."""
        stored = 0
        while (held := self._held.first()) is not None:
            try:
                done, _ = self._db.write(
                    "commit a held match", functools.partial(self._commit_held, held=held)
                )
            except sqlite3.IntegrityError:
                done = True  # it was stored after all (a COMMIT that reported failure but landed)
            if not done:
                return stored, False
            self._held.stored(held)
            stored += 1
        return stored, True

    def enqueue(self, message_id: str, topic: str, payload: bytes) -> int:
        """Stores any other message that must survive a restart (e.g. a command result); returns its seq.
        Raises (also in survive mode) when it cannot be stored: the caller decides."""
        try:
            with self._db.transaction() as conn:
                seq = outbox.insert(conn, message_id, topic, payload, self.clock())
                self._enforce(conn)
        except sqlite3.Error as exc:
            self._db.fault(exc, "enqueue")
            raise
        return seq

    def mark_sent(self, seq: int) -> None:
        """The broker acknowledged `seq`: it leaves the outbox and its review row (if any) is marked sent.

        Idempotent: a seq already gone (sent before, or dropped by the bounds) changes nothing. In survive
        mode an acknowledgement that cannot be written is remembered, marked by `retry()`, and its row is
        not handed out by `pending()` again meanwhile.
        """
        if not self._db.write("mark sent", functools.partial(self._mark, seq=seq))[0]:
            with self._db.lock:
                self._unmarked.add(seq)

    def _mark(self, conn: sqlite3.Connection, seq: int) -> None:
        outbox.mark_sent(conn, seq, self.clock())

    def enforce_bounds(self) -> int:
        """Drops the oldest unsent messages past `max_events` and those older than `max_age_s`; returns how
        many were dropped now (the running total is `dropped()`)."""
        return self._db.write("enforce the outbox bounds", self._enforce)[1] or 0

    def _enforce(self, conn: sqlite3.Connection) -> int:
        return outbox.enforce_bounds(conn, self.clock(), self.max_events, self.max_age_s)

    def purge_reviews(self) -> int:
        """Deletes review rows (sent or not) decided more than `review_days` ago; returns how many."""
        cutoff = self.clock() - timedelta(days=self.review_days)
        purge = functools.partial(review.purge_decided_before, cutoff=cutoff)
        deleted = self._db.write("purge review rows", purge)[1] or 0
        if deleted:
            self.wipe_wal()
        return deleted

    def wipe_wal(self) -> None:
        """Move the WAL into the database and truncate it, so deleted rows' old pages leave the WAL too."""
        self._db.read("checkpoint", lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"), None)

    def add_counters(self, deltas: Mapping[str, int]) -> bool:
        """Adds to aggregate counters: the running totals and today's (UTC) row, in one transaction. The
        known totals (`KNOWN_COUNTERS`) exist from the start, so this only updates their rows; a name
        outside them gets its row on its first non-zero update, and each day's row likewise. False (survive
        mode) when a storage fault stopped it: nothing was added, the caller keeps the deltas."""
        items = [(name, int(delta)) for name, delta in deltas.items() if delta]
        if not items:
            return True
        day = self.clock().astimezone(UTC).date()
        return self._db.write("add counters", functools.partial(counters.add, deltas=items, day=day))[0]

    # ---- reading -------------------------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Unsent messages with seq > `after_seq`, oldest first, at most `limit` (none while unreadable)."""
        read = functools.partial(outbox.pending_rows, after_seq=after_seq, limit=limit)
        none: list[outbox.PendingRow] = []
        rows = self._db.read("read the outbox", read, none)
        with self._db.lock:
            acked = set(self._unmarked)
        return [outbox.as_message(row) for row in rows if int(row[0]) not in acked]

    def depth(self) -> int:
        """Messages stored and not yet acknowledged (0 while the store cannot be read)."""
        count = self._db.read("count the outbox", outbox.count, 0)
        with self._db.lock:
            return max(0, count - len(self._unmarked))

    def oldest_age_s(self) -> float | None:
        """Seconds since the oldest unsent message was stored; None when the outbox is empty."""
        oldest = self._db.read("read the outbox", outbox.oldest, None)
        if oldest is None:
            return None
        return max(0.0, (self.clock() - datetime.fromisoformat(oldest)).total_seconds())

    def dropped(self) -> int:
        """Messages dropped by the bounds since the store was created (persisted; the last total read
        while the store cannot be read)."""
        total = self._db.read("read the outbox state", outbox.dropped_total, None)
        if total is not None:
            self._dropped = total
        return self._dropped

    def review(self, event_id: str) -> tuple[bytes, F32] | None:
        """The kept payload and matched-face embeddings of an event (flat: one or several of the model's
        size, see `edge_agent.events.review.embedding_blob`), or None (unknown or purged)."""
        with self._db.lock:
            return review.review_of(self.conn, event_id)

    def counters(self) -> dict[str, int]:
        with self._db.lock:
            return counters.totals(self.conn)

    def counters_between(self, first: date, last: date) -> dict[str, int]:
        """The counters summed over the UTC days `first` to `last` (both included); the known ones
        (`KNOWN_COUNTERS`) are always there, 0 when nothing was counted."""
        with self._db.lock:
            return counters.between(self.conn, first, last)

    def first_counted_day(self) -> date | None:
        """The first UTC day with per-day counts (None before any): earlier counts belong to no day."""
        with self._db.lock:
            return counters.first_day(self.conn)

"""What is held in memory while storage cannot be written (a storage fault): decided matches for the
event store, and (`edge_agent.engine.match_audit`) the watchlist's match audit rows.

A held match is kept in decision order and committed by the store's `retry()` once writes land again. It
is not sent meanwhile (only a committed row is published), so the privacy rule holds. At most `held_max`
are held; past that the oldest held one is dropped and counted (`faults.lost`, logged): it was never
stored and is never sent. Held matches still in memory when the store closes are lost with the process;
the close logs how many.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from edge_agent.events.storage import WriteState

HELD_MAX = 500  # decided matches kept in memory while the store cannot be written

T = TypeVar("T")


@dataclass(frozen=True)
class HeldMatch:
    """A decided match, ready to be committed as it is (outbox row + review row)."""

    event_id: str
    subject_id: str
    topic: str
    payload: bytes
    embedding: bytes
    decided_at: str


class Held(Generic[T]):
    """The items waiting to be written, oldest first, bounded by `held_max`. Thread-safe; the counts
    (`held`, `lost`) are kept on `faults`, which health reports. `what` names the items in the log lines
    (plural form), `dropped` says what became of one dropped."""

    def __init__(
        self,
        faults: WriteState,
        held_max: int = HELD_MAX,
        *,
        what: str = "decided match(es)",
        dropped: str = "never stored, never sent",
    ) -> None:
        self.faults = faults
        self.held_max = held_max
        self.what = what
        self.dropped = dropped
        self._lock = threading.Lock()
        self._items: deque[T] = deque()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def add(self, item: T) -> None:
        """Holds `item` behind those held before, dropping the oldest past `held_max`."""
        with self._lock:
            self._items.append(item)
            overflow = len(self._items) > self.held_max
            if overflow:
                self._items.popleft()
                self.faults.lost += 1
            self.faults.held = len(self._items)
            lost = self.faults.lost
        if overflow and (lost == 1 or lost % 100 == 0):
            self.faults.note(
                f"{lost} {self.what} lost so far: more than {self.held_max} held in memory "
                f"(the oldest held is dropped, {self.dropped})"
            )

    def items(self) -> list[T]:
        """What is held now, oldest first (a copy)."""
        with self._lock:
            return list(self._items)

    def first(self) -> T | None:
        """The oldest held item (the next to write), or None."""
        with self._lock:
            return self._items[0] if self._items else None

    def stored(self, item: T) -> None:
        """`item` (the oldest, from `first()`) is written now: it is held no longer."""
        with self._lock:
            if self._items and self._items[0] is item:
                self._items.popleft()
            self.faults.held = len(self._items)

    def note_lost(self) -> None:
        """At close: logs how many held items are lost with the process."""
        with self._lock:
            count = len(self._items)
        if count:
            self.faults.note(
                f"{count} {self.what} could not be stored before this stop and are lost ({self.dropped})"
            )

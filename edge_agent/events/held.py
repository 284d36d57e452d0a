"""Decided matches held in memory while the event store cannot be written (a storage fault).

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

from edge_agent.events.storage import WriteState

HELD_MAX = 500  # decided matches kept in memory while the store cannot be written


@dataclass(frozen=True)
class HeldMatch:
    """A decided match, ready to be committed as it is (outbox row + review row)."""

    event_id: str
    subject_id: str
    topic: str
    payload: bytes
    embedding: bytes
    decided_at: str


class HeldMatches:
    """The matches waiting to be stored, oldest first, bounded by `held_max`. Thread-safe; the counts
    (`held`, `lost`) are kept on `faults`, which health reports."""

    def __init__(self, faults: WriteState, held_max: int = HELD_MAX) -> None:
        self.faults = faults
        self.held_max = held_max
        self._lock = threading.Lock()
        self._matches: deque[HeldMatch] = deque()

    def __len__(self) -> int:
        with self._lock:
            return len(self._matches)

    def add(self, match: HeldMatch) -> None:
        """Holds `match` behind those held before, dropping the oldest past `held_max`."""
        with self._lock:
            self._matches.append(match)
            overflow = len(self._matches) > self.held_max
            if overflow:
                self._matches.popleft()
                self.faults.lost += 1
            self.faults.held = len(self._matches)
            lost = self.faults.lost
        if overflow and (lost == 1 or lost % 100 == 0):
            self.faults.note(
                f"{lost} decided match(es) lost so far: more than {self.held_max} held in memory "
                "(the oldest held is dropped, never stored, never sent)"
            )

    def first(self) -> HeldMatch | None:
        """The oldest held match (the next to store), or None."""
        with self._lock:
            return self._matches[0] if self._matches else None

    def stored(self, match: HeldMatch) -> None:
        """`match` (the oldest, from `first()`) is stored now: it is held no longer."""
        with self._lock:
            if self._matches and self._matches[0] is match:
                self._matches.popleft()
            self.faults.held = len(self._matches)

    def note_lost(self) -> None:
        """At close: logs how many held matches are lost with the process."""
        with self._lock:
            count = len(self._matches)
        if count:
            self.faults.note(
                f"{count} decided match(es) could not be stored before this stop and are lost "
                "(never stored, never sent)"
            )

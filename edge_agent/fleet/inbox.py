"""The bounded hand-over of received commands, and the bound on how often refusals are recorded.

Commands arrive on paho's network thread and run on the inference worker (the watchlist belongs to it).
`CommandInbox` sits between the two: a queue of fixed capacity whose `offer` never blocks the network
thread, and a size check by topic before a payload is kept (`<prefix>/<target>/cmd/<command>`: only
`apply_bundle` may carry a bundle). What does not fit is counted, never queued without bound.

`RefusalLimiter` bounds the cost of a flood of bad commands. Anyone who can publish on the broker can send
them, and MQTT tells a subscriber nothing verified about who published (a claimed signer key costs an
attacker nothing to vary), so the bound is global: a token bucket of `burst` refusals, refilled at `rate`
per second. Within it a refusal is answered, logged and kept in the bounded refusal store; past it, it is
only counted by reason, and the counts are logged and stored in one line per period.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections import Counter
from dataclasses import dataclass

from edge_agent.fleet.command import max_envelope

INBOX_CAPACITY = 64


@dataclass(frozen=True)
class Received:
    """One command message as received; `size` and `digest` are set (and `payload` empty) when it broke
    its limit, so the refusal can still name the message by its SHA-256."""

    topic: str
    payload: bytes
    size: int = 0
    digest: str = ""

    @property
    def sha256(self) -> str:
        return self.digest or hashlib.sha256(self.payload).hexdigest()

    @property
    def command(self) -> str:
        return self.topic.rsplit("/", 1)[-1]

    @property
    def oversize(self) -> bool:
        return self.size > 0


class CommandInbox:
    def __init__(self, capacity: int = INBOX_CAPACITY) -> None:
        self._queue: queue.Queue[Received] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._dropped = 0

    def offer(self, topic: str, payload: bytes) -> None:
        """Network thread: keep the message if there is room; an oversized payload is not kept at all.
        An empty payload is how a retained message is cleared, not a command: it is ignored."""
        if not payload:
            return
        received = Received(topic, payload)
        if len(payload) > max_envelope(received.command):
            received = Received(topic, b"", len(payload), hashlib.sha256(payload).hexdigest())
        try:
            self._queue.put_nowait(received)
        except queue.Full:
            with self._lock:
                self._dropped += 1

    def take(self) -> Received | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def take_dropped(self) -> int:
        """Messages dropped because the inbox was full, since the last call."""
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        return dropped


class RefusalLimiter:
    """A token bucket over refusals (worker thread only); `suppressed` counts what it held back."""

    def __init__(self, burst: int, rate_per_s: float) -> None:
        if burst < 1 or rate_per_s <= 0:
            raise ValueError(f"a refusal limit needs burst >= 1 and rate > 0, not {burst} and {rate_per_s}")
        self.burst = burst
        self.rate_per_s = rate_per_s
        self._tokens = float(burst)
        self._at: float | None = None
        self.suppressed: Counter[str] = Counter()

    def allow(self, reason: str, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.suppressed[reason] += 1
        return False

    def take_suppressed(self) -> Counter[str]:
        suppressed, self.suppressed = self.suppressed, Counter()
        return suppressed

"""Rolling per-stage latencies and frame rate of the live pipeline, for health messages and benchmarks."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from edge_agent.events.schema import Latency

WINDOW = 1024  # latest samples kept per stage: memory stays flat however long the agent runs


class StageClock:
    """Latency windows by stage name, and a frame counter for the rate since the last reading."""

    def __init__(self, window: int = WINDOW) -> None:
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._frames_since = 0
        self._since = time.monotonic()

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        self._samples.setdefault(stage, deque(maxlen=self._window)).append(seconds)

    def frame_done(self) -> None:
        self._frames_since += 1

    def take_fps(self) -> float:
        """Frames per second since the previous call."""
        now = time.monotonic()
        elapsed = now - self._since
        fps = self._frames_since / elapsed if elapsed > 0 else 0.0
        self._frames_since, self._since = 0, now
        return fps

    def latencies(self) -> dict[str, Latency]:
        result = {}
        for stage, samples in self._samples.items():
            if samples:
                p50, p95 = np.percentile(np.fromiter(samples, float), [50, 95]) * 1000.0
                result[stage] = Latency(
                    p50_ms=round(float(p50), 3), p95_ms=round(float(p95), 3), count=len(samples)
                )
        return result

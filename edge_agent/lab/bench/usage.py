"""CPU and resident memory of this process over time, sampled in a thread, labelled by benchmark phase.

CPU is user + system time of every thread of this process (`os.times()`) per wall second, in percent of
one core (200% = two cores busy). Child processes (the benchmark's mosquitto) are not included. RSS is
`edge_agent.sysinfo.rss_mib` (VmRSS from /proc/self/status).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from edge_agent.sysinfo import rss_mib


@dataclass(frozen=True)
class UsageSample:
    at: float  # time.monotonic() at the end of the interval
    seconds: float  # length of the interval that ended here
    phase: str | None  # the phase the interval belongs to (None: between phases)
    cpu_percent: float  # CPU time in the interval / its length, x 100
    rss_mib: float


@dataclass(frozen=True)
class UsageSummary:
    phase: str
    seconds: float
    samples: int
    cpu_mean: float  # CPU time of the phase / its wall time, x 100
    cpu_max: float  # highest interval of at least a fifth of a period
    rss_start: float
    rss_max: float
    rss_end: float


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class UsageSampler:
    """Samples every `period_s` until stopped; `phase(name)` labels the intervals inside it."""

    def __init__(self, period_s: float = 0.5, on_sample: Callable[[UsageSample], None] | None = None) -> None:
        self.period_s = period_s
        self.on_sample = on_sample
        self.samples: list[UsageSample] = []
        self._lock = threading.Lock()
        self._phase: str | None = None
        self._stop = threading.Event()
        self._last_at = time.monotonic()
        self._last_cpu = _cpu_seconds()
        self._thread = threading.Thread(target=self._run, name="bench-usage", daemon=True)

    def start(self) -> UsageSampler:
        self._last_at, self._last_cpu = time.monotonic(), _cpu_seconds()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._take()

    def _take(self, phase_change: str | None = None, changing: bool = False) -> None:
        """Close the current interval (under the phase active during it), optionally switch phase."""
        with self._lock:
            now, cpu = time.monotonic(), _cpu_seconds()
            seconds = now - self._last_at
            percent = 100.0 * (cpu - self._last_cpu) / seconds if seconds > 0 else 0.0
            sample = UsageSample(now, seconds, self._phase, percent, rss_mib())
            self.samples.append(sample)
            self._last_at, self._last_cpu = now, cpu
            if changing:
                self._phase = phase_change
        if self.on_sample is not None:
            self.on_sample(sample)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._take(name, changing=True)
        try:
            yield
        finally:
            self._take(None, changing=True)

    def series(self, phase: str) -> list[UsageSample]:
        """The sample taken as the phase first began, then every sample of the phase."""
        with self._lock:
            samples = list(self.samples)
        for index, sample in enumerate(samples):
            if sample.phase == phase:
                return samples[max(0, index - 1) : index] + [s for s in samples[index:] if s.phase == phase]
        return []

    def summary(self, phase: str) -> UsageSummary | None:
        """CPU and RSS of one phase (its RSS start is the sample taken as it began)."""
        with self._lock:
            inside = [s for s in self.samples if s.phase == phase]
            starts = [
                previous
                for previous, sample in zip(self.samples, self.samples[1:], strict=False)
                if sample.phase == phase and previous.phase != phase
            ]
        if not inside:
            return None
        seconds = sum(s.seconds for s in inside)
        cpu_seconds = sum(s.cpu_percent * s.seconds for s in inside) / 100.0
        full = [s.cpu_percent for s in inside if s.seconds >= self.period_s / 5] or [
            s.cpu_percent for s in inside
        ]
        rss_start = starts[0].rss_mib if starts else inside[0].rss_mib
        return UsageSummary(
            phase=phase,
            seconds=seconds,
            samples=len(inside),
            cpu_mean=100.0 * cpu_seconds / seconds if seconds > 0 else 0.0,
            cpu_max=max(full),
            rss_start=rss_start,
            rss_max=max(rss_start, *(s.rss_mib for s in inside)),
            rss_end=inside[-1].rss_mib,
        )

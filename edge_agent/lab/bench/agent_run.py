"""One run of the live agent (`edge_agent.service.Agent`) for a benchmark, timed from the outside.

The agent runs unchanged in the calling thread. Two things are observed: its frame hand-over slot (a
`LatestFrameSlot` that also notes when the worker took its first frame and when it came back after its
last one, and when chosen frames were read), and its `on_event` hook (each committed match event with
the `read_at` of the frame whose embedding decided it: the current frame).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from edge_agent.capture.runner import Captured, LatestFrameSlot
from edge_agent.config import Settings
from edge_agent.events.schema import MatchEvent
from edge_agent.service import Agent
from edge_agent.vision.manifest import ModelCatalog


class TimedSlot(LatestFrameSlot):
    """The agent's frame slot, noting the worker's busy span and the read time of watched frames."""

    def __init__(self, watch: Collection[int] = ()) -> None:
        super().__init__()
        self.watch = frozenset(watch)
        self.read_at: dict[int, float] = {}  # watched frame index -> Captured.read_at
        self.taken = 0
        self.first_taken_at: float | None = None
        self.busy_until: float | None = None  # when the worker asked again after its latest frame
        self._holding = False  # only the worker thread calls take()

    def put(self, item: Captured, *, wait: bool, stop: threading.Event) -> None:
        if item.frame.index in self.watch:
            self.read_at.setdefault(item.frame.index, item.read_at)
        super().put(item, wait=wait, stop=stop)

    def take(self, timeout: float) -> Captured | None:
        if self._holding:
            self.busy_until, self._holding = time.monotonic(), False
        item = super().take(timeout)
        if item is not None:
            self.taken += 1
            self._holding = True
            if self.first_taken_at is None:
                self.first_taken_at = time.monotonic()
        return item


@dataclass(frozen=True)
class DecidedEvent:
    event_id: str
    subject_id: str
    frame_index: int  # the frame whose embedding decided the event
    read_at: float  # time.monotonic() when that frame was read from the source
    committed_at: float  # time.monotonic() in the hook: committed to the outbox, publisher woken


@dataclass(frozen=True)
class StageLatency:
    p50_ms: float
    p95_ms: float
    count: int


@dataclass(frozen=True)
class AgentRun:
    frames_read: int  # by the capture thread
    frames_processed: int  # by the inference worker
    frames_dropped: int  # replaced in the slot before the worker took them (up to a timed stop)
    busy_s: float  # first frame taken -> the worker back for more after the last one
    run_s: float  # Agent.run() from call to return (model loading, drain and shutdown included)
    events: tuple[DecidedEvent, ...]
    latencies: dict[str, StageLatency]
    watched_read_at: dict[int, float]
    counters: dict[str, int]

    @property
    def fps(self) -> float:
        return self.frames_processed / self.busy_s if self.busy_s > 0 else 0.0


def run_agent(
    settings: Settings,
    catalog: ModelCatalog | None = None,
    *,
    stop_after_s: float | None = None,
    watch: Collection[int] = (),
) -> AgentRun:
    """Runs the agent until its file source ends (or `stop_after_s` passes) and returns what was seen."""
    events: list[DecidedEvent] = []

    def on_event(event: MatchEvent, captured: Captured) -> None:
        events.append(
            DecidedEvent(
                str(event.event_id),
                event.subject_id,
                captured.frame.index,
                captured.read_at,
                time.monotonic(),
            )
        )

    agent = Agent(settings, catalog=catalog, on_event=on_event)
    slot = TimedSlot(watch)
    agent.slot = slot
    dropped_at_stop: list[int] = []

    def stop() -> None:
        # On shutdown the capture thread's last frame replaces the untaken one and counts as dropped;
        # that is the stop, not inference falling behind, so drops are counted up to the stop request.
        dropped_at_stop.append(slot.dropped)
        agent.stop()

    started = time.monotonic()
    _run_until_stopped(agent, stop_after_s, stop)
    run_s = time.monotonic() - started
    frames_dropped = dropped_at_stop[0] if dropped_at_stop else slot.dropped
    return _agent_run(agent, slot, frames_dropped, run_s, events)


def _run_until_stopped(agent: Agent, stop_after_s: float | None, stop: Callable[[], None]) -> None:
    """The agent until its source ends, or until `stop` is called after `stop_after_s`."""
    timer = threading.Timer(stop_after_s, stop) if stop_after_s is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        agent.run()
    finally:
        if timer is not None:
            timer.cancel()


def _agent_run(
    agent: Agent, slot: TimedSlot, frames_dropped: int, run_s: float, events: list[DecidedEvent]
) -> AgentRun:
    pipeline, runner = agent.pipeline, agent.runner
    assert pipeline is not None and runner is not None
    busy = 0.0
    if slot.first_taken_at is not None and slot.busy_until is not None:
        busy = slot.busy_until - slot.first_taken_at
    return AgentRun(
        frames_read=runner.frames,
        frames_processed=pipeline.counters.frames,
        frames_dropped=frames_dropped,
        busy_s=busy,
        run_s=run_s,
        events=tuple(events),
        latencies={
            stage: StageLatency(value.p50_ms, value.p95_ms, value.count)
            for stage, value in pipeline.clock.latencies().items()
        },
        watched_read_at=dict(slot.read_at),
        counters=pipeline.counters.as_dict(),
    )

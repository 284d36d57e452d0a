"""Simulated fleet devices: the real command path of an agent without its camera or models.

Each device has its own watchlist and outbox in its own folder, the real `Publisher` (subscribed to the
command topics, `on_command` queueing into a SimpleQueue as `Agent` does) and one worker thread that owns
the watchlist (SQLite connections stay on the thread that opened them), runs the real `CommandProcessor`
on each queued command and queues the answer on `cmd/result` in the outbox with
`edge_agent.fleet.device.answer`, as the agent's worker does.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.events.publisher import Publisher
from edge_agent.events.schema import StatusMessage
from edge_agent.events.settings import MqttSettings
from edge_agent.events.store import EventStore
from edge_agent.fleet.device import CommandProcessor, answer
from edge_agent.fleet.inbox import Received
from edge_agent.watchlist import audit
from edge_agent.watchlist.store import Watchlist
from tests.kits.broker import Broker

T = TypeVar("T")
THRESHOLD = 0.47  # what set_target_fmr answers: no model is loaded here
Work = Received | Callable[[Watchlist], None] | None  # a command, a look at the watchlist, or stop


@dataclass(frozen=True)
class WatchlistModel:
    """What the devices' watchlists are for (a bundle for another model is refused)."""

    model_id: str
    dimensions: int


class SimControl:
    """A simulated device's control surface (`DeviceControl`): its watchlist, a fixed threshold, a status."""

    def __init__(self, watchlist: Watchlist) -> None:
        self.watchlist = watchlist

    def set_target_fmr(self, _target: float, /) -> float:
        return THRESHOLD

    def status(self) -> dict[str, Any]:
        return {"status": {"live_subjects": self.watchlist.stats().live_subjects}}


class SimDevice:
    def __init__(
        self,
        folder: Path,
        device_id: str,
        mqtt: MqttSettings,
        trusted_keys: Collection[str],
        model: WatchlistModel,
    ) -> None:
        self.device_id = device_id
        self.folder = folder
        self.model = model
        self.trusted_keys = list(trusted_keys)
        self.store = EventStore.open(folder / "events.db", max_events=1000, max_age_s=3600, review_days=1)
        self._work: queue.SimpleQueue[Work] = queue.SimpleQueue()
        self.publisher = Publisher(
            mqtt,
            device_id,
            self.store,
            online=StatusMessage(
                device_id=device_id, state="online", at=datetime.now(UTC), agent_version="sim"
            ),
            offline=StatusMessage(device_id=device_id, state="offline", agent_version="sim"),
            on_command=lambda topic, payload: self._work.put(Received(topic, payload)),
        )
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"device-{device_id}", daemon=True)

    def start_worker(self) -> None:
        self._thread.start()

    def start(self, timeout_s: float = 10.0) -> None:
        """Opens the watchlist (on the worker) and connects; the subscription is `fleet_ready`'s wait."""
        if not self._thread.is_alive():
            self.start_worker()
        assert self._ready.wait(timeout_s), f"{self.device_id}: watchlist not opened"
        self.publisher.start()

    def _run(self) -> None:
        watchlist = Watchlist.open(
            self.folder / "watchlist.db", model_id=self.model.model_id, dimensions=self.model.dimensions
        )
        commands = CommandProcessor(self.device_id, SimControl(watchlist), self.store, self.trusted_keys)
        self._ready.set()
        try:
            while True:
                work = self._work.get()
                if work is None:
                    return
                if isinstance(work, Received):
                    answer(commands, work, self.publisher)
                else:
                    work(watchlist)
        finally:
            watchlist.close()

    def query(self, look: Callable[[Watchlist], T], timeout_s: float = 10.0) -> T:
        """`look(watchlist)` run on the worker thread, between commands."""
        done: Future[T] = Future()

        def run(watchlist: Watchlist) -> None:
            try:
                done.set_result(look(watchlist))
            except Exception as exc:
                done.set_exception(exc)

        self._work.put(run)
        return done.result(timeout_s)

    def subjects(self) -> dict[str, str]:
        """Subject id -> status, every subject (removed ones too)."""
        return self.query(lambda w: {s.id: s.status for s in w.subjects(include_inactive=True)})

    def audit_rows(self) -> list[audit.AuditRow]:
        return self.query(lambda w: audit.rows(w.conn))

    def stop(self) -> None:
        if self._thread.is_alive():
            self._work.put(None)
            self._thread.join(10)
        self.publisher.stop()
        self.store.close()


def fleet_ready(broker: Broker, devices: Collection[SimDevice], timeout_s: float = 15.0) -> None:
    """Waits until the broker has logged every device's subscription to the fleet-wide command topic, so
    a command to "all" published now reaches each of them."""
    deadline = time.monotonic() + timeout_s
    names = [
        f"edge-agent-{device.device_id} 1 {device.publisher.topics.command_filters[1]}" for device in devices
    ]
    while True:
        log = broker.log()
        missing = [name for name in names if name not in log]
        if not missing:
            return
        assert time.monotonic() < deadline, f"not subscribed within {timeout_s} s: {missing[:3]}"
        time.sleep(0.05)


def start_fleet(
    folder: Path,
    broker: Broker,
    mqtt: MqttSettings,
    count: int,
    trusted_keys: Collection[str],
    model: WatchlistModel,
) -> list[SimDevice]:
    """`count` devices cam-00, cam-01, … started together and subscribed."""
    devices = [
        SimDevice(folder / f"cam-{n:02d}", f"cam-{n:02d}", mqtt, trusted_keys, model) for n in range(count)
    ]
    for device in devices:
        device.start_worker()  # the watchlists open in parallel
    for device in devices:
        device.start()
    fleet_ready(broker, devices)
    return devices

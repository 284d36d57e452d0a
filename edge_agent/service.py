"""The daemon around the live pipeline: start-up, the worker loop, timers, signals, systemd, shutdown.

Threads: capture (its own thread, `CaptureRunner`), inference (the thread that calls `Agent.run`, which
also runs the timers), and MQTT (paho's network thread inside `Publisher`). SIGTERM/SIGINT stop the loop,
then the outbox is drained for `events.drain_timeout_s`; what is still unacknowledged stays in the outbox
for the next start. SIGHUP reopens the watchlist (after a sync or an edit by the CLI).
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

from edge_agent import agent_version
from edge_agent.capture.runner import Captured, CaptureRunner, LatestFrameSlot
from edge_agent.capture.source import FrameSource, open_source
from edge_agent.config import Settings
from edge_agent.engine.live import LivePipeline, open_watchlist
from edge_agent.engine.match_event import models_of
from edge_agent.errors import EdgeAgentError
from edge_agent.events.publisher import STOP_WAIT_S, Publisher
from edge_agent.events.schema import (
    CameraHealth,
    Counters,
    HealthMessage,
    MatchEvent,
    OutboxHealth,
    StatusMessage,
    Storage,
)
from edge_agent.events.store import EventStore
from edge_agent.events.topics import Topics
from edge_agent.fleet.link import FleetLink, forget_expired_nonces
from edge_agent.redaction import redact
from edge_agent.sdnotify import SystemdNotifier
from edge_agent.sysinfo import cpu_temperature_c, rss_mib
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog

logger = logging.getLogger("edge_agent")

EventHook = Callable[[MatchEvent, Captured], None]
TAKE_TIMEOUT_S = 0.2  # how long the worker waits for a frame before looking at its timers


@dataclass
class Every:
    """A period in monotonic time; `due()` is true once per period (and at the first call)."""

    period_s: float
    _next: float = 0.0

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self.period_s
        return True


class Agent:
    def __init__(
        self,
        settings: Settings,
        *,
        catalog: ModelCatalog | None = None,
        source: FrameSource | None = None,
        on_event: EventHook | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.source = source
        self.on_event = on_event
        self.notifier = notifier or SystemdNotifier()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.started_at = time.monotonic()
        self.pipeline: LivePipeline | None = None
        self.runner: CaptureRunner | None = None
        self.publisher: Publisher | None = None
        self.store: EventStore | None = None
        self.slot = LatestFrameSlot()
        self._flushed: dict[str, int] = {}
        self.fleet = FleetLink(settings)

    # ---- control from other threads / signal handlers -------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        self._reload.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop and drain; SIGHUP: reopen the watchlist. Main thread only."""

        def on_stop(signum: int, _frame: FrameType | None) -> None:
            logger.info("%s: stopping", signal.Signals(signum).name)
            self.stop()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self.reload()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    # ---- the run ---------------------------------------------------------------------------------

    def run(self) -> int:
        settings = self.settings
        faces = FacePipeline.from_settings(settings, self.catalog)
        watchlist = open_watchlist(settings, faces)
        store = self.store = EventStore.from_settings(settings.events, survive_faults=True, log=logger.info)
        topics = Topics(settings.mqtt.topic_prefix, settings.device_id)
        publisher = self.publisher = self._publisher(faces, store)
        pipeline = self.pipeline = LivePipeline(settings, faces, watchlist, store, topics.match)
        self.fleet.connect(pipeline, store)
        self.fleet.refresh_anchor(watchlist, publisher)
        source = self.source or open_source(settings.camera, logger.info)
        runner = self.runner = CaptureRunner(source, self.slot, settings.camera, log=logger.info)
        try:
            self._purge(pipeline, store)
            publisher.start()
            runner.start()
            self.notifier.ready(f"watching camera {settings.camera.id}")
            logger.info(
                "running: camera %s (%s), %d watchlist subjects; operating point: %s",
                settings.camera.id,
                redact(settings.camera.source),
                watchlist.stats().live_subjects,
                pipeline.operating.summary(),
            )
            if pipeline.operating.problem is not None:
                logger.warning("operating point: %s", pipeline.operating.problem)
            self._loop(pipeline, publisher, store, source)
        finally:
            self._shut_down(pipeline, publisher, store, runner)
        if runner.fatal is not None:
            raise runner.fatal
        return 0

    def _publisher(self, faces: FacePipeline, store: EventStore) -> Publisher:
        """The MQTT publisher of this run: retained `online` with the models, `offline` as the last will."""
        settings = self.settings
        return Publisher(
            settings.mqtt,
            settings.device_id,
            store,
            online=StatusMessage(
                device_id=settings.device_id,
                state="online",
                at=datetime.now(UTC),
                agent_version=agent_version(),
                camera_id=settings.camera.id,
                models=models_of(faces),
            ),
            offline=StatusMessage(
                device_id=settings.device_id, state="offline", agent_version=agent_version()
            ),
            log=logger.info,
            on_command=self.fleet.inbox.offer,
        )

    def _shut_down(
        self, pipeline: LivePipeline, publisher: Publisher, store: EventStore, runner: CaptureRunner
    ) -> None:
        """Capture stopped, last counters stored and published, the outbox drained for what is left of
        `events.drain_timeout_s` (the whole stop fits in it, see `_drain_time`), `offline`, files closed."""
        stopping = time.monotonic()
        self.notifier.stopping()
        runner.stop()
        self._flush_counters(pipeline, store, final=True)
        # The last matches' audit rows are anchored too: the final (offline) status carries the head as
        # it is now, not as it was at the last health period.
        self.fleet.refresh_anchor(pipeline.watchlist, publisher)
        if publisher.connected:  # the final counters of this run
            publisher.publish_health(self.health(pipeline, store))
        if store.depth():
            drained = publisher.drain(self._drain_time(stopping))
            if not drained:
                logger.info("%d event(s) stay in the outbox for the next start", store.depth())
        publisher.stop(self._offline_wait(stopping))
        store.close()
        pipeline.watchlist.close()

    def _loop(
        self,
        pipeline: LivePipeline,
        publisher: Publisher,
        store: EventStore,
        source: FrameSource,
    ) -> None:
        health = Every(self.settings.mqtt.health_interval_s)
        purge = Every(self.settings.service.purge_interval_s)
        purge.due(time.monotonic())  # the purge at start has just run
        last_frame = time.monotonic()
        while not self._stop.is_set():
            captured = self.slot.take(TAKE_TIMEOUT_S)
            if captured is not None:
                last_frame = time.monotonic()
                events = pipeline.process(captured)
                source.processed(captured.frame)  # after its events are committed, never before
                if events:
                    publisher.wake()
                    for event in events:
                        logger.info(
                            "match: subject %s on track %d (distance %.3f), event %s",
                            event.subject_id,
                            event.track_id,
                            event.distance,
                            event.event_id,
                        )
                        if self.on_event is not None:
                            self.on_event(event, captured)
            elif self.slot.finished:
                logger.info(
                    "camera %s: end of %s", self.settings.camera.id, redact(self.settings.camera.source)
                )
                break
            self.fleet.run_commands(publisher)
            now = time.monotonic()
            if store.retry():  # a storage fault: held matches stored now (rate-limited, see EventStore)
                publisher.wake()
            pipeline.retry_storage()
            if self._reload.is_set():
                self._reload.clear()
                self._reopen_watchlist(pipeline)
            if health.due(now):
                self.fleet.refresh_anchor(pipeline.watchlist, publisher)
                self.fleet.log_suppressed()
                self._flush_counters(pipeline, store)
                publisher.publish_health(self.health(pipeline, store))
            if purge.due(now):
                self._purge(pipeline, store)
            if not self._capture_stalled(now - last_frame):
                self.notifier.pet()
        self.fleet.log_suppressed()  # the last counts of this run

    # ---- helpers -------------------------------------------------------------------------------

    def _capture_stalled(self, since_frame_s: float) -> bool:
        """A camera that says it is streaming but has delivered nothing for half the watchdog period is
        hung (e.g. a read blocked forever): stop petting, and systemd restarts the service."""
        interval = self.notifier.watchdog_interval_s
        runner = self.runner
        return (
            interval is not None
            and runner is not None
            and runner.source.live  # a docking folder or a clip may rightly have nothing to read
            and runner.state == "streaming"
            and since_frame_s > interval
        )

    def _reopen_watchlist(self, pipeline: LivePipeline) -> None:
        """SIGHUP: swap in the watchlist as it is on disk now; if it cannot be opened, keep the old one."""
        self.notifier.reloading()
        try:
            watchlist = pipeline.reopen_watchlist()
        except (EdgeAgentError, sqlite3.Error) as exc:
            logger.info("watchlist reload failed, keeping the loaded one: %s", exc)
        else:
            logger.info("watchlist reloaded: %d live subjects", watchlist.stats().live_subjects)
        self.notifier.ready(f"watching camera {self.settings.camera.id}")

    def _purge(self, pipeline: LivePipeline, store: EventStore) -> None:
        # a watchlist that cannot be written (full, read-only disk) is a state in health, not a crash
        expired = pipeline.purge_expired()
        if expired is not None:
            pipeline.write_watchlist("forget expired nonces", forget_expired_nonces)
        if expired:
            logger.info("watchlist: %d expired subject(s) purged", expired)
        reviews = store.purge_reviews()
        if reviews:
            logger.info("review store: %d match record(s) past the review window deleted", reviews)
        dropped = store.enforce_bounds()
        if dropped:
            logger.info("outbox: %d unsent message(s) dropped past its bounds", dropped)

    def _flush_counters(self, pipeline: LivePipeline, store: EventStore, final: bool = False) -> None:
        """Stores the counts since the last flush; while the event store cannot be written they stay in
        memory and go with a later flush. `final` (at stop): one last try for held matches and rows."""
        if final:
            store.retry(force=True)
            pipeline.retry_storage(force=True)
        totals = pipeline.counters.as_dict()
        deltas = {name: value - self._flushed.get(name, 0) for name, value in totals.items()}
        if not any(deltas.values()) or store.add_counters(deltas):
            self._flushed = totals

    def _budget(self, stopping: float) -> float:
        return max(0.0, self.settings.events.drain_timeout_s - (time.monotonic() - stopping))

    def _drain_time(self, stopping: float) -> float:
        """What is left of `events.drain_timeout_s` since the stop began, less the wait for the broker's
        acknowledgement of `offline` (up to `STOP_WAIT_S`, see `_offline_wait`), so the whole stop stays
        within the drain timeout."""
        budget = self._budget(stopping)
        return budget - min(STOP_WAIT_S, budget)

    def _offline_wait(self, stopping: float) -> float:
        return min(STOP_WAIT_S, self._budget(stopping))

    def health(self, pipeline: LivePipeline, store: EventStore) -> HealthMessage:
        runner = self.runner
        assert runner is not None
        oldest = store.oldest_age_s()
        uptime_s = time.monotonic() - self.started_at
        return HealthMessage(
            device_id=self.settings.device_id,
            camera_id=self.settings.camera.id,
            at=datetime.now(UTC),
            uptime_s=round(uptime_s, 3),
            fps=round(pipeline.clock.take_fps(), 3),
            camera=CameraHealth(
                state=runner.state,
                frames=runner.frames,
                frames_dropped=self.slot.dropped,
                reconnects=runner.reconnects,
                last_error=runner.last_error,
            ),
            latency=pipeline.clock.latencies(),
            outbox=OutboxHealth(
                depth=store.depth(),
                dropped=store.dropped(),
                oldest_age_s=None if oldest is None else round(oldest, 3),
            ),
            counters=Counters(**pipeline.counters.as_dict()),
            last_match_at=pipeline.last_match_at,
            storage=Storage(events=store.faults.health(), watchlist=pipeline.watchlist_storage),
            operating_point=pipeline.operating_health(uptime_s),
            cpu_temp_c=cpu_temperature_c(),
            rss_mib=round(rss_mib(), 1),
        )

"""The daemon around the live pipeline: start-up, the worker loop, timers, signals, systemd, shutdown.

Threads: capture (its own thread, `CaptureRunner`), inference (the thread that calls `Agent.run`, which
also runs the timers), and MQTT (paho's network thread inside `Publisher`). SIGTERM/SIGINT stop the loop,
then the outbox is drained for `events.drain_timeout_s`; what is still unacknowledged stays in the outbox
for the next start. SIGHUP reopens the watchlist (after a sync or an edit by the CLI).
"""

from __future__ import annotations

import logging
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from edge_agent.capture.runner import Captured, CaptureRunner, LatestFrameSlot
from edge_agent.capture.source import FrameSource, open_source, redact
from edge_agent.config import Settings
from edge_agent.errors import EdgeAgentError
from edge_agent.events.mqtt import Publisher, Topics
from edge_agent.events.outbox import EventStore
from edge_agent.events.schema import (
    CameraHealth,
    Counters,
    HealthMessage,
    MatchEvent,
    Models,
    OutboxHealth,
    StatusMessage,
)
from edge_agent.fleet.device import CommandProcessor, DeviceHooks, answer
from edge_agent.pipeline import LivePipeline, agent_version
from edge_agent.sdnotify import SystemdNotifier
from edge_agent.sysinfo import cpu_temperature_c, rss_mib
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.pipeline import FacePipeline
from edge_agent.watchlist.fleet_state import FleetState
from edge_agent.watchlist.store import Watchlist

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
        self._commands: queue.SimpleQueue[bytes] = queue.SimpleQueue()

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
        watchlist = self._open_watchlist(faces)
        store = self.store = EventStore.from_settings(settings.events)
        topics = Topics(settings.mqtt.topic_prefix, settings.device_id)
        models = Models(detector=faces.detector.model_id, embedder=faces.embedder.model_id)
        publisher = self.publisher = Publisher(
            settings.mqtt,
            settings.device_id,
            store,
            online=StatusMessage(
                device_id=settings.device_id,
                state="online",
                at=datetime.now(UTC),
                agent_version=agent_version(),
                camera_id=settings.camera.id,
                models=models,
            ),
            offline=StatusMessage(
                device_id=settings.device_id, state="offline", agent_version=agent_version()
            ),
            log=logger.info,
            on_command=lambda _topic, payload: self._commands.put(payload),
        )
        pipeline = self.pipeline = LivePipeline(settings, faces, watchlist, store, topics.match)
        commands = self._command_processor(pipeline, store)
        source = self.source or open_source(settings.camera, logger.info)
        runner = self.runner = CaptureRunner(source, self.slot, settings.camera, log=logger.info)
        try:
            self._purge(pipeline, store)
            publisher.start()
            runner.start()
            self.notifier.ready(f"watching camera {settings.camera.id}")
            logger.info(
                "running: camera %s (%s), %d watchlist subjects, threshold %.4f at false-match rate %g",
                settings.camera.id,
                redact(settings.camera.source),
                watchlist.stats().live_subjects,
                faces.embedder.threshold,
                settings.embedder.target_fmr,
            )
            self._loop(pipeline, publisher, store, source, commands)
        finally:
            self.notifier.stopping()
            runner.stop()
            self._flush_counters(pipeline, store)
            if publisher.connected:  # the final counters of this run
                publisher.publish_health(self.health(pipeline, store))
            if store.depth():
                drained = publisher.drain(settings.events.drain_timeout_s)
                if not drained:
                    logger.info("%d event(s) stay in the outbox for the next start", store.depth())
            publisher.stop()
            store.close()
            pipeline.matcher.watchlist.close()
        if runner.fatal is not None:
            raise runner.fatal
        return 0

    def _loop(
        self,
        pipeline: LivePipeline,
        publisher: Publisher,
        store: EventStore,
        source: FrameSource,
        commands: CommandProcessor,
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
            while not self._commands.empty():
                result = answer(commands, self._commands.get(), publisher)
                state = "accepted" if result.accepted else "refused"
                logger.info("command %s: %s (%s)", result.command or "?", state, result.message)
            now = time.monotonic()
            if self._reload.is_set():
                self._reload.clear()
                self._reopen_watchlist(pipeline)
            if health.due(now):
                self._flush_counters(pipeline, store)
                publisher.publish_health(self.health(pipeline, store))
            if purge.due(now):
                self._purge(pipeline, store)
            if not self._capture_stalled(now - last_frame):
                self.notifier.pet()

    # ---- fleet commands ------------------------------------------------------------------------

    def _command_processor(self, pipeline: LivePipeline, store: EventStore) -> CommandProcessor:
        """Commands act on the live watchlist and vote; a target rate set by command outlives restarts."""

        def set_target_fmr(target: float) -> float:
            threshold = pipeline.faces.embedder.use_target(target).threshold
            pipeline.vote.set_threshold(threshold)
            return threshold

        def status() -> dict[str, Any]:
            stats = pipeline.matcher.watchlist.stats()
            point = pipeline.faces.embedder.operating_point
            return {
                "status": {
                    "live_subjects": stats.live_subjects,
                    "templates": stats.templates,
                    "audit_head": stats.audit_head,
                    "target_fmr": point.target_fmr,
                    "threshold": point.threshold,
                    "outbox_depth": store.depth(),
                    "counters": pipeline.counters.as_dict(),
                    "agent_version": agent_version(),
                }
            }

        persisted = FleetState(pipeline.matcher.watchlist).setting("target_fmr")
        if persisted is not None:
            set_target_fmr(float(persisted))
            logger.info("false-match rate %s set by fleet command", persisted)
        return CommandProcessor(
            self.settings.device_id,
            lambda: pipeline.matcher.watchlist,
            store,
            self.settings.watchlist.trusted_keys,
            DeviceHooks(set_target_fmr=set_target_fmr, status=status),
        )

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

    def _open_watchlist(self, faces: FacePipeline) -> Watchlist:
        watchlist = Watchlist.for_settings(self.settings, faces.embedder.spec.dimensions)
        for notice in watchlist.notices:
            logger.info("watchlist: %s", notice)
        return watchlist

    def _reopen_watchlist(self, pipeline: LivePipeline) -> None:
        """SIGHUP: swap in the watchlist as it is on disk now; if it cannot be opened, keep the old one."""
        self.notifier.reloading()
        try:
            watchlist = self._open_watchlist(pipeline.faces)
        except (EdgeAgentError, sqlite3.Error) as exc:
            logger.info("watchlist reload failed, keeping the loaded one: %s", exc)
        else:
            pipeline.replace_watchlist(watchlist).close()
            logger.info("watchlist reloaded: %d live subjects", watchlist.stats().live_subjects)
        self.notifier.ready(f"watching camera {self.settings.camera.id}")

    def _purge(self, pipeline: LivePipeline, store: EventStore) -> None:
        expired = pipeline.matcher.watchlist.purge_expired(actor=f"edge-agent:{self.settings.device_id}")
        if expired:
            logger.info("watchlist: %d expired subject(s) purged", len(expired))
        FleetState(pipeline.matcher.watchlist).forget_expired_nonces()
        reviews = store.purge_reviews()
        if reviews:
            logger.info("review store: %d match record(s) past the review window deleted", reviews)
        dropped = store.enforce_bounds()
        if dropped:
            logger.info("outbox: %d unsent message(s) dropped past its bounds", dropped)

    def _flush_counters(self, pipeline: LivePipeline, store: EventStore) -> None:
        totals = pipeline.counters.as_dict()
        deltas = {name: value - self._flushed.get(name, 0) for name, value in totals.items()}
        if any(deltas.values()):
            store.add_counters(deltas)
        self._flushed = totals

    def health(self, pipeline: LivePipeline, store: EventStore) -> HealthMessage:
        runner = self.runner
        assert runner is not None
        oldest = store.oldest_age_s()
        return HealthMessage(
            device_id=self.settings.device_id,
            camera_id=self.settings.camera.id,
            at=datetime.now(UTC),
            uptime_s=round(time.monotonic() - self.started_at, 3),
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
            cpu_temp_c=cpu_temperature_c(),
            rss_mib=round(rss_mib(), 1),
        )

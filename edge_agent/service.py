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
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.capture.runner import Captured, CaptureRunner, LatestFrameSlot
from edge_agent.capture.source import FrameSource, open_source, redact
from edge_agent.config import Settings
from edge_agent.engine.live import LivePipeline, agent_version, models_of
from edge_agent.errors import EdgeAgentError
from edge_agent.events.mqtt import STOP_WAIT_S, Publisher, Topics
from edge_agent.events.outbox import EventStore
from edge_agent.events.schema import (
    CameraHealth,
    Counters,
    HealthMessage,
    MatchEvent,
    OutboxHealth,
    StatusMessage,
    Storage,
)
from edge_agent.fleet.anchor import StatusAnchor, device_key, device_key_path
from edge_agent.fleet.device import CommandProcessor, DeviceHooks, answer
from edge_agent.fleet.inbox import CommandInbox
from edge_agent.fleet.state import FleetState
from edge_agent.sdnotify import SystemdNotifier
from edge_agent.sysinfo import cpu_temperature_c, rss_mib
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
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
        self.inbox = CommandInbox()
        self._anchor = StatusAnchor(None, settings.device_id)
        self._anchor_error: str | None = None

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
        store = self.store = EventStore.from_settings(settings.events, survive_faults=True, log=logger.info)
        topics = Topics(settings.mqtt.topic_prefix, settings.device_id)
        models = models_of(faces)
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
            on_command=self.inbox.offer,
        )
        self._anchor = StatusAnchor(self._device_key(), settings.device_id)
        self._refresh_anchor(watchlist, publisher)
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
            stopping = time.monotonic()  # the whole stop fits in events.drain_timeout_s (see _drain_time)
            self.notifier.stopping()
            runner.stop()
            self._flush_counters(pipeline, store, final=True)
            if publisher.connected:  # the final counters of this run
                publisher.publish_health(self.health(pipeline, store))
            if store.depth():
                drained = publisher.drain(self._drain_time(stopping))
                if not drained:
                    logger.info("%d event(s) stay in the outbox for the next start", store.depth())
            publisher.stop(self._offline_wait(stopping))
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
            self._run_commands(commands, publisher)
            now = time.monotonic()
            if store.retry():  # a storage fault: held matches stored now (rate-limited, see EventStore)
                publisher.wake()
            pipeline.audit.retry()
            if self._reload.is_set():
                self._reload.clear()
                self._reopen_watchlist(pipeline)
            if health.due(now):
                self._refresh_anchor(pipeline.matcher.watchlist, publisher)
                self._log_suppressed_commands(commands)
                self._flush_counters(pipeline, store)
                publisher.publish_health(self.health(pipeline, store))
            if purge.due(now):
                self._purge(pipeline, store)
            if not self._capture_stalled(now - last_frame):
                self.notifier.pet()
        self._log_suppressed_commands(commands)  # the last counts of this run

    # ---- the audit anchor ------------------------------------------------------------------------

    def _device_key(self) -> Ed25519PrivateKey | None:
        path = device_key_path(self.settings.watchlist.path)
        try:
            return device_key(path)
        except EdgeAgentError as exc:
            logger.info("audit anchor: no device key, anchors are not published: %s", exc)
            return None

    def _refresh_anchor(self, watchlist: Watchlist, publisher: Publisher) -> None:
        """The signed chain head into the retained status whenever it moved."""
        try:
            self._anchor.refresh(watchlist.conn, publisher, datetime.now(UTC))
        except (sqlite3.Error, EdgeAgentError) as exc:
            line = f"audit anchor: not refreshed: {exc}"
            if line != self._anchor_error:
                logger.info("%s", line)
            self._anchor_error = line
        else:
            self._anchor_error = None

    # ---- fleet commands ------------------------------------------------------------------------

    def _run_commands(self, commands: CommandProcessor, publisher: Publisher) -> None:
        """Every command received since the last frame: answered and logged in one line each, except
        refusals past the refusal limit, which are summed up in one line per health period."""
        while (received := self.inbox.take()) is not None:
            result = answer(commands, received, publisher)
            if result is not None:
                state = "accepted" if result.accepted else "refused"
                logger.info("command %s: %s (%s)", result.command or "?", state, result.message)

    def _log_suppressed_commands(self, commands: CommandProcessor) -> None:
        suppressed = commands.flush_suppressed(self.inbox.take_dropped())
        if suppressed:
            reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(suppressed.items()))
            logger.info(
                "commands: %d refused past the refusal limit or dropped with the inbox full (%s); "
                "counted, not answered",
                sum(suppressed.values()),
                reasons,
            )

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
        actor = f"edge-agent:{self.settings.device_id}"
        expired: list[object] = []
        # a watchlist that cannot be written (full, read-only disk) is a state in health, not a crash
        if pipeline.audit.guarded("purge expired subjects", lambda w: expired.extend(w.purge_expired(actor))):
            pipeline.audit.guarded("forget expired nonces", lambda w: FleetState(w).forget_expired_nonces())
        if expired:
            logger.info("watchlist: %d expired subject(s) purged", len(expired))
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
            pipeline.audit.retry(force=True)
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
            storage=Storage(events=store.faults.health(), watchlist=pipeline.audit.faults.health()),
            cpu_temp_c=cpu_temperature_c(),
            rss_mib=round(rss_mib(), 1),
        )

"""The fleet inside the running agent: commands received, answered and logged; the audit anchor published.

The daemon owns one `FleetLink`. Commands arrive on paho's thread into the bounded `CommandInbox` and are
handled on the worker thread, between frames (`run_commands`), against the live pipeline's control surface
(`DeviceControl`). The signed audit anchor goes into the retained status whenever the chain head moved.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.config import Settings
from edge_agent.errors import EdgeAgentError
from edge_agent.events.publisher import Publisher
from edge_agent.events.store import EventStore
from edge_agent.fleet.anchor import StatusAnchor, device_key, device_key_path
from edge_agent.fleet.device import CommandProcessor, DeviceControl, answer
from edge_agent.fleet.inbox import CommandInbox
from edge_agent.fleet.state import FleetState
from edge_agent.watchlist.store import Watchlist

logger = logging.getLogger("edge_agent")


class FleetLink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.inbox = CommandInbox()
        self._anchor = StatusAnchor(None, settings.device_id)
        self._anchor_error: str | None = None
        self._commands: CommandProcessor | None = None

    def connect(self, control: DeviceControl, store: EventStore) -> None:
        """Commands act on `control`; a target rate set by command outlives restarts (restored here)."""
        persisted = FleetState(control.watchlist).setting("target_fmr")
        if persisted is not None:
            control.set_target_fmr(float(persisted))
            logger.info("false-match rate %s set by fleet command", persisted)
        self._commands = CommandProcessor(
            self.settings.device_id, control, store, self.settings.watchlist.trusted_keys
        )
        self._anchor = StatusAnchor(self._device_key(), self.settings.device_id)

    def run_commands(self, publisher: Publisher) -> None:
        """Every command received since the last call: answered and logged in one line each, except
        refusals past the refusal limit, which are summed up in one line per health period."""
        commands = self._processor()
        while (received := self.inbox.take()) is not None:
            result = answer(commands, received, publisher)
            if result is not None:
                state = "accepted" if result.accepted else "refused"
                logger.info("command %s: %s (%s)", result.command or "?", state, result.message)

    def log_suppressed(self) -> None:
        suppressed = self._processor().flush_suppressed(self.inbox.take_dropped())
        if suppressed:
            reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(suppressed.items()))
            logger.info(
                "commands: %d refused past the refusal limit or dropped with the inbox full (%s); "
                "counted, not answered",
                sum(suppressed.values()),
                reasons,
            )

    def refresh_anchor(self, watchlist: Watchlist, publisher: Publisher) -> None:
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

    def _processor(self) -> CommandProcessor:
        if self._commands is None:
            raise RuntimeError("FleetLink.connect() has not been called")
        return self._commands

    def _device_key(self) -> Ed25519PrivateKey | None:
        path = device_key_path(self.settings.watchlist.path)
        try:
            return device_key(path)
        except EdgeAgentError as exc:
            logger.info("audit anchor: no device key, anchors are not published: %s", exc)
            return None


def forget_expired_nonces(watchlist: Watchlist) -> None:
    """Replay protection keeps each command's nonce until the command expires; then it may go."""
    FleetState(watchlist).forget_expired_nonces()

"""The console's MQTT side: everything the fleet publishes comes in here, and the signed commands of its
reviewers go out.

One client with the console's own client id (`console.client_id`) and a persistent session
(`clean_session=False`): the broker queues the QoS 1 messages that arrive while the console is down and
delivers them at its next connection. A message is acknowledged only after it is stored
(`Subscription(ack_after_delivery=True)`): when the database refuses the write, the broker still holds
it. Every payload is checked against its schema, and the device id in the payload must be the one in
the topic: a device cannot file events in another's name. Nothing that fails is stored; it is counted,
and its first line is kept for the fleet page.

Commands wait in the database (`events.command_envelope`) until the broker acknowledges them: the
sender thread publishes whatever is unsent when told (`wake`), at every connection, and every few
seconds while something waits.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edge_agent.console.database import ConsoleDatabase
from edge_agent.console.received import record
from edge_agent.console.settings import ConsoleSettings
from edge_agent.events.database import db_time
from edge_agent.events.listen import check_payload
from edge_agent.events.settings import MqttSettings
from edge_agent.events.subscription import Subscription
from edge_agent.fleet.central import command_topic
from edge_agent.signed import short

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # a match event with its face chip is tens of kB
KINDS_BY_TOPIC = {
    "events/match": "match",
    "status": "status",
    "health": "health",
    "report": "report",
    "cmd/result": "cmd-result",
}
RETRY_S = 5.0
PUBACK_TIMEOUT_S = 10.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Ingest:
    def __init__(
        self,
        mqtt_settings: MqttSettings,
        console: ConsoleSettings,
        db: ConsoleDatabase,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = mqtt_settings
        self.db = db
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.last_refusal: str | None = None
        prefix = mqtt_settings.topic_prefix
        self.subscription = Subscription(
            mqtt_settings,
            [f"{prefix}/+/{suffix}" for suffix in KINDS_BY_TOPIC],
            self._on_message,
            client_id=console.client_id,
            persistent=True,
            ack_after_delivery=True,
            on_connected=self.wake,
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="console-commands", daemon=True)

    @property
    def connected(self) -> bool:
        return bool(self.subscription.client.is_connected())

    @property
    def last_error(self) -> str | None:
        error: str | None = self.subscription.last_error
        return error

    def start(self) -> None:
        self.subscription.start()
        self._sender.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._sender.is_alive():
            self._sender.join(PUBACK_TIMEOUT_S + 1.0)
        self.subscription.close()

    def wake(self) -> None:
        """Send the waiting commands now (called after a review, and by paho at each connection)."""
        self._wake.set()

    # ---- in -------------------------------------------------------------------------------------

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        """On paho's thread. Raises only when the database cannot take the message: it stays unacked."""
        raw = bytes(message.payload)
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self._refuse("?", "a topic that is not UTF-8")
            return
        kind, device = self._kind_of(topic)
        if kind is None or device is None:
            self._refuse(topic, "not a topic the console reads")
            return
        if not raw:
            return  # a cleared retained message
        if len(raw) > MAX_MESSAGE_BYTES:
            self._refuse(topic, f"{len(raw):,} bytes, more than {MAX_MESSAGE_BYTES:,}")
            return
        checked = check_payload(topic, raw)
        if checked.error is not None or checked.payload is None:
            self._refuse(topic, checked.error or "no payload")
            return
        if checked.kind != kind:
            self._refuse(topic, f"a {checked.kind} payload on a {kind} topic")
            return
        if checked.payload.get("device_id") != device:
            named = short(str(checked.payload.get("device_id")), 40)
            self._refuse(topic, f"the payload names device {named!r}, the topic {device!r}")
            return
        stored = record(self.db, kind, checked.payload, self.clock())
        self.counts[kind if stored else "duplicate"] += 1

    def _kind_of(self, topic: str) -> tuple[str | None, str | None]:
        prefix = self.settings.topic_prefix + "/"
        if not topic.startswith(prefix):
            return None, None
        device, _, suffix = topic[len(prefix) :].partition("/")
        return KINDS_BY_TOPIC.get(suffix), device or None

    def _refuse(self, topic: str, why: str) -> None:
        self.counts["refused"] += 1
        line = f"{short(topic, 120)}: {why}"
        if self.counts["refused"] <= 10 or self.counts["refused"] % 1000 == 0:
            logger.warning("console ingest refused a message: %s", line)
        self.last_refusal = line

    # ---- out ------------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(RETRY_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.send_waiting()
            except Exception:  # never let the sender die: log and try again at the next wake
                logger.exception("console: sending the waiting commands failed")

    def send_waiting(self) -> int:
        """Publishes every stored command the broker has not acknowledged yet; how many it took."""
        waiting = self.db.rows(
            "SELECT event_id, device_id, command_envelope FROM events "
            "WHERE command_envelope IS NOT NULL AND command_sent_at IS NULL ORDER BY reviewed_at"
        )
        sent = 0
        for row in waiting:
            topic = command_topic(self.settings, str(row["device_id"]), "review")
            if not self.publish(topic, bytes(row["command_envelope"])):
                break  # the broker is away: the rest waits for the next connection
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE events SET command_sent_at = ? WHERE event_id = ?",
                    (db_time(self.clock()), row["event_id"]),
                )
            sent += 1
        return sent

    def publish(self, topic: str, payload: bytes) -> bool:
        """QoS 1; True once the broker acknowledged it (False: not connected, or no PUBACK in time)."""
        if not self.connected:
            return False
        info = self.subscription.client.publish(topic, payload, qos=1, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        with contextlib.suppress(RuntimeError, ValueError):  # the connection went while waiting
            info.wait_for_publish(PUBACK_TIMEOUT_S)
        return bool(info.is_published())

"""The console's MQTT side: everything the fleet publishes comes in here, and the signed commands of its
reviewers go out.

One client with the console's own client id (`console.client_id`) and a persistent session
(`clean_session=False`): the broker queues the QoS 1 messages that arrive while the console is down and
delivers them at its next connection. The console acknowledges a message itself
(`Subscription(manual_ack=True)`), once it has decided about it:

- stored: acknowledged;
- refused (not a topic it reads, too big, not valid against its schema, or naming another device than
  its topic, or anything else that makes it unreadable): counted, its first line kept for the fleet
  page, and acknowledged, since it would be refused again;
- the database refused the write (full disk, I/O error): held in memory, in order, behind it every QoS 1
  message that arrives after, and written again every few seconds; each is acknowledged once stored. A
  console that dies meanwhile has acknowledged none of them, so the broker delivers them again. The
  broker sends at most its inflight window (mosquitto: 20) unacknowledged, so few are held; it queues
  the rest for the session (mosquitto: `max_queued_messages`, 1000 by default, then it drops). QoS 0
  messages (health) are dropped meanwhile: nobody would send them again, and the next replaces them.

What is stored is the payload as validated (`check_payload`'s model, written as the agent writes it),
not the bytes received: a lax `"12.5"` is stored as the number 12.5, so no page has to guess a type.
Retained messages (a device's last status, delivered again at every subscription) do not move the
device's "last seen".

Commands wait in the database until the broker acknowledges them. A review's command is signed when it
is sent, not when the verdict is given (`reviews.py`), so a broker that is away longer than a command's
lifetime delays it without making it stale. The sender publishes whatever is unsent when told (`wake`),
at every connection, and every few seconds while something waits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edge_agent.console.database import ConsoleDatabase
from edge_agent.console.received import record
from edge_agent.console.reviews import CommandSigner
from edge_agent.console.settings import ConsoleSettings
from edge_agent.events.database import db_time, utc_now
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
RESEND_S = 120.0  # an unanswered review command is sent again after this long, doubled at each send
RESEND_MAX_S = 4 * 3600.0
PUBACK_TIMEOUT_S = 10.0

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Taken:
    """A message as received, and the connection it came on (`Subscription.generation`)."""

    message: mqtt.MQTTMessage
    generation: int


class Ingest:
    def __init__(
        self,
        mqtt_settings: MqttSettings,
        console: ConsoleSettings,
        db: ConsoleDatabase,
        signer: CommandSigner | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = mqtt_settings
        self.db = db
        self.signer = signer
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.last_refusal: str | None = None
        self.last_store_error: str | None = None
        self.last_send_problem: str | None = None  # why waiting verdicts are not sent (no key)
        self._held: deque[Taken] = deque()  # taken but not stored yet: the database refused
        self._held_lock = threading.Lock()
        prefix = mqtt_settings.topic_prefix
        self.subscription = Subscription(
            mqtt_settings,
            [f"{prefix}/+/{suffix}" for suffix in KINDS_BY_TOPIC],
            self._on_message,
            client_id=console.client_id,
            persistent=True,
            manual_ack=True,
            on_connected=self.wake,
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._work, name="console-ingest", daemon=True)

    @property
    def connected(self) -> bool:
        return bool(self.subscription.client.is_connected())

    @property
    def last_error(self) -> str | None:
        error: str | None = self.subscription.last_error
        return error

    @property
    def held(self) -> int:
        """Messages taken from the broker that the database has not stored yet (not acknowledged)."""
        return len(self._held)

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
        """On paho's thread; never raises (paho's loop would end with it)."""
        taken = Taken(message, self.subscription.generation)
        with self._held_lock:
            if self._held or not self._take(taken):  # nothing is stored past a message still waiting
                self._hold(taken)

    def _hold(self, taken: Taken) -> None:
        message = taken.message
        if message.qos == 0:  # nobody sends it again, and the next one (health) replaces it: dropped
            self.counts["dropped"] += 1
            return
        since = self.subscription.session_since
        if message.dup and any(h.message.mid == message.mid and h.generation >= since for h in self._held):
            return  # the broker's redelivery, after a reconnect that kept the session, of one held already
        self._held.append(taken)
        self._wake.set()

    def _take(self, taken: Taken) -> bool:
        """Stores or refuses one message and acknowledges it; False (unacknowledged) when the database
        refused the write."""
        message = taken.message
        try:
            self._store(message)
        except sqlite3.Error as exc:
            self.last_store_error = f"the console database refused a message ({exc}); it is held and retried"
            self.counts["store-failed"] += 1
            if _worth_logging(self.counts["store-failed"]):
                logger.error("console ingest: %s", self.last_store_error)
            return False
        except Exception as exc:  # anything else about this message makes it unreadable: refused
            self._refuse(_topic_text(message), f"unreadable ({type(exc).__name__}: {short(str(exc), 80)})")
        self.last_store_error = None
        self.subscription.ack(message, taken.generation)
        return True

    def _store(self, message: mqtt.MQTTMessage) -> None:
        raw = bytes(message.payload)
        topic = _topic_text(message)
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
        if checked.error is not None or checked.model is None:
            self._refuse(topic, checked.error or "no payload")
            return
        if checked.kind != kind:
            self._refuse(topic, f"a {checked.kind} payload on a {kind} topic")
            return
        payload = json.loads(checked.model.to_json())
        if payload.get("device_id") != device:
            named = short(str(payload.get("device_id")), 40)
            self._refuse(topic, f"the payload names device {named!r}, the topic {device!r}")
            return
        stored = record(self.db, kind, payload, self.clock(), retained=bool(message.retain))
        self.counts[kind if stored else "duplicate"] += 1
        if kind == "status" and payload.get("state") == "online":
            self._wake.set()  # its unanswered verdicts are due now

    def _store_held(self) -> None:
        """Writes the held messages again, oldest first, until the database refuses one."""
        with self._held_lock:
            while self._held and self._take(self._held[0]):
                self._held.popleft()

    def _kind_of(self, topic: str) -> tuple[str | None, str | None]:
        prefix = self.settings.topic_prefix + "/"
        if not topic.startswith(prefix):
            return None, None
        device, _, suffix = topic[len(prefix) :].partition("/")
        return KINDS_BY_TOPIC.get(suffix), device or None

    def _refuse(self, topic: str, why: str) -> None:
        self.counts["refused"] += 1
        line = f"{short(topic, 120)}: {why}"
        if _worth_logging(self.counts["refused"]):
            logger.warning("console ingest refused a message: %s", line)
        self.last_refusal = line

    # ---- out ------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(RETRY_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._store_held()
                self.send_waiting()
            except Exception:  # never let the worker die: log and try again at the next wake
                logger.exception("console: storing held messages or sending the waiting commands failed")

    def due(self) -> list[sqlite3.Row]:
        """The review commands to send now, oldest verdict first.

        Due: never taken by the broker; or taken but unanswered, and either sent before the device last
        came online, or longer ago than `RESEND_S` doubled at each send (2, 4, 8 ... minutes, at most
        `RESEND_MAX_S`). Devices keep no session with the broker: a command published while one is
        away is dropped, though the broker acknowledged it."""
        now = self.clock()
        unanswered = self.db.rows(
            "SELECT e.event_id, e.device_id, e.state, e.command_nonce, e.command_sent_at, e.command_sends, "
            "d.online_at FROM events e LEFT JOIN devices d ON d.device_id = e.device_id "
            "WHERE e.command_nonce IS NOT NULL AND e.answer IS NULL ORDER BY e.reviewed_at"
        )
        return [row for row in unanswered if _is_due(row, now)]

    def send_waiting(self) -> int:
        """Signs and publishes every review command that is due (`due`); how many the broker took. Each
        is signed as it is sent, with the nonce its verdict was given: its lifetime starts then, and a
        device that took an earlier copy refuses the next as replayed."""
        due = self.due()
        if due and self.signer is None:
            self.last_send_problem = f"{len(due)} verdict(s) wait for console.command_key to be signed"
            return 0
        self.last_send_problem = None
        sent = 0
        for row in due:
            if self._stop.is_set() or not self.connected:
                break  # the broker is away: the rest waits for the next connection
            assert self.signer is not None
            event_id, device_id = str(row["event_id"]), str(row["device_id"])
            nonce, verdict = str(row["command_nonce"]), str(row["state"])
            at = self.clock()  # one reading: signed at, and recorded as sent at
            envelope = self.signer.review(device_id, event_id, verdict, nonce, at)
            if not self.publish(command_topic(self.settings, device_id, "review"), envelope):
                break
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE events SET command_envelope = ?, command_sent_at = ?, "
                    "command_sends = command_sends + 1 WHERE event_id = ?",
                    (envelope, db_time(at), event_id),
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


def _topic_text(message: mqtt.MQTTMessage) -> str:
    try:
        return str(message.topic)
    except UnicodeDecodeError:
        return "(a topic that is not UTF-8)"


def _is_due(row: sqlite3.Row, now: datetime) -> bool:
    sent_at = row["command_sent_at"]
    if sent_at is None:
        return True
    if row["online_at"] is not None and row["online_at"] > sent_at:
        return True
    wait = min(RESEND_S * 2 ** min(max(int(row["command_sends"]) - 1, 0), 10), RESEND_MAX_S)
    return datetime.fromisoformat(sent_at) + timedelta(seconds=wait) <= now


def _worth_logging(count: int) -> bool:
    """The first ten of a kind, then every thousandth: a flood is logged without flooding the log."""
    return count <= 10 or count % 1000 == 0

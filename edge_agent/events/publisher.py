"""The MQTT publisher: sends the outbox to the broker with QoS 1, in seq order, and keeps the device's status.

Delivery. The SQLite outbox is the only queue that matters: a row leaves it only when the broker's PUBACK
for it arrives (paho's `on_publish`). At most `max_inflight` rows are published and unacknowledged at once.
paho keeps its own in-memory copy of unacknowledged QoS 1 messages and re-sends them after a reconnect,
but (paho 2.2) it re-sends them only after `on_connect` has returned, so anything published in `on_connect`
overtakes them, and it re-sends all of them whatever `max_inflight_messages` says. So this publisher owns
the window itself: on every CONNACK it throws paho's copies away (`drop_out_messages`), forgets which
message id carried which row, and publishes again from the oldest unsent row. A row whose PUBACK was lost
with the connection is therefore sent twice, with the same payload and event_id; subscribers deduplicate.
Nothing is lost: the row stays in the outbox until acknowledged, across reconnects and restarts.

Threads. paho's network thread runs the callbacks; a small sender thread of ours does every outbox publish
and every SQLite write (so neither the network thread nor the inference worker waits on a disk flush);
the worker only calls `wake()`. Locks: `_gate` serialises outbox publishes with (re)connect handling, so a
publish never lands on a fresh connection before the resend from the oldest row; `_state` guards the
bookkeeping and is never held while calling paho or SQLite (paho holds its own lock while it calls
`on_publish`, which takes `_state`: holding `_state` into paho could deadlock).

Session. `clean_session=True`: the outbox is the session; the broker need keep nothing for a publisher.
Status: `online` (retained, QoS 1) on every connect, `offline` retained as the last will and on a clean stop.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.errors import EdgeAgentError
from edge_agent.events.connection import (
    ReportingClient,
    broker_address,
    new_client,
    reason_text,
    socket_error_text,
)
from edge_agent.events.discovery import discovery
from edge_agent.events.schema import HealthMessage, StatusMessage
from edge_agent.events.settings import MqttSettings
from edge_agent.events.store import EventStore
from edge_agent.events.topics import Topics

Log = Callable[[str], None]
IDLE_CHECK_S = 1.0  # the sender looks at the outbox this often even without a wake()
STOP_WAIT_S = 2.0  # how long stop() waits for the broker to acknowledge `offline`


def _no_log(_line: str) -> None:
    pass


class Publisher:
    """Publishes the outbox (QoS 1, in order, acknowledged rows only leave it), status and health."""

    def __init__(
        self,
        settings: MqttSettings,
        device_id: str,
        store: EventStore,
        online: StatusMessage,
        offline: StatusMessage,
        log: Log = _no_log,
        on_command: Callable[[str, bytes], None] | None = None,
    ) -> None:
        """`on_command(topic, payload)` receives what arrives on the command topics (paho's thread: it
        should only queue it); without it the publisher subscribes to nothing."""
        self.settings = settings
        self.on_command = on_command
        self.topics = Topics(settings.topic_prefix, device_id)
        self.store = store
        self.online = online
        self.offline = offline
        self.log = log
        self.address = broker_address(settings)
        self._discovery = discovery(settings, self.topics, online)

        self._gate = threading.Lock()
        self._state = threading.Condition()
        self._connected = False
        self._generation = 0  # +1 at every connect and disconnect: bookkeeping of an old one is void
        self._handed = 0  # highest seq published on this connection
        self._inflight: dict[int, int] = {}  # paho message id -> outbox seq, unacknowledged
        self._acked: list[int] = []  # acknowledged seqs the sender has not yet marked sent
        self._early: set[int] = set()  # acks that arrived before their publish() returned
        self._recording = False
        self._kick = False
        self._stopping = False
        self._last_error: str | None = None
        self._reported: str | None = None  # the last state line logged
        self._paho_error: str | None = None  # paho's latest error log line (e.g. a TLS alert)
        self._sender_error: str | None = None
        self._sender: threading.Thread | None = None

        self._client = self._make_client()

    def _make_client(self) -> ReportingClient:
        client = new_client(self.settings, self.settings.client_id or f"edge-agent-{self.topics.device_id}")
        client.will_set(self.topics.status, self.offline.to_json(), qos=1, retain=True)
        client.max_inflight_messages_set(0)  # unlimited in paho: our own window is max_inflight
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_log = self._on_log
        client.on_socket_error = self._on_socket_error
        return client

    # ---- the public side ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._state:
            return self._connected

    @property
    def last_error(self) -> str | None:
        """The latest connection problem in one line; None once connected again."""
        with self._state:
            return self._last_error

    @property
    def inflight(self) -> int:
        """Outbox messages published on this connection and not yet acknowledged."""
        with self._state:
            return len(self._inflight)

    def start(self) -> None:
        """Connects in the background (never raises for an unreachable broker) and starts sending."""
        if self._sender is not None:
            raise EdgeAgentError("the MQTT publisher is already started")
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._sender.start()
        self._client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s
        )
        self._client.loop_start()

    def wake(self) -> None:
        """New outbox rows exist: send them (thread-safe, returns at once)."""
        with self._state:
            self._kick = True
            self._state.notify_all()

    def update_status(self, online: StatusMessage, offline: StatusMessage) -> None:
        """New contents for the retained status (a new audit anchor): published now when connected, and
        on every connect after; `offline` is what a clean stop publishes (the last will stays as set)."""
        self.online, self.offline = online, offline
        if self.connected:
            self._client.publish(self.topics.status, self._status(online), qos=1, retain=True)

    def publish_health(self, message: HealthMessage) -> bool:
        """QoS 0, not retained; False (nothing queued) while disconnected: health is not worth keeping."""
        if not self.connected:
            return False
        info = self._client.publish(self.topics.health, message.to_json(), qos=0, retain=False)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def drain(self, timeout_s: float) -> bool:
        """Waits until the outbox is empty (everything acknowledged) or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        self.wake()
        while True:
            if self.store.depth() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._state:
                self._state.wait(min(remaining, 0.1))

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Stops sending, publishes `offline` (retained) and waits up to `wait_s` for the broker's
        acknowledgement, then disconnects."""
        with self._state:
            self._stopping = True
            self._state.notify_all()
        if self._sender is not None:
            self._sender.join()
            self._sender = None
        info: mqtt.MQTTMessageInfo | None = None
        with self._gate:
            if self.connected:
                info = self._client.publish(
                    self.topics.status, self._status(self.offline), qos=1, retain=True
                )
        if info is not None and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            # RuntimeError: the connection went meanwhile, and the broker publishes the will instead
            with contextlib.suppress(RuntimeError):
                info.wait_for_publish(max(0.0, wait_s))
        self._client.disconnect()
        self._client.loop_stop()
        with self._state:
            self._connected = False

    # ---- the sender thread ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            with self._state:
                if not self._kick and not self._stopping:
                    self._state.wait(IDLE_CHECK_S)
                self._kick = False
                if self._stopping:
                    return
                acked, self._acked = self._acked, []
            try:
                for seq in acked:
                    self.store.mark_sent(seq)
                if acked:
                    with self._state:
                        self._state.notify_all()  # drain() is waiting
                self._send_more()
            except Exception as exc:  # the sender must outlive a bad moment (e.g. a locked database)
                line = f"mqtt: outbox send failed: {type(exc).__name__}: {exc}"
                if line != self._sender_error:
                    self.log(line)
                self._sender_error = line
            else:
                self._sender_error = None

    def _send_more(self) -> None:
        """Publishes the next unsent rows in seq order, up to the window."""
        with self._gate:
            with self._state:
                if not self._connected or self._stopping:
                    return
                room = self.settings.max_inflight - len(self._inflight)
                after, generation = self._handed, self._generation
            if room <= 0:
                return
            for message in self.store.pending(after_seq=after, limit=room):
                with self._state:
                    self._early.clear()
                    self._recording = True
                info = self._client.publish(message.topic, message.payload, qos=1, retain=False)
                with self._state:
                    self._recording = False
                    if generation != self._generation:
                        return  # the connection went while publishing: the next connect starts over
                    self._handed = message.seq
                    if info.mid in self._early:
                        self._acked.append(message.seq)
                        self._kick = True
                    else:
                        self._inflight[info.mid] = message.seq
                    self._early.clear()

    # ---- paho's callbacks (network thread) ------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        """Hands a command to the agent's inbox, which bounds it; nothing a message holds may end paho's
        network thread (a topic that is not UTF-8 makes `message.topic` raise)."""
        try:
            topic = message.topic
        except UnicodeDecodeError:
            return
        if self.on_command is not None and self.topics.is_command(topic):
            self.on_command(topic, bytes(message.payload))
        elif self._discovery.stale(topic, bytes(message.payload), bool(message.retain)):
            client.publish(topic, b"", qos=1, retain=True)  # how Home Assistant removes an entity

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._report(f"broker refused the connection: {reason_text(reason)}")
            return
        with self._gate:
            client.drop_out_messages()  # unacknowledged rows are re-sent from the outbox, in order
            with self._state:
                stopping = self._stopping
            if stopping:  # connected just as stop() began: leave the retained status saying offline
                client.publish(self.topics.status, self._status(self.offline), qos=1, retain=True)
                return
            client.publish(self.topics.status, self._status(self.online), qos=1, retain=True)
            if self.on_command is not None:
                client.subscribe([(topic, 1) for topic in self.topics.command_filters])
            for topic, payload in self._discovery.messages:
                client.publish(topic, payload, qos=1, retain=True)
            client.subscribe(self._discovery.filter, qos=1)  # its stale retained configs are cleared
            with self._state:
                self._connected = True
                self._generation += 1
                self._handed = 0
                self._inflight.clear()
                self._early.clear()
                self._kick = True
                self._last_error = None
                self._paho_error = None
                self._state.notify_all()
        self._report(None)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._state:
            was_connected = self._connected
            self._connected = False
            self._generation += 1
            self._inflight.clear()
            self._early.clear()
            stopping = self._stopping
            refused = self._last_error is not None and self._last_error.startswith("broker refused")
            detail = f": {self._paho_error}" if self._paho_error else ""  # paho's reason code says little
            self._paho_error = None
        if stopping or (refused and not was_connected):
            return
        if was_connected:
            self._report(f"connection to broker {self.address} lost{detail}")
        else:
            self._report(f"broker {self.address} closed the connection before accepting it{detail}")

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._state:
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                self._acked.append(seq)
                self._kick = True
                self._state.notify_all()
            elif self._recording:
                self._early.add(mid)

    def _on_log(self, client: mqtt.Client, userdata: object, level: int, text: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            with self._state:
                self._paho_error = text

    def _on_socket_error(self, exc: OSError) -> None:
        self._report(socket_error_text(self.address, exc, self.settings.uses_tls))

    # ---- helpers --------------------------------------------------------------------------------------

    def _report(self, error: str | None) -> None:
        """Records the connection state and logs it only when it changes (no line per retry)."""
        line = f"mqtt: connected to {self.address}" if error is None else f"mqtt: {error}"
        with self._state:
            if error is not None:
                self._last_error = error
            changed = line != self._reported
            self._reported = line
        if changed:
            self.log(line)

    def _status(self, message: StatusMessage) -> bytes:
        """The status with `at` = now (the last will keeps the message as given, without a time)."""
        return message.model_copy(update={"at": datetime.now(UTC)}).to_json()

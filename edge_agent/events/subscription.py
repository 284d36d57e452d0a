"""One QoS 1 subscription from `MqttSettings`: the part every subscriber of ours shares (the `listen`
command, the benchmarks' arrival recorder, the tests' subscriber, the console's ingest): connect,
subscribe (to one topic filter or several) on every (re)connect, say when the broker confirmed it or
refused the login, and hand each message to a callback on paho's thread.

With `manual_ack`, the subscriber acknowledges each QoS 1 message itself (`ack`), once it has kept it: a
subscriber that must not lose a message (its database refused the write) holds it and acknowledges it
when stored, and one that dies before that leaves it with the broker, which delivers it again on the
next connection of a persistent session.

Connection problems are kept in `last_error` (one line); a subscription that never got connected sets
`failed` at its first problem (no broker, an untrusted certificate, TLS against a plain port or plain
against a TLS port, a refused login), so a command-line subscriber can say so and end. It keeps retrying
all the same: one that was connected once rides out a broker restart."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.errors import EdgeAgentError
from edge_agent.events.connection import (
    broker_address,
    closed_early_text,
    new_client,
    refused_text,
    socket_error_text,
)
from edge_agent.events.settings import MqttSettings

OnMessage = Callable[[mqtt.MQTTMessage], None]


class Subscription:
    def __init__(
        self,
        settings: MqttSettings,
        topic: str | Sequence[str],
        on_message: OnMessage,
        client_prefix: str = "edge-agent-sub",
        *,
        client_id: str | None = None,
        persistent: bool = False,
        manual_ack: bool = False,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        """`persistent`: a session the broker keeps (and queues QoS 1 messages for) while disconnected;
        it needs a fixed `client_id`. `on_connected` runs on paho's thread after each accepted connect."""
        self.settings = settings
        self.topics = (topic,) if isinstance(topic, str) else tuple(topic)
        self.topic = self.topics[0]
        self.subscribed = threading.Event()
        self.refused = threading.Event()  # the broker refused the login
        self.failed = threading.Event()  # the first connection failed (refused, or any other reason)
        self.connected_once = False
        self.generation = 0  # accepted connections so far
        self.session_since = 0  # the first connection of the broker session now held
        self._ack_lock = threading.Lock()
        self._acks_open = False  # between a connection's acknowledgement and its end
        self.last_error: str | None = None
        self.address = broker_address(settings)
        self._deliver = on_message
        self._on_connected = on_connected
        self.client = new_client(
            settings, client_id or f"{client_prefix}-{uuid.uuid4().hex[:8]}", clean_session=not persistent
        )
        self.client.manual_ack_set(manual_ack)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_socket_error = self._on_socket_error

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.last_error = refused_text(self.address, reason)
            self.refused.set()
            self.failed.set()
            return
        self.connected_once = True
        with self._ack_lock:
            self.generation += 1
            if not flags.session_present:  # a new session: earlier connections' packet ids mean nothing
                self.session_since = self.generation
            self._acks_open = True
        self.last_error = None
        client.subscribe([(topic, 1) for topic in self.topics])
        if self._on_connected is not None:
            self._on_connected()

    def _problem(self, line: str) -> None:
        if self.refused.is_set():  # the refusal says more than the disconnect that follows it
            return
        self.last_error = line
        if not self.connected_once:
            self.failed.set()

    def _on_socket_error(self, exc: OSError) -> None:
        self._problem(socket_error_text(self.address, exc, self.settings.uses_tls))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._ack_lock:
            self._acks_open = False
        if not self.connected_once and not self.refused.is_set():
            self._problem(closed_early_text(self.address, self.settings.uses_tls))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self._deliver(message)

    def ack(self, message: mqtt.MQTTMessage, generation: int | None = None) -> None:
        """Acknowledge a message taken with `manual_ack` (from any thread). `generation`: the connection
        it came on, when that may not be the current one; it is acknowledged only if the broker kept the
        session since (else its packet id may now name another message, and the broker has forgotten
        this one)."""
        with self._ack_lock:  # never while reconnecting, nor into a session begun since
            if not self._acks_open or (generation is not None and generation < self.session_since):
                return  # a kept session sends it again after the reconnect: stored twice, never lost
            self.client.ack(message.mid, message.qos)

    def start(self, timeout_s: float | None = None) -> None:
        """Connect in the background; with `timeout_s`, wait for the broker to confirm the subscription
        (EdgeAgentError naming the broker if it does not)."""
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        if timeout_s is not None and not self.subscribed.wait(timeout_s):
            self.close()
            why = self.last_error or f"no subscription confirmed within {timeout_s:g} s"
            raise EdgeAgentError(f"subscriber at {self.address}: {why}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

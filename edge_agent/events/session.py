"""A short-lived MQTT session: connect, subscribe and publish with acknowledgement, disconnect.

For the commands that talk to the broker once and end (the central side of fleet commands, publishing a
transparency report): the project's TLS and credentials (`edge_agent.events.connection`), a fresh client
id of its own (never a device's, which would cut that device off), `clean_session=True`, and each wait
(CONNACK, SUBACK, PUBACK, a caller's condition) bounded by one deadline for the whole session. Whatever
goes wrong is one EdgeAgentError line naming the broker and the cause. The long-lived clients (the
publisher, the subscription) reconnect by themselves and keep their own loops.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
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


class MqttSession:
    """One short-lived client (see the module docstring); a context manager that connects on entry.

    `on_message` receives every message that arrives on a subscription, on paho's thread; it runs under
    the lock that `wait`'s condition is tested under, and each message wakes `wait`.
    """

    def __init__(
        self,
        settings: MqttSettings,
        client_prefix: str,
        timeout_s: float,
        on_message: OnMessage | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise EdgeAgentError(f"timeout must be positive, not {timeout_s:g} s")
        self.settings = settings
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.address = broker_address(settings)
        self.client = new_client(settings, f"{client_prefix}-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._deliver = on_message
        self._changed = threading.Condition()
        self._connack: str | None = None  # "" accepted, else why not
        self._subacks: dict[int, list[ReasonCode]] = {}

    def _remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def _late(self, what: str) -> EdgeAgentError:
        return EdgeAgentError(f"broker {self.address} did not {what} within {self.timeout_s:g} s")

    def __enter__(self) -> MqttSession:
        self.connect()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Connects and waits for the broker's CONNACK; raises (and disconnects) when it is not accepted."""
        try:
            self.client.connect(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        except OSError as exc:  # refused, unreachable, unknown host, TLS failure
            raise EdgeAgentError(socket_error_text(self.address, exc, self.settings.uses_tls)) from None
        self.client.loop_start()
        try:
            with self._changed:
                self._changed.wait_for(lambda: self._connack is not None, self._remaining())
                connack = self._connack
            if connack is None:
                raise self._late("accept the connection")
            if connack:
                raise EdgeAgentError(connack)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str) -> None:
        """Subscribes with QoS 1 and waits for the broker's SUBACK; raises when refused or late."""
        result, mid = self.client.subscribe(topic, qos=1)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise EdgeAgentError(f"broker {self.address}: cannot subscribe to {topic} ({result.name})")
        with self._changed:
            self._changed.wait_for(lambda: mid in self._subacks, self._remaining())
            reasons = self._subacks.get(mid)
        if reasons is None:
            raise self._late(f"confirm the subscription to {topic}")
        if any(reason.is_failure for reason in reasons):
            raise EdgeAgentError(f"broker {self.address} refused the subscription to {topic}")

    def publish(self, topic: str, payload: bytes, *, what: str, retain: bool = False) -> None:
        """Publishes with QoS 1 and waits for the broker's PUBACK; `what` names the message in the error
        when it is not acknowledged in time (e.g. "the report")."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        published = False
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            with contextlib.suppress(RuntimeError, ValueError):  # the connection went: said below
                info.wait_for_publish(self._remaining())
            published = info.is_published()
        if not published:
            raise self._late(f"acknowledge {what}")

    def wait(self, done: Callable[[], bool]) -> None:
        """Until `done()` holds or the deadline; `done` is tested at each message that arrives."""
        with self._changed:
            self._changed.wait_for(done, self._remaining())

    # paho's network thread

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._changed:
            self._connack = refused_text(self.address, reason) if reason.is_failure else ""
            self._changed.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._changed:
            if self._connack is None:  # no CONNACK came: the broker hung up on the CONNECT
                self._connack = closed_early_text(self.address, self.settings.uses_tls)
                self._changed.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._changed:
            self._subacks[mid] = reasons
            self._changed.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self._deliver is None:
            return
        with self._changed:
            self._deliver(message)
            self._changed.notify_all()

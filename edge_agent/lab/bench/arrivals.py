"""A benchmark's subscriber: notes when each match event arrives from the broker, by event_id.

Arrival times are `time.monotonic()` in this process, the clock of `Captured.read_at`, so a difference
of the two is the frame-to-subscriber delay on one clock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edge_agent.events.settings import MqttSettings
from edge_agent.events.subscription import Subscription


@dataclass(frozen=True)
class Arrival:
    event_id: str
    subject_id: str
    at: float  # time.monotonic() when the message reached the subscriber


class ArrivalRecorder:
    """Subscribes (QoS 1) to one match topic and keeps the first arrival of every event_id."""

    def __init__(self, settings: MqttSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self._arrivals: dict[str, Arrival] = {}
        self._changed = threading.Condition()
        self._subscription = Subscription(settings, topic, self._on_message, "edge-agent-bench")

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        at = time.monotonic()
        try:
            body = json.loads(message.payload)
            event_id, subject_id = str(body["event_id"]), str(body["subject_id"])
        except (ValueError, KeyError, TypeError):
            return
        with self._changed:
            self._arrivals.setdefault(event_id, Arrival(event_id, subject_id, at))
            self._changed.notify_all()

    def start(self, timeout_s: float = 10.0) -> ArrivalRecorder:
        """Connects and subscribes; EdgeAgentError if the broker has not confirmed within `timeout_s`."""
        self._subscription.start(timeout_s)
        return self

    def close(self) -> None:
        self._subscription.close()

    def arrival(self, event_id: str) -> Arrival | None:
        with self._changed:
            return self._arrivals.get(event_id)

    def count(self) -> int:
        with self._changed:
            return len(self._arrivals)

    def wait_for(self, event_ids: Collection[str], timeout_s: float) -> bool:
        """Waits until every one of `event_ids` has arrived or `timeout_s` passes; True if all did."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not all(e in self._arrivals for e in event_ids):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

"""A checking subscriber: every payload on the agent's topics is validated against its versioned schema.

For operators and tests: `edge-agent listen` prints each message as one JSON line, or one line saying
why a payload is not valid. Match events are deduplicated by event_id, as every subscriber should.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from edge_agent.config import describe_validation_error
from edge_agent.events.schema import PAYLOADS, Payload
from edge_agent.events.settings import MqttSettings
from edge_agent.events.subscription import Subscription

SCHEMA_KINDS = {f"edge-agent.{kind}/1": kind for kind in PAYLOADS}


@dataclass(frozen=True)
class Received:
    topic: str
    kind: str | None  # match, status, health; None when the payload names no known schema
    payload: dict[str, Any] | None
    error: str | None  # why the payload is not valid, in one line
    duplicate: bool = False  # a match event whose event_id was already seen
    model: Payload | None = None  # the validated payload (lax JSON coerced: "12.5" became 12.5)


class NotFiniteError(ValueError):
    """A number JSON cannot carry (NaN, Infinity), or one no payload holds (a float past its range, an
    integer past 64 bits, which pydantic would turn into an infinite float)."""


LARGEST_INT = 2**63


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NotFiniteError(f"{text[:20]} is not a finite number")
    return number


def _bounded_int(text: str) -> int:
    if len(text) > 20 or abs(number := int(text)) >= LARGEST_INT:
        raise NotFiniteError(f"{text[:20]}... is larger than any payload holds")
    return number


def _no_constant(name: str) -> float:
    raise NotFiniteError(f"{name} is not a number JSON allows")


def check_payload(topic: str, raw: bytes) -> Received:
    """Parse and validate one message against the schema it names. Numbers must be finite and in range:
    pydantic would take `1e999`, `NaN` or a 400-digit integer for a float, and the payload, written out
    again, would carry null."""
    try:
        data = json.loads(raw, parse_float=_finite, parse_int=_bounded_int, parse_constant=_no_constant)
    except NotFiniteError as exc:
        return Received(topic, None, None, f"not valid ({exc})")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Received(topic, None, None, f"not JSON ({exc})")
    except RecursionError:
        return Received(topic, None, None, "not JSON this program reads (nested too deeply)")
    if not isinstance(data, dict):
        return Received(topic, None, None, "not a JSON object")
    kind = SCHEMA_KINDS.get(str(data.get("schema")))
    if kind is None:
        return Received(topic, None, data, f"unknown schema {data.get('schema')!r}")
    model: type[Payload] = PAYLOADS[kind]
    try:
        validated = model.model_validate_json(raw)
    except ValidationError as exc:
        return Received(topic, kind, data, describe_validation_error(exc))
    return Received(topic, kind, data, None, model=validated)


class Listener:
    """Subscribes to `<prefix>/<device>/#` and yields checked messages."""

    def __init__(self, settings: MqttSettings, device_id: str = "+") -> None:
        self.settings = settings
        self.topic_filter = f"{settings.topic_prefix}/{device_id}/#"
        self._messages: queue.Queue[Received] = queue.Queue()
        self._seen: set[str] = set()
        self._subscription = Subscription(settings, self.topic_filter, self._on_message, "edge-agent-listen")
        self.subscribed = self._subscription.subscribed

    @property
    def last_error(self) -> str | None:
        error: str | None = self._subscription.last_error
        return error

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        received = check_payload(message.topic, bytes(message.payload))
        if received.kind == "match" and received.error is None and received.payload is not None:
            event_id = str(received.payload["event_id"])
            if event_id in self._seen:
                received = Received(received.topic, "match", received.payload, None, duplicate=True)
            self._seen.add(event_id)
        self._messages.put(received)

    def messages(
        self, timeout_s: float | None = None, stop: threading.Event | None = None
    ) -> Iterator[Received]:
        """Messages as they arrive, until `timeout_s` passes (forever with None) or `stop` is set."""
        self._subscription.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while (deadline is None or time.monotonic() < deadline) and not (stop and stop.is_set()):
                if self._subscription.failed.is_set():  # never connected (why: last_error): end
                    break
                wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                try:
                    yield self._messages.get(timeout=wait)
                except queue.Empty:
                    continue
        finally:
            self._subscription.close()

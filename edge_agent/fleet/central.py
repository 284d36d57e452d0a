"""The central side of fleet commands: publish a signed envelope, and collect the devices' answers.

A command goes out with QoS 1, not retained, on `<prefix>/<target>/cmd/<command>` (`target` a device id
or "all"); each device answers on `<prefix>/<device>/cmd/result` (`edge-agent.cmd-result/1`). `send`
subscribes to `<prefix>/+/cmd/result` before it publishes, so no answer can slip past, then waits until
`expect` distinct devices answered or the time is up.

Answers are matched by the command's nonce. A device that could not open the envelope (bad signature,
untrusted key) or refuses a replay answers without a nonce: `send` attributes such an answer to its own
command when it arrives after the publish from a device the command was for, and marks it
`by_nonce=False`. Nothing here checks the signature: the devices decide, and every refusal comes back.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from edge_agent import bounded
from edge_agent.bounded import InputRefusedError
from edge_agent.config import MqttSettings
from edge_agent.errors import EdgeAgentError
from edge_agent.events.mqtt import configure_client
from edge_agent.events.schema import CommandResultMessage
from edge_agent.fleet.command import ALL_DEVICES, COMMAND, COMMANDS
from edge_agent.signed import open_envelope, short

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Envelope:
    """What the central side reads from a command envelope (unverified: the devices verify)."""

    command: str
    target: str
    nonce: str


def read_envelope(data: bytes) -> Envelope:
    """The command, target and nonce of a signed command envelope; one-line EdgeAgentError otherwise."""
    payload, _signer, _signature = open_envelope(COMMAND, data)
    try:
        fields = bounded.load_json(payload, bounded.JsonLimits(COMMAND.max_payload), "its payload")
    except InputRefusedError as exc:
        raise EdgeAgentError(f"not an edge-agent command: {exc}") from None
    found = fields if isinstance(fields, dict) else {}
    values = {name: found.get(name) for name in ("command", "target", "nonce")}
    missing = [name for name, value in values.items() if not isinstance(value, str) or not value]
    if missing:
        raise EdgeAgentError(f"not an edge-agent command: no {', '.join(map(repr, missing))} in its payload")
    envelope = Envelope(str(values["command"]), str(values["target"]), str(values["nonce"]))
    if envelope.command not in COMMANDS:
        raise EdgeAgentError(f"not an edge-agent command: unknown command {short(envelope.command)!r}")
    return envelope


def check_target(target: str) -> str:
    """A device id or "all": one topic level, no wildcard."""
    if not target or any(c in target for c in "/+#"):
        raise EdgeAgentError(f"target {short(target)!r} is not a device id or 'all'")
    return target


def command_topic(settings: MqttSettings, target: str, command: str) -> str:
    return f"{settings.topic_prefix}/{check_target(target)}/cmd/{command}"


def results_filter(settings: MqttSettings) -> str:
    return f"{settings.topic_prefix}/+/cmd/result"


def _target_for(envelope: Envelope, target: str | None) -> str:
    """Where to publish: the envelope's own target unless told; a mismatch would only be refused."""
    if target is not None and target != envelope.target:
        raise EdgeAgentError(
            f"the command is signed for {short(envelope.target)!r}, not {short(target)!r}: "
            "every device there would refuse it"
        )
    return envelope.target


# ---- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceResult:
    """One device's answer (its first one: a re-sent answer is the same answer)."""

    device_id: str
    accepted: bool
    reason: str
    message: str
    command: str | None
    nonce: str | None
    details: dict[str, Any]
    after_s: float  # from publishing (or from subscribing, for collect_results) to its arrival
    by_nonce: bool  # False: it carried no nonce and was attributed by its arrival after the publish
    payload: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Collected:
    nonce: str
    command: str
    target: str
    expected: int | None
    results: tuple[DeviceResult, ...]  # in arrival order
    elapsed_s: float  # from connecting to the last answer (to the time-out when expected are missing)
    last_at: float | None  # time.monotonic() at the last answer counted

    @property
    def accepted(self) -> list[DeviceResult]:
        return [r for r in self.results if r.accepted]

    @property
    def refused(self) -> list[DeviceResult]:
        return [r for r in self.results if not r.accepted]

    @property
    def complete(self) -> bool:
        """The expected devices answered (without `expected`: at least one did)."""
        return len(self.results) >= (self.expected or 1)

    @property
    def ok(self) -> bool:
        """Every expected device answered, and none refused."""
        return self.complete and not self.refused

    def summary(self) -> str:
        answered = len(self.results)
        who = f"{answered} of {self.expected}" if self.expected is not None else str(answered)
        noun = "device" if (self.expected or answered) == 1 else "devices"
        return (
            f"{who} {noun} answered in {self.elapsed_s:.2f} s: "
            f"{len(self.accepted)} accepted, {len(self.refused)} refused"
        )


@dataclass(frozen=True)
class _Arrival:
    at: float  # time.monotonic()
    message: CommandResultMessage
    payload: dict[str, Any]  # as received


def _as_result(arrival: _Arrival, since: float, by_nonce: bool) -> DeviceResult:
    message = arrival.message
    return DeviceResult(
        device_id=message.device_id,
        accepted=message.accepted,
        reason=message.reason,
        message=message.message,
        command=message.command,
        nonce=message.nonce,
        details=dict(message.details),
        after_s=max(0.0, arrival.at - since),
        by_nonce=by_nonce,
        payload=arrival.payload,
    )


def _answers(arrivals: list[_Arrival], envelope: Envelope, published_at: float) -> list[DeviceResult]:
    """The first answer of each device to this sending of `envelope`, after its publish: by nonce, else
    (an envelope too broken to carry one) from a device the command was for."""
    by_device: dict[str, DeviceResult] = {}
    for arrival in arrivals:
        answer = arrival.message
        device = answer.device_id
        if arrival.at < published_at or (device in by_device and by_device[device].by_nonce):
            continue  # an answer to an earlier sending of the same envelope (a replay shares its nonce)
        if answer.nonce == envelope.nonce:
            by_device[device] = _as_result(arrival, published_at, True)
        elif (
            device not in by_device
            and answer.nonce is None
            and envelope.target in (ALL_DEVICES, device)
            and answer.command in (None, envelope.command)
        ):
            by_device[device] = _as_result(arrival, published_at, False)
    return sorted(by_device.values(), key=lambda r: r.after_s)


# ---- the MQTT session ---------------------------------------------------------------------------------


class _Session:
    """One short-lived client: connect (one-line errors), subscribe and publish with acknowledgement,
    and keep every valid command result that arrives."""

    def __init__(self, settings: MqttSettings, deadline: float) -> None:
        self.settings = settings
        self.deadline = deadline
        self.address = f"{settings.host}:{settings.port}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"edge-agent-central-{uuid.uuid4().hex[:8]}",  # never a device's id
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        configure_client(self.client, settings)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._changed = threading.Condition()
        self._connack: str | None = None  # "" accepted, else the refusal
        self._subacks: dict[int, list[ReasonCode]] = {}
        self.arrivals: list[_Arrival] = []

    def _remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def __enter__(self) -> _Session:
        try:
            self.client.connect(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        except OSError as exc:  # refused, unreachable, unknown host, TLS failure
            raise EdgeAgentError(f"cannot reach broker {self.address}: {exc.strerror or exc}") from None
        self.client.loop_start()
        try:
            with self._changed:
                self._changed.wait_for(lambda: self._connack is not None, self._remaining())
                connack = self._connack
            if connack is None:
                raise EdgeAgentError(f"broker {self.address} did not accept the connection in time")
            if connack:
                raise EdgeAgentError(f"broker {self.address} refused the connection: {connack}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str) -> None:
        result, mid = self.client.subscribe(topic, qos=1)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise EdgeAgentError(f"broker {self.address}: cannot subscribe to {topic} ({result.name})")
        with self._changed:
            self._changed.wait_for(lambda: mid in self._subacks, self._remaining())
            reasons = self._subacks.get(mid)
        if reasons is None:
            raise EdgeAgentError(f"broker {self.address} did not confirm the subscription to {topic} in time")
        if any(reason.is_failure for reason in reasons):
            raise EdgeAgentError(f"broker {self.address} refused the subscription to {topic}")

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=False)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            with contextlib.suppress(RuntimeError, ValueError):  # the connection went: said below
                info.wait_for_publish(self._remaining())
        if not info.is_published():
            raise EdgeAgentError(f"broker {self.address} did not acknowledge the command on {topic} in time")

    def wait(self, done: Callable[[list[_Arrival]], bool]) -> list[_Arrival]:
        """Until `done(arrivals so far)` or the deadline; returns the arrivals then."""
        with self._changed:
            self._changed.wait_for(lambda: done(self.arrivals), self._remaining())
            return list(self.arrivals)

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
            self._connack = str(reason).lower() if reason.is_failure else ""
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
        arrival = _arrival(bytes(message.payload))
        if arrival is None:
            return  # not a valid command result: nothing to report on
        with self._changed:
            self.arrivals.append(arrival)
            self._changed.notify_all()


def _arrival(data: bytes) -> _Arrival | None:
    at = time.monotonic()
    try:
        message = CommandResultMessage.model_validate_json(data)
        payload = json.loads(data)
    except (ValidationError, ValueError):
        return None
    return _Arrival(at, message, payload)


@contextlib.contextmanager
def _session(settings: MqttSettings, timeout_s: float) -> Iterator[_Session]:
    if timeout_s <= 0:
        raise EdgeAgentError(f"timeout must be positive, not {timeout_s:g} s")
    with _Session(settings, time.monotonic() + timeout_s) as session:
        yield session


# ---- the three operations -----------------------------------------------------------------------------


def publish_command(
    settings: MqttSettings, envelope: bytes, target: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> str:
    """Publishes the envelope (QoS 1, not retained) on `<prefix>/<target>/cmd/<command>` and waits for the
    broker's PUBACK; returns the command's nonce. `target` defaults to the one the command is signed for."""
    command = read_envelope(envelope)
    topic = command_topic(settings, _target_for(command, target), command.command)
    with _session(settings, timeout_s) as session:
        session.publish(topic, envelope)
    return command.nonce


def collect_results(
    settings: MqttSettings,
    nonces: str | Collection[str],
    expect: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """Subscribes to `<prefix>/+/cmd/result` and returns the result payloads carrying one of `nonces`
    (the first per device and nonce) that arrive until `expect` of them did, or the time is up. Results
    are not retained: only answers sent after the subscription are seen (`send` subscribes first)."""
    wanted = {nonces} if isinstance(nonces, str) else set(nonces)

    def matching(arrivals: list[_Arrival]) -> list[dict[str, Any]]:
        first: dict[tuple[str, str], dict[str, Any]] = {}
        for arrival in arrivals:
            nonce = arrival.message.nonce
            if nonce is not None and nonce in wanted:
                first.setdefault((arrival.message.device_id, nonce), arrival.payload)
        return list(first.values())

    with _session(settings, timeout_s) as session:
        session.subscribe(results_filter(settings))
        arrivals = session.wait(lambda arrivals: expect is not None and len(matching(arrivals)) >= expect)
    return matching(arrivals)


def send(
    settings: MqttSettings,
    envelope: bytes,
    target: str | None = None,
    expect: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Collected:
    """Subscribes to the results, publishes the command, and waits until `expect` distinct devices
    answered it or `timeout_s` (from connecting) passed. Without `expect`, a command for one device expects
    that one, and a command for all waits the whole time."""
    command = read_envelope(envelope)
    topic = command_topic(settings, _target_for(command, target), command.command)
    if expect is None and command.target != ALL_DEVICES:
        expect = 1
    if expect is not None and expect < 1:
        raise EdgeAgentError(f"expect must be at least 1, not {expect}")
    started = time.monotonic()
    with _session(settings, timeout_s) as session:
        session.subscribe(results_filter(settings))
        published_at = time.monotonic()
        session.publish(topic, envelope)
        arrivals = session.wait(
            lambda arrivals: expect is not None and len(_answers(arrivals, command, published_at)) >= expect
        )
        ended = time.monotonic()
    results = _answers(arrivals, command, published_at)
    last_at = published_at + results[-1].after_s if results else None
    complete = len(results) >= (expect or 1)
    return Collected(
        nonce=command.nonce,
        command=command.command,
        target=command.target,
        expected=expect,
        results=tuple(results),
        elapsed_s=(last_at if complete and last_at is not None else ended) - started,
        last_at=last_at,
    )

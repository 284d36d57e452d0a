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

import json
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from edge_agent import bounded
from edge_agent.bounded import InputRefusedError
from edge_agent.errors import EdgeAgentError
from edge_agent.events.schema import CommandResultMessage
from edge_agent.events.session import MqttSession
from edge_agent.events.settings import MqttSettings
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


# ---- the answers as they arrive ------------------------------------------------------------------------


class _Arrivals:
    """Every valid command result a session receives, in arrival order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals: list[_Arrival] = []

    def add(self, message: mqtt.MQTTMessage) -> None:
        at = time.monotonic()
        data = bytes(message.payload)
        try:
            parsed = CommandResultMessage.model_validate_json(data)
            payload = json.loads(data)
        except (ValidationError, ValueError):
            return  # not a valid command result: nothing to report on
        with self._lock:
            self._arrivals.append(_Arrival(at, parsed, payload))

    def now(self) -> list[_Arrival]:
        with self._lock:
            return list(self._arrivals)


def _session(settings: MqttSettings, timeout_s: float, arrivals: _Arrivals | None = None) -> MqttSession:
    return MqttSession(
        settings,
        "edge-agent-central",  # never a device's id
        timeout_s,
        on_message=None if arrivals is None else arrivals.add,
    )


# ---- the three operations -----------------------------------------------------------------------------


def publish_command(
    settings: MqttSettings, envelope: bytes, target: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> str:
    """Publishes the envelope (QoS 1, not retained) on `<prefix>/<target>/cmd/<command>` and waits for the
    broker's PUBACK; returns the command's nonce. `target` defaults to the one the command is signed for."""
    command = read_envelope(envelope)
    topic = command_topic(settings, _target_for(command, target), command.command)
    with _session(settings, timeout_s) as session:
        session.publish(topic, envelope, what=f"the command on {topic}")
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

    arrivals = _Arrivals()
    with _session(settings, timeout_s, arrivals) as session:
        session.subscribe(results_filter(settings))
        session.wait(lambda: expect is not None and len(matching(arrivals.now())) >= expect)
        seen = arrivals.now()
    return matching(seen)


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
    arrivals = _Arrivals()
    with _session(settings, timeout_s, arrivals) as session:
        session.subscribe(results_filter(settings))
        published_at = time.monotonic()
        session.publish(topic, envelope, what=f"the command on {topic}")
        session.wait(
            lambda: expect is not None and len(_answers(arrivals.now(), command, published_at)) >= expect
        )
        seen = arrivals.now()
        ended = time.monotonic()
    results = _answers(seen, command, published_at)
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

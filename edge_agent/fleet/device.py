"""The device side of fleet commands: check, run, audit, answer.

`CommandProcessor.handle(received)` opens the envelope (trusted key, this device, current), refuses a nonce
it has seen, runs the command against the watchlist, and returns the result to publish on `cmd/result`.
A command that passed every check gets an audit row in the watchlist's hash chain together with its nonce
(one transaction), whether it then ran or failed, so a replay is refused even after a restart. A command
refused before that (malformed, unsigned, untrusted, tampered, stale, replayed, too large) goes to the
bounded refusal store instead, within the refusal limit (`edge_agent.fleet.inbox`): whoever can publish can
send those, so they must not be able to grow the chain or the disk. It runs on the inference worker's
thread, between frames, because the watchlist and the vote belong to that thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from edge_agent import bounded
from edge_agent.bounded import InputRefusedError
from edge_agent.errors import EdgeAgentError
from edge_agent.events.publisher import Publisher
from edge_agent.events.schema import CommandResultMessage
from edge_agent.events.store import EventStore
from edge_agent.fleet.command import Command, CommandRefusedError, max_envelope, open_command
from edge_agent.fleet.inbox import Received, RefusalLimiter
from edge_agent.fleet.state import FleetState
from edge_agent.signed import parse_public_key, short
from edge_agent.vision.settings import CALIBRATED_FMRS, CALIBRATED_FMRS_TEXT
from edge_agent.watchlist.store import Watchlist
from edge_agent.watchlist.transfer import import_bundle, open_bundle

EXCLUSION_DAYS = 365  # how long a reviewer's false-match verdict keeps that face from that subject
# Refusals answered and stored: a burst of 30, then one every 2 s (1,800 a day at most in the store's
# ring, which keeps the newest REFUSALS_KEPT anyway); the rest are only counted.
REFUSAL_BURST = 30
REFUSAL_RATE_PER_S = 0.5


@dataclass
class CommandResult:
    accepted: bool
    reason: str  # "ok" or the refusal reason
    message: str
    command: str | None = None
    nonce: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_message(self, device_id: str, at: datetime) -> CommandResultMessage:
        return CommandResultMessage(
            device_id=device_id,
            at=at,
            accepted=self.accepted,
            reason=self.reason,
            message=self.message,
            command=self.command,
            nonce=self.nonce,
            details=self.details,
        )


class DeviceControl(Protocol):
    """What commands act on in the running agent (the live pipeline, `edge_agent.engine.live`): the live
    watchlist, the decision threshold (by target false-match rate) and the device's status."""

    @property
    def watchlist(self) -> Watchlist: ...

    def set_target_fmr(self, target: float, /) -> float: ...

    def status(self) -> dict[str, Any]: ...


class CommandProcessor:
    def __init__(
        self,
        device_id: str,
        control: DeviceControl,
        store: EventStore,
        configured_keys: Collection[str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        limiter: RefusalLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device_id = device_id
        self.control = control
        self.store = store
        self.configured_keys = [key.strip().lower() for key in configured_keys]
        self.clock = clock
        self.limiter = limiter or RefusalLimiter(REFUSAL_BURST, REFUSAL_RATE_PER_S)
        self.monotonic = monotonic
        self.store_errors = 0
        self.last_store_error: str | None = None
        self._handlers: dict[str, Callable[[Command, Watchlist], dict[str, Any]]] = {
            "apply_bundle": self._apply_bundle,
            "remove_subject": self._remove_subject,
            "set_target_fmr": self._set_target_fmr,
            "request_status": self._request_status,
            "rotate_keys": self._rotate_keys,
            "review": self._review,
        }

    def trusted_keys(self) -> list[str]:
        return FleetState(self.control.watchlist).trusted_keys(self.configured_keys)

    def handle(self, received: Received) -> CommandResult | None:
        """The answer to one received command, or None for a refusal past the refusal limit (counted only).
        Nothing a message holds can raise out of here: an unexpected failure is a refusal too."""
        envelope_hash = received.sha256
        try:
            return self._handle(received, envelope_hash)
        except Exception as exc:  # the agent must outlive any message; this is a bug worth a line
            why = f"command could not be handled ({type(exc).__name__}: {short(str(exc))})"
            return self._refused(CommandRefusedError(why, "failed"), envelope_hash)

    def _handle(self, received: Received, envelope_hash: str) -> CommandResult | None:
        if received.oversize:
            limit = max_envelope(received.command)
            topic = short(received.topic)
            why = f"command on {topic} is {received.size:,} bytes, over the limit of {limit:,}"
            return self._refused(CommandRefusedError(why, "too_large"), envelope_hash)
        data = received.payload
        watchlist = self.control.watchlist
        state = FleetState(watchlist)
        try:
            command = open_command(
                data, trusted_keys=self.trusted_keys(), device_id=self.device_id, now=self.clock()
            )
        except CommandRefusedError as exc:
            return self._refused(exc, envelope_hash)
        if state.command_seen(command.nonce):
            replayed = CommandRefusedError("command already received (nonce seen)", "replayed")
            return self._refused(replayed, envelope_hash, command)
        try:
            details = self._handlers[command.command](command, watchlist)
        except (CommandRefusedError, EdgeAgentError) as exc:
            reason = exc.reason if isinstance(exc, CommandRefusedError) else "failed"
            state.record_command(command, reason, {"envelope_sha256": envelope_hash, "why": str(exc)})
            return CommandResult(
                False, reason, str(exc), command.command, command.nonce, {"envelope_sha256": envelope_hash}
            )
        state.record_command(command, "ok", {"envelope_sha256": envelope_hash, **_auditable(details)})
        answer = {**details, "envelope_sha256": envelope_hash}
        return CommandResult(True, "ok", f"{command.command} done", command.command, command.nonce, answer)

    def _refused(
        self, refusal: CommandRefusedError, envelope_hash: str, command: Command | None = None
    ) -> CommandResult | None:
        """A command refused before it could run: kept in the bounded refusal store and answered while
        within the refusal limit, else only counted. Nothing here enters the audit chain: anyone can send
        these, so they must not be able to grow it (a verified command that failed to run is audited)."""
        if not self.limiter.allow(refusal.reason, self.monotonic()):
            return None
        try:
            FleetState(self.control.watchlist).record_refusal(refusal.reason, envelope_hash, str(refusal))
        except sqlite3.Error as exc:  # a full disk must not turn a refusal into a crash
            self.store_errors += 1
            self.last_store_error = f"refusal store: {exc}"
        return CommandResult(
            False,
            refusal.reason,
            str(refusal),
            command.command if command is not None else refusal.command,
            command.nonce if command is not None else refusal.nonce,
            {"envelope_sha256": envelope_hash},
        )

    def flush_suppressed(self, inbox_dropped: int = 0) -> Counter[str]:
        """Store the counts of refusals held back by the limit (by reason) and of messages the full inbox
        dropped (reason `inbox_full`); returns them for the log."""
        suppressed = self.limiter.take_suppressed()
        if inbox_dropped:
            suppressed["inbox_full"] += inbox_dropped
        if suppressed:
            try:
                FleetState(self.control.watchlist).count_refusals(suppressed)
            except sqlite3.Error as exc:
                self.store_errors += 1
                self.last_store_error = f"refusal store: {exc}"
        return suppressed

    # ---- commands --------------------------------------------------------------------------------

    def _apply_bundle(self, command: Command, watchlist: Watchlist) -> dict[str, Any]:
        """args: bundle (base64 of a signed bundle file), mode "delta" (default: add its new subjects,
        then remove the ids in `remove`) or "full" (the bundle is the whole list: also retire every
        active subject it does not name)."""
        args = command.args
        mode = args.get("mode", "delta")
        if mode not in ("delta", "full"):
            raise CommandRefusedError(
                f"apply_bundle mode must be delta or full, not {short(str(mode))!r}", "invalid_args"
            )
        bundle = args.get("bundle")
        if not isinstance(bundle, str):
            raise CommandRefusedError("apply_bundle needs 'bundle': a base64 signed bundle", "invalid_args")
        try:
            data = bounded.b64decode(bundle, bounded.MAX_BUNDLE_ENVELOPE, "apply_bundle 'bundle'")
        except InputRefusedError as exc:
            raise CommandRefusedError(str(exc), "invalid_args") from None
        removals = _text_list(args.get("remove", []), "remove")
        actor = f"fleet:{command.signer[:16]}"
        added = import_bundle(watchlist, data, self.trusted_keys(), actor, skip_present=True)
        if mode == "full":
            named = {s.id for s in open_bundle(watchlist, data, self.trusted_keys()).subjects}
            removals += [s.id for s in watchlist.subjects() if s.id not in named]
        unique = dict.fromkeys(removals)
        active = [subject_id for subject_id in unique if watchlist.subject(subject_id).status == "active"]
        removed = [s.id for s in watchlist.remove_many(active, actor, f"fleet command {command.nonce}")]
        return {"mode": mode, "added": [s.id for s in added], "removed": removed}

    def _remove_subject(self, command: Command, watchlist: Watchlist) -> dict[str, Any]:
        subject_id = _text(command.args, "subject_id")
        why = str(command.args.get("why", "fleet command"))
        watchlist.remove(subject_id, f"fleet:{command.signer[:16]}", why)
        return {"removed": [subject_id]}

    def _set_target_fmr(self, command: Command, watchlist: Watchlist) -> dict[str, Any]:
        value = command.args.get("target_fmr")
        if not isinstance(value, int | float) or not any(abs(value - f) <= 1e-12 for f in CALIBRATED_FMRS):
            raise CommandRefusedError(
                f"target_fmr must be one of the calibrated rates {CALIBRATED_FMRS_TEXT}", "invalid_args"
            )
        threshold = self.control.set_target_fmr(float(value))
        FleetState(watchlist).set_setting("target_fmr", repr(float(value)))
        return {"target_fmr": float(value), "threshold": threshold}

    def _request_status(self, command: Command, watchlist: Watchlist) -> dict[str, Any]:
        return self.control.status()

    def _rotate_keys(self, command: Command, watchlist: Watchlist) -> dict[str, Any]:
        """args: add, remove (lists of 64-hex public keys). A rotation that would leave no trusted key
        is refused: the device would be locked out of its fleet."""
        add = [key.lower() for key in _text_list(command.args.get("add", []), "add")]
        remove = [key.lower() for key in _text_list(command.args.get("remove", []), "remove")]
        for key in add + remove:
            try:
                parse_public_key(key)
            except EdgeAgentError as exc:
                raise CommandRefusedError(f"rotate_keys: {exc}", "invalid_args") from None
        after = (set(self.trusted_keys()) | set(add)) - set(remove)
        if not after:
            raise CommandRefusedError("rotate_keys would leave no trusted key", "invalid_args")
        FleetState(watchlist).rotate_keys(add, remove, f"fleet:{command.signer[:16]}")
        return {"trusted_keys": sorted(after)}

    def _review(self, command: Command, watchlist: Watchlist) -> dict[str, Any]:
        """args: event_id, verdict confirmed | false_match. A false match turns the event's stored
        embeddings (each of the track's agreeing shots, so the look-alike's other views too) into an
        exclusion of that subject (expiring, audited)."""
        event_id = _text(command.args, "event_id")
        verdict = _text(command.args, "verdict")
        if verdict not in ("confirmed", "false_match"):
            raise CommandRefusedError("verdict must be confirmed or false_match", "invalid_args")
        kept = self.store.review(event_id)
        if kept is None:
            raise CommandRefusedError(
                f"no kept match event {short(event_id)} (past the review window?)", "failed"
            )
        payload, embeddings = kept  # every embedding of the track that voted for the match
        subject_id = _subject_of(payload)
        if verdict == "confirmed":
            return {"event_id": event_id, "verdict": verdict, "subject_id": subject_id}
        expires = self.clock() + timedelta(days=EXCLUSION_DAYS)
        stack = embeddings.reshape(-1, watchlist.index.dimensions)
        watchlist.add_exclusion(subject_id, event_id, stack, f"fleet:{command.signer[:16]}", expires)
        return {
            "embeddings_excluded": len(stack),
            "event_id": event_id,
            "verdict": verdict,
            "subject_id": subject_id,
            "exclusion_expires": expires.isoformat(),
        }


def _text(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise CommandRefusedError(f"missing argument {name!r}", "invalid_args")
    return value


def _text_list(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CommandRefusedError(f"argument {name!r} must be a list of text", "invalid_args")
    return list(value)


def _subject_of(payload: bytes) -> str:
    return str(json.loads(payload)["subject_id"])


def _auditable(details: Mapping[str, Any]) -> dict[str, Any]:
    """What of a result goes into the audit row (ids and settings; status snapshots are left out)."""
    return {key: value for key, value in details.items() if key != "status"}


def answer(processor: CommandProcessor, received: Received, publisher: Publisher) -> CommandResult | None:
    """Run one command and queue its answer on `cmd/result` in the durable outbox (the worker's side);
    None (and no answer) for a refusal past the refusal limit."""
    result = processor.handle(received)
    if result is None:
        return None
    message = result.as_message(processor.device_id, datetime.now(UTC))
    try:
        processor.store.enqueue(str(uuid.uuid4()), publisher.topics.cmd_result, message.to_json())
    except (sqlite3.Error, EdgeAgentError) as exc:  # the event store cannot be written (a full disk)
        processor.store_errors += 1
        processor.last_store_error = f"answer not queued: {exc}"
        result.message += f" (its answer could not be stored: {exc})"
        return result
    publisher.wake()
    return result

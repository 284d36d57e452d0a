"""Signed fleet commands: the envelope of `edge_agent.signed` around a small JSON payload.

Payload (canonical JSON)::

    {"command": "remove_subject", "args": {...}, "target": "<device_id>" | "all",
     "issued_at": "<UTC ISO-8601>", "expires_at": "<UTC ISO-8601>", "nonce": "<32 hex>"}

A device acts on a command only if a key it trusts signed it, it names this device (or all), it is
current (issued_at not in the future beyond the allowed clock skew, expires_at not passed, lifetime at
most MAX_LIFETIME) and its nonce was never seen (the caller's replay store). Every refusal is a
`CommandRefusedError` with a short machine-readable `reason` and one line for people.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import bounded, signed
from edge_agent.bounded import InputRefusedError
from edge_agent.errors import EdgeAgentError
from edge_agent.signed import canonical, short

COMMAND_FORMAT = "edge-agent-command"
COMMAND_VERSION = 1
COMMANDS = frozenset(
    {"apply_bundle", "remove_subject", "set_target_fmr", "request_status", "rotate_keys", "review"}
)
ALL_DEVICES = "all"
MAX_LIFETIME = timedelta(days=7)
CLOCK_SKEW = timedelta(minutes=5)
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_PAYLOAD_LIMITS = bounded.JsonLimits(bounded.MAX_BUNDLE_COMMAND_PAYLOAD)


class CommandRefusedError(EdgeAgentError):
    """A command the device will not run; `reason` is one of: malformed, unsigned, untrusted_key,
    bad_signature, not_for_this_device, not_yet_valid, expired, replayed, unknown_command, invalid_args,
    too_large, failed."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason
        # set once the signature verified (a trusted key sent it), so the answer can name what it
        # refuses: a central side waiting on that nonce learns why (a device clock off, say)
        self.command: str | None = None
        self.nonce: str | None = None


class _EnvelopeRefusedError(CommandRefusedError):
    """What `edge_agent.signed` raises for a command envelope; `reason` is read from its message."""

    def __init__(self, message: str) -> None:
        super().__init__(message, _envelope_reason(message))


COMMAND = signed.Kind(
    COMMAND_FORMAT,
    COMMAND_VERSION,
    "signed command",
    "command",
    _EnvelopeRefusedError,
    bounded.MAX_BUNDLE_COMMAND_PAYLOAD,  # apply_bundle's; the others are held to MAX_COMMAND_PAYLOAD
)
BUNDLE_COMMAND = "apply_bundle"


def max_payload(command: str) -> int:
    """The largest payload a command may have: only apply_bundle carries a bundle."""
    return bounded.MAX_BUNDLE_COMMAND_PAYLOAD if command == BUNDLE_COMMAND else bounded.MAX_COMMAND_PAYLOAD


def max_envelope(command: str) -> int:
    """The largest envelope of a command, for a size check before anything is parsed."""
    return bounded.base64_length(max_payload(command)) + bounded.ENVELOPE_OVERHEAD


def _envelope_reason(message: str) -> str:
    if "unsigned" in message:
        return "unsigned"
    if "untrusted key" in message:
        return "untrusted_key"
    if "signature" in message or "signer is" in message:
        return "bad_signature"
    return "malformed"


@dataclass(frozen=True)
class Command:
    command: str
    args: Mapping[str, Any]
    target: str
    issued_at: datetime
    expires_at: datetime
    nonce: str
    signer: str = ""
    raw: bytes = field(default=b"", repr=False)  # the envelope as received (for the audit's hash)


def sign_command(
    private_key: Ed25519PrivateKey,
    command: str,
    args: Mapping[str, Any] | None = None,
    *,
    target: str = ALL_DEVICES,
    now: datetime | None = None,
    lifetime: timedelta = timedelta(minutes=15),
    nonce: str | None = None,
) -> bytes:
    """A signed command envelope, ready to publish. `nonce`: one chosen before (`new_nonce`), for a
    command whose answer is awaited under it before it is signed; a fresh one by default."""
    if command not in COMMANDS:
        raise CommandRefusedError(f"unknown command {short(command)!r}", "unknown_command")
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        message = f"a command lives more than 0 s and at most {MAX_LIFETIME.days} days, not {lifetime}"
        raise CommandRefusedError(message, "invalid_args")
    issued = (now or datetime.now(UTC)).astimezone(UTC)
    payload = {
        "command": command,
        "args": dict(args or {}),
        "target": target,
        "issued_at": issued.isoformat(),
        "expires_at": (issued + lifetime).isoformat(),
        "nonce": nonce or new_nonce(),
    }
    return signed.seal(COMMAND, canonical(payload).encode(), private_key)


def new_nonce() -> str:
    return secrets.token_hex(16)


def open_command(data: bytes, *, trusted_keys: Collection[str], device_id: str, now: datetime) -> Command:
    """The command in `data` if a trusted key signed it, it is for this device and it is current.
    Replays are the caller's check (`nonce`), since only it keeps the seen nonces."""
    payload, signer = signed.unseal(COMMAND, data, trusted_keys)
    fields = _payload_fields(payload)
    try:
        return _signed_command(fields, payload, signer, data, device_id, now)
    except CommandRefusedError as exc:
        named, nonce = fields.get("command"), fields.get("nonce")
        exc.command = named if isinstance(named, str) and named in COMMANDS else None
        exc.nonce = nonce if isinstance(nonce, str) and _NONCE.match(nonce) else None
        raise


def _signed_command(
    fields: dict[str, Any], payload: bytes, signer: str, data: bytes, device_id: str, now: datetime
) -> Command:
    """The checks of `open_command` after the signature verified."""
    command = _text(fields, "command")
    if command not in COMMANDS:
        raise CommandRefusedError(f"unknown command {short(command)!r}", "unknown_command")
    if len(payload) > max_payload(command):
        raise CommandRefusedError(
            f"{command} payload is {len(payload):,} bytes, over the limit of {max_payload(command):,}"
        )
    args = fields.get("args", {})
    if not isinstance(args, dict):
        raise CommandRefusedError("command 'args' is not an object")
    target = _text(fields, "target")
    if target not in (device_id, ALL_DEVICES):
        raise CommandRefusedError(
            f"command is for {short(target)!r}, this is {device_id!r}", "not_for_this_device"
        )
    issued_at, expires_at = _time(fields, "issued_at"), _time(fields, "expires_at")
    if not issued_at < expires_at <= issued_at + MAX_LIFETIME:
        raise CommandRefusedError("command lifetime is not between 0 and 7 days")
    if issued_at > now + CLOCK_SKEW:
        raise CommandRefusedError(f"command issued in the future ({issued_at.isoformat()})", "not_yet_valid")
    if expires_at <= now:
        raise CommandRefusedError(f"command expired at {expires_at.isoformat()}", "expired")
    nonce = _text(fields, "nonce")
    if not _NONCE.match(nonce):
        raise CommandRefusedError("command nonce is not 32 hex digits")
    return Command(command, args, target, issued_at, expires_at, nonce, signer, data)


def _payload_fields(payload: bytes) -> dict[str, Any]:
    try:
        fields = bounded.load_json(payload, _PAYLOAD_LIMITS, "command payload")
    except InputRefusedError as exc:
        raise CommandRefusedError(str(exc)) from None
    if not isinstance(fields, dict):
        raise CommandRefusedError("command payload is not a JSON object")
    return fields


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise CommandRefusedError(f"command has no {name!r}")
    return value


def _time(fields: Mapping[str, Any], name: str) -> datetime:
    text = _text(fields, name)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandRefusedError(f"command {name!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise CommandRefusedError(f"command {name!r} has no time zone")
    return moment.astimezone(UTC)

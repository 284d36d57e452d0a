"""Signed fleet commands: what a device accepts, and each way it refuses."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import signed
from edge_agent.fleet.command import COMMAND, CommandRefusedError, open_command, sign_command
from edge_agent.signed import canonical, public_key_hex

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def refused(
    data: bytes, trusted: list[str], device: str = "cam-a", now: datetime = NOW
) -> CommandRefusedError:
    with pytest.raises(CommandRefusedError) as caught:
        open_command(data, trusted_keys=trusted, device_id=device, now=now)
    return caught.value


def test_a_signed_command_for_this_device_opens(key: Ed25519PrivateKey) -> None:
    data = sign_command(key, "remove_subject", {"subject_id": "s-1"}, target="cam-a", now=NOW)
    command = open_command(data, trusted_keys=[public_key_hex(key)], device_id="cam-a", now=NOW)
    assert (command.command, dict(command.args), command.signer) == (
        "remove_subject",
        {"subject_id": "s-1"},
        public_key_hex(key),
    )
    assert len(command.nonce) == 32
    fleet_wide = sign_command(key, "request_status", now=NOW)
    assert (
        open_command(fleet_wide, trusted_keys=[public_key_hex(key)], device_id="cam-b", now=NOW).target
        == "all"
    )


def test_refusals_name_their_reason(key: Ed25519PrivateKey) -> None:
    trusted = [public_key_hex(key)]
    good = sign_command(key, "request_status", target="cam-a", now=NOW)
    envelope = json.loads(good)
    payload = json.loads(base64.b64decode(envelope["payload"]))

    stranger = sign_command(Ed25519PrivateKey.generate(), "request_status", now=NOW)
    assert refused(stranger, trusted).reason == "untrusted_key"

    tampered = dict(
        envelope, payload=base64.b64encode(canonical({**payload, "target": "all"}).encode()).decode()
    )
    assert refused(json.dumps(tampered).encode(), trusted).reason == "bad_signature"

    unsigned = {k: v for k, v in envelope.items() if k != "signature"}
    assert refused(json.dumps(unsigned).encode(), trusted).reason == "unsigned"
    assert refused(b"{not json", trusted).reason == "malformed"
    assert refused(good, trusted, device="cam-b").reason == "not_for_this_device"
    assert refused(good, trusted, now=NOW + timedelta(hours=1)).reason == "expired"
    assert refused(good, trusted, now=NOW - timedelta(hours=1)).reason == "not_yet_valid"
    assert refused(good, []).reason == "untrusted_key"
    message = str(refused(stranger, trusted))
    assert "\n" not in message and "untrusted key" in message


def test_a_refusal_names_the_nonce_only_of_a_command_whose_signature_verified(key: Ed25519PrivateKey) -> None:
    """So the central side waiting on it learns why (a device clock off, say); anyone could write the
    nonce of an unsigned one."""
    trusted = [public_key_hex(key)]
    late = sign_command(
        key, "review", {"event_id": "e", "verdict": "confirmed"}, target="cam-a", now=NOW, nonce="a" * 32
    )
    expired = refused(late, trusted, now=NOW + timedelta(days=1))
    assert (expired.reason, expired.command, expired.nonce) == ("expired", "review", "a" * 32)
    stranger = sign_command(
        Ed25519PrivateKey.generate(), "review", {"event_id": "e"}, target="cam-a", now=NOW
    )
    untrusted = refused(stranger, trusted)
    assert untrusted.reason == "untrusted_key" and untrusted.nonce is None and untrusted.command is None


def test_a_signed_command_whose_name_is_not_text_is_refused_without_naming_one(
    key: Ed25519PrivateKey,
) -> None:
    trusted = [public_key_hex(key)]
    good = json.loads(sign_command(key, "request_status", target="cam-a", now=NOW, nonce="b" * 32))
    payload = {**json.loads(base64.b64decode(good["payload"])), "command": ["request_status"]}
    data = signed.seal(COMMAND, canonical(payload).encode(), key)
    odd = refused(data, trusted)
    assert (odd.reason, odd.command, odd.nonce) == ("malformed", None, "b" * 32)

"""The audit anchor: the watchlist's chain head, signed by the device and published where it cannot be
taken back.

`audit verify` proves that each row links to the one before it, but a chain whose last rows were deleted
is still a valid chain. So the device signs its head (`<row id>:<hash>`, see `watchlist.audit.anchor`) with
its own Ed25519 key and puts it in its retained `status` message whenever the head moves (checked every
health period) and on every connect. Whoever records those anchors (the broker's retained copy, a central
subscriber, a reviewer) can later run `edge-agent watchlist audit verify --against ANCHOR`: a cut tail or
rewritten history no longer contains that row with that hash.

The device key is made on first use beside the watchlist (`device-key.pem`, mode 0600) and never leaves
the device; its public half travels in each anchor as the envelope's signer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import bounded, signed
from edge_agent.bounded import KIB
from edge_agent.errors import EdgeAgentError
from edge_agent.events.publisher import Publisher
from edge_agent.events.schema import SignedEnvelope
from edge_agent.watchlist import audit

ANCHOR_FORMAT = "edge-agent-audit-anchor"
ANCHOR = signed.Kind(ANCHOR_FORMAT, 1, "signed audit anchor", "anchor", EdgeAgentError, 4 * KIB)
KEY_NAME = "device-key.pem"


def device_key_path(watchlist_path: Path) -> Path:
    return watchlist_path.with_name(KEY_NAME)


def device_key(path: Path) -> Ed25519PrivateKey:
    """The device's signing key at `path`, made (0600) on first use."""
    if not path.exists():
        signed.generate_key(path)
    return signed.load_private_key(path)


def sealed_anchor(
    conn: sqlite3.Connection, key: Ed25519PrivateKey, device_id: str, now: datetime
) -> tuple[audit.Anchor, SignedEnvelope]:
    """The chain head now, and its signed envelope for the status message."""
    payload = audit.anchor_payload(conn, device_id=device_id, now=now)
    head = audit.Anchor.parse(str(payload["anchor"]))
    envelope = SignedEnvelope.model_validate_json(
        signed.seal(ANCHOR, signed.canonical(payload).encode(), key)
    )
    return head, envelope


def open_anchor(data: bytes, trusted_keys: Collection[str] | None = None) -> audit.Anchor:
    """The anchor in a signed envelope (as published), after its signature is checked: against
    `trusted_keys` when given, else only against the key it names (which proves integrity, not origin)."""
    payload, signer, signature = signed.open_envelope(ANCHOR, data)
    signed.check_signature(ANCHOR, payload, signer, signature, trusted_keys or [signer])
    return audit.Anchor.parse(payload.decode("utf-8", errors="replace"), "signed anchor")


class StatusAnchor:
    """Keeps the publisher's retained status carrying the current signed anchor (worker thread)."""

    def __init__(self, key: Ed25519PrivateKey | None, device_id: str) -> None:
        self.key = key
        self.device_id = device_id
        self.published: audit.Anchor | None = None

    def refresh(self, conn: sqlite3.Connection, publisher: Publisher, now: datetime) -> bool:
        """Re-signs and re-publishes the status if the chain head moved; True if it did."""
        if self.key is None:
            return False
        head, envelope = sealed_anchor(conn, self.key, self.device_id, now)
        if self.published is not None and head.text == self.published.text:
            return False
        online = publisher.online.model_copy(update={"audit_anchor": envelope, "at": now})
        offline = publisher.offline.model_copy(update={"audit_anchor": envelope})
        publisher.update_status(online, offline)
        self.published = head
        return True


def read_anchor(text: str, what: str) -> audit.Anchor:
    """An anchor as a person may have kept it: the `<row id>:<hash>` text, the anchor payload's JSON, the
    signed envelope, or a whole status message carrying one (what `mosquitto_sub` printed); a signed one
    is only read once its signature checks out against the key it names."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            document = bounded.load_json(stripped.encode(), bounded.JsonLimits(64 * KIB), what)
        except bounded.InputRefusedError as exc:
            raise EdgeAgentError(str(exc)) from None
        if isinstance(document, dict) and isinstance(document.get("audit_anchor"), dict):
            document = document["audit_anchor"]
        if isinstance(document, dict) and document.get("format") == ANCHOR_FORMAT:
            try:
                return open_anchor(signed.canonical(document).encode())
            except EdgeAgentError as exc:
                raise EdgeAgentError(f"{what}: {exc}") from None
    return audit.Anchor.parse(stripped, what)

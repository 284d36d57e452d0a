"""A reviewer's verdict on a match event: recorded, audited, signed and sent to the device that raised it.

A verdict is `confirmed` or `false_match`, with the reviewer's comment. In one transaction the event is
closed with the verdict and the nonce its `review` command will carry, and a row goes into the console's
hash-chained audit log with the reviewer's name; then the sender signs the command and publishes it
(`Ingest.send_waiting`). It is signed when sent, not here, so that a verdict that waits out a broker
outage longer than `console.command_lifetime_s` still reaches the device current. The
device answers on its `cmd/result`, and the answer is kept with the event (`received`). A false match
turns the event's kept embeddings into an exclusion on the device, so that look-alike is not matched to
that subject again (edge_agent.fleet.device, `review`).

The signing key is read on the server from `console.command_key`; no page or answer ever carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.console.database import ConsoleDatabase
from edge_agent.errors import EdgeAgentError
from edge_agent.events.database import db_time
from edge_agent.fleet.command import new_nonce, sign_command
from edge_agent.signed import load_private_key, public_key_hex
from edge_agent.watchlist import audit

VERDICTS = ("confirmed", "false_match")
MAX_COMMENT = 2000


class ReviewError(EdgeAgentError):
    """A verdict that cannot be taken; one line saying why."""


@dataclass(frozen=True)
class Verdict:
    event_id: str
    verdict: str
    reviewer: str
    comment: str
    nonce: str | None  # the review command's; None when no key signs commands here


class CommandSigner:
    """The console's command key, loaded once on the server."""

    def __init__(self, path: Path, lifetime: timedelta) -> None:
        self.key: Ed25519PrivateKey = load_private_key(path)
        self.public_key = public_key_hex(self.key)
        self.lifetime = lifetime

    def sign(
        self, command: str, args: dict[str, str], target: str, now: datetime, nonce: str | None = None
    ) -> bytes:
        """A signed command, valid from `now` (when it is sent) for `console.command_lifetime_s`."""
        return sign_command(
            self.key, command, args, target=target, now=now, lifetime=self.lifetime, nonce=nonce
        )

    def review(self, device_id: str, event_id: str, verdict: str, nonce: str, now: datetime) -> bytes:
        return self.sign("review", {"event_id": event_id, "verdict": verdict}, device_id, now, nonce)


def review(
    db: ConsoleDatabase,
    signer: CommandSigner | None,
    event_id: str,
    verdict: str,
    reviewer: str,
    comment: str,
    now: datetime,
) -> Verdict:
    """Records the verdict and its command's nonce (not signed or sent yet: the caller wakes the sender)."""
    if verdict not in VERDICTS:
        raise ReviewError(f"a verdict is {' or '.join(VERDICTS)}, not {verdict!r}")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        raise ReviewError(f"a comment has at most {MAX_COMMENT} characters")
    if verdict == "false_match" and signer is None:
        raise ReviewError(
            "console.command_key is not set: the device cannot be told of a wrong match, so none is recorded"
        )
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT device_id, subject_id, state, reviewed_by FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is None:
            raise ReviewError(f"no match event {event_id}")
        if row["state"] != "open":
            raise ReviewError(f"this match was already reviewed by {row['reviewed_by']} ({row['state']})")
        nonce = None if signer is None else new_nonce()
        conn.execute(
            "UPDATE events SET state = ?, reviewed_by = ?, reviewed_at = ?, comment = ?, "
            "command_nonce = ? WHERE event_id = ?",
            (verdict, reviewer, db_time(now), comment, nonce, event_id),
        )
        audit.append(
            conn,
            actor=reviewer,
            action="review",
            subject_id=str(row["subject_id"]),
            details={
                "event_id": event_id,
                "device_id": str(row["device_id"]),
                "verdict": verdict,
                "comment": comment,
                "command_nonce": nonce,
            },
            at=now,
        )
    return Verdict(event_id, verdict, reviewer, comment, nonce)

"""What fleet commands leave in the watchlist database: seen nonces (replay protection), keys added or
retired by `rotate_keys`, settings set by command, and an audit row for every command, accepted or not.

A command's nonce and its audit row are written in one transaction, so a command is either recorded as
run (and can never run again) or not recorded at all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from edge_agent.fleet.command import Command
from edge_agent.watchlist import audit
from edge_agent.watchlist.records import utc_text
from edge_agent.watchlist.store import Watchlist


class FleetState:
    def __init__(self, watchlist: Watchlist) -> None:
        self.watchlist = watchlist
        self.conn = watchlist.conn

    def command_seen(self, nonce: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM command_nonces WHERE nonce = ?", (nonce,)).fetchone() is not None
        )

    def record_command(self, command: Command | None, reason: str, details: Mapping[str, Any]) -> None:
        """The audit row (`command` when reason is "ok", else `command_rejected`), and the nonce of a
        command whose signature checked out, in one transaction."""
        now = self.watchlist.clock()
        with self.watchlist.transaction():
            if command is not None:
                self.conn.execute(
                    "INSERT OR IGNORE INTO command_nonces (nonce, command, signer, expires_at) "
                    "VALUES (?, ?, ?, ?)",
                    (command.nonce, command.command, command.signer, utc_text(command.expires_at)),
                )
            audit.append(
                self.conn,
                actor=f"fleet:{command.signer[:16]}" if command is not None else "fleet:unverified",
                action="command" if reason == "ok" else "command_rejected",
                subject_id=None,
                details={
                    "command": command.command if command is not None else None,
                    "nonce": command.nonce if command is not None else None,
                    "reason": reason,
                    **details,
                },
                at=now,
            )

    def forget_expired_nonces(self) -> int:
        """Nonces of expired commands can go: an expired command is refused before its nonce is looked at."""
        now = utc_text(self.watchlist.clock())
        with self.watchlist.transaction():
            return int(self.conn.execute("DELETE FROM command_nonces WHERE expires_at < ?", (now,)).rowcount)

    def trusted_keys(self, configured: Collection[str]) -> list[str]:
        """The configured keys, plus those added by command, minus those retired by command."""
        keys = {key.strip().lower() for key in configured}
        for row in self.conn.execute("SELECT public_key, state FROM command_keys"):
            if row["state"] == "added":
                keys.add(row["public_key"])
            else:
                keys.discard(row["public_key"])
        return sorted(keys)

    def rotate_keys(self, add: Collection[str], remove: Collection[str], actor: str) -> None:
        now = utc_text(self.watchlist.clock())
        with self.watchlist.transaction():
            for key, state in [*((k, "added") for k in add), *((k, "retired") for k in remove)]:
                self.conn.execute(
                    "INSERT INTO command_keys (public_key, state, changed_at, changed_by) "
                    "VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (public_key) DO UPDATE SET state = excluded.state, "
                    "changed_at = excluded.changed_at, changed_by = excluded.changed_by",
                    (key, state, now, actor),
                )

    def set_setting(self, name: str, value: str) -> None:
        now = utc_text(self.watchlist.clock())
        with self.watchlist.transaction():
            self.conn.execute(
                "INSERT INTO fleet_settings (name, value, set_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_at = excluded.set_at",
                (name, value, now),
            )

    def setting(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM fleet_settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row["value"])

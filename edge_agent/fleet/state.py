"""What fleet commands leave in the watchlist database: seen nonces (replay protection), keys added or
retired by `rotate_keys`, settings set by command, an audit row for every verified command (run or failed),
and the bounded refusal store for everything refused before that.

A command's nonce and its audit row are written in one transaction, so a command is either recorded as
run (and can never run again) or not recorded at all.

The refusal store cannot grow without bound: `command_refusals` keeps the newest REFUSALS_KEPT refusals
(older rows are deleted; how many is the highest id minus the rows left), and `command_refusal_counts`
counts every refusal by UTC day and reason, those past the refusal limit too, for COUNT_DAYS days.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any

from edge_agent.fleet.command import Command
from edge_agent.watchlist import audit
from edge_agent.watchlist.records import utc_text
from edge_agent.watchlist.store import Watchlist

REFUSALS_KEPT = 1000
COUNT_DAYS = 400


class FleetState:
    def __init__(self, watchlist: Watchlist) -> None:
        self.watchlist = watchlist
        self.conn = watchlist.conn

    def command_seen(self, nonce: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM command_nonces WHERE nonce = ?", (nonce,)).fetchone() is not None
        )

    def record_command(self, command: Command, reason: str, details: Mapping[str, Any]) -> None:
        """The audit row of a verified command (`command` when reason is "ok", else `command_rejected`:
        it passed every check but failed to run) and its nonce, in one transaction."""
        now = self.watchlist.clock()
        with self.watchlist.transaction():
            self.conn.execute(
                "INSERT OR IGNORE INTO command_nonces (nonce, command, signer, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (command.nonce, command.command, command.signer, utc_text(command.expires_at)),
            )
            audit.append(
                self.conn,
                actor=f"fleet:{command.signer[:16]}",
                action="command" if reason == "ok" else "command_rejected",
                subject_id=None,
                details={"command": command.command, "nonce": command.nonce, "reason": reason, **details},
                at=now,
            )

    def record_refusal(self, reason: str, envelope_sha256: str, why: str) -> None:
        """One refused command: a row in the ring of the newest REFUSALS_KEPT, and its day's count."""
        now = self.watchlist.clock()
        with self.watchlist.transaction():
            self.conn.execute(
                "INSERT INTO command_refusals (at, reason, envelope_sha256, why) VALUES (?, ?, ?, ?)",
                (utc_text(now), reason, envelope_sha256, why[:300]),
            )
            self.conn.execute(
                "DELETE FROM command_refusals WHERE id <= (SELECT MAX(id) FROM command_refusals) - ?",
                (REFUSALS_KEPT,),
            )
            self._count(now.date().isoformat(), {reason: 1})

    def count_refusals(self, counts: Mapping[str, int]) -> None:
        """Refusals past the refusal limit: counted by reason, nothing else kept."""
        with self.watchlist.transaction():
            self._count(self.watchlist.clock().date().isoformat(), counts)

    def _count(self, day: str, counts: Mapping[str, int]) -> None:
        for reason, count in counts.items():
            self.conn.execute(
                "INSERT INTO command_refusal_counts (day, reason, count) VALUES (?, ?, ?) "
                "ON CONFLICT (day, reason) DO UPDATE SET count = count + excluded.count",
                (day, reason, count),
            )

    def refusals(self) -> list[dict[str, Any]]:
        """The kept refusals, newest first."""
        rows = self.conn.execute(
            "SELECT id, at, reason, envelope_sha256, why FROM command_refusals ORDER BY id DESC"
        )
        return [dict(row) for row in rows]

    def refusal_counts(self, first_day: str | None = None, last_day: str | None = None) -> dict[str, int]:
        """Refusals by reason over the UTC days `first_day` to `last_day` (ISO dates, both included)."""
        rows = self.conn.execute(
            "SELECT reason, SUM(count) AS n FROM command_refusal_counts "
            "WHERE day >= ? AND day <= ? GROUP BY reason",
            (first_day or "0000-00-00", last_day or "9999-99-99"),
        )
        return {str(row["reason"]): int(row["n"]) for row in rows}

    def refusals_dropped(self) -> int:
        """Refusal rows deleted from the ring to keep it at REFUSALS_KEPT."""
        row = self.conn.execute("SELECT MAX(id) AS last, COUNT(*) AS kept FROM command_refusals").fetchone()
        return 0 if row["last"] is None else int(row["last"]) - int(row["kept"])

    def forget_expired_nonces(self) -> int:
        """Nonces of expired commands can go: an expired command is refused before its nonce is looked at."""
        clock = self.watchlist.clock()
        oldest_day = (clock - timedelta(days=COUNT_DAYS)).date().isoformat()
        with self.watchlist.transaction():
            self.conn.execute("DELETE FROM command_refusal_counts WHERE day < ?", (oldest_day,))
            deleted = self.conn.execute("DELETE FROM command_nonces WHERE expires_at < ?", (utc_text(clock),))
            return int(deleted.rowcount)

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

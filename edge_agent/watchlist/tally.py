"""The watchlist's part of a transparency report: its audit log's rows of a period, counted.

Counts only, nothing per person: subject ids and watchlist membership are read inside SQL counts, never
returned. `match` rows are joined with `subjects` for the watchlist name (a match whose subject row is
gone counts as "(unknown subject)"). The audit log is the permanent record (hash-chained,
append-only), so a report on a past period gives the same numbers whenever it is made. The database is
opened read only: making a report changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from edge_agent.errors import EdgeAgentError
from edge_agent.watchlist import audit


@dataclass(frozen=True)
class AuditTally:
    actions: dict[str, int]  # audit rows of the period per action ("enroll", "match", ...)
    matches_by_watchlist: dict[str, int]  # `match` rows of the period per watchlist name
    chain: audit.AuditCheck  # the whole log verified now
    head: str  # the chain's head hash


def audit_tally(path: Path, since: date, until: date) -> AuditTally:
    """The counts of the UTC days `since` to `until` (both included) in the watchlist at `path`."""
    with _read_only(path) as conn:
        actions, by_watchlist = _counts(conn, path, since, until)
        return AuditTally(actions, by_watchlist, audit.verify(conn), audit.head(conn))


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    if not path.is_file():
        raise EdgeAgentError(f"{path}: no watchlist database there")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise EdgeAgentError(f"{path}: cannot open the watchlist database ({exc})") from None
    with closing(conn):
        yield conn


def _counts(
    conn: sqlite3.Connection, path: Path, since: date, until: date
) -> tuple[dict[str, int], dict[str, int]]:
    """Audit rows of the period per action, and `match` rows per watchlist (counts only)."""
    period = (since.isoformat(), until.isoformat())
    in_period = "substr(a.at, 1, 10) BETWEEN ? AND ?"  # `at` is UTC ISO-8601 text: its date comes first
    try:
        actions = conn.execute(
            f"SELECT a.action, count(*) FROM audit a WHERE {in_period} GROUP BY a.action", period
        ).fetchall()
        matches = conn.execute(
            f"SELECT coalesce(s.watchlist, '(unknown subject)'), count(*) FROM audit a "
            f"LEFT JOIN subjects s ON s.id = a.subject_id WHERE a.action = 'match' AND {in_period} "
            f"GROUP BY 1 ORDER BY 1",
            period,
        ).fetchall()
    except sqlite3.Error as exc:
        raise EdgeAgentError(f"{path}: not a usable watchlist database ({exc})") from None
    return {str(a): int(n) for a, n in actions}, {str(w): int(n) for w, n in matches}

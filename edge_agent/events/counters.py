"""The aggregate counters of the event store: running totals (`counters`) and per UTC day (`counter_days`).

Without a match these are the only tables that change, and they hold nothing per person: the running
totals, whose rows for the pipeline's counters are created with the database (so counting never adds a
row there), and the same counts per UTC day, for transparency reports over a period (at most one row per
day and counter). A day's counts are those stored that day: the agent stores them every
`mqtt.health_interval_s` and at stop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from datetime import date

from edge_agent.errors import EdgeAgentError
from edge_agent.events.database import KNOWN_COUNTERS, open_database
from edge_agent.events.settings import EventSettings


def add(conn: sqlite3.Connection, deltas: Sequence[tuple[str, int]], day: date) -> None:
    """Adds (name, delta) pairs to the running totals and to `day`'s rows; a name outside
    `KNOWN_COUNTERS` gets its total row on its first update, and each day's row likewise."""
    conn.executemany(
        "INSERT INTO counters (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        deltas,
    )
    conn.executemany(
        "INSERT INTO counter_days (day, name, value) VALUES (?, ?, ?) "
        "ON CONFLICT (day, name) DO UPDATE SET value = value + excluded.value",
        [(day.isoformat(), name, delta) for name, delta in deltas],
    )


def totals(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT name, value FROM counters ORDER BY name").fetchall()
    return {str(name): int(value) for name, value in rows}


def between(conn: sqlite3.Connection, first: date, last: date) -> dict[str, int]:
    """The counters summed over the UTC days `first` to `last` (both included); the known ones
    (`KNOWN_COUNTERS`) are always there, 0 when nothing was counted."""
    rows = conn.execute(
        "SELECT name, sum(value) FROM counter_days WHERE day BETWEEN ? AND ? GROUP BY name",
        (first.isoformat(), last.isoformat()),
    ).fetchall()
    return {**dict.fromkeys(KNOWN_COUNTERS, 0), **{str(name): int(value) for name, value in rows}}


def first_day(conn: sqlite3.Connection) -> date | None:
    """The first UTC day with per-day counts (None before any): earlier counts belong to no day."""
    (first,) = conn.execute("SELECT min(day) FROM counter_days").fetchone()
    return None if first is None else date.fromisoformat(first)


def period_counts(settings: EventSettings, since: date, until: date) -> tuple[dict[str, int], date | None]:
    """For a transparency report: the counters summed over the UTC days `since` to `until`, and the first
    counted day. The store must exist (nothing is created by looking); it is upgraded to the current
    schema first, as the agent itself would."""
    path = settings.path
    if not path.is_file():
        raise EdgeAgentError(f"{path}: no event store there (events.path); has the agent run on this device?")
    with closing(open_database(path)) as conn:
        return between(conn, since, until), first_day(conn)

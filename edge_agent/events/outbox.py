"""The outbox table: messages to publish, in `seq` order, until the broker acknowledges them.

A message is on disk when its insert's transaction commits, and leaves the outbox only when the broker has
acknowledged it (`mark_sent`), so a power cut or a broker outage loses nothing that was committed. The
outbox is bounded by count and by age; past a bound the oldest unsent rows are dropped, and the total
dropped is kept on disk (`outbox_state`) so health reports it across restarts. A dropped row may be one
that MQTT was still waiting to see acknowledged; it then counts as dropped even if the broker got it.

These are the statements, on a connection inside the caller's transaction; `EventStore` decides when.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from edge_agent.errors import EdgeAgentError
from edge_agent.events.database import db_time

PendingRow = tuple[int, str, str, bytes, str]


@dataclass(frozen=True)
class OutboxMessage:
    seq: int  # strictly increasing: the send order
    message_id: str  # the event_id for match events (subscribers deduplicate by it)
    topic: str
    payload: bytes
    created_at: datetime  # UTC


def insert(conn: sqlite3.Connection, message_id: str, topic: str, payload: bytes, now: datetime) -> int:
    """Adds one message; returns its seq."""
    if not topic or not message_id:
        raise EdgeAgentError("an outbox message needs a topic and a message id")
    cursor = conn.execute(
        "INSERT INTO outbox (message_id, topic, payload, created_at) VALUES (?, ?, ?, ?)",
        (message_id, topic, bytes(payload), db_time(now)),
    )
    assert cursor.lastrowid is not None
    return int(cursor.lastrowid)


def mark_sent(conn: sqlite3.Connection, seq: int, now: datetime) -> None:
    """`seq` was acknowledged: it leaves the outbox and its review row (if any) is marked sent. A seq
    already gone (sent before, or dropped by the bounds) changes nothing."""
    row = conn.execute("SELECT message_id FROM outbox WHERE seq = ?", (seq,)).fetchone()
    if row is not None:
        conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        conn.execute(
            "UPDATE review SET sent_at = ? WHERE event_id = ? AND sent_at IS NULL", (db_time(now), row[0])
        )


def enforce_bounds(conn: sqlite3.Connection, now: datetime, max_events: int, max_age_s: float) -> int:
    """Drops the oldest unsent messages past `max_events` and those older than `max_age_s`, adding them
    to the dropped total; returns how many were dropped now."""
    cutoff = db_time(now - timedelta(seconds=max_age_s))
    dropped = conn.execute("DELETE FROM outbox WHERE created_at < ?", (cutoff,)).rowcount
    (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
    if count > max_events:
        dropped += conn.execute(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
            (count - max_events,),
        ).rowcount
    if dropped:
        conn.execute("UPDATE outbox_state SET dropped = dropped + ? WHERE id = 1", (dropped,))
    return int(dropped)


def pending_rows(conn: sqlite3.Connection, after_seq: int, limit: int) -> list[PendingRow]:
    """Unsent rows with seq > `after_seq`, oldest first, at most `limit`."""
    return list(
        conn.execute(
            "SELECT seq, message_id, topic, payload, created_at FROM outbox WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
    )


def as_message(row: PendingRow) -> OutboxMessage:
    seq, message_id, topic, payload, created = row
    return OutboxMessage(
        int(seq), str(message_id), str(topic), bytes(payload), datetime.fromisoformat(created)
    )


def count(conn: sqlite3.Connection) -> int:
    (rows,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
    return int(rows)


def oldest(conn: sqlite3.Connection) -> str | None:
    """When the oldest unsent row was stored (`db_time` text); None when the outbox is empty."""
    (created,) = conn.execute("SELECT min(created_at) FROM outbox").fetchone()
    return None if created is None else str(created)


def dropped_total(conn: sqlite3.Connection) -> int | None:
    """Messages dropped by the bounds since the store was created."""
    row = conn.execute("SELECT dropped FROM outbox_state WHERE id = 1").fetchone()
    return None if row is None else int(row[0])

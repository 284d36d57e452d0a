"""What the fleet sends, written into the console's database: one function for each kind of payload.

Each payload was checked against its schema before it gets here (`edge_agent.events.listen.
check_payload`). A match event is stored once (`event_id`: re-sends and redeliveries are the same
event), its face chip decoded apart from the JSON; status, health and reports keep the device's latest;
a command answer is kept as received and, when it answers a review the console sent, settles it,
unless it is a refusal for now (`FOR_NOW`): then the verdict is sent again, signed anew.
A device's live "online" status after an offline one (or its first) marks when it came (back) online:
its unanswered verdicts are sent again then. A device repeats "online" whenever its audit head moves;
those do not count.

A device's "last seen" is when the console last heard from it, except from a retained message: the
broker hands the device's last status to every new subscription, however long the device has been
silent, so a retained message only gives a device seen for the first time its row.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from edge_agent.console.database import ConsoleDatabase
from edge_agent.events.database import db_time

# refusals that say "not now", not "no": a device clock behind or ahead (it syncs after boot), or an old
# copy replayed by someone on the broker. They are kept with the results, and the verdict is sent again.
FOR_NOW = frozenset({"expired", "not_yet_valid"})


def record(
    db: ConsoleDatabase, kind: str, payload: dict[str, Any], now: datetime, *, retained: bool = False
) -> bool:
    """Stores one checked payload; False when it was a match event already stored."""
    device_id = str(payload["device_id"])
    at = db_time(now)
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO devices (device_id, last_seen) VALUES (?, ?) "
            "ON CONFLICT (device_id) DO UPDATE SET last_seen = excluded.last_seen WHERE NOT ?",
            (device_id, at, retained),
        )
        if kind == "match":
            return _match(conn, payload, at)
        if kind == "cmd-result":
            _result(conn, payload, at)
        elif kind in ("status", "health", "report"):
            if kind == "status" and payload.get("state") == "online" and not retained:
                conn.execute(  # came online: it was offline, or unheard of (not every online status)
                    "UPDATE devices SET online_at = ? WHERE device_id = ? "
                    "AND coalesce(json_extract(status, '$.state'), '') != 'online'",
                    (at, device_id),
                )
            conn.execute(
                f"UPDATE devices SET {kind} = ?, {kind}_at = ? WHERE device_id = ?",
                (json.dumps(payload, sort_keys=True), at, device_id),
            )
    return True


def _match(conn: Any, payload: dict[str, Any], at: str) -> bool:
    face = payload.get("face_jpeg")
    kept = {key: value for key, value in payload.items() if key != "face_jpeg"}
    cursor = conn.execute(
        "INSERT INTO events (event_id, device_id, camera_id, subject_id, watchlist, captured_at, decided_at, "
        "received_at, payload, face_jpeg) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (event_id) DO NOTHING",
        (
            str(payload["event_id"]),
            str(payload["device_id"]),
            str(payload["camera_id"]),
            str(payload["subject_id"]),
            str(payload["watchlist"]),
            str(payload["captured_at"]),
            str(payload["decided_at"]),
            at,
            json.dumps(kept, sort_keys=True),
            _jpeg(face),
        ),
    )
    return bool(cursor.rowcount)


def _jpeg(face: object) -> bytes | None:
    """The face chip's bytes, only when they are a JPEG (the browser is shown nothing else)."""
    if not isinstance(face, str):
        return None
    try:
        data = base64.b64decode(face, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if data.startswith(b"\xff\xd8\xff") else None


def _result(conn: Any, payload: dict[str, Any], at: str) -> None:
    nonce = payload.get("nonce")
    conn.execute(
        "INSERT INTO results (device_id, nonce, received_at, payload) VALUES (?, ?, ?, ?)",
        (str(payload["device_id"]), nonce, at, json.dumps(payload, sort_keys=True)),
    )
    if isinstance(nonce, str) and (payload.get("accepted") or payload.get("reason") not in FOR_NOW):
        conn.execute(
            "UPDATE events SET answer = ?, answered_at = ? "
            "WHERE command_nonce = ? AND device_id = ? AND answer IS NULL",
            (json.dumps(payload, sort_keys=True), at, nonce, str(payload["device_id"])),
        )

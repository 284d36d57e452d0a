"""What the pages show, read from the console's database: match events with their subject's record and
review, devices with their last status and health, reports, and the audit log."""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_agent.console.database import ConsoleDatabase
from edge_agent.watchlist import audit
from edge_agent.watchlist.records import Subject

PAGE = 200  # events on one page of the queue
# each event with the device's latest answer under its command's nonce (one that did not settle it: a
# refusal for now, see received.FOR_NOW)
SELECT_EVENTS = (
    "SELECT e.*, (SELECT r.payload FROM results r WHERE r.nonce = e.command_nonce AND r.device_id = "
    "e.device_id ORDER BY r.id DESC LIMIT 1) AS last_result FROM events e"
)


@dataclass(frozen=True)
class EventView:
    event_id: str
    device_id: str
    camera_id: str
    captured_at: str
    received_at: str
    subject_id: str
    display_name: str | None
    watchlist: str
    subject: Subject | None  # the master watchlist's record: why they are on the list
    distance: float
    threshold: float
    target_fmr: float
    upper_95: float
    expected_false_alerts_per_day: float | None
    templates: int | None
    frames_agreeing: int
    frames_seen: int
    has_face: bool
    state: str
    reviewed_by: str | None
    reviewed_at: str | None
    comment: str | None
    command_nonce: str | None
    command_sent_at: str | None
    command_sends: int
    answer: dict[str, Any] | None
    last_result: dict[str, Any] | None  # the device's latest answer, settling or not

    @property
    def awaiting_answer(self) -> bool:
        return self.command_nonce is not None and self.answer is None

    @property
    def refused_for_now(self) -> str | None:
        """The device's refusal that did not settle the verdict (its clock, say); it is sent again."""
        result = self.last_result
        if self.answer is not None or result is None or result.get("accepted"):
            return None
        return f"refused for now ({result.get('reason')}: {result.get('message')})"

    @property
    def answer_line(self) -> str | None:
        """The device's answer in one line, for the page."""
        if self.answer is None:
            return None
        if not self.answer.get("accepted"):
            if self.answer.get("reason") == "replayed":  # its answer to an earlier copy never came
                return (
                    "taken before: the device had already received this command (its first answer was lost)"
                )
            return f"refused ({self.answer.get('reason')}): {self.answer.get('message')}"
        details = self.answer.get("details") or {}
        if self.state == "false_match":
            excluded = details.get("embeddings_excluded")
            until = str(details.get("exclusion_expires", ""))[:10]
            return f"accepted: {excluded} embedding(s) of this face excluded from this subject until {until}"
        return "accepted: the confirmation is in the device's audit log"


def event_view(row: sqlite3.Row, subjects: dict[str, Subject]) -> EventView:
    payload = json.loads(row["payload"])
    rate = payload.get("false_match_rate", {})
    return EventView(
        event_id=str(row["event_id"]),
        device_id=str(row["device_id"]),
        camera_id=str(row["camera_id"]),
        captured_at=_short_time(str(row["captured_at"])),
        received_at=_short_time(str(row["received_at"])),
        subject_id=str(row["subject_id"]),
        display_name=payload.get("display_name"),
        watchlist=str(row["watchlist"]),
        subject=subjects.get(str(row["subject_id"])),
        distance=float(payload["distance"]),
        threshold=float(payload["threshold"]),
        target_fmr=float(rate.get("target", 0.0)),
        upper_95=float(rate.get("upper_95", 0.0)),
        expected_false_alerts_per_day=rate.get("expected_false_alerts_per_day"),
        templates=rate.get("templates"),
        frames_agreeing=int(payload["frames_agreeing"]),
        frames_seen=int(payload["frames_seen"]),
        has_face=row["face_jpeg"] is not None,
        state=str(row["state"]),
        reviewed_by=row["reviewed_by"],
        reviewed_at=_short_time(row["reviewed_at"]) if row["reviewed_at"] else None,
        comment=row["comment"],
        command_nonce=row["command_nonce"],
        command_sent_at=_short_time(row["command_sent_at"]) if row["command_sent_at"] else None,
        command_sends=int(row["command_sends"]),
        answer=json.loads(row["answer"]) if row["answer"] else None,
        last_result=json.loads(row["last_result"]) if row["last_result"] else None,
    )


@dataclass(frozen=True)
class EventPage:
    events: list[EventView]
    total: int  # open matches (or reviewed ones) in all
    page: int  # 0 is the newest
    pages: int

    @property
    def older(self) -> int | None:
        return self.page + 1 if self.page + 1 < self.pages else None

    @property
    def newer(self) -> int | None:
        return self.page - 1 if self.page > 0 else None


def events(db: ConsoleDatabase, subjects: dict[str, Subject], *, open_only: bool, page: int = 0) -> EventPage:
    """One page of the open matches, newest first (or of the reviewed ones, newest review first)."""
    if open_only:
        where, order = "state = 'open'", "captured_at DESC, event_id"
    else:
        where, order = "state != 'open'", "reviewed_at DESC, event_id"
    with db.reading() as conn:
        total = int(conn.execute(f"SELECT count(*) FROM events WHERE {where}").fetchone()[0])
        pages = max(1, -(-total // PAGE))
        page = min(max(0, page), pages - 1)
        rows = list(
            conn.execute(
                f"{SELECT_EVENTS} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?", (PAGE, page * PAGE)
            )
        )
    return EventPage([event_view(row, subjects) for row in rows], total, page, pages)


def event(db: ConsoleDatabase, event_id: str, subjects: dict[str, Subject]) -> EventView | None:
    row = db.row(f"{SELECT_EVENTS} WHERE e.event_id = ?", event_id)
    return None if row is None else event_view(row, subjects)


def face_jpeg(db: ConsoleDatabase, event_id: str) -> bytes | None:
    row = db.row("SELECT face_jpeg FROM events WHERE event_id = ?", event_id)
    return None if row is None or row["face_jpeg"] is None else bytes(row["face_jpeg"])


@dataclass(frozen=True)
class DeviceView:
    device_id: str
    last_seen: str
    state: str  # online, offline, or unknown (no status yet)
    agent_version: str | None
    camera_id: str | None
    fps: float | None
    camera_state: str | None
    dropped: int | None
    outbox_depth: int | None
    cpu_temp_c: float | None
    threshold: float | None
    target_fmr: float | None
    templates: int | None
    expected_false_alerts_per_day: float | None
    budget_problem: str | None
    audit_anchor: str | None
    health_at: str | None
    report: dict[str, Any] | None


def devices(db: ConsoleDatabase) -> list[DeviceView]:
    return [_device(row) for row in db.rows("SELECT * FROM devices ORDER BY device_id")]


def _device(row: sqlite3.Row) -> DeviceView:
    status = json.loads(row["status"]) if row["status"] else {}
    health = json.loads(row["health"]) if row["health"] else {}
    point = health.get("operating_point") or {}
    outbox = health.get("outbox") or {}
    camera = health.get("camera") or {}
    anchor = status.get("audit_anchor")
    return DeviceView(
        device_id=str(row["device_id"]),
        last_seen=_short_time(str(row["last_seen"])),
        state=str(status.get("state", "unknown")),
        agent_version=status.get("agent_version"),
        camera_id=status.get("camera_id") or health.get("camera_id"),
        fps=health.get("fps"),
        camera_state=camera.get("state"),
        dropped=camera.get("frames_dropped"),
        outbox_depth=outbox.get("depth"),
        cpu_temp_c=health.get("cpu_temp_c"),
        threshold=point.get("threshold"),
        target_fmr=point.get("target_fmr"),
        templates=point.get("templates"),
        expected_false_alerts_per_day=point.get("expected_false_alerts_per_day"),
        budget_problem=point.get("problem"),
        audit_anchor=_anchor_text(anchor),
        health_at=_short_time(row["health_at"]) if row["health_at"] else None,
        report=json.loads(row["report"]) if row["report"] else None,
    )


def _anchor_text(envelope: object) -> str | None:
    """The `<row id>:<hash>` a status's signed audit anchor names (shown, not verified, here)."""
    if not isinstance(envelope, dict):
        return None
    try:
        payload = json.loads(base64.b64decode(str(envelope.get("payload", ""))))
    except (ValueError, binascii.Error, RecursionError):  # a device's bytes, however malformed
        return None
    text = payload.get("anchor") if isinstance(payload, dict) else None
    return text if isinstance(text, str) else None


def audit_rows(db: ConsoleDatabase, limit: int = 500) -> tuple[audit.AuditCheck, list[audit.AuditRow]]:
    """The console's audit log, newest first, and whether its chain holds."""
    with db.snapshot() as conn:  # one consistent read of the whole chain, beside ingest and the pages
        check = audit.verify_chain(conn)
        rows = audit.rows(conn, limit=limit)
    return check, rows


def _short_time(text: str) -> str:
    """UTC to the second, as the pages show times."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

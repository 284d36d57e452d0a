"""The payloads the agent publishes, as versioned pydantic models; their JSON Schemas are generated here.

A payload names its own schema (`"schema": "edge-agent.match/1"`), so a subscriber can refuse what it
does not understand. A breaking change bumps the number; adding an optional field does not.
Subscribers deduplicate match events by `event_id`: the outbox re-sends an event until the broker
acknowledges it, so the same event may arrive more than once, never with different content.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from edge_agent.files import atomic_write_bytes

MATCH_SCHEMA: Final = "edge-agent.match/1"
STATUS_SCHEMA: Final = "edge-agent.status/1"
HEALTH_SCHEMA: Final = "edge-agent.health/1"
REPORT_SCHEMA: Final = "edge-agent.report/1"
CMD_RESULT_SCHEMA: Final = "edge-agent.cmd-result/1"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times must carry a time zone (RFC 3339)")
    return moment.astimezone(UTC)


UtcTime = Annotated[datetime, AfterValidator(_utc)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True, by_alias=True).encode()


class Models(Payload):
    """The model builds that produced the payload: the manifest ids, and the sha256 of each file as loaded
    (checked against the manifest at load). The hashes are optional in the schema (added in 0.1.x, so
    `edge-agent.match/1` stays) and always sent by this agent."""

    detector: Name
    embedder: Name
    detector_sha256: Sha256 | None = Field(None, description="sha256 of the detector file the agent loaded.")
    embedder_sha256: Sha256 | None = Field(None, description="sha256 of the embedder file the agent loaded.")


class FalseMatchRate(Payload):
    """The calibrated false-match rate of the threshold the distance was compared with."""

    target: float = Field(gt=0.0, lt=1.0, description="The configured false-match rate.")
    upper_95: float = Field(
        ge=0.0, le=1.0, description="One-sided 95% Clopper-Pearson upper bound measured at the threshold."
    )
    calibrated_on: str = Field(description="The data set the threshold was measured on.")
    expected_false_alerts_per_day: float | None = Field(
        None,
        ge=0.0,
        description="False alerts a day this device expects at its operating point, for the watchlist as it "
        "was at the decision (engine/budget.py: strangers a day x track factor x templates x FMR).",
    )
    false_alerts_per_day_upper_95: float | None = Field(
        None, ge=0.0, description="The same from the FMR's 95% upper bound: what a budget is held to."
    )
    templates: int | None = Field(None, ge=0, description="Live templates every look was compared with.")


class Quality(Payload):
    face_px: float = Field(ge=0.0)
    sharpness: float = Field(ge=0.0)
    yaw_deg: float
    roll_deg: float
    brightness: float = Field(ge=0.0, le=255.0)
    score: float = Field(ge=0.0, le=1.0)


class MatchEvent(Payload):
    """One decided watchlist match: a lead for a person to review, never an identification."""

    schema_: Literal["edge-agent.match/1"] = Field(MATCH_SCHEMA, alias="schema")
    event_id: UUID = Field(description="Idempotency key: re-sends carry the same id.")
    device_id: Name
    camera_id: Name
    captured_at: UtcTime = Field(description="Time of the frame with the best agreeing embedding.")
    decided_at: UtcTime = Field(description="When the agent decided and stored the event (before sending).")
    subject_id: Name
    display_name: Name | None = Field(
        None, description="The subject's display name (only when events.include_name is on)."
    )
    watchlist: Name
    distance: float = Field(ge=0.0, description="Euclidean distance of the best agreeing embedding.")
    threshold: float = Field(gt=0.0, description="Distances below this count as a match.")
    false_match_rate: FalseMatchRate
    frames_agreeing: int = Field(ge=1, description="Embeddings of the track that agreed on this subject.")
    frames_seen: int = Field(ge=1, description="Embeddings of the track counted in the vote.")
    track_id: int = Field(ge=1)
    box: tuple[float, float, float, float] = Field(description="x0, y0, x1, y1 in frame pixels.")
    frame_size: tuple[int, int] = Field(description="Width, height of the frame.")
    quality: Quality
    models: Models
    agent_version: str
    review_required: Literal[True] = True
    face_jpeg: str | None = Field(
        None, description="Base64 JPEG of the matched face crop (only when events.face_crop is on)."
    )


class SignedEnvelope(Payload):
    """An Ed25519-signed envelope (`edge_agent.signed`): the signature covers the base64-decoded payload."""

    format: str = Field(max_length=64)
    version: int = Field(ge=1)
    payload: str = Field(max_length=8192, description="Base64 of the signed payload bytes.")
    signer: str = Field(pattern=r"^[0-9a-f]{64}$", description="The signer's Ed25519 public key, hex.")
    signature: str = Field(pattern=r"^[0-9a-f]{128}$", description="Ed25519 signature of the payload, hex.")


class StatusMessage(Payload):
    """Retained on `<prefix>/<device>/status`; the broker publishes the `offline` one as the last will."""

    schema_: Literal["edge-agent.status/1"] = Field(STATUS_SCHEMA, alias="schema")
    device_id: Name
    state: Literal["online", "offline"]
    at: UtcTime | None = Field(None, description="When the state was set (absent in the last will).")
    agent_version: str
    camera_id: Name | None = None
    models: Models | None = None
    audit_anchor: SignedEnvelope | None = Field(
        None,
        description="The watchlist's audit chain head (`<row id>:<hash>` in an `edge-agent-audit-anchor` "
        "envelope signed by the device key): record it, and `audit verify --against` it later.",
    )


class Latency(Payload):
    p50_ms: float = Field(ge=0.0)
    p95_ms: float = Field(ge=0.0)
    count: int = Field(ge=0, description="Samples in the window the percentiles are taken over.")


class CameraHealth(Payload):
    state: Literal["starting", "streaming", "reconnecting", "ended"]
    frames: int = Field(ge=0, description="Frames read since start.")
    frames_dropped: int = Field(ge=0, description="Frames replaced in the one-slot buffer before inference.")
    reconnects: int = Field(ge=0)
    last_error: str | None = None


class OutboxHealth(Payload):
    depth: int = Field(ge=0, description="Messages stored and not yet acknowledged by the broker.")
    dropped: int = Field(ge=0, description="Messages dropped past the outbox's bounds since it was created.")
    oldest_age_s: float | None = Field(None, ge=0.0)


class Counters(Payload):
    """Aggregate counts only: no per-person record of anyone who did not match."""

    frames: int = Field(ge=0)
    faces_seen: int = Field(ge=0)
    tracks: int = Field(ge=0)
    embeddings: int = Field(ge=0)
    matches: int = Field(ge=0)
    splits: int = Field(
        0, ge=0, description="Tracks split because the face under them turned out to be another person's."
    )
    rejected_size: int = Field(
        0, ge=0, description="Faces refused by the live gate: box narrower than min_face_px."
    )
    rejected_truncated: int = Field(
        0, ge=0, description="Faces refused by the live gate: cut off at the frame edge (edge_margin)."
    )
    rejected_pose: int = Field(
        0,
        ge=0,
        description="Faces refused by the live gate: head turn or tilt beyond max_yaw_deg/max_roll_deg.",
    )
    rejected_blur: int = Field(
        0, ge=0, description="Faces refused by the live gate: sharpness below min_sharpness."
    )
    rejected_brightness: int = Field(
        0, ge=0, description="Faces refused by the live gate: chip too dark or too bright."
    )


class StorageHealth(Payload):
    """Whether one database's writes land. Not `ok`: the agent keeps running and counting, stops writing
    there, retries every few seconds and resumes by itself when it can."""

    state: Literal["ok", "full", "read_only", "corrupt", "error"] = Field(
        description="ok; full (no space); read_only (read-only file system or file); corrupt (the file "
        "was moved aside and a fresh one started); error (an I/O or other storage error)."
    )
    since: UtcTime = Field(description="When it entered this state (the start, for ok since start).")
    last_error: str | None = Field(None, description="The latest storage error, in one line.")
    held: int = Field(
        ge=0,
        description="Decided matches kept in memory because they could not be stored yet; stored (and "
        "then sent) when writes land again; lost if the agent stops first.",
    )
    lost: int = Field(
        ge=0,
        description="Decided matches dropped past the in-memory limit since start: never stored, never sent.",
    )
    moved_aside: str | None = Field(None, description="Where a corrupt database was moved, since start.")


class Storage(Payload):
    events: StorageHealth = Field(description="The event store (outbox, review copies, counters).")
    watchlist: StorageHealth = Field(description="Match audit rows in the watchlist database.")


class OperatingPointHealth(Payload):
    """The operating point in use and what it costs in false alerts (engine/budget.py)."""

    mode: Literal["budget", "target_fmr"]
    target_fmr: float = Field(gt=0.0, lt=1.0)
    threshold: float = Field(gt=0.0)
    single_look_fmr: float | None = Field(None, description="The stricter rate one look may decide at.")
    templates: int = Field(ge=0, description="Live templates a look is compared with.")
    faces_per_day: float = Field(gt=0.0, description="Strangers' tracks a day, as configured.")
    tracks_per_day_measured: float | None = Field(
        None, ge=0.0, description="Tracks a day this run has counted (after an hour of running)."
    )
    expected_false_alerts_per_day: float = Field(ge=0.0)
    false_alerts_per_day_upper_95: float = Field(ge=0.0)
    budget_false_alerts_per_day: float | None = Field(None, description="The budget (none at a fixed rate).")
    budget_met: bool | None = Field(None, description="Whether the upper bound is within the budget.")
    problem: str | None = Field(None, description="Why the budget cannot be promised, when it cannot.")


class HealthMessage(Payload):
    schema_: Literal["edge-agent.health/1"] = Field(HEALTH_SCHEMA, alias="schema")
    device_id: Name
    camera_id: Name
    at: UtcTime
    uptime_s: float = Field(ge=0.0)
    fps: float = Field(ge=0.0, description="Frames through inference per second, over the last interval.")
    camera: CameraHealth
    latency: dict[str, Latency] = Field(description="Per stage, and frame → publish for match events.")
    outbox: OutboxHealth
    counters: Counters
    last_match_at: UtcTime | None = Field(None, description="Decision time of the latest match event.")
    storage: Storage | None = Field(None, description="Whether the agent's databases can be written.")
    operating_point: OperatingPointHealth | None = Field(
        None, description="The threshold in use and the false alerts a day it is expected to cost."
    )
    cpu_temp_c: float | None = None
    rss_mib: float | None = None


class ReportPeriod(Payload):
    since: date = Field(description="First UTC day of the period.")
    until: date = Field(description="Last UTC day of the period (included).")


class WatchlistChanges(Payload):
    """Audit rows of the period, by action (one per subject)."""

    enrolments: int = Field(ge=0, description="Subjects enrolled on the device (`enroll`).")
    imports: int = Field(ge=0, description="Subjects added from signed bundles (`import`).")
    removals: int = Field(ge=0, description="Subjects removed by an operator (`remove`).")
    expiries: int = Field(ge=0, description="Subjects retired at their expiry (`purge`).")


class CommandCounts(Payload):
    accepted: int = Field(ge=0, description="Remote commands carried out (audit `command`).")
    rejected: int = Field(ge=0, description="Remote commands refused (audit `command_rejected`).")


class AuditChainStatus(Payload):
    """The whole audit log, checked when the report was made (not only the period's rows)."""

    verified: bool = Field(description="Every row's hash and link to the row before it is intact.")
    rows: int = Field(ge=0, description="Rows read (up to the first bad one when not verified).")
    head: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hash of the last row: compare with an anchor.")
    detail: str = Field(description="What the check found, in one line (the first bad row when broken).")


class TransparencyReport(Payload):
    """Aggregate counts for one period: no person is named and nothing is counted per person."""

    schema_: Literal["edge-agent.report/1"] = Field(REPORT_SCHEMA, alias="schema")
    device_id: Name
    generated_at: UtcTime
    agent_version: str
    period: ReportPeriod
    counted_since: date | None = Field(
        None, description="First UTC day with per-day counts on this device; earlier frames are in no period."
    )
    counters: Counters = Field(
        description="What the pipeline processed in the period, by the UTC day the counts were stored; "
        "`matches` alone is counted from the audit log's match rows (durable, so it equals the sum of "
        "`matches_by_watchlist`)."
    )
    matches_by_watchlist: dict[str, int] = Field(
        description="Match events decided in the period per watchlist (from the audit log)."
    )
    reviews_required: int = Field(ge=0, description="Match events in the period; every one asks for review.")
    watchlist_changes: WatchlistChanges
    commands: CommandCounts
    audit: AuditChainStatus


class CommandResultMessage(Payload):
    """A device's answer to a fleet command, on `<prefix>/<device>/cmd/result` (QoS 1, via the outbox)."""

    schema_: Literal["edge-agent.cmd-result/1"] = Field(CMD_RESULT_SCHEMA, alias="schema")
    device_id: Name
    at: UtcTime
    accepted: bool
    reason: str = Field(
        description="ok, or why it was refused: malformed, unsigned, untrusted_key, bad_signature, "
        "not_for_this_device, not_yet_valid, expired, replayed, unknown_command, invalid_args, failed"
    )
    message: str
    command: str | None = None
    nonce: str | None = Field(None, description="The command's nonce: how the sender matches answers.")
    details: dict[str, Any] = Field(default_factory=dict)


PAYLOADS: dict[str, type[Payload]] = {
    "cmd-result": CommandResultMessage,
    "match": MatchEvent,
    "status": StatusMessage,
    "health": HealthMessage,
    "report": TransparencyReport,
}


def json_schema(kind: str) -> dict[str, object]:
    model = PAYLOADS[kind]
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    schema["$id"] = f"https://edge-agent.invalid/schema/{kind}.schema.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_text(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    """`<kind>.schema.json` for each payload, written atomically; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in PAYLOADS:
        target = folder / f"{kind}.schema.json"
        atomic_write_bytes(target, schema_text(kind).encode())
        written.append(target)
    return written

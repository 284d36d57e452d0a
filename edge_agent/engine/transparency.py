"""Transparency reports: aggregate counts for a period of UTC days, from the event store and the audit log.

Where each number comes from:
- frames, faces seen, tracks, embeddings (and the quality gates' rejections): the event store's per-day
  counters (`counter_days`), summed over the period. A day's counts are those the agent stored that day
  (every `mqtt.health_interval_s` and at stop; what was counted since the last store is lost with a
  kill -9 or a power cut); counts from before per-day counting began are in no period.
- matches (`counters.matches`): the match events decided in the period, from the watchlist's audit log,
  the same durable rows as matches per watchlist, so the two always agree. Not the volatile per-day
  counter of the pipeline, which lags (and can lose) the last seconds before a hard stop.
- matches per watchlist and reviews required: the watchlist's audit log, `match` rows of the period joined
  with `subjects` for the watchlist name. Not the event store's review table: its rows are deleted after
  `events.review_days`, while the hash-chained audit log is the permanent record, so a report on a past
  period gives the same numbers whenever it is made. Every match event asks for review, so reviews
  required is the number of match events.
- enrolments, imports, removals, expiries, remote commands: the period's audit rows by action.
- the audit chain: the whole log verified when the report is made, and its head hash.

Nothing per person: subject ids and names are only read inside SQL counts, never returned. Both databases
are read only (the event store is upgraded to the current schema first, as the agent itself would).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import Settings
from edge_agent import agent_version
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.events.mqtt import Topics, configure_client
from edge_agent.events.outbox import EventStore
from edge_agent.events.schema import (
    AuditChainStatus,
    CommandCounts,
    Counters,
    ReportPeriod,
    TransparencyReport,
    WatchlistChanges,
)
from edge_agent.watchlist import audit

# audit action -> field of WatchlistChanges / CommandCounts
CHANGES = {"enroll": "enrolments", "import": "imports", "remove": "removals", "purge": "expiries"}
COMMANDS = {"command": "accepted", "command_rejected": "rejected"}
PUBLISH_TIMEOUT_S = 10.0


def build_report(
    settings: Settings, since: date, until: date | None = None, now: datetime | None = None
) -> TransparencyReport:
    """The report for the UTC days `since` to `until` (default: today), both included."""
    generated = now or datetime.now(UTC)
    last = until or generated.astimezone(UTC).date()
    if since > last:
        raise ConfigError(f"--since {since.isoformat()} is after --until {last.isoformat()}")
    counters, counted_since = _event_counts(settings, since, last)
    with _read_only(settings.watchlist.path, "watchlist") as conn:
        actions, by_watchlist = _audit_counts(conn, settings.watchlist.path, since, last)
        check, head = audit.verify(conn), audit.head(conn)
    return TransparencyReport(
        device_id=settings.device_id,
        generated_at=generated,
        agent_version=agent_version(),
        period=ReportPeriod(since=since, until=last),
        counted_since=counted_since,
        counters=Counters(
            **{name: counters.get(name, 0) for name in Counters.model_fields}
            # the durable audit rows, not the volatile counter (see the module docstring)
            | {"matches": sum(by_watchlist.values())}
        ),
        matches_by_watchlist=by_watchlist,
        reviews_required=sum(by_watchlist.values()),
        watchlist_changes=WatchlistChanges(**{f: actions.get(a, 0) for a, f in CHANGES.items()}),
        commands=CommandCounts(**{f: actions.get(a, 0) for a, f in COMMANDS.items()}),
        audit=AuditChainStatus(verified=check.ok, rows=check.rows, head=head, detail=check.reason),
    )


def _event_counts(settings: Settings, since: date, until: date) -> tuple[dict[str, int], date | None]:
    path = settings.events.path
    if not path.is_file():
        raise EdgeAgentError(f"{path}: no event store there (events.path); has the agent run on this device?")
    with EventStore.from_settings(settings.events) as store:
        return store.counters_between(since, until), store.first_counted_day()


@contextmanager
def _read_only(path: Path, what: str) -> Iterator[sqlite3.Connection]:
    if not path.is_file():
        raise EdgeAgentError(f"{path}: no {what} database there")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise EdgeAgentError(f"{path}: cannot open the {what} database ({exc})") from None
    with closing(conn):
        yield conn


def _audit_counts(
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


# ---- Markdown -----------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: TransparencyReport) -> str:
    """The report as a Markdown document (aggregate counts only, like the JSON)."""
    period, counters, changes = report.period, report.counters, report.watchlist_changes
    lines = [
        f"# Transparency report: {_cell(report.device_id)}",
        "",
        f"Period: {period.since.isoformat()} to {period.until.isoformat()} (UTC days, both included). "
        f"Generated {report.generated_at:%Y-%m-%d %H:%M:%S} UTC by edge-agent {report.agent_version}.",
        "",
        "Aggregate counts only: no person is named and nothing is counted per person.",
        "",
        "## What the camera processed",
        "",
        "| | count |",
        "|---|---:|",
        f"| frames processed | {counters.frames} |",
        f"| faces seen | {counters.faces_seen} |",
        f"| face tracks | {counters.tracks} |",
        f"| embeddings computed | {counters.embeddings} |",
        f"| match events (decided, from the audit log) | {counters.matches} |",
        "",
        "Frames, faces, tracks and embeddings are the counts the agent stored each day; match events are "
        "the audit log's `match` rows, the same records as the table per watchlist below.",
        "",
    ]
    if report.counted_since is None or report.counted_since > period.since:
        start = "no day yet" if report.counted_since is None else report.counted_since.isoformat()
        lines += [f"Per-day counting on this device began: {start}.", ""]
    lines += ["## Matches per watchlist", "", "| watchlist | match events |", "|---|---:|"]
    lines += [f"| {_cell(name)} | {count} |" for name, count in report.matches_by_watchlist.items()]
    if not report.matches_by_watchlist:
        lines.append("| (none) | 0 |")
    lines += [
        "",
        f"Reviews required: {report.reviews_required} (every match event is a lead for a person to "
        "check, never an identification).",
        "",
        "## Watchlist changes",
        "",
        "| enrolments | imports | removals | expiries |",
        "|---:|---:|---:|---:|",
        f"| {changes.enrolments} | {changes.imports} | {changes.removals} | {changes.expiries} |",
        "",
        "## Remote commands",
        "",
        f"Accepted: {report.commands.accepted}. Rejected: {report.commands.rejected}.",
        "",
        "## Audit log",
        "",
        f"Chain verified: {'yes' if report.audit.verified else 'NO'} ({_cell(report.audit.detail)}).",
        f"Head hash: `{report.audit.head}`",
    ]
    return "\n".join(lines) + "\n"


# ---- publishing ---------------------------------------------------------------------------------------


def publish_report(
    settings: Settings, report: TransparencyReport, timeout_s: float = PUBLISH_TIMEOUT_S
) -> str:
    """Sends the report retained with QoS 1 on `<prefix>/<device_id>/report` and waits for the broker's
    acknowledgement; returns the topic. One-line EdgeAgentError when the broker cannot be reached, refuses
    the login or does not acknowledge in time."""
    mqtt_settings = settings.mqtt
    topic = Topics(mqtt_settings.topic_prefix, settings.device_id).report
    address = f"{mqtt_settings.host}:{mqtt_settings.port}"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"edge-agent-report-{uuid.uuid4().hex[:8]}",  # not the agent's id: that would cut it off
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    configure_client(client, mqtt_settings)
    answered = threading.Event()
    refusal: list[str] = []

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: Properties | None
    ) -> None:
        if reason.is_failure:
            refusal.append(str(reason).lower())
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(mqtt_settings.host, mqtt_settings.port, keepalive=mqtt_settings.keepalive_s)
    except OSError as exc:  # refused, unreachable, unknown host, TLS failure
        raise EdgeAgentError(f"cannot reach broker {address}: {exc.strerror or exc}") from None
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            raise EdgeAgentError(f"broker {address} did not accept the connection within {timeout_s:g} s")
        if refusal:
            raise EdgeAgentError(f"broker {address} refused the connection: {refusal[0]}")
        info = client.publish(topic, report.to_json(), qos=1, retain=True)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            with contextlib.suppress(RuntimeError):  # the connection went: not acknowledged, said below
                info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise EdgeAgentError(f"broker {address} did not acknowledge the report within {timeout_s:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
    return topic

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
are read only (the event store is upgraded to the current schema first, as the agent itself would). The
queries live with their tables (`edge_agent.events.counters.period_counts`,
`edge_agent.watchlist.tally.audit_tally`); this module joins their counts into one report.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from edge_agent import agent_version
from edge_agent.config import Settings
from edge_agent.errors import ConfigError
from edge_agent.events.counters import period_counts
from edge_agent.events.schema import (
    AuditChainStatus,
    CommandCounts,
    Counters,
    ReportPeriod,
    TransparencyReport,
    WatchlistChanges,
)
from edge_agent.events.session import MqttSession
from edge_agent.events.topics import Topics
from edge_agent.watchlist.tally import audit_tally

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
    counters, counted_since = period_counts(settings.events, since, last)
    tally = audit_tally(settings.watchlist.path, since, last)
    by_watchlist, actions, check = tally.matches_by_watchlist, tally.actions, tally.chain
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
        audit=AuditChainStatus(verified=check.ok, rows=check.rows, head=tally.head, detail=check.reason),
    )


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
    topic = Topics(settings.mqtt.topic_prefix, settings.device_id).report
    # a client id of its own, not the agent's: that would cut the agent off
    with MqttSession(settings.mqtt, "edge-agent-report", timeout_s) as session:
        session.publish(topic, report.to_json(), what="the report", retain=True)
    return topic

"""The human format of `watchlist show` and `watchlist stats` (`--json` prints the same as JSON)."""

from __future__ import annotations

from typing import Any


def subject_text(record: dict[str, Any]) -> list[str]:
    """One subject as a few labelled lines, then its templates, exclusions and audit rows."""
    live = "live" if record["live"] else "not live"
    lines = [
        f"{record['id']}  {record['display_name']!r}  [{record['watchlist']}]  {record['status']} ({live})",
        f"  reason: {record['reason']}",
        f"  source: {record['source']}",
        f"  enrolled {record['created_at']} by {record['created_by']}, expires {record['expires_at']}",
        f"  templates ({len(record['template_list'])}):",
    ]
    lines += [
        f"    #{t['id']}  {t['model_id']}  quality {t['quality']:.2f}  "
        f"photo sha256 {t['photo_sha256'][:12]}  {t['created_at']}"
        for t in record["template_list"]
    ]
    lines.append(f"  exclusions ({len(record['exclusions'])}):")
    lines += [
        f"    #{e['id']}  event {e['event_id']}  by {e['created_by']}  "
        f"{e['created_at']} until {e['expires_at']}"
        for e in record["exclusions"]
    ]
    lines.append(f"  audit ({len(record['audit'])}):")
    lines += [f"    #{a['id']}  {a['at']}  {a['action']}  by {a['actor']}" for a in record["audit"]]
    return lines


def stats_text(stats: dict[str, Any]) -> list[str]:
    by_status = ", ".join(f"{n} {status}" for status, n in sorted(stats["subjects"].items())) or "none"
    return [
        f"subjects: {stats['live_subjects']} live ({by_status})",
        f"templates: {stats['templates']}",
        f"index: {stats['index_vectors']} vector(s), {stats['index_dtype']}, "
        f"{stats['index_bytes_on_disk']:,} bytes on disk",
        f"audit: {stats['audit_rows']} row(s), head {stats['audit_head']}",
        f"anchor: {stats['audit_anchor']}",
    ]

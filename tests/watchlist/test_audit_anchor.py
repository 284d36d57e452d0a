"""Subject rows in the audit chain, and the chain's anchor against a cut tail or rewritten history.

Subjects are real enrolments (descriptors of the shared people/ photos); edits are made the way an
intruder with the file would make them, in SQLite directly, and `edge-agent watchlist audit verify` is
the real command in a child process.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.errors import EdgeAgentError
from edge_agent.sqlite_schema import migrate as migrate_file
from edge_agent.watchlist import audit, subject_hashes
from edge_agent.watchlist.records import NewTemplate
from edge_agent.watchlist.schema import MIGRATIONS, SCHEMA_VERSION
from edge_agent.watchlist.store import Watchlist
from tests.kits.clihelp import one_error, run_cli
from tests.kits.watchlist_kit import MODEL, Clock, new_subject

Descriptors = dict[Path, npt.NDArray[np.float32]]
EDITS = {
    "expires_at": "2099-01-01T00:00:00+00:00",
    "reason": "a different reason",
    "display_name": "someone else",
    "watchlist": "other",
    "source": "no case",
    "status": "expired",
    "created_by": "nobody",
    "created_at": "2020-01-01T00:00:00+00:00",
}


def people_photos(descriptors: Descriptors) -> list[Path]:
    return sorted(p for p in descriptors if p.parent.parent.name == "people")[:3]


def enrol_three(db: Path, descriptors: Descriptors, clock: Clock) -> list[str]:
    with Watchlist.open(db, model_id=MODEL, dimensions=128, clock=clock) as watchlist:
        return [
            watchlist.enroll(
                new_subject(photo.parent.name, clock),
                [NewTemplate(descriptors[photo], 0.9, hashlib.sha256(photo.read_bytes()).hexdigest())],
            ).id
            for photo in people_photos(descriptors)
        ]


def sql(db: Path, statement: str, *params: object) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(statement, params)
    finally:
        conn.close()


def cut_tail(db: Path, keep: int) -> None:
    sql(db, "DROP TRIGGER audit_no_delete")
    sql(db, "DELETE FROM audit WHERE id > ?", keep)


def check(db: Path, clock: Clock, published: audit.Anchor | None = None) -> audit.AuditCheck:
    with Watchlist.open(db, model_id=MODEL, dimensions=128, clock=clock) as watchlist:
        if published is None:
            return audit.verify(watchlist.conn)
        return audit.verify_against(watchlist.conn, published)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {"EDGE_AGENT_WATCHLIST__PATH": str(tmp_path / "wl.db")}


@pytest.mark.parametrize("column", sorted(EDITS))
def test_a_subject_edited_in_sqlite_fails_verification(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock, column: str
) -> None:
    db = tmp_path / "wl.db"
    ids = enrol_three(db, project_descriptors, clock)
    assert check(db, clock).ok
    with sqlite3.connect(db) as conn:
        original = conn.execute(f"SELECT {column} FROM subjects WHERE id = ?", (ids[1],)).fetchone()[0]
    conn.close()
    sql(db, f"UPDATE subjects SET {column} = ? WHERE id = ?", EDITS[column], ids[1])
    broken = check(db, clock)
    assert not broken.ok and broken.subject_id == ids[1] and broken.first_bad_id == 2
    assert broken.reason == (
        f"subject {ids[1]} was edited outside edge-agent: its row no longer matches audit row 2"
    )
    sql(db, f"UPDATE subjects SET {column} = ? WHERE id = ?", original, ids[1])  # put back: passes again
    assert check(db, clock).ok


def test_changes_made_by_edge_agent_are_recorded_and_a_removed_subject_stays_removed(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    db = tmp_path / "wl.db"
    ids = enrol_three(db, project_descriptors, clock)
    with Watchlist.open(db, model_id=MODEL, dimensions=128, clock=clock) as watchlist:
        watchlist.remove(ids[0], "pytest", "entered in error")
        clock.now += timedelta(days=31)
        assert len(watchlist.purge_expired("pytest")) == 2
        assert audit.verify(watchlist.conn).ok  # removal and expiry recorded the new rows
        rows = audit.rows(watchlist.conn)
        assert [r.action for r in rows] == ["enroll"] * 3 + ["remove", "purge", "purge"]
        assert rows[3].details["subject_sha256"] == subject_hashes.subject_digest(watchlist.conn, ids[0])
    sql(
        db,
        "UPDATE subjects SET status = 'active', expires_at = '2099-01-01T00:00:00+00:00' WHERE id = ?",
        ids[0],
    )
    broken = check(db, clock)
    assert (
        broken.reason
        == f"subject {ids[0]} was edited outside edge-agent: its row no longer matches audit row 4"
    )


def test_a_subject_inserted_or_deleted_in_sqlite_fails_verification(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    db = tmp_path / "wl.db"
    ids = enrol_three(db, project_descriptors, clock)
    sql(
        db,
        "INSERT INTO subjects (id, display_name, watchlist, reason, source, created_by, created_at, "
        "expires_at, status) SELECT 's-intruder', display_name, watchlist, reason, source, created_by, "
        "created_at, expires_at, status FROM subjects WHERE id = ?",
        ids[0],
    )
    added = check(db, clock)
    assert not added.ok and added.subject_id == "s-intruder" and added.first_bad_id is None
    assert added.reason == "subject s-intruder was added outside edge-agent: no audit row records it"
    sql(db, "DELETE FROM subjects WHERE id = 's-intruder'")
    assert check(db, clock).ok
    sql(db, "DELETE FROM subjects WHERE id = ?", ids[2])  # its templates go with it (ON DELETE CASCADE)
    deleted = check(db, clock)
    assert deleted.reason == (
        f"subject {ids[2]} was deleted outside edge-agent: audit row 3 records it, the subjects table has "
        "no such row"
    )


def test_a_v3_watchlist_records_its_subjects_when_upgraded(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    """Rows written before v4 carry no subject hash; the upgrade records every subject's current hash in
    one audit row, after which an edit is caught against that row."""
    db = tmp_path / "wl.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate_file(conn, str(db), "watchlist", MIGRATIONS[:3])
    conn.execute("BEGIN IMMEDIATE")
    for number in (1, 2):
        conn.execute(
            "INSERT INTO subjects VALUES (?, ?, 'test', 'r', 's', 'op', ?, ?, 'active')",
            (
                f"s-old{number}",
                f"old {number}",
                clock.now.isoformat(),
                (clock.now + timedelta(days=9)).isoformat(),
            ),
        )
        audit.append(conn, actor="op", action="enroll", subject_id=f"s-old{number}", details={}, at=clock.now)
    conn.execute("COMMIT")
    conn.close()
    with Watchlist.open(db, model_id=MODEL, dimensions=128, clock=clock) as upgraded:
        assert upgraded.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        migration = audit.rows(upgraded.conn)[-1]
        assert (migration.id, migration.action, migration.actor) == (
            3,
            "schema_migration",
            "edge-agent:migration",
        )
        assert migration.details == {
            "schema_version": 4,
            "subject_sha256": subject_hashes.subject_digests(upgraded.conn),
        }
        assert set(subject_hashes.subject_digests(upgraded.conn)) == {"s-old1", "s-old2"}
        assert audit.verify(upgraded.conn).ok
        tables = {
            name: [row[1] for row in upgraded.conn.execute(f"PRAGMA table_info({name})")]
            for name in ("command_refusals", "command_refusal_counts")
        }
    assert tables == {
        "command_refusals": ["id", "at", "reason", "envelope_sha256", "why"],
        "command_refusal_counts": ["day", "reason", "count"],
    }
    sql(db, "UPDATE subjects SET expires_at = '2099-01-01T00:00:00+00:00' WHERE id = 's-old2'")
    assert check(db, clock).reason == (
        "subject s-old2 was edited outside edge-agent: its row no longer matches audit row 3"
    )


def test_an_empty_watchlist_gets_no_migration_row(tmp_path: Path, clock: Clock) -> None:
    with Watchlist.open(tmp_path / "wl.db", model_id=MODEL, dimensions=128, clock=clock) as fresh:
        assert audit.rows(fresh.conn) == []
        assert audit.anchor(fresh.conn) == audit.Anchor(0, audit.GENESIS_HASH, None)
        assert audit.verify_against(fresh.conn, audit.Anchor.parse(f"0:{audit.GENESIS_HASH}")).ok


def test_the_cli_reports_an_edited_subject_in_one_line(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock, env: dict[str, str]
) -> None:
    db = tmp_path / "wl.db"
    ids = enrol_three(db, project_descriptors, clock)
    intact = run_cli("watchlist", "audit", "verify", env=env)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.strip() == "audit chain intact: 3 row(s), 3 subject row(s) as recorded"
    sql(db, "UPDATE subjects SET expires_at = '2099-01-01T00:00:00+00:00' WHERE id = ?", ids[2])
    broken = run_cli("watchlist", "audit", "verify", env=env)
    assert broken.returncode == 1
    assert one_error(broken.stderr) == (
        f"edge-agent: audit chain broken: subject {ids[2]} was edited outside edge-agent: its row no "
        "longer matches audit row 3"
    )


def test_a_cut_tail_fails_only_against_the_anchor(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock, env: dict[str, str]
) -> None:
    db = tmp_path / "wl.db"
    ids = enrol_three(db, project_descriptors, clock)
    with Watchlist.open(db, model_id=MODEL, dimensions=128, clock=clock) as watchlist:
        watchlist.record_match(ids[0], "edge-agent:test", {"event_id": "e-1"})
        head_row = audit.rows(watchlist.conn)[-1]
    shown = run_cli("watchlist", "audit", "head", env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.strip()
    assert text == f"4:{head_row.hash}"
    payload_run = run_cli("watchlist", "audit", "head", "--json", env=env)
    payload = json.loads(payload_run.stdout)
    assert {k: payload[k] for k in ("schema", "row_id", "hash", "anchor", "head_at")} == {
        "schema": "edge-agent.audit-anchor/1",
        "row_id": 4,
        "hash": head_row.hash,
        "anchor": text,
        "head_at": head_row.at,
    }
    (tmp_path / "anchor.txt").write_text(text + "\n")
    (tmp_path / "anchor.json").write_text(payload_run.stdout)
    for against in (text, f"@{tmp_path / 'anchor.txt'}", f"@{tmp_path / 'anchor.json'}"):
        held = run_cli("watchlist", "audit", "verify", "--against", against, env=env)
        assert held.returncode == 0, held.stderr
        assert held.stdout.strip().endswith(f"holds anchor {text}")

    cut_tail(db, keep=3)  # the match row is cut off: the shorter chain is still a chain
    assert run_cli("watchlist", "audit", "verify", env=env).returncode == 0
    for against in (text, f"@{tmp_path / 'anchor.json'}"):
        refused = run_cli("watchlist", "audit", "verify", "--against", against, env=env)
        assert refused.returncode == 1
        assert one_error(refused.stderr) == (
            "edge-agent: audit chain broken: the anchor's row 4 is missing: the chain ends at row 3, so rows "
            "were cut off its end"
        )


def test_a_rewritten_history_fails_against_the_anchor_and_a_longer_chain_passes(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    db = tmp_path / "wl.db"
    ids = enrol_three(db, project_descriptors, clock)
    published = audit.Anchor.parse(json.dumps(_payload(db, clock)))  # as the daemon publishes it
    assert published.row_id == 3
    with Watchlist.open(db, model_id=MODEL, dimensions=128, clock=clock) as watchlist:
        watchlist.record_match(ids[1], "edge-agent:test", {"event_id": "e-2"})  # later rows are fine
        assert audit.verify_against(watchlist.conn, published).ok
    # rewrite row 2 onward with recomputed hashes: the chain verifies on its own, not against the anchor
    sql(db, "DROP TRIGGER audit_no_update")
    conn = sqlite3.connect(db, isolation_level=None)
    rows = audit.rows(conn)
    previous = rows[0].hash
    for row in rows[1:]:
        actor = "forger" if row.id == 2 else row.actor
        digest = audit.row_hash(row.id, row.at, actor, row.action, row.subject_id, row.details_json, previous)
        conn.execute(
            "UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?",
            (actor, previous, digest, row.id),
        )
        previous = digest
    conn.close()
    assert check(db, clock).ok
    rewritten = check(db, clock, published)
    assert not rewritten.ok and rewritten.first_bad_id == 3
    assert rewritten.reason == "row 3: hash differs from the anchor's, so the chain was rewritten up to row 3"


def _payload(db: Path, clock: Clock) -> dict[str, object]:
    with Watchlist.open(db, model_id=MODEL, dimensions=128, clock=clock) as watchlist:
        payload = audit.anchor_payload(watchlist.conn, device_id="edge-1", now=clock.now)
        assert payload["device_id"] == "edge-1" and payload["at"] == "2026-11-23T12:00:00+00:00"
        return payload


@pytest.mark.parametrize(
    "text",
    ["", "3", "3:abc", f"-1:{'0' * 64}", f"3:{'A' * 64}", '{"row_id": "3", "hash": "x"}', "[1]", "{bad"],
)
def test_a_malformed_anchor_is_a_one_line_error(text: str) -> None:
    with pytest.raises(EdgeAgentError, match=r"^--against: "):
        audit.Anchor.parse(text, "--against")


def test_the_cli_refuses_a_bad_anchor_in_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    bad = run_cli("watchlist", "audit", "verify", "--against", "12:nothex", env=env)
    assert bad.returncode == 1 and "is not an audit anchor" in one_error(bad.stderr)
    missing = run_cli("watchlist", "audit", "verify", "--against", f"@{tmp_path / 'none.txt'}", env=env)
    assert missing.returncode == 1 and "No such file" in one_error(missing.stderr)

"""The hash-chained audit log: appends chain, verify finds the first edited, deleted or relinked row."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from edge_agent.watchlist import audit
from edge_agent.watchlist.schema import migrate

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "watchlist.sqlite"
    connection = sqlite3.connect(path, isolation_level=None)
    migrate(connection, str(path))
    yield connection
    connection.close()


def add(conn: sqlite3.Connection, count: int, subject_id: str | None = "s-1") -> list[audit.AuditRow]:
    """`count` rows in one transaction, one minute apart."""
    start = len(audit.rows(conn))
    conn.execute("BEGIN IMMEDIATE")
    added = [
        audit.append(
            conn,
            actor="operator",
            action="enrol",
            subject_id=subject_id,
            details={"n": start + i, "name": "Zoë"},
            at=T0 + timedelta(minutes=start + i),
        )
        for i in range(count)
    ]
    conn.execute("COMMIT")
    return added


def drop_guards(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("DROP TRIGGER audit_no_delete")


def test_empty_log_verifies_and_its_head_is_genesis(conn: sqlite3.Connection) -> None:
    assert audit.verify(conn) == audit.AuditCheck(
        ok=True, rows=0, first_bad_id=None, reason="0 rows, hash chain intact"
    )
    assert audit.head(conn) == audit.GENESIS_HASH == "0" * 64


def test_rows_chain_from_genesis_and_hash_their_canonical_contents(conn: sqlite3.Connection) -> None:
    first, second = add(conn, 2)
    assert (first.id, second.id) == (1, 2)
    assert first.prev_hash == audit.GENESIS_HASH
    assert second.prev_hash == first.hash
    assert audit.head(conn) == second.hash
    assert first.details_json == '{"n":0,"name":"Zoë"}'
    assert first.details == {"n": 0, "name": "Zoë"}
    expected = json.dumps(
        [1, first.at, "operator", "enrol", "s-1", first.details_json, audit.GENESIS_HASH],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert first.hash == hashlib.sha256(expected.encode()).hexdigest()
    assert audit.rows(conn) == [first, second]
    assert audit.verify(conn) == audit.AuditCheck(True, 2, None, "2 rows, hash chain intact")


def test_times_are_stored_as_utc_and_naive_times_are_refused(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    tokyo = datetime(2026, 11, 23, 21, 0, tzinfo=timezone(timedelta(hours=9)))
    row = audit.append(conn, actor="a", action="x", subject_id=None, details={}, at=tokyo)
    assert row.at == "2026-11-23T12:00:00+00:00"
    with pytest.raises(ValueError, match="timezone-aware"):
        audit.append(conn, actor="a", action="x", subject_id=None, details={}, at=datetime(2026, 1, 1))
    conn.execute("COMMIT")


def test_append_outside_a_transaction_is_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(RuntimeError, match="inside the caller's transaction"):
        audit.append(conn, actor="a", action="x", subject_id=None, details={}, at=T0)


def test_a_rolled_back_transaction_leaves_no_audit_row(conn: sqlite3.Connection) -> None:
    add(conn, 1)
    conn.execute("BEGIN")
    audit.append(conn, actor="a", action="x", subject_id=None, details={}, at=T0)
    conn.execute("ROLLBACK")
    assert [row.id for row in audit.rows(conn)] == [1]
    assert audit.verify(conn).ok


def test_rows_filters_by_subject_and_keeps_the_most_recent(conn: sqlite3.Connection) -> None:
    add(conn, 3, subject_id="s-1")
    add(conn, 2, subject_id="s-2")
    add(conn, 1, subject_id=None)
    assert [row.id for row in audit.rows(conn, subject_id="s-2")] == [4, 5]
    assert [row.id for row in audit.rows(conn, limit=2)] == [5, 6]
    assert [row.id for row in audit.rows(conn, subject_id="s-1", limit=2)] == [2, 3]
    assert audit.rows(conn, limit=0) == []


def test_the_triggers_refuse_update_and_delete(conn: sqlite3.Connection) -> None:
    add(conn, 2)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET details = '{}' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE id = 2")
    assert audit.verify(conn).ok


def test_an_edited_row_is_reported(conn: sqlite3.Connection) -> None:
    add(conn, 9)
    drop_guards(conn)
    conn.execute("""UPDATE audit SET details = '{"n":6,"name":"Mallory"}' WHERE id = 7""")
    assert audit.verify(conn) == audit.AuditCheck(False, 7, 7, "row 7: hash does not match its contents")


def test_an_edited_row_with_a_recomputed_hash_breaks_the_next_link(conn: sqlite3.Connection) -> None:
    rows = add(conn, 9)
    drop_guards(conn)
    forged = rows[6]
    details = '{"n":6,"name":"Mallory"}'
    digest = audit.row_hash(7, forged.at, forged.actor, forged.action, "s-1", details, forged.prev_hash)
    conn.execute("UPDATE audit SET details = ?, hash = ? WHERE id = 7", (details, digest))
    assert audit.verify(conn) == audit.AuditCheck(False, 8, 8, "row 8: prev_hash does not match row 7")


def test_a_forged_first_row_must_link_to_genesis(conn: sqlite3.Connection) -> None:
    add(conn, 2)
    drop_guards(conn)
    row = audit.rows(conn)[0]
    prev = "1" * 64
    digest = audit.row_hash(1, row.at, row.actor, row.action, row.subject_id, row.details_json, prev)
    conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = 1", (prev, digest))
    assert audit.verify(conn) == audit.AuditCheck(False, 1, 1, "row 1: prev_hash is not the genesis hash")


def test_a_deleted_row_is_reported(conn: sqlite3.Connection) -> None:
    add(conn, 9)
    drop_guards(conn)
    conn.execute("DELETE FROM audit WHERE id = 5")
    assert audit.verify(conn) == audit.AuditCheck(False, 5, 5, "row 5 is missing")
    conn.execute("DELETE FROM audit WHERE id IN (6, 7)")
    assert audit.verify(conn).reason == "rows 5 to 7 are missing"


def test_a_column_of_the_wrong_type_is_a_mismatch_not_a_crash(conn: sqlite3.Connection) -> None:
    add(conn, 3)
    drop_guards(conn)
    conn.execute("UPDATE audit SET details = x'00ff' WHERE id = 2")
    assert audit.verify(conn).reason == "row 2: hash does not match its contents"


def test_a_truncated_tail_is_caught_only_against_a_published_anchor(conn: sqlite3.Connection) -> None:
    rows = add(conn, 4)
    published = audit.anchor(conn)
    assert published == audit.Anchor(4, rows[3].hash, rows[3].at)
    assert published.text == f"4:{rows[3].hash}" and audit.Anchor.parse(published.text).text == published.text
    assert audit.verify_against(conn, published).ok
    drop_guards(conn)
    conn.execute("DELETE FROM audit WHERE id = 4")
    assert audit.verify(conn).ok  # a shorter chain is still a chain...
    assert audit.head(conn) != published.hash  # ...which is why a device anchors its head elsewhere
    cut = audit.verify_against(conn, published)
    assert cut == audit.AuditCheck(
        False, 3, 4, "the anchor's row 4 is missing: the chain ends at row 3, so rows were cut off its end"
    )

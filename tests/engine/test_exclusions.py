"""Reviewer feedback as exclusion templates, on real faces of the shared people/ and strangers/ photos.

A reviewer's `false_match` verdict on a match event keeps that event's face embedding as an exclusion of
the subject: a probe nearer to the exclusion than to the subject's best own template no longer returns
that subject, while the subject's own photos still do.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.errors import EdgeAgentError
from edge_agent.events.schema import MatchEvent
from edge_agent.events.store import EventStore
from edge_agent.sqlite_schema import migrate as migrate_file
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist import audit, store, subject_hashes
from edge_agent.watchlist.records import NewTemplate, Subject
from edge_agent.watchlist.schema import MIGRATIONS, SCHEMA_VERSION
from edge_agent.watchlist.store import Watchlist
from tests.kits.clihelp import run_cli
from tests.kits.watchlist_kit import MODEL, Clock, calibrated_threshold, new_subject, open_watchlist

Descriptors = dict[Path, npt.NDArray[np.float32]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def identity(path: Path) -> str:
    """`people/<identity>/<photo>` is that identity; each `strangers/` photo is a person of its own."""
    return path.parent.name if path.parent.parent.name == "people" else f"stranger {path.stem}"


@dataclass(frozen=True)
class LookAlike:
    """The closest impostor pair whose enrolled side has other photos of the same person."""

    enrolled: Path  # person A's photo on the watchlist
    impostor: Path  # person B, someone else, the nearest to A of all impostor pairs
    others: tuple[Path, ...]  # A's other photos, never enrolled
    distance: float  # between A's enrolled photo and B, float32 descriptors

    @property
    def people(self) -> set[str]:
        return {identity(self.enrolled), identity(self.impostor)}


@pytest.fixture(scope="module")
def lookalike(project_descriptors: Descriptors, faces_dir: Path) -> LookAlike:
    """Every impostor pair (different people) of the people/ and strangers/ photos, nearest first; A is the
    side of the nearest pair whose person has other photos in people/, so A's other photos can show that A
    still matches. (The nearest pair of all may be two strangers, one photo each: it is printed too.)"""
    photos: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(project_descriptors):
        photos[identity(path)].append(path)
    pairs = sorted(
        (float(np.linalg.norm(project_descriptors[a] - project_descriptors[b])), a, b)
        for a, b in itertools.combinations(sorted(project_descriptors), 2)
        if identity(a) != identity(b)
    )
    distance, a, b = pairs[0]
    print(f"nearest impostor pair: {a.relative_to(faces_dir)} ~ {b.relative_to(faces_dir)} at {distance:.4f}")
    for distance, a, b in pairs:
        for enrolled, impostor in ((a, b), (b, a)):
            others = tuple(p for p in photos[identity(enrolled)] if p != enrolled)
            if others:
                print(
                    f"look-alike pair used: A={enrolled.relative_to(faces_dir)} "
                    f"B={impostor.relative_to(faces_dir)} at {distance:.4f}; "
                    f"A's other photos: {', '.join(p.name for p in others)}"
                )
                return LookAlike(enrolled, impostor, others, distance)
    raise AssertionError("no impostor pair has a person with several photos")


@pytest.fixture
def strict_threshold(catalog: ModelCatalog) -> float:
    return calibrated_threshold(catalog)


def enrol(
    watchlist: Watchlist,
    name: str,
    photos: list[Path],
    descriptors: Descriptors,
    clock: Clock,
    days: int = 30,
) -> Subject:
    templates = [NewTemplate(descriptors[p], 0.9, hashlib.sha256(p.read_bytes()).hexdigest()) for p in photos]
    return watchlist.enroll(new_subject(name, clock, days), templates)


def found(watchlist: Watchlist, probe: npt.NDArray[np.float32]) -> dict[str, float]:
    """Subject id -> distance of everything the search returns for this probe."""
    return {m.subject.id: m.distance for m in watchlist.search(probe, k=10)}


def snapshot(watchlist: Watchlist) -> tuple[object, ...]:
    """Everything a refused write must leave unchanged."""
    tables = ("subjects", "templates", "exclusions", "audit")
    return tuple(
        [tuple(row) for row in watchlist.conn.execute(f"SELECT * FROM {table} ORDER BY 1")]
        for table in tables
    )


def test_a_false_match_verdict_stops_the_lookalike_but_not_the_subject(
    tmp_path: Path,
    project_descriptors: Descriptors,
    lookalike: LookAlike,
    clock: Clock,
    strict_threshold: float,
    make_match_event: Callable[..., MatchEvent],
) -> None:
    a_face, b_face = project_descriptors[lookalike.enrolled], project_descriptors[lookalike.impostor]
    # The calibrated threshold (false-match rate 1e-4) is far stricter than any impostor distance among
    # these photos, so no false match would happen under it. A deliberately loose threshold just above the
    # look-alike's distance plays a permissive operating point, under which B really is matched to A: the
    # situation a reviewer's `false_match` verdict exists for.
    assert lookalike.distance > strict_threshold
    loose = lookalike.distance + 0.02
    print(f"strict threshold (FMR 1e-4) {strict_threshold:.4f}, loose threshold {loose:.4f}")
    with open_watchlist(tmp_path, clock) as watchlist:
        a = enrol(watchlist, "person A", [lookalike.enrolled], project_descriptors, clock)
        before = found(watchlist, b_face)
        assert list(before) == [a.id] and before[a.id] == pytest.approx(lookalike.distance, abs=1e-5)
        assert before[a.id] < loose  # the false match
        others_before = {p: found(watchlist, project_descriptors[p]) for p in lookalike.others}
        assert all(list(hits) == [a.id] and hits[a.id] < loose for hits in others_before.values())

        # the device kept the matched face with its event; the reviewer's verdict reads it back from there
        event = make_match_event(subject_id=a.id, watchlist="test", distance=before[a.id], threshold=loose)
        with EventStore.open(
            tmp_path / "events.db", max_events=100, max_age_s=3600.0, review_days=30.0
        ) as events:
            events.commit_match(event, "edge-agent/edge-1/events/match", b_face)
            kept = events.review(str(event.event_id))
        assert kept is not None
        expires = clock.now + timedelta(days=90)
        exclusion = watchlist.add_exclusion(a.id, str(event.event_id), kept[1], "reviewer-1", expires)

        assert found(watchlist, b_face) == {}  # B no longer returns A: the decision stage never sees A
        for photo in lookalike.others:  # A's other photos still return A, at the same distance
            hits = found(watchlist, project_descriptors[photo])
            to_exclusion = float(np.linalg.norm(project_descriptors[photo] - b_face))
            print(f"{photo.name}: A at {hits[a.id]:.4f}, the exclusion at {to_exclusion:.4f}")
            assert hits == others_before[photo] and hits[a.id] < loose
        assert found(watchlist, a_face) == {a.id: pytest.approx(0.0, abs=1e-6)}

        assert watchlist.exclusions(a.id) == [exclusion]
        assert (exclusion.event_id, exclusion.created_by) == (str(event.event_id), "reviewer-1")
        assert exclusion.expires_at == "2027-02-21T12:00:00+00:00"
        row = audit.rows(watchlist.conn)[-1]
        assert (row.action, row.actor, row.subject_id) == ("exclusion", "reviewer-1", a.id)
        assert row.details == {"event_id": str(event.event_id), "expires_at": exclusion.expires_at} | {
            "model_id": MODEL
        }
        assert audit.verify(watchlist.conn).ok


def test_an_exclusion_hides_only_its_own_subject(
    tmp_path: Path, project_descriptors: Descriptors, lookalike: LookAlike, clock: Clock
) -> None:
    """B on the watchlist as well: B's probe still returns B, only A is dropped."""
    b_face = project_descriptors[lookalike.impostor]
    with open_watchlist(tmp_path, clock) as watchlist:
        a = enrol(watchlist, "person A", [lookalike.enrolled], project_descriptors, clock)
        b = enrol(watchlist, "person B", [lookalike.impostor], project_descriptors, clock)
        assert list(found(watchlist, b_face)) == [b.id, a.id]
        watchlist.add_exclusion(a.id, "event-1", b_face, "reviewer-1", clock.now + timedelta(days=30))
        assert list(found(watchlist, b_face)) == [b.id]


def test_a_v1_watchlist_upgrades_in_place(
    tmp_path: Path,
    project_descriptors: Descriptors,
    lookalike: LookAlike,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def v1_only(conn: sqlite3.Connection, path: str) -> int:
        return migrate_file(conn, path, "watchlist", MIGRATIONS[:1])

    with monkeypatch.context() as patched:  # the watchlist as schema version 1 wrote it
        patched.setattr(store, "migrate", v1_only)
        with open_watchlist(tmp_path, clock) as old:
            a = enrol(old, "person A", [lookalike.enrolled], project_descriptors, clock)
            third = next(p for p in sorted(project_descriptors) if identity(p) not in lookalike.people)
            enrol(old, "someone else", [third], project_descriptors, clock)
            old.record_match(a.id, "edge-agent:edge-1", {"event_id": "event-0", "distance": 0.3})
            assert old.conn.execute("PRAGMA user_version").fetchone()[0] == 1
            tables = {row[0] for row in old.conn.execute("SELECT name FROM sqlite_master")}
            assert "exclusions" not in tables and "subjects" in tables
            before = snapshot_v1(old)
    assert SCHEMA_VERSION >= 2  # exclusions came with version 2; later versions upgrade through it
    with open_watchlist(tmp_path, clock) as upgraded:
        assert upgraded.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert upgraded.notices == []  # the index agreed with the (unchanged) templates
        subjects, templates, rows = snapshot_v1(upgraded)
        assert isinstance(rows, list)
        assert (subjects, templates, rows[:-1]) == before  # nothing changed, one audit row added:
        migration = audit.rows(upgraded.conn)[-1]  # the v4 upgrade records every subject's hash
        assert (migration.action, migration.subject_id) == ("schema_migration", None)
        assert migration.details["subject_sha256"] == subject_hashes.subject_digests(upgraded.conn)
        assert len(subject_hashes.subject_digests(upgraded.conn)) == 2
        assert audit.verify(upgraded.conn).ok
        b_face = project_descriptors[lookalike.impostor]
        assert a.id in found(upgraded, b_face)
        upgraded.add_exclusion(a.id, "event-0", b_face, "reviewer-1", clock.now + timedelta(days=1))
        assert a.id not in found(upgraded, b_face) and len(found(upgraded, b_face)) == 1
        check = audit.verify(upgraded.conn)
        assert check.ok and check.rows == 5
    with open_watchlist(tmp_path, clock) as again:  # an upgraded file opens as it is
        assert [e.event_id for e in again.exclusions(a.id)] == ["event-0"]


def snapshot_v1(watchlist: Watchlist) -> tuple[object, ...]:
    tables = ("subjects", "templates", "audit")
    return tuple(
        [tuple(row) for row in watchlist.conn.execute(f"SELECT * FROM {table} ORDER BY 1")]
        for table in tables
    )


def test_refused_exclusions_write_nothing(
    tmp_path: Path, project_descriptors: Descriptors, lookalike: LookAlike, clock: Clock
) -> None:
    b_face = project_descriptors[lookalike.impostor]
    later = clock.now + timedelta(days=30)
    with open_watchlist(tmp_path, clock) as watchlist:
        a = enrol(watchlist, "person A", [lookalike.enrolled], project_descriptors, clock)
        gone = enrol(watchlist, "removed", [lookalike.others[0]], project_descriptors, clock)
        watchlist.remove(gone.id, "pytest", "entered in error")
        short = enrol(watchlist, "short", [lookalike.others[-1]], project_descriptors, clock, days=1)
        watchlist.add_exclusion(a.id, "event-1", b_face, "reviewer-1", later)
        clock.now += timedelta(days=2)  # `short` has expired, not yet purged
        cases: list[tuple[str, str, object, str, datetime, str]] = [
            ("s-000000000000", "event-2", b_face, "r", later, "no subject with id 's-000000000000'"),
            (gone.id, "event-2", b_face, "r", later, f"subject {gone.id} is removed"),
            (short.id, "event-2", b_face, "r", later, f"subject {short.id} is expired"),
            (a.id, "event-2", b_face[:64], "r", later, r"must have 128 values, got shape \(64,\)"),
            (
                a.id,
                "event-2",
                b_face.reshape(2, 64),
                "r",
                later,
                r"must have 128 values, got shape \(2, 64\)",
            ),
            (a.id, "event-2", b_face[:0][None, :], "r", later, r"must have 128 values, got shape \(1, 0\)"),
            (a.id, "event-2", np.full(128, np.nan, np.float32), "r", later, "NaN or infinite"),
            (a.id, "event-1", b_face, "r", later, "event event-1 already has an exclusion"),
            (a.id, "event-2", b_face, "r", clock.now - timedelta(days=1), "is not in the future"),
            (a.id, "event-2", b_face, "r", clock.now, "is not in the future"),
            (a.id, "event-2", b_face, "r", datetime(2030, 1, 1), "has no time zone"),  # a naive time
            (a.id, " ", b_face, "r", later, "needs the event id"),
            (a.id, "event-2", b_face, " ", later, "needs the reviewer"),
        ]
        before = snapshot(watchlist)
        for subject_id, event_id, embedding, actor, expires, message in cases:
            with pytest.raises(EdgeAgentError, match=message) as refused:
                watchlist.add_exclusion(subject_id, event_id, embedding, actor, expires)  # type: ignore[arg-type]
            assert "\n" not in str(refused.value)
            assert snapshot(watchlist) == before, message
        assert audit.verify(watchlist.conn).ok


def test_expired_exclusions_are_ignored_then_purged(
    tmp_path: Path, project_descriptors: Descriptors, lookalike: LookAlike, clock: Clock
) -> None:
    b_face = project_descriptors[lookalike.impostor]
    with open_watchlist(tmp_path, clock) as watchlist:
        a = enrol(watchlist, "person A", [lookalike.enrolled], project_descriptors, clock)
        watchlist.add_exclusion(a.id, "event-1", b_face, "reviewer-1", clock.now + timedelta(days=1))
        assert found(watchlist, b_face) == {}
        clock.now += timedelta(days=1)  # expiry is exclusive: at its expiry time an exclusion is over
        assert list(found(watchlist, b_face)) == [a.id]
        assert [e.event_id for e in watchlist.exclusions(a.id)] == ["event-1"]  # ignored, not yet purged
        assert watchlist.purge_expired("edge-agent:edge-1") == []  # A itself is still live
        assert watchlist.exclusions(a.id) == []
        assert watchlist.conn.execute("SELECT count(*) FROM exclusions").fetchone()[0] == 0
        row = audit.rows(watchlist.conn)[-1]
        assert (row.action, row.subject_id, row.actor) == ("exclusion_expired", a.id, "edge-agent:edge-1")
        assert row.details == {"event_id": "event-1", "expires_at": "2026-11-24T12:00:00+00:00"}
        assert watchlist.purge_expired("edge-agent:edge-1") == []
        assert [r.action for r in audit.rows(watchlist.conn)] == ["enroll", "exclusion", "exclusion_expired"]
        assert audit.verify(watchlist.conn).ok


def test_removal_and_expiry_of_a_subject_delete_its_exclusions(
    tmp_path: Path, project_descriptors: Descriptors, lookalike: LookAlike, clock: Clock
) -> None:
    b_face = project_descriptors[lookalike.impostor]
    later = clock.now + timedelta(days=30)
    with open_watchlist(tmp_path, clock) as watchlist:
        removed = enrol(watchlist, "removed", [lookalike.enrolled], project_descriptors, clock)
        expiring = enrol(watchlist, "expiring", list(lookalike.others), project_descriptors, clock, days=1)
        first = watchlist.add_exclusion(removed.id, "event-1", b_face, "reviewer-1", later)
        second = watchlist.add_exclusion(expiring.id, "event-2", b_face, "reviewer-1", later)

        watchlist.remove(removed.id, "pytest", "entered in error")
        assert watchlist.exclusions(removed.id) == []
        assert audit.rows(watchlist.conn)[-1].details["exclusions_deleted"] == [first.id]

        clock.now += timedelta(days=2)
        assert [s.id for s in watchlist.purge_expired("pytest")] == [expiring.id]
        assert watchlist.exclusions(expiring.id) == []
        last = audit.rows(watchlist.conn)[-1]
        assert last.action == "purge" and last.details["exclusions_deleted"] == [second.id]
        assert watchlist.conn.execute("SELECT count(*) FROM exclusions").fetchone()[0] == 0
        assert audit.verify(watchlist.conn).ok


def test_search_without_exclusions_costs_one_indexed_query(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    with open_watchlist(tmp_path, clock) as watchlist:
        grouped: dict[str, list[Path]] = defaultdict(list)
        for path in sorted(project_descriptors):
            grouped[identity(path)].append(path)
        for name, photos in grouped.items():
            enrol(watchlist, name, photos[:1], project_descriptors, clock)
        statements: list[str] = []
        watchlist.conn.set_trace_callback(statements.append)
        matches = watchlist.search(next(iter(project_descriptors.values())), k=3)
        watchlist.conn.set_trace_callback(None)
        assert len(matches) == 3
        on_exclusions = [s for s in statements if "exclusions" in s]
        assert len(on_exclusions) == 1, statements
        plan = " ".join(
            str(row[3]) for row in watchlist.conn.execute(f"EXPLAIN QUERY PLAN {on_exclusions[0]}")
        )
        assert "USING INDEX exclusions_subject" in plan, plan


def test_show_lists_a_subjects_exclusions(
    tmp_path: Path, project_descriptors: Descriptors, lookalike: LookAlike, clock: Clock
) -> None:
    clock.now = datetime.now(UTC).replace(microsecond=0)  # the command reads the real clock
    with open_watchlist(tmp_path, clock) as watchlist:
        a = enrol(watchlist, "person A", [lookalike.enrolled], project_descriptors, clock)
        exclusion = watchlist.add_exclusion(
            a.id,
            "event-1",
            project_descriptors[lookalike.impostor],
            "reviewer-1",
            clock.now + timedelta(days=7),
        )
    env = os.environ | {"EDGE_AGENT_WATCHLIST__PATH": str(tmp_path / "wl.db")}
    shown = run_cli("watchlist", "show", a.id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["exclusions"] == [
        {
            "id": exclusion.id,
            "subject_id": a.id,
            "event_id": "event-1",
            "created_at": exclusion.created_at,
            "expires_at": exclusion.expires_at,
            "created_by": "reviewer-1",
        }
    ]
    assert [row["action"] for row in record["audit"]] == ["enroll", "exclusion"]
    assert "embedding" not in shown.stdout

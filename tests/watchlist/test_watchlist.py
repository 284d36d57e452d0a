"""The watchlist store with real descriptors of the shared people/ and strangers/ photos."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.errors import EdgeAgentError
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist import audit
from edge_agent.watchlist.records import NewTemplate
from edge_agent.watchlist.store import Watchlist, index_path_for
from tests.kits.watchlist_kit import MODEL, Clock, calibrated_threshold, new_subject, open_watchlist

Descriptors = dict[Path, npt.NDArray[np.float32]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def threshold(catalog: ModelCatalog) -> float:
    return calibrated_threshold(catalog)


def template(path: Path, descriptors: Descriptors) -> NewTemplate:
    return NewTemplate(descriptors[path], 0.9, hashlib.sha256(path.read_bytes()).hexdigest())


def people(descriptors: Descriptors) -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = defaultdict(list)
    for path in descriptors:
        if path.parent.parent.name == "people":
            grouped[path.parent.name].append(path)
    return grouped


def enrol_first_photos(watchlist: Watchlist, descriptors: Descriptors, clock: Clock) -> dict[str, str]:
    """Each person's first photo enrolled; returns identity -> subject id."""
    ids = {}
    for identity, paths in sorted(people(descriptors).items()):
        ids[identity] = watchlist.enroll(new_subject(identity, clock), [template(paths[0], descriptors)]).id
    return ids


def test_search_finds_each_enrolled_person_first(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    """Rank 1 is the right person for every other photo of them (whether it clears the strict 1e-4
    threshold is a matter of the calibrated true-match rate, about 69% on LFW pairs)."""
    with open_watchlist(tmp_path, clock) as watchlist:
        ids = enrol_first_photos(watchlist, project_descriptors, clock)
        for identity, paths in people(project_descriptors).items():
            for probe in paths[1:]:
                best = watchlist.search(project_descriptors[probe], k=3)[0]
                print(f"{probe.name}: {best.subject.display_name} at {best.distance:.3f}")
                assert best.subject.id == ids[identity]


def test_strangers_match_no_subject(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock, threshold: float
) -> None:
    with open_watchlist(tmp_path, clock) as watchlist:
        enrol_first_photos(watchlist, project_descriptors, clock)
        strangers = [p for p in project_descriptors if p.parent.name == "strangers"]
        assert len(strangers) == 4
        for probe in strangers:
            matches = watchlist.search(project_descriptors[probe], k=5)
            assert matches and all(m.distance >= threshold for m in matches)


def test_search_returns_subjects_not_templates(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    obama = people(project_descriptors)["barack_obama"]
    with open_watchlist(tmp_path, clock) as watchlist:
        enrolled = watchlist.enroll(
            new_subject("obama", clock), [template(p, project_descriptors) for p in obama[:3]]
        )
        assert enrolled.templates == 3
        matches = watchlist.search(project_descriptors[obama[3]], k=5)
        assert [m.subject.id for m in matches] == [enrolled.id]
        exact = min(np.linalg.norm(project_descriptors[p] - project_descriptors[obama[3]]) for p in obama[:3])
        assert matches[0].distance == pytest.approx(float(exact), abs=1e-5)


def test_expired_subjects_never_match_even_before_a_purge(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    biden = people(project_descriptors)["joe_biden"]
    with open_watchlist(tmp_path, clock) as watchlist:
        short = watchlist.enroll(
            new_subject("biden", clock, days=1), [template(biden[0], project_descriptors)]
        )
        assert watchlist.search(project_descriptors[biden[1]])[0].subject.id == short.id
        clock.now += timedelta(days=2)
        assert watchlist.search(project_descriptors[biden[1]]) == []
        assert watchlist.stats().live_subjects == 0
        purged = watchlist.purge_expired("pytest")
        assert [s.id for s in purged] == [short.id] and purged[0].status == "expired"
        assert watchlist.templates(short.id) == [] and len(watchlist.index) == 0
        assert [row.action for row in audit.rows(watchlist.conn)] == ["enroll", "purge"]


def test_remove_really_removes(tmp_path: Path, project_descriptors: Descriptors, clock: Clock) -> None:
    with open_watchlist(tmp_path, clock) as watchlist:
        ids = enrol_first_photos(watchlist, project_descriptors, clock)
        rose = people(project_descriptors)["rose_leslie"]
        before = len(watchlist.index)
        removed = watchlist.remove(ids["rose_leslie"], "pytest", "entered in error")
        assert removed.status == "removed" and removed.templates == 0
        assert len(watchlist.index) == before - 1
        assert all(m.subject.id != removed.id for m in watchlist.search(project_descriptors[rose[1]], k=10))
        with pytest.raises(EdgeAgentError, match="already removed"):
            watchlist.remove(removed.id, "pytest", "again")
    with open_watchlist(tmp_path, clock) as reopened:
        assert reopened.notices == []  # the saved index agreed with SQLite
        assert len(reopened.index) == before - 1


def test_audit_chain_verifies_and_catches_an_edited_row(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    with open_watchlist(tmp_path, clock) as watchlist:
        ids = enrol_first_photos(watchlist, project_descriptors, clock)
        watchlist.remove(ids["joe_biden"], "pytest", "test")
        check = audit.verify(watchlist.conn)
        assert check.ok and check.rows == len(ids) + 1
        watchlist.conn.execute("DROP TRIGGER audit_no_update")
        watchlist.conn.execute("UPDATE audit SET actor = 'someone else' WHERE id = 3")
        broken = audit.verify(watchlist.conn)
        assert not broken.ok and broken.first_bad_id == 3


def test_an_enrolment_is_all_or_nothing(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    alex = people(project_descriptors)["alex_lacamoire"]
    good = template(alex[0], project_descriptors)
    with open_watchlist(tmp_path, clock) as watchlist:
        duplicate = watchlist.enroll(new_subject("alex", clock), [good])
        with pytest.raises(EdgeAgentError, match="already exists"):
            watchlist.enroll(new_subject("alex again", clock), [good, good], subject_id=duplicate.id)
        assert watchlist.conn.execute("SELECT count(*) FROM templates").fetchone()[0] == 1
        assert len(audit.rows(watchlist.conn)) == 1 and len(watchlist.index) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"embedding": np.zeros(64, np.float32)}, "must have 128 values"),
        ({"photo_sha256": "abc"}, "64 lowercase hex"),
    ],
)
def test_bad_templates_are_refused_and_nothing_is_written(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock, change: dict[str, object], message: str
) -> None:
    path = next(iter(project_descriptors))
    fields = {"embedding": project_descriptors[path], "quality": 0.9, "photo_sha256": "0" * 64} | change
    with open_watchlist(tmp_path, clock) as watchlist:
        with pytest.raises(EdgeAgentError, match=message):
            watchlist.enroll(new_subject("x", clock), [NewTemplate(**fields)])  # type: ignore[arg-type]
        assert watchlist.subjects(include_inactive=True) == []


def test_an_expiry_in_the_past_is_refused(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    path = next(iter(project_descriptors))
    with open_watchlist(tmp_path, clock) as watchlist:
        with pytest.raises(EdgeAgentError, match="is not in the future"):
            watchlist.enroll(new_subject("late", clock, days=-1), [template(path, project_descriptors)])
        assert audit.rows(watchlist.conn) == []


def test_a_lost_or_stale_index_is_rebuilt_from_sqlite(
    tmp_path: Path, project_descriptors: Descriptors, clock: Clock
) -> None:
    with open_watchlist(tmp_path, clock) as watchlist:
        ids = enrol_first_photos(watchlist, project_descriptors, clock)
    index_file = index_path_for(tmp_path / "wl.db", MODEL)
    index_file.unlink()
    with open_watchlist(tmp_path, clock) as reopened:
        assert reopened.notices and "rebuilt from SQLite" in reopened.notices[0]
        assert len(reopened.index) == len(ids)
        reopened.index.add(np.array([999_999]), np.stack([next(iter(project_descriptors.values()))]))
        reopened.index.save()  # an orphan vector, as a crash between index save and SQLite commit would leave
    with open_watchlist(tmp_path, clock) as repaired:
        assert "the index had 7 vector(s), SQLite has 6 template(s)" in repaired.notices[0]
        assert repaired.index.keys() == {int(r[0]) for r in repaired.conn.execute("SELECT id FROM templates")}


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "wl.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(EdgeAgentError, match="not a usable watchlist database"):
        Watchlist.open(bogus, model_id=MODEL, dimensions=128)

"""Deleted biometrics leave the index file: after a removal or an expiry purge, the raw bytes of
`<db>.index/<model>.usearch` hold no encoding of the retired templates' vectors, in any dtype the index
stores, while a kept subject's vector is still found (so each check can fail), and the file shrinks.

Real descriptors of the shared people/ photos. usearch stores f32 and f16 as little-endian floats and i8
as the unit vector times 127, truncated toward zero (`static_cast<int8_t>`, checked against the kept
vectors below); the exact byte sequences are searched for, and
a sliding window decodes the file at every byte offset as the index's dtype and measures the nearest
window to each vector, so a vector stored in some other layout would still be found.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from usearch.index import Index

from edge_agent.watchlist import audit
from edge_agent.watchlist.index import IndexDtype, temporary_path_for
from edge_agent.watchlist.records import NewTemplate
from edge_agent.watchlist.store import Watchlist, index_path_for
from tests.kits.watchlist_kit import MODEL, Clock, new_subject

Descriptors = dict[Path, npt.NDArray[np.float32]]
DTYPES: tuple[IndexDtype, ...] = ("f32", "f16", "i8")
# Nearest decoded window: a stored vector is within its quantisation error (f16 about 3e-4, i8 under
# 0.09 = sqrt(128)/127), anything else is further than any two photos of one person (over 0.25).
FOUND = {"f32": 1e-6, "f16": 2e-3, "i8": 0.1}
ABSENT = 0.2


def encodings(vector: npt.NDArray[np.float32]) -> dict[str, bytes]:
    """The vector as each dtype's index stores it."""
    unit = vector.astype(np.float32) / np.float32(np.linalg.norm(vector))
    as_i8 = np.clip(unit * np.float32(127.0), -127.0, 127.0).astype(np.int8)  # astype truncates
    return {
        "f32": vector.astype("<f4").tobytes(),
        "f16": vector.astype("<f2").tobytes(),
        "i8": as_i8.tobytes(),
    }


def nearest_window(data: bytes, vector: npt.NDArray[np.float32], dtype: str) -> float:
    """The smallest L2 distance between `vector` and the file decoded as `dtype` from any byte offset."""
    code, scale = {"f32": ("<f4", 1.0), "f16": ("<f2", 1.0), "i8": ("i1", 127.0)}[dtype]
    if dtype == "i8":  # i8 holds the direction only
        vector = vector / np.linalg.norm(vector)
    size, dims = np.dtype(code).itemsize, vector.shape[0]
    best = np.inf
    for shift in range(size):
        usable = (len(data) - shift) // size * size
        with np.errstate(invalid="ignore", over="ignore"):
            values = np.frombuffer(data[shift : shift + usable], dtype=code).astype(np.float64) / scale
        values[~np.isfinite(values)] = 1e4  # NaN or infinity (garbage read as floats) is far from a face
        if len(values) < dims:
            continue
        windows = sliding_window_view(values, dims)
        for start in range(0, len(windows), 4096):
            chunk = windows[start : start + 4096]
            best = min(best, float(np.min(np.linalg.norm(chunk - vector, axis=1))))
    return best


def assert_absent(data: bytes, vector: npt.NDArray[np.float32], dtype: str) -> None:
    for kind, encoded in encodings(vector).items():
        assert encoded not in data, f"the {kind} encoding of a deleted vector is still in the file"
    assert nearest_window(data, vector, dtype) > ABSENT


def assert_present(data: bytes, vector: npt.NDArray[np.float32], dtype: str) -> None:
    assert encodings(vector)[dtype] in data
    assert nearest_window(data, vector, dtype) < FOUND[dtype]


def template(path: Path, descriptors: Descriptors) -> NewTemplate:
    return NewTemplate(descriptors[path], 0.9, hashlib.sha256(path.read_bytes()).hexdigest())


def by_person(descriptors: Descriptors) -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = {}
    for path in sorted(descriptors):
        if path.parent.parent.name == "people":
            grouped.setdefault(path.parent.name, []).append(path)
    return grouped


def open_with(tmp_path: Path, clock: Clock, dtype: IndexDtype, model: str = MODEL) -> Watchlist:
    return Watchlist.open(tmp_path / "wl.db", model_id=model, dimensions=128, index_dtype=dtype, clock=clock)


def index_file(tmp_path: Path, model: str = MODEL) -> Path:
    return index_path_for(tmp_path / "wl.db", model)


def enrol_everyone(
    watchlist: Watchlist, descriptors: Descriptors, clock: Clock, days: int = 30
) -> dict[str, str]:
    """Each person with up to two photos as templates; identity -> subject id."""
    return {
        name: watchlist.enroll(
            new_subject(name, clock, days=days), [template(p, descriptors) for p in paths[:2]]
        ).id
        for name, paths in by_person(descriptors).items()
    }


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_removed_subject_leaves_no_trace_in_the_index_file(
    tmp_path: Path, project_descriptors: Descriptors, dtype: IndexDtype
) -> None:
    clock = Clock()
    people = by_person(project_descriptors)
    removed = [project_descriptors[p] for p in people["barack_obama"][:2]]
    kept = [project_descriptors[p] for p in people["joe_biden"][:2]]
    with open_with(tmp_path, clock, dtype) as watchlist:
        ids = enrol_everyone(watchlist, project_descriptors, clock)
        before = index_file(tmp_path).read_bytes()
        for vector in removed + kept:  # the checks find what is there
            assert_present(before, vector, dtype)
        watchlist.remove(ids["barack_obama"], "pytest", "entered in error")
        after = index_file(tmp_path).read_bytes()
        assert len(after) < len(before)
        for vector in removed:
            assert_absent(after, vector, dtype)
        for vector in kept:
            assert_present(after, vector, dtype)
        assert watchlist.search(removed[0], k=10)[0].subject.display_name != "barack_obama"
        assert len(watchlist.index) == sum(min(len(p), 2) for p in people.values()) - 2
        header = Index.metadata(str(index_file(tmp_path)))
        assert header is not None and header["count_deleted"] == 0
    assert sorted(p.name for p in index_file(tmp_path).parent.iterdir()) == [".lock", f"{MODEL}.usearch"]
    with open_with(tmp_path, clock, dtype) as reopened:
        assert reopened.notices == []  # the rebuilt file agrees with SQLite
        assert audit.verify(reopened.conn).ok


def test_an_expiry_purge_leaves_no_trace_in_the_index_file(
    tmp_path: Path, project_descriptors: Descriptors
) -> None:
    clock = Clock()
    people = by_person(project_descriptors)
    short_lived = [p for name in ("kit_harington", "rose_leslie") for p in people[name][:2]]
    kept = project_descriptors[people["alex_lacamoire"][0]]
    with open_with(tmp_path, clock, "f16") as watchlist:
        for name in ("kit_harington", "rose_leslie"):
            paths = people[name][:2]
            watchlist.enroll(
                new_subject(name, clock, days=1), [template(p, project_descriptors) for p in paths]
            )
        watchlist.enroll(
            new_subject("alex", clock, days=30), [template(people["alex_lacamoire"][0], project_descriptors)]
        )
        before = index_file(tmp_path).read_bytes()
        for path in short_lived:
            assert_present(before, project_descriptors[path], "f16")
        clock.now += timedelta(days=2)
        purged = watchlist.purge_expired("pytest")
        assert sorted(s.display_name for s in purged) == ["kit_harington", "rose_leslie"]
        after = index_file(tmp_path).read_bytes()
        assert len(after) < len(before)
        for path in short_lived:
            assert_absent(after, project_descriptors[path], "f16")
        assert_present(after, kept, "f16")
        assert len(watchlist.index) == 1


def test_a_stale_handle_does_not_write_a_removed_vector_back(
    tmp_path: Path, project_descriptors: Descriptors
) -> None:
    """The daemon and the CLI each hold the index in memory: the CLI removes, then the daemon enrols.
    The daemon's save must not bring the removed vector back from its older copy."""
    clock = Clock()
    people = by_person(project_descriptors)
    gone = project_descriptors[people["joe_biden"][0]]
    with open_with(tmp_path, clock, "f16") as daemon, open_with(tmp_path, clock, "f16") as cli:
        biden = daemon.enroll(
            new_subject("biden", clock), [template(people["joe_biden"][0], project_descriptors)]
        )
        cli.rebuild_index()  # the CLI sees the enrolment
        cli.remove(biden.id, "pytest", "entered in error")
        assert_absent(index_file(tmp_path).read_bytes(), gone, "f16")
        late = people["alex_lacamoire"][0]
        daemon.enroll(new_subject("alex", clock), [template(late, project_descriptors)])
        data = index_file(tmp_path).read_bytes()
        assert_absent(data, gone, "f16")
        assert_present(data, project_descriptors[late], "f16")
        assert daemon.index.keys() == {int(r[0]) for r in daemon.conn.execute("SELECT id FROM templates")}


def test_an_old_index_with_marked_deletions_is_rebuilt_on_open(
    tmp_path: Path, project_descriptors: Descriptors
) -> None:
    """An index saved by an edge-agent that only marked removed vectors (usearch `remove`) still holds
    them; its keys agree with SQLite, but its header counts the deleted ones, and open rebuilds it."""
    clock = Clock()
    people = by_person(project_descriptors)
    with open_with(tmp_path, clock, "f16") as watchlist:
        ids = enrol_everyone(watchlist, project_descriptors, clock)
        obama_templates = [int(t["id"]) for t in watchlist.templates(ids["barack_obama"])]
    old = Index.restore(str(index_file(tmp_path)))
    assert old is not None
    old.remove(np.array(obama_templates, dtype=np.uint64))  # what the previous edge-agent did
    old.save(str(index_file(tmp_path)))
    with sqlite3.connect(tmp_path / "wl.db") as conn:
        conn.execute("DELETE FROM templates WHERE subject_id = ?", (ids["barack_obama"],))
    conn.close()
    removed = project_descriptors[people["barack_obama"][0]]
    assert encodings(removed)["f16"] in index_file(tmp_path).read_bytes()
    with open_with(tmp_path, clock, "f16") as reopened:
        assert "its file still held 2 deleted one(s)" in reopened.notices[0]
    assert_absent(index_file(tmp_path).read_bytes(), removed, "f16")


def test_a_leftover_temporary_file_and_another_models_index_are_deleted(
    tmp_path: Path, project_descriptors: Descriptors
) -> None:
    """A save killed midway leaves `.<model>.usearch.tmp` (it may hold vectors removed since); an index
    of another embedding model holds that model's templates of a subject removed through this one."""
    clock = Clock()
    people = by_person(project_descriptors)
    face = project_descriptors[people["kit_harington"][0]]
    with open_with(tmp_path, clock, "f16", model="other_model") as other:
        kit = other.enroll(
            new_subject("kit", clock), [template(people["kit_harington"][0], project_descriptors)]
        )
        other.enroll(new_subject("rose", clock), [template(people["rose_leslie"][0], project_descriptors)])
    other_file = index_file(tmp_path, "other_model")
    stale = temporary_path_for(index_file(tmp_path))
    stale.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(other_file, stale)
    with open_with(tmp_path, clock, "f16") as watchlist:
        assert "temporary index file left by an interrupted save was deleted" in watchlist.notices[0]
        assert not stale.exists()
        assert watchlist.subject(kit.id).templates == 1 and len(watchlist.index) == 0  # other model's
        watchlist.remove(kit.id, "pytest", "entered in error")
    assert not other_file.exists()
    with open_with(tmp_path, clock, "f16", model="other_model") as other:
        assert "there was no readable index" in other.notices[0]
        assert len(other.index) == 1
        assert_absent(other_file.read_bytes(), face, "f16")

"""`edge-agent watchlist ...` as an operator uses it, on real photos."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.kits.clihelp import one_error, run_cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {"EDGE_AGENT_WATCHLIST__PATH": str(tmp_path / "wl.db")}


def enrol(env: dict[str, str], name: str, *photos: Path, extra: tuple[str, ...] = ()) -> str:
    result = run_cli(
        "watchlist",
        "enroll",
        name,
        *photos,
        "--reason",
        "test",
        "--source",
        "case 7",
        "--expires",
        "30d",
        *extra,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[1]


def test_enrol_search_show_remove_and_audit(env: dict[str, str], faces_dir: Path, tmp_path: Path) -> None:
    obama = faces_dir / "people" / "barack_obama"
    biden = faces_dir / "people" / "joe_biden"
    obama_id = enrol(env, "Barack Obama", obama / "obama.jpg", obama / "obama2.jpg")
    biden_id = enrol(env, "Joe Biden", biden / "biden.jpg")

    listed = [
        json.loads(line) for line in run_cli("watchlist", "list", "--json", env=env).stdout.splitlines()
    ]
    assert {s["id"]: s["templates"] for s in listed} == {obama_id: 2, biden_id: 1}
    assert all(s["reason"] == "test" and s["source"] == "case 7" and s["live"] for s in listed)

    found = run_cli("watchlist", "search", "--json", faces_dir / "groups" / "obama_and_biden.jpg", env=env)
    assert found.returncode == 0, found.stderr
    faces = [json.loads(line) for line in found.stdout.splitlines()]
    assert len(faces) == 2
    assert {face["candidates"][0]["subject"] for face in faces} == {obama_id, biden_id}
    for face in faces:
        best = face["candidates"][0]
        assert best["match"] and best["strictest_fmr"] <= 1e-4

    shown = json.loads(run_cli("watchlist", "show", obama_id, "--json", env=env).stdout)
    assert [row["action"] for row in shown["audit"]] == ["enroll"]
    assert len(shown["template_list"]) == 2 and "embedding" not in shown["template_list"][0]

    removed = run_cli("watchlist", "remove", biden_id, "--why", "entered in error", env=env)
    assert removed.returncode == 0, removed.stderr
    after = run_cli("watchlist", "search", "--json", biden / "biden2.jpg", env=env)
    assert all(c["subject"] != biden_id for c in json.loads(after.stdout)["candidates"])

    verified = run_cli("watchlist", "audit", "verify", env=env)
    assert verified.returncode == 0 and "3 row(s)" in verified.stdout

    with sqlite3.connect(tmp_path / "wl.db") as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit SET details = '{}' WHERE id = 2")
    broken = run_cli("watchlist", "audit", "verify", env=env)
    assert broken.returncode == 1
    assert "row 2" in one_error(broken.stderr)


def test_enrolment_refusals_write_nothing(env: dict[str, str], faces_dir: Path) -> None:
    cases = [
        ((faces_dir / "hard" / "no_faces_dogs.jpg",), (), "no face found; nothing enrolled"),
        ((faces_dir / "groups" / "obama_and_biden.jpg",), (), "2 faces found; crop the photo or pass --face"),
        (
            (faces_dir / "people" / "joe_biden" / "biden.jpg",),
            ("--expires", "2020-01-01"),
            "not in the future",
        ),
        (
            (faces_dir / "people" / "joe_biden" / "biden.jpg",),
            ("--expires", "soon"),
            "use a duration like 30d",
        ),
    ]
    for photos, options, message in cases:
        arguments = ["--reason", "r", "--source", "s", "--expires", "30d", *options]
        result = run_cli("watchlist", "enroll", "X", *photos, *arguments, env=env)
        assert result.returncode == 1, result.stdout
        assert message in one_error(result.stderr)
    listed = run_cli("watchlist", "list", "--all", env=env)
    assert listed.returncode == 0 and listed.stdout == ""


def test_reason_and_expiry_are_required(env: dict[str, str], faces_dir: Path) -> None:
    photo = faces_dir / "people" / "joe_biden" / "biden.jpg"
    result = run_cli("watchlist", "enroll", "X", photo, "--source", "s", "--expires", "30d", env=env)
    assert result.returncode == 2 and "--reason" in result.stderr
    result = run_cli("watchlist", "enroll", "X", photo, "--source", "s", "--reason", "r", env=env)
    assert result.returncode == 2 and "--expires" in result.stderr


def test_a_group_photo_can_enrol_its_largest_face(env: dict[str, str], faces_dir: Path) -> None:
    subject = enrol(env, "largest", faces_dir / "groups" / "obama_and_biden.jpg", extra=("--face", "largest"))
    stats = json.loads(run_cli("watchlist", "stats", "--json", env=env).stdout)
    assert stats["live_subjects"] == 1 and stats["templates"] == 1 and stats["index_vectors"] == 1
    assert subject.startswith("s-")

"""Enrolment refuses mistakes: two people as one subject, the same photo twice, and a batch with bad
photos — checked on real photos with the real models, through the checks and through the command."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edge_agent.capture.media import read_image
from edge_agent.cli.enrol import impostor_bound
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist.enrol_checks import duplicates, far_faces
from tests.kits.clihelp import one_error, run_cli
from tests.kits.watchlist_kit import calibrated_threshold

ENROL = ("--reason", "test", "--source", "case 9", "--expires", "30d")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {"EDGE_AGENT_WATCHLIST__PATH": str(tmp_path / "wl.db")}


def people(faces_dir: Path) -> dict[str, Path]:
    folder = faces_dir / "people"
    return {
        "obama": folder / "barack_obama" / "obama.jpg",
        "obama2": folder / "barack_obama" / "obama2.jpg",
        "obama3": folder / "barack_obama" / "obama3.jpg",
        "biden": folder / "joe_biden" / "biden.jpg",
        "biden2": folder / "joe_biden" / "biden2.jpg",
    }


def listed(env: dict[str, str]) -> list[dict[str, object]]:
    result = run_cli("watchlist", "list", "--all", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_bound_is_the_loosest_calibrated_threshold(faces: FacePipeline, catalog: ModelCatalog) -> None:
    bound = impostor_bound(faces)
    assert bound.target_fmr == 0.01
    assert bound.threshold == calibrated_threshold(catalog, 0.01)
    assert bound.threshold > faces.embedder.threshold  # looser than the operating point


@pytest.mark.parametrize(
    ("batch", "far"),
    [
        (["obama", "obama2", "obama3"], []),
        (["obama", "obama2", "biden"], ["biden"]),
        (["biden", "obama", "obama2", "obama3", "biden2"], ["biden", "biden2"]),
        (["obama", "biden"], ["obama", "biden"]),  # a tie: neither is the subject
        (["obama", "biden", "obama2", "biden2"], ["obama", "biden", "obama2", "biden2"]),
    ],
)
def test_faces_of_another_person_are_far(
    faces: FacePipeline, faces_dir: Path, batch: list[str], far: list[str]
) -> None:
    photos = people(faces_dir)
    descriptors = []
    for name in batch:
        described, _ = faces.describe_one(read_image(photos[name]), "largest")
        assert described is not None
        descriptors.append(described.descriptor)
    bound = impostor_bound(faces)
    found = far_faces(descriptors, bound, faces.embedder.metric)
    assert [batch[f.index] for f in found] == far
    for f in found:
        assert batch[f.nearest][:5] != batch[f.index][:5]  # nearest face outside its group: someone else
        assert f.distance >= bound.threshold
        assert f.distance == faces.embedder.distance(descriptors[f.index], descriptors[f.nearest])


@pytest.mark.parametrize(
    ("digests", "repeated"),
    [
        ([], {}),
        (["a", "b", "c"], {}),
        (["a", "b", "a", "a", "b"], {2: 0, 3: 0, 4: 1}),
    ],
)
def test_duplicates_point_at_the_first_copy(digests: list[str], repeated: dict[int, int]) -> None:
    assert duplicates(digests) == repeated


def test_two_people_as_one_subject_are_refused_unless_forced(faces_dir: Path, env: dict[str, str]) -> None:
    photos = people(faces_dir)
    refused = run_cli("watchlist", "enroll", "Mixed", photos["obama"], photos["biden"], *ENROL, env=env)
    assert refused.returncode == 1, refused.stdout
    assert "2 of 2 photos refused (listed above); nothing enrolled" in one_error(refused.stderr)
    loosest = calibrated_threshold(ModelCatalog.load(), 0.01)
    expected = f"not below the impostor bound {loosest:.3f} (the calibrated threshold at FMR 0.01)"
    assert expected in refused.stderr
    assert f"{photos['biden']}: its face is 0.8" in refused.stderr  # 0.844 with the default models
    assert listed(env) == []

    majority = (photos["obama"], photos["biden"], photos["obama2"])
    refused = run_cli("watchlist", "enroll", "Mixed", *majority, *ENROL, env=env)
    error = one_error(refused.stderr)
    assert refused.returncode == 1 and str(photos["biden"]) in error and "--force" in error
    assert str(photos["obama"]) not in error and listed(env) == []

    forced = run_cli("watchlist", "enroll", "Mixed", *majority, *ENROL, "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert "enrolled anyway (--force)" in forced.stderr
    assert [s["templates"] for s in listed(env)] == [3]


def test_the_same_photo_twice_is_enrolled_once(faces_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    photos = people(faces_dir)
    copy = tmp_path / "renamed.jpg"
    shutil.copyfile(photos["obama"], copy)
    result = run_cli(
        "watchlist",
        "enroll",
        "Obama",
        photos["obama"],
        photos["obama2"],
        copy,
        photos["obama"],
        *ENROL,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 2 and all(f"the same photo as {photos['obama']}" in n for n in notes)
    assert all(n.endswith("skipped") for n in notes)
    assert [s["templates"] for s in listed(env)] == [2]


def test_a_batch_reports_every_bad_photo_and_enrols_nothing(
    faces_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    photos = people(faces_dir)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photos["obama2"].read_bytes()[:2000])
    bad = {
        faces_dir / "hard" / "no_faces_dogs.jpg": "no face found",
        faces_dir / "groups" / "obama_and_biden.jpg": "2 faces found; crop the photo or pass --face largest",
        tmp_path / "missing.jpg": "missing.jpg",
        truncated: "truncated.jpg",
    }
    batch = [photos["obama"], *bad, photos["obama3"]]
    # --force lets only faces far from the others through: these photos stay refused
    result = run_cli("watchlist", "enroll", "Obama", *batch, *ENROL, "--force", env=env)
    assert result.returncode == 1, result.stdout
    assert "4 of 6 photos refused (listed above); nothing enrolled" in one_error(result.stderr)
    reported = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(reported) == 4
    for (photo, reason), line in zip(bad.items(), reported, strict=True):
        assert line.startswith(f"{photo}: ") and reason in line
    assert listed(env) == []
    assert not any(line.startswith(("  ", "edge-agent:")) for line in _good_run(env, batch[0], batch[-1]))


def _good_run(env: dict[str, str], *photos: Path) -> list[str]:
    result = run_cli("watchlist", "enroll", "Obama", *photos, *ENROL, env=env)
    assert result.returncode == 0, result.stderr
    assert [s["templates"] for s in listed(env)] == [2]
    return result.stderr.splitlines()

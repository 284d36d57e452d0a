"""`edge-agent embed` and `edge-agent compare` as a user runs them, with real photos and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.kits.clihelp import run_cli


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("edge-agent:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_embed_prints_a_json_line_per_face(faces_dir: Path) -> None:
    result = run_cli("embed", "--json", faces_dir / "groups" / "obama_and_biden.jpg")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["file"].endswith("obama_and_biden.jpg")
        assert set(record) >= {"box", "quality", "model", "embedding", "quality_failures"}
        parts = {"face_px", "sharpness", "yaw_deg", "roll_deg", "brightness", "score"}
        assert set(record["quality"]) >= parts
        assert record["model"].startswith("dlib-resnet-v1-")
        assert len(record["embedding"]) == 128
        assert 0.1 < float(np.linalg.norm(record["embedding"])) < 10.0
    a, b = (np.array(r["embedding"]) for r in records)
    assert np.linalg.norm(a - b) > 0.6, "two different people gave near-identical descriptors"


def test_compare_same_person(faces_dir: Path) -> None:
    obama = faces_dir / "people" / "barack_obama"
    result = run_cli("compare", "--json", obama / "obama.jpg", obama / "obama2.jpg")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["same_person"] is True
    assert answer["distance"] < answer["threshold"]
    assert answer["target_fmr"] == 1e-4
    assert 0 < answer["fmr_upper_95"] < 1e-3


def test_compare_different_people_reports_the_rate(faces_dir: Path) -> None:
    result = run_cli(
        "compare",
        "--fmr",
        "1e-3",
        faces_dir / "people" / "barack_obama" / "obama.jpg",
        faces_dir / "people" / "joe_biden" / "biden.jpg",
    )
    assert result.returncode == 0, result.stderr
    assert "different people at false-match rate 0.001" in result.stdout
    assert "A: " in result.stdout and "1 face at" in result.stdout


def test_compare_says_which_face_it_used_or_refuses(faces_dir: Path) -> None:
    group = faces_dir / "groups" / "obama_and_biden.jpg"
    single = faces_dir / "people" / "joe_biden" / "biden.jpg"
    used = run_cli("compare", group, single)
    assert used.returncode == 0, used.stderr
    assert "2 faces, used the largest at [" in used.stdout
    refused = run_cli("compare", "--single", group, single)
    assert refused.returncode == 1
    assert "2 faces found and --single was given" in _one_error_line(refused.stderr)


def test_compare_a_photo_without_a_face_is_a_one_line_error(faces_dir: Path) -> None:
    result = run_cli(
        "compare", faces_dir / "hard" / "no_faces_dogs.jpg", faces_dir / "people" / "joe_biden" / "biden.jpg"
    )
    assert result.returncode == 1
    assert "no_faces_dogs.jpg: no face found" in _one_error_line(result.stderr)
    assert result.stdout == ""


def test_corrupt_files_are_one_line_errors(tmp_path: Path, faces_dir: Path) -> None:
    photo = (faces_dir / "people" / "joe_biden" / "biden.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo[: len(photo) // 2])
    result = run_cli("compare", truncated, faces_dir / "people" / "joe_biden" / "biden.jpg")
    assert result.returncode == 1
    assert "truncated.jpg" in _one_error_line(result.stderr)

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a picture at all")
    embedded = run_cli("embed", "--json", garbage, faces_dir / "people" / "joe_biden" / "biden.jpg")
    assert embedded.returncode == 1, "a bad file must make the run fail"
    assert len(embedded.stdout.splitlines()) == 1, "the good file is still embedded"
    assert "garbage.png" in _one_error_line(embedded.stderr)


def test_an_uncalibrated_rate_is_a_config_error(faces_dir: Path) -> None:
    photo = faces_dir / "people" / "joe_biden" / "biden.jpg"
    result = run_cli("compare", "--fmr", "0.05", photo, photo)
    assert result.returncode == 2
    assert "embedder.target_fmr" in _one_error_line(result.stderr)


def test_a_face_turned_on_its_side_is_handled(tmp_path: Path, faces_dir: Path) -> None:
    """Far from upright, the landmark rectangle degenerates: the keypoint alignment takes over."""
    import cv2

    photo = faces_dir / "people" / "joe_biden" / "biden.jpg"
    rotated = tmp_path / "biden_on_its_side.jpg"
    upright = cv2.imread(str(photo))
    assert upright is not None
    cv2.imwrite(str(rotated), cv2.rotate(upright, cv2.ROTATE_90_CLOCKWISE))
    result = run_cli("embed", "--json", rotated)
    assert result.returncode == 0, result.stderr
    (record,) = (json.loads(line) for line in result.stdout.splitlines())
    assert abs(record["quality"]["roll_deg"]) > 45
    assert any(reason.startswith("roll") for reason in record["quality_failures"])


def test_embed_says_when_a_photo_has_no_face(faces_dir: Path) -> None:
    result = run_cli("embed", faces_dir / "hard" / "no_faces_dogs.jpg")
    assert result.returncode == 1
    assert "no_faces_dogs.jpg: no face found" in _one_error_line(result.stderr)

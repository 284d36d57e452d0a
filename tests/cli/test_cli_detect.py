"""`edge-agent detect` over images, folders and videos, including broken files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import DEMO_KIT
from tests.kits.clihelp import run_cli


def test_json_lines_for_an_image() -> None:
    result = run_cli("detect", "--json", DEMO_KIT / "alex_lacamoire.jpg")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record["file"].endswith("alex_lacamoire.jpg")
    assert record["frame"] == 0
    assert set(record) >= {"box", "score", "keypoints", "model"}
    x0, y0, x1, y1 = record["box"]
    assert 0 <= x0 < x1 and 0 <= y0 < y1
    assert list(record["keypoints"]) == [
        "right_eye",
        "left_eye",
        "nose_tip",
        "mouth_center",
        "right_ear",
        "left_ear",
    ]
    assert 0.5 <= record["score"] <= 1.0


def test_video_frames_carry_their_index_and_time(tmp_path: Path) -> None:
    result = run_cli(
        "detect",
        "--json",
        "--every",
        "25",
        "--draw",
        tmp_path,
        DEMO_KIT / "short_hamilton_clip.mp4",
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    frames = sorted({r["frame"] for r in records})
    assert frames and all(f % 25 == 0 for f in frames)
    by_frame = {r["frame"]: r["time_s"] for r in records}
    assert all(abs(by_frame[f] - f / 29.97) < 0.05 for f in frames)
    assert len(list(tmp_path.glob("short_hamilton_clip_*_frame*.jpg"))) == len(frames)


def test_bad_files_are_named_and_the_folder_run_goes_on(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    shutil.copy(DEMO_KIT / "alex_lacamoire.jpg", good)
    whole = good.read_bytes()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (tmp_path / "notes.png").write_text("this is not a picture")
    png = (DEMO_KIT / "lin_manuel_miranda.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "broken.mp4").write_bytes((DEMO_KIT / "short_hamilton_clip.mp4").read_bytes()[:5000])

    result = run_cli("detect", "--json", tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("edge-agent: ")]
    assert len(errors) == 5, result.stderr
    for name, reason in [
        ("empty.jpg", "empty file"),
        ("truncated.jpg", "truncated JPEG"),
        ("notes.png", "not a readable image"),
        ("cut.png", "truncated PNG"),
        ("broken.mp4", "not a readable video"),
    ]:
        assert any(name in line and reason in line for line in errors), (name, errors)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["file"]).name for r in records] == ["good.jpg"]


def test_missing_file_and_bad_arguments() -> None:
    missing = run_cli("detect", "/nonexistent/photo.jpg")
    assert missing.returncode == 1
    assert "/nonexistent/photo.jpg: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = run_cli("detect", "--tiles", "2by2", DEMO_KIT / "alex_lacamoire.jpg")
    assert bad.returncode == 2
    assert "tiles must look like 2x2" in bad.stderr
    too_many = run_cli("detect", "--tiles", "9x9", DEMO_KIT / "alex_lacamoire.jpg")
    assert too_many.returncode == 2
    assert too_many.stderr.count("\n") == 1
    assert 'tiles must be "auto" or two integers in 1..8' in too_many.stderr


def test_draw_into_a_file_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = run_cli("detect", "--draw", blocker, DEMO_KIT / "alex_lacamoire.jpg")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "edge-agent: cannot write" in result.stderr


def test_same_names_in_two_folders_are_drawn_apart(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(DEMO_KIT / "alex_lacamoire.jpg", tmp_path / folder / "x.jpg")
    out = tmp_path / "out"
    result = run_cli("detect", "--draw", out, tmp_path / "a", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("x_*_frame00000.jpg"))) == 2


def test_model_choice_on_the_command_line() -> None:
    result = run_cli(
        "detect",
        "--json",
        "--model",
        "short_range",
        "--tiles",
        "2x2",
        DEMO_KIT / "alex_lacamoire.jpg",
    )
    assert result.returncode == 0, result.stderr
    assert {json.loads(line)["model"] for line in result.stdout.splitlines()} == {
        "blazeface-short-range-float32"
    }

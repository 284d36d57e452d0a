"""The README's demo runs on the bundled kit and finds the faces in it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import DEMO_KIT
from tests.kits.clihelp import run_cli


def test_demo_kit_is_small_and_documented() -> None:
    files = [p for p in DEMO_KIT.iterdir() if p.name != "README.md"]
    assert sum(p.stat().st_size for p in files) <= 3 * 1024 * 1024
    readme = (DEMO_KIT / "README.md").read_text()
    assert all(p.name in readme for p in files)


def test_demo_finds_faces_in_every_kit_file(tmp_path: Path) -> None:
    result = run_cli("demo", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"alex_lacamoire\.jpg: 1 face\(s\)", out)
    assert re.search(r"lin_manuel_miranda\.png: 1 face\(s\)", out)
    clip = re.search(r"short_hamilton_clip\.mp4: 275 frames, faces in (\d+)", out)
    assert clip and int(clip.group(1)) > 200, out
    assert len(list(tmp_path.glob("*.jpg"))) == 3


def test_demo_runs_the_live_agent_and_reports_only_the_performer(tmp_path: Path) -> None:
    """The clip is a Hamilton stage scene with Lin-Manuel Miranda; Alex Lacamoire is not on stage. The
    demo's live agent publishes to its own mosquitto, and its listener checks every payload."""
    result = run_cli("demo", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"local mosquitto on 127\.0\.0\.1:\d+", out), out
    events = re.findall(r"match event: (\w+) on track (\d+)", out)
    assert events and {name for name, _ in events} == {"lin_manuel_miranda"}, out
    assert "no event for alex_lacamoire" in out
    received = re.search(r"checked against their schemas: (.*)", out)
    assert received and f"{len(events)} match" in received.group(1) and "status" in received.group(1)

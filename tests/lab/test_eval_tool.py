"""`tools/eval.py` on a pairs list the project has never seen: a flat folder, so identities are unknown."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_eval_judges_a_flat_folder_pairs_list_by_its_pairs(tmp_path: Path, faces_dir: Path) -> None:
    people = faces_dir / "people"
    for name, source in {
        "a.jpg": people / "barack_obama" / "obama.jpg",
        "b.jpg": people / "barack_obama" / "obama2.jpg",
        "c.jpg": people / "joe_biden" / "biden.jpg",
        "d.jpg": people / "joe_biden" / "biden2.jpg",
    }.items():
        shutil.copyfile(source, tmp_path / name)
    csv = tmp_path / "pairs.csv"
    csv.write_text(
        "image_a,image_b,same\na.jpg,b.jpg,yes\nc.jpg,d.jpg,1\na.jpg,c.jpg,no\nb.jpg,d.jpg,false\n"
    )
    options = ["--pairs", str(csv), "--pipelines", "project", "--no-write"]
    options += ["--cache", str(tmp_path / "cache")]
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "eval.py"), *options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "evaluating the listed pairs only" in result.stderr
    assert "| pair accuracy at threshold 0.6000 | 100.00% (2 genuine + 2 impostor pairs) |" in result.stdout
    assert "faces not detected | 0 of 4 images" in result.stdout

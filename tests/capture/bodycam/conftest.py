"""Fixtures of the body-cam tests: an empty docking folder, and the shared walkers clip."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def dock(tmp_path: Path) -> Path:
    folder = tmp_path / "dock"
    folder.mkdir()
    return folder


@pytest.fixture
def walkers(faces_dir: Path) -> Path:
    return faces_dir / "video" / "walkers.mp4"

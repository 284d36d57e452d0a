"""Settings: TOML file, environment overrides, and one-line errors that name the field."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from edge_agent.config import load_settings
from edge_agent.errors import ConfigError
from tests.kits.clihelp import run_cli


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_file_values_and_overrides_merge(tmp_path: Path) -> None:
    path = write(tmp_path, 'device_id = "door-2"\n[detector]\nmin_score = 0.4\ntiles = [2, 2]\n')
    settings = load_settings(path, detector={"model": "short_range"})
    assert settings.device_id == "door-2"
    assert settings.detector.tiles == (2, 2)
    assert settings.detector.min_score == 0.4
    assert settings.detector.model == "short_range"
    with pytest.raises(ConfigError, match=r"detector: Value error, tiles must be \"auto\" or two integers"):
        load_settings(path, detector={"tiles": (9, 9)})


def test_environment_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[detector]\nmin_score = 0.4\n")
    monkeypatch.setenv("EDGE_AGENT_DETECTOR__MIN_SCORE", "0.7")
    assert load_settings(path).detector.min_score == 0.7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[detector]\nmin_score = 1.5\n", "detector.min_score: Input should be less than 1"),
        ("[detector]\nminscore = 0.5\n", "detector.minscore: unknown key"),
        ('device_id = "has space"\n', "device_id: String should match pattern"),
        ("[detector]\ntiles = [9, 1]\n", 'detector: Value error, tiles must be "auto" or two integers'),
        ("[detector]\nroi = [0.5, 0, 0.2, 1]\n", "roi must be x0 < x1"),
        ("[runtime]\nthreads = 0\n", "runtime.threads: Input should be greater than or equal to 1"),
        ("[detector\n", "is not valid TOML"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings(write(tmp_path, text))


def test_unknown_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_AGENT_TEST_FACES", "/tmp")
    monkeypatch.setenv("EDGE_AGENT_TEST_SLOW", "1")
    monkeypatch.setenv("EDGE_AGENT_TEST_ANYTHING_NEW", "x")  # the whole reserved prefix
    load_settings()
    monkeypatch.setenv("EDGE_AGENT_DETECTR__MIN_SCORE", "0.5")
    with pytest.raises(ConfigError, match="EDGE_AGENT_DETECTR__MIN_SCORE names no setting"):
        load_settings()


def test_cli_validate_good_and_bad(tmp_path: Path) -> None:
    good = write(tmp_path, "[runtime]\nthreads = 4\n")
    result = run_cli("config", "validate", good)
    assert result.returncode == 0 and "valid" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[detector]\nmin_score = -1\n")
    result = run_cli("config", "validate", bad)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "detector.min_score" in lines[0] and str(bad) in lines[0]
    # the file alone is judged: a good value in the environment does not hide a bad one in the file
    env = {**os.environ, "EDGE_AGENT_DETECTOR__MIN_SCORE": "0.5"}
    assert run_cli("config", "validate", bad, env=env).returncode == 2
    missing = run_cli("config", "validate", tmp_path / "nope.toml")
    assert missing.returncode == 2 and "config file not found" in missing.stderr


def test_cli_show_prints_toml_that_loads_back(tmp_path: Path) -> None:
    env = {**os.environ, "EDGE_AGENT_RUNTIME__THREADS": "3"}
    result = run_cli("config", "show", env=env)
    assert result.returncode == 0, result.stderr
    shown = tomllib.loads(result.stdout)
    assert shown["runtime"]["threads"] == 3
    assert shown["detector"]["model"] == "full_range"
    again = write(tmp_path, result.stdout)
    assert load_settings(again).runtime.threads == 3


def test_readme_documents_every_setting() -> None:
    """Every key of every section appears in the README's configuration table."""
    from pydantic import BaseModel

    from edge_agent.config import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("## Configuration") :]
    table = table[: table.index("\n## ")]
    missing = []
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for key in annotation.model_fields:
                row_key = f"`{name}.{key}`" in table
                shared_row = f"| `{name}." in table and (f"`{key}`" in table or f", `{key}`" in table)
                if not (row_key or shared_row):
                    missing.append(f"{name}.{key}")
        elif f"`{name}`" not in table:
            missing.append(name)
    assert missing == []


@pytest.mark.parametrize(
    ("camera", "named"),
    [
        ({"width": 1280}, "width and height go together"),
        ({"type": "bodycam"}, "bodycam.folder"),
        ({"type": "bodycam", "bodycam": {"folder": "/dock", "timezone": "Mars/Olympus"}}, "Mars/Olympus"),
        ({"type": "bodycam", "bodycam": {"folder": "/dock", "after": "move"}}, "move_to"),
        ({"type": "bodycam", "bodycam": {"folder": "/dock", "time_source": "filename"}}, "filename_pattern"),
        ({"fourcc": "MJPEG"}, "fourcc"),
        ({"type": "webcam"}, "camera.type"),
    ],
)
def test_camera_settings_refuse_inconsistent_sources(camera: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_settings(None, use_environment=False, camera=camera)


def test_nested_camera_settings_round_trip_through_config_show(tmp_path: Path) -> None:
    from edge_agent.config import settings_as_toml

    settings = load_settings(
        None,
        use_environment=False,
        camera={"type": "bodycam", "bodycam": {"folder": "/dock", "after": "move", "move_to": "/done"}},
    )
    path = tmp_path / "again.toml"
    path.write_text(settings_as_toml(settings))
    assert load_settings(path, use_environment=False).model_dump() == settings.model_dump()

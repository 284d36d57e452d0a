"""The systemd service as shipped: examples that validate, a unit that does not restart a bad config,
and default data paths that the daemon and an admin's CLI share."""

from __future__ import annotations

import os
import re
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

from edge_agent import state_dir
from edge_agent.config import load_settings
from edge_agent.events.settings import EventSettings
from edge_agent.watchlist.settings import WatchlistSettings
from tests.conftest import REPO
from tests.kits.clihelp import run_cli

UNIT = REPO / "systemd" / "edge-agent.service"
EXAMPLE = REPO / "systemd" / "config.example.toml"
TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.DOTALL)


def example_configs() -> list[tuple[str, str]]:
    """(where, TOML text) for every example config: *.toml under systemd/ and hardware/, and every
    ```toml block of hardware/ guides and the README."""
    files = sorted([*(REPO / "systemd").glob("*.toml"), *(REPO / "hardware").rglob("*.toml")])
    found = [(str(path.relative_to(REPO)), path.read_text()) for path in files]
    for page in [REPO / "README.md", *sorted((REPO / "hardware").rglob("*.md"))]:
        for number, block in enumerate(TOML_BLOCK.findall(page.read_text()), start=1):
            found.append((f"{page.relative_to(REPO)} block {number}", block))
    return found


def unit_settings() -> dict[str, list[str]]:
    """The unit file's keys (every section), each with all its values in order."""
    settings: dict[str, list[str]] = defaultdict(list)
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings[key.strip()].append(value.strip())
    return settings


def test_examples_are_found() -> None:
    where = [name for name, _ in example_configs()]
    assert "systemd/config.example.toml" in where
    assert any(name.startswith("hardware/raspberry-pi/") for name in where), where


@pytest.mark.parametrize(("where", "text"), example_configs(), ids=lambda value: str(value)[:40])
def test_every_example_config_validates_as_shipped(where: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    result = run_cli("config", "validate", path)
    assert result.returncode == 0, f"{where}: {result.stderr}"
    assert f"{path}: valid" in result.stdout


def test_a_bad_config_exits_2_which_the_unit_does_not_restart(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text(EXAMPLE.read_text().replace("k = 3", "k = 0"))
    result = run_cli("run", "--config", bad)
    assert result.returncode == 2
    assert "decision.k" in result.stderr and "Traceback" not in result.stderr
    unit = unit_settings()
    assert unit["Restart"] == ["on-failure"]
    assert "2" in " ".join(unit["RestartPreventExitStatus"]).split()


def test_the_unit_reloads_with_sighup_and_reads_the_config_from_etc() -> None:
    unit = unit_settings()
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    (start,) = unit["ExecStart"]
    assert start.endswith(" run --config /etc/edge-agent/config.toml")
    assert unit["ConfigurationDirectory"] == ["edge-agent"]


def test_the_unit_state_directory_is_where_the_defaults_point() -> None:
    unit = unit_settings()
    assert unit["StateDirectory"] == [state_dir.SERVICE_STATE_DIR.name]
    assert Path("/var/lib") / unit["StateDirectory"][0] == state_dir.SERVICE_STATE_DIR
    assert unit["WorkingDirectory"] == [str(state_dir.SERVICE_STATE_DIR)]
    shipped = tomllib.loads(EXAMPLE.read_text())
    assert "path" not in shipped["watchlist"] and "path" not in shipped["events"]


def test_the_service_and_an_admin_share_the_data_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon gets $STATE_DIRECTORY; `sudo -u edge-agent edge-agent ...` does not, and finds the
    same folder because it may write in it. The folder stands in for /var/lib/edge-agent."""
    service_state = tmp_path / "var-lib-edge-agent"
    service_state.mkdir()
    monkeypatch.setattr(state_dir, "SERVICE_STATE_DIR", service_state)
    monkeypatch.setenv("STATE_DIRECTORY", str(service_state))
    daemon = load_settings(EXAMPLE)
    monkeypatch.delenv("STATE_DIRECTORY")
    admin = load_settings(EXAMPLE)
    assert daemon.watchlist.path == admin.watchlist.path == service_state / "watchlist.db"
    assert daemon.events.path == admin.events.path == service_state / "events.db"


def test_state_directory_wins_and_its_first_entry_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/srv/agent-state:/srv/other")
    assert WatchlistSettings().path == Path("/srv/agent-state/watchlist.db")
    assert EventSettings().path == Path("/srv/agent-state/events.db")
    env = {**os.environ, "STATE_DIRECTORY": "/srv/agent-state"}
    shown = tomllib.loads(run_cli("config", "show", env=env).stdout)
    assert shown["watchlist"]["path"] == "/srv/agent-state/watchlist.db"


def test_without_a_service_folder_the_data_stays_in_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setattr(state_dir, "SERVICE_STATE_DIR", tmp_path / "not-installed")
    assert WatchlistSettings().path == Path("edge-agent-data/watchlist.db")
    assert EventSettings().path == Path("edge-agent-data/events.db")
    explicit = WatchlistSettings(path=tmp_path / "mine.db")
    assert explicit.path == tmp_path / "mine.db"

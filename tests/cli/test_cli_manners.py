"""CLI manners: global options anywhere, no runtime log noise, progress only on a terminal, one exit-code
rule, one-line configuration errors. The real command in a child process, real photos and models."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from edge_agent.lab.demo.kit import default_kit
from tests.kits.clihelp import one_error, run_cli

README = Path(__file__).resolve().parents[2] / "README.md"
PHOTO = default_kit() / "alex_lacamoire.jpg"
BAR = re.compile(r"\d+/3 \[")  # tqdm's "2/3 [00:01<00:00, 1.9file/s]"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EDGE_AGENT_") or k.startswith("EDGE_AGENT_TEST_")
    }
    return env | extra


@pytest.mark.parametrize(
    "words",
    [
        ["--config", "{missing}", "watchlist", "list"],
        ["watchlist", "list", "--config", "{missing}"],
        ["watchlist", "--config", "{missing}", "list"],
        ["--json", "models", "verify", "--config", "{missing}"],
        ["listen", "--config", "{missing}", "--timeout", "1"],
    ],
)
def test_config_is_accepted_before_or_after_the_command(tmp_path: Path, words: list[str]) -> None:
    missing = tmp_path / "nowhere.toml"
    result = run_cli(*[w.format(missing=missing) for w in words], env=_clean_env())
    assert result.returncode == 2
    assert one_error(result.stderr) == f"edge-agent: config file not found: {missing}"


@pytest.mark.parametrize(
    "words", [["--version"], ["detect", "--version"], ["watchlist", "stats", "--version"]]
)
def test_version_anywhere(words: list[str]) -> None:
    result = run_cli(*words)
    assert result.returncode == 0
    assert re.fullmatch(r"edge-agent \S+\n", result.stdout), result.stdout


def _merged(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """stdout and stderr in one stream, as `2>&1` gives them."""
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        env=_clean_env(),
        check=False,
    )


def test_model_loading_prints_no_runtime_info_unless_verbose() -> None:
    quiet = _merged("detect", PHOTO)
    assert quiet.returncode == 0, quiet.stdout
    assert [line for line in quiet.stdout.splitlines() if "INFO" in line] == []
    assert "face [" in quiet.stdout
    verbose = _merged("detect", "-v", PHOTO)
    assert verbose.returncode == 0, verbose.stdout
    assert "XNNPACK" in verbose.stdout  # the line is really there to hide (LiteRT prints it)


def _under_a_terminal(args: list[str | Path], **env: str) -> str:
    """Run the command with stdout and stderr on a pseudo-terminal; everything it wrote."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24 rows, 100 columns
    child = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env=_clean_env(**env),
    )
    os.close(terminal)
    chunks = []
    while True:
        ready, _, _ = select.select([controller], [], [], 300)
        if not ready:
            child.kill()
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert child.wait(timeout=300) == 0
    os.close(controller)
    return b"".join(chunks).decode(errors="replace")


def test_embed_of_a_folder_shows_progress_on_a_terminal_only(tmp_path: Path, faces_dir: Path) -> None:
    for name in ("obama.jpg", "obama2.jpg"):
        shutil.copy(faces_dir / "people" / "barack_obama" / name, tmp_path / name)
    shutil.copy(PHOTO, tmp_path / "alex.jpg")

    on_terminal = _under_a_terminal(["embed", tmp_path])
    assert BAR.search(on_terminal), on_terminal
    assert on_terminal.count("descriptor 128-d") == 3

    piped = run_cli("embed", tmp_path, env=_clean_env())
    assert piped.returncode == 0, piped.stderr
    assert not BAR.search(piped.stderr) and piped.stdout.count("descriptor 128-d") == 3
    as_json = _under_a_terminal(["embed", "--json", tmp_path])
    assert not BAR.search(as_json)


def test_enrol_of_many_photos_shows_progress_on_a_terminal_only(tmp_path: Path, faces_dir: Path) -> None:
    photos = [faces_dir / "people" / "barack_obama" / f"obama{n}.jpg" for n in ("", "2", "3")]
    words = ["watchlist", "enroll", "--reason", "test", "--source", "case 1", "--expires", "30d"]

    shown = _under_a_terminal(
        [*words, "Obama", *photos], EDGE_AGENT_WATCHLIST__PATH=str(tmp_path / "shown.db")
    )
    assert BAR.search(shown), shown
    assert re.search(r"enrolled \S+ 'Obama': 3 template\(s\)", shown), shown

    piped = run_cli(
        *words, "Obama", *photos, env=_clean_env(EDGE_AGENT_WATCHLIST__PATH=str(tmp_path / "p.db"))
    )
    assert piped.returncode == 0, piped.stderr
    assert not BAR.search(piped.stderr) and "3 template(s)" in piped.stdout
    quiet = _under_a_terminal(
        [*words, "-q", "Obama", *photos], EDGE_AGENT_WATCHLIST__PATH=str(tmp_path / "quiet.db")
    )
    assert not BAR.search(quiet) and "3 template(s)" in quiet, quiet


@pytest.mark.parametrize("command", ["detect", "embed"])
def test_a_photo_without_a_face_fails_the_same_in_detect_and_embed(command: str, faces_dir: Path) -> None:
    result = run_cli(command, faces_dir / "hard" / "no_faces_dogs.jpg", PHOTO, env=_clean_env())
    assert result.returncode == 1
    assert one_error(result.stderr).endswith("no_faces_dogs.jpg: no face found")
    assert "1 file(s) unreadable or without a face" in result.stderr
    assert "alex_lacamoire.jpg frame 0: face [" in result.stdout


def test_compare_json_counts_faces(faces_dir: Path) -> None:
    result = run_cli(
        "compare",
        "--json",
        faces_dir / "people" / "joe_biden" / "biden.jpg",
        faces_dir / "groups" / "obama_and_biden.jpg",
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["a"]["faces"] == 1 and record["b"]["faces"] == 2
    assert len(record["b"]["box"]) == 4 and all(isinstance(v, int) for v in record["b"]["box"])


def test_an_unparsable_environment_value_is_one_line_naming_it() -> None:
    result = run_cli("config", "show", env=_clean_env(EDGE_AGENT_DETECTOR__TILES="3x3"))
    assert result.returncode == 2
    line = one_error(result.stderr)
    assert "EDGE_AGENT_DETECTOR__TILES='3x3'" in line
    fixed = run_cli("config", "show", env=_clean_env(EDGE_AGENT_DETECTOR__TILES="[3, 3]"))
    assert fixed.returncode == 0 and "tiles = [3, 3]" in fixed.stdout


@pytest.mark.parametrize(("value", "valid"), [("0", True), ("2", True), ('"0"', True), ("-1", False)])
def test_camera_source_may_be_an_integer(tmp_path: Path, value: str, valid: bool) -> None:
    config = tmp_path / "camera.toml"
    config.write_text(f"[camera]\nsource = {value}\n", encoding="utf-8")
    result = run_cli("config", "validate", config, env=_clean_env())
    if valid:
        assert result.returncode == 0, result.stderr
        shown = run_cli("--config", config, "config", "show", env=_clean_env())
        assert f'source = "{value.strip(chr(34))}"' in shown.stdout
    else:
        assert result.returncode == 2
        assert "camera.source" in one_error(result.stderr)


def test_watchlist_stats_human_and_json(tmp_path: Path) -> None:
    env = _clean_env(EDGE_AGENT_WATCHLIST__PATH=str(tmp_path / "wl.db"))
    human = run_cli("watchlist", "stats", env=env)
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("subjects: 0 live") and "{" not in human.stdout
    data = json.loads(run_cli("watchlist", "stats", "--json", env=env).stdout)
    assert data["live_subjects"] == 0 and data["templates"] == 0


def test_every_schema_kind_in_the_readme_is_a_valid_choice() -> None:
    line = next(
        line for line in README.read_text(encoding="utf-8").splitlines() if "edge-agent schema [" in line
    )
    kinds = re.search(r"\[([a-z|-]+)\]", line.split("[--out DIR]")[1])
    assert kinds is not None
    for kind in kinds.group(1).split("|"):
        result = run_cli("schema", kind)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["$id"].endswith(f"/{kind}.schema.json")

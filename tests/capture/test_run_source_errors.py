"""`edge-agent run --source X` on input that is not a readable clip: one line naming the file and what is
wrong, exit 1, and (for a clip that breaks in the middle) the events of its good frames still delivered.

Each case runs the real command as a child process against a real mosquitto. Before this, a missing file
or a folder was retried as a camera for ever, and a text file named .jpg, a truncated JPEG or a scrambled
MP4 ended the run with exit 0 and no word.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.config import settings_as_toml
from edge_agent.vision.faces import FacePipeline
from tests.kits.agent_kit import (
    DEMO_CLIP,
    DEMO_KIT,
    MATCH_TOPIC,
    agent_settings,
    enrol_demo_people,
    table_rows,
)
from tests.kits.broker import Broker, Subscriber

EXIT_RUNTIME_ERROR = 1
RUN_TIMEOUT_S = 120  # a source retried for ever would hit this


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    served = Broker(tmp_path / "broker")
    served.start()
    yield served
    served.stop()


def scrambled_clip(path: Path, start: float = 0.25, end: float = 0.75) -> Path:
    """The demo clip with 5 % of the bytes between `start` and `end` (fractions of its length) overwritten
    (seeded): with the middle half, FFmpeg gives up after 76 of its 275 frames."""
    data = bytearray(DEMO_CLIP.read_bytes())
    rng = random.Random(13)
    for i in range(int(len(data) * start), int(len(data) * end)):
        if rng.random() < 0.05:
            data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))
    return path


def _missing(folder: Path) -> Path:
    return folder / "no-such-clip.mp4"


def _folder(folder: Path) -> Path:
    (folder / "clips").mkdir()
    return folder / "clips"


def _text_as_jpeg(folder: Path) -> Path:
    path = folder / "photo.jpg"
    path.write_text("this is not a picture\n")
    return path


def _truncated_jpeg(folder: Path) -> Path:
    data = (DEMO_KIT / "alex_lacamoire.jpg").read_bytes()
    path = folder / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


def _text_as_mp4(folder: Path) -> Path:
    path = folder / "clip.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return path


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing file": (_missing, "no such video file"),
    "folder": (_folder, "is a folder, not a video file"),
    "text named .jpg": (_text_as_jpeg, "not a readable image"),
    "truncated JPEG": (_truncated_jpeg, "truncated JPEG"),
    "undecodable MP4": (_text_as_mp4, "cannot open"),
    "scrambled MP4": (lambda folder: scrambled_clip(folder / "scrambled.mp4"), "of 275 frames"),
}


def run_agent(folder: Path, broker: Broker, source: Path) -> subprocess.CompletedProcess[str]:
    config = folder / "agent.toml"
    config.write_text(settings_as_toml(agent_settings(folder, broker)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config), "--source", str(source)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=env,
        cwd=folder,
        check=False,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_file_source_ends_the_run_with_one_line_and_exit_1(
    case: str, tmp_path: Path, broker: Broker
) -> None:
    make, problem = CASES[case]
    source = make(tmp_path)
    result = run_agent(tmp_path, broker, source)
    assert result.returncode == EXIT_RUNTIME_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edge-agent: camera cam-1: ") and str(source) in last and problem in last, last
    assert "retrying" not in result.stderr  # a file is not a camera that may come back
    # our lines only: FFmpeg's, libav's and OpenCV's own are silenced
    noise = [line for line in result.stderr.splitlines() if not line.startswith(("edge-agent: ", "INFO: "))]
    assert noise == []


def test_a_clip_that_breaks_midway_still_delivers_the_events_of_its_good_frames(
    tmp_path: Path, broker: Broker
) -> None:
    """The demo people appear in the first seconds of the clip, before the scrambled part: their match
    events are published and the outbox is empty when the run ends with the error."""
    settings = agent_settings(tmp_path, broker)
    enrol_demo_people(settings, FacePipeline.from_settings(settings))
    subscriber = Subscriber(broker, MATCH_TOPIC).start()
    try:
        result = run_agent(tmp_path, broker, scrambled_clip(tmp_path / "scrambled.mp4", 0.85, 0.95))
        assert result.returncode == EXIT_RUNTIME_ERROR, result.stderr
        assert "decoding stopped after" in result.stderr.strip().splitlines()[-1]
        logged = [line for line in result.stderr.splitlines() if "match: subject" in line]
        assert logged, result.stderr
        received = subscriber.wait_for(len(logged), timeout_s=10.0)
    finally:
        subscriber.close()
    event_ids = {json.loads(message.payload)["event_id"] for message in received}
    assert {line.rsplit("event ", 1)[1] for line in logged} <= event_ids
    assert table_rows(tmp_path / "events.db")["outbox"] == 0

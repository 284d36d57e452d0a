"""A camera that cannot be opened, under the real `edge-agent run`: our one line says so, and OpenCV's own
`[ WARN ]` lines (one per try, from its V4L2 and FFmpeg back-ends) stay off stderr unless `-v`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.events.topics import Topics
from tests.kits.broker import Broker, Subscriber

DEVICE = "retry-test"
MISSING_CAMERA = 99  # a V4L2 device number no test machine has
OPENCV_LINE = re.compile(r"^\[ ?(WARN|ERROR)", re.MULTILINE)


def _config(tmp_path: Path, broker: Broker) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'device_id = "{DEVICE}"\n'
        f"[camera]\nsource = {MISSING_CAMERA}\nreconnect_min_s = 0.1\nreconnect_max_s = 0.2\n"
        f'[watchlist]\npath = "{tmp_path / "watchlist.db"}"\n'
        f'[events]\npath = "{tmp_path / "events.db"}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nhealth_interval_s = 1.0\n',
        encoding="utf-8",
    )
    return config


def _run_until_retried(tmp_path: Path, broker: Broker, *flags: str) -> tuple[int, str]:
    """`edge-agent run` until its health says the camera was retried twice, then SIGTERM: exit code and
    everything it wrote to stderr."""
    health = Subscriber(broker, Topics("edge-agent", DEVICE).health).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_") or "_TEST_" in k}
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(_config(tmp_path, broker)), *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        try:
            health.wait_until(
                lambda got: any(json.loads(m.payload)["camera"]["reconnects"] >= 2 for m in got),
                timeout_s=120,
            )
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(timeout=60)
        finally:
            agent.kill()
            health.close()
    return code, stderr.read_text(encoding="utf-8", errors="replace")


@pytest.mark.skipif(Path(f"/dev/video{MISSING_CAMERA}").exists(), reason="this machine has the camera")
def test_camera_retries_print_our_line_and_no_opencv_warnings(tmp_path: Path, broker: Broker) -> None:
    code, stderr = _run_until_retried(tmp_path, broker)
    assert code == 0, stderr
    assert f"camera cam-1: cannot open {MISSING_CAMERA}; retrying" in stderr
    assert not OPENCV_LINE.search(stderr), stderr
    assert all(line.startswith("edge-agent: ") for line in stderr.splitlines()), stderr


@pytest.mark.skipif(Path(f"/dev/video{MISSING_CAMERA}").exists(), reason="this machine has the camera")
def test_verbose_lets_opencv_warnings_through(tmp_path: Path, broker: Broker) -> None:
    """The lines hidden above are really there to hide: `-v` shows them."""
    code, stderr = _run_until_retried(tmp_path, broker, "-v")
    assert code == 0, stderr
    assert OPENCV_LINE.search(stderr), stderr
    assert f"camera cam-1: cannot open {MISSING_CAMERA}; retrying" in stderr

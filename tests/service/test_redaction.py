"""No camera or broker password reaches anything the agent prints: one `redact` (edge_agent.redaction) on
every path that shows a source, each run for real and its whole output searched for the secret.

The RTSP URLs point at a closed loopback port, so opening them fails at once (connection refused).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.capture.runner import CaptureRunner, LatestFrameSlot, as_capture_error
from edge_agent.capture.settings import CameraSettings
from edge_agent.capture.source import open_source
from edge_agent.lab.mosquitto import free_port
from edge_agent.redaction import redact
from tests.kits.waiting import wait_until

SECRET = "Hunter2-s3cret"
BROKER_SECRET = "broker-Pa55word"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"rtsp://admin:{SECRET}@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        (f"rtsp://admin:{SECRET}@x@cam.local/s", "rtsp://***@cam.local/s"),  # an "@" in the password
        (f"rtsp://10.0.0.5/stream?user=admin&password={SECRET}", "rtsp://10.0.0.5/stream?user=***&password=***"),
        (f"rtsp://cam/live.sdp?channel=1&PWD={SECRET};token={SECRET}", "rtsp://cam/live.sdp?channel=1&PWD=***;token=***"),
        (f"http://cam/video.mjpg?usr=admin&pwd={SECRET}", "http://cam/video.mjpg?usr=***&pwd=***"),
        (f"(rtsp://u:{SECRET}@h/s?passwd={SECRET}), retrying", "(rtsp://***@h/s?passwd=***), retrying"),
        (f"'rtsp://h/s?password={SECRET}'", "'rtsp://h/s?password=***'"),
        ("rtsp://cam/stream?channel=1&subtype=0", "rtsp://cam/stream?channel=1&subtype=0"),
        ("/dev/video0", "/dev/video0"),
        ("clips/front door.mp4", "clips/front door.mp4"),
    ],
)  # fmt: skip
def test_redact_hides_logins_and_keeps_the_rest(text: str, shown: str) -> None:
    assert redact(text) == shown


def _url(port: int, style: str) -> str:
    if style == "userinfo":
        return f"rtsp://admin:{SECRET}@127.0.0.1:{port}/stream1"
    return f"rtsp://127.0.0.1:{port}/stream1?user=admin&password={SECRET}"


def _config(folder: Path, camera: str) -> Path:
    path = folder / "agent.toml"
    path.write_text(
        f"""device_id = "red"
[watchlist]
path = "{folder / "watchlist.db"}"
[events]
path = "{folder / "events.db"}"
drain_timeout_s = 1.0
[mqtt]
host = "127.0.0.1"
port = {free_port()}
username = "agent"
password = "{BROKER_SECRET}"
[camera]
{camera}
"""
    )
    return path


def _run(args: list[str], timeout_s: float = 60.0) -> str:
    """All the output (stdout and stderr) of `edge-agent ARGS`; a run that does not end by itself is
    stopped with SIGINT after `timeout_s` (the agent drains and exits)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(2)
        output, _ = process.communicate(timeout=30)
    return output


JETSON_RTSP = 'type = "jetson"\nsource = "{url}"\n[camera.jetson]\ninput = "rtsp"'
PATHS = {
    # what prints a source: (arguments after the config, camera table, seconds before SIGINT)
    "config show": (["config", "show"], 'source = "{url}"', 60.0),
    "sources --explain": (["sources", "--explain"], 'source = "{url}"', 60.0),
    "sources --explain, jetson": (["sources", "--explain"], JETSON_RTSP, 60.0),
    "run, stream": (["run"], 'source = "{url}"\nreconnect_min_s = 0.2\nreconnect_max_s = 0.5', 6.0),
    "run, kind = file": (["run"], 'source = "{url}"\nkind = "file"', 60.0),
    "run --source, missing file": (["run", "--source", "/nonexistent/x.mp4?password={secret}"], "", 60.0),
}  # fmt: skip


@pytest.mark.parametrize("style", ["userinfo", "query"])
@pytest.mark.parametrize("path", list(PATHS))
def test_no_output_path_prints_a_password(path: str, style: str, tmp_path: Path) -> None:
    args, camera, timeout_s = PATHS[path]
    url = _url(free_port(), style)
    config = _config(tmp_path, camera.format(url=url))
    output = _run(["--config", str(config), *[arg.format(secret=SECRET) for arg in args]], timeout_s)
    assert "127.0.0.1" in output or "nonexistent" in output, output  # the source is shown ...
    assert SECRET not in output, output  # ... without its password
    assert BROKER_SECRET not in output, output
    assert "Traceback" not in output, output


def test_health_last_error_and_the_fatal_error_carry_no_password(tmp_path: Path) -> None:
    """In-process: what health publishes (`CaptureRunner.last_error`) for a stream that cannot be opened,
    and the error a file source ends with."""
    lines: list[str] = []
    stream = CameraSettings(source=_url(free_port(), "query"), reconnect_min_s=0.05, reconnect_max_s=0.1)
    runner = CaptureRunner(open_source(stream), LatestFrameSlot(), stream, log=lines.append)
    runner.start()
    try:
        wait_until(lambda: runner.reconnects >= 2, timeout_s=20.0)
    finally:
        runner.stop()
    assert runner.last_error is not None and "127.0.0.1" in runner.last_error
    assert SECRET not in runner.last_error and not any(SECRET in line for line in lines)

    file = CameraSettings(source=_url(free_port(), "userinfo"), kind="file")
    runner = CaptureRunner(open_source(file), LatestFrameSlot(), file)
    runner.start()
    wait_until(lambda: not runner.alive, timeout_s=20.0)
    assert runner.fatal is not None and "no such video file rtsp://***@127.0.0.1" in str(runner.fatal)
    assert SECRET not in str(runner.fatal) and SECRET not in str(runner.last_error)
    assert SECRET not in str(as_capture_error(OSError(f"failed: {_url(1, 'query')}"), "c"))

"""A network camera through the OpenCV URL path (the same one RTSP takes): reading, a camera that dies
and comes back, one that stalls, and a resolution it cannot give.

No RTSP server is available from PyPI or Debian without GStreamer's RTSP server libraries, so the
network camera here is an MJPEG-over-HTTP stream (tests/mjpeg_server.py); OpenCV opens both through
FFmpeg with the same timeouts and the same reconnect logic.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterator

import pytest

from edge_agent.bench.mosquitto import free_port
from edge_agent.capture.opencv import CaptureFormat, OpenCVSource
from edge_agent.capture.runner import CaptureRunner, LatestFrameSlot
from edge_agent.config import CameraSettings
from edge_agent.errors import CaptureError
from tests.agent_kit import DEMO_CLIP
from tests.mjpeg_server import MjpegCamera
from tests.waiting import wait_until

_wait = functools.partial(wait_until, timeout_s=20.0)


@pytest.fixture
def camera() -> Iterator[MjpegCamera]:
    served = MjpegCamera(DEMO_CLIP, free_port())
    served.start()
    yield served
    served.stop()


def test_frames_from_a_network_camera_carry_increasing_times(camera: MjpegCamera) -> None:
    source = OpenCVSource("ip", camera.url, live=True)
    source.open()
    frames = [source.read() for _ in range(15)]
    source.close()
    assert all(frame is not None and frame.image.shape == (360, 640, 3) for frame in frames)
    times = [frame.captured_at for frame in frames if frame is not None]
    assert all(b > a for a, b in itertools.pairwise(times))


def test_a_network_camera_that_dies_is_reconnected_without_leaking_its_password(camera: MjpegCamera) -> None:
    url = camera.url.replace("http://", "http://viewer:s3cret@")
    settings = CameraSettings(
        source=url, kind="stream", reconnect_min_s=0.1, reconnect_max_s=0.5, timeout_s=2
    )
    lines: list[str] = []
    runner = CaptureRunner(
        OpenCVSource("ip", url, live=True, network_timeout_s=2), LatestFrameSlot(), settings, log=lines.append
    )
    runner.start()
    try:
        _wait(lambda: runner.frames > 10, "frames")
        camera.stop()
        _wait(lambda: runner.state == "reconnecting", "the runner to notice")
        assert runner.last_error is not None and "s3cret" not in runner.last_error
        time.sleep(1.0)
        frames = runner.frames
        camera.start()
        _wait(lambda: runner.frames > frames + 10, "frames after the camera came back")
        assert runner.state == "streaming" and runner.reconnects >= 1
    finally:
        runner.stop()
    assert not any("s3cret" in line for line in lines), lines


def test_a_stalled_network_camera_times_out_instead_of_hanging(camera: MjpegCamera) -> None:
    source = OpenCVSource("ip", camera.url, live=True, network_timeout_s=1.0)
    source.open()
    assert source.read() is not None
    camera.stalled.set()
    started = time.monotonic()
    with pytest.raises(CaptureError, match="stopped delivering"):
        for _ in range(100):
            source.read()
    assert time.monotonic() - started < 5.0
    source.close()


def test_a_resolution_the_camera_cannot_give_is_named(camera: MjpegCamera) -> None:
    source = OpenCVSource("ip", camera.url, live=True, requested=CaptureFormat(width=1280, height=720))
    with pytest.raises(
        CaptureError, match=r"resolution 1280x720 not supported \(the device offers 640x360\)"
    ):
        source.open()

"""The capture thread and its one-slot buffer, on the real demo clip."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edge_agent.capture.opencv import OpenCVSource
from edge_agent.capture.runner import Captured, CaptureRunner, LatestFrameSlot
from edge_agent.capture.settings import CameraSettings
from edge_agent.redaction import redact
from edge_agent.types import Frame
from tests.kits.agent_kit import DEMO_CLIP

CLIP_FRAMES = 275


def _captured(index: int) -> Captured:
    image = np.zeros((4, 4, 3), np.uint8)
    return Captured(Frame(image, "t", index, datetime.now(UTC)), time.monotonic())


def test_slot_keeps_only_the_newest_frame_and_counts_the_rest() -> None:
    slot, stop = LatestFrameSlot(), threading.Event()
    for index in range(5):
        slot.put(_captured(index), wait=False, stop=stop)
    taken = slot.take(0.1)
    assert taken is not None and taken.frame.index == 4
    assert slot.dropped == 4
    assert slot.take(0.01) is None
    slot.close()
    assert slot.finished


def test_file_source_delivers_every_frame_in_order_then_ends() -> None:
    slot = LatestFrameSlot()
    runner = CaptureRunner(
        OpenCVSource("c", str(DEMO_CLIP), live=False), slot, CameraSettings(source=str(DEMO_CLIP))
    )
    runner.start()
    indices = []
    while not slot.finished:
        item = slot.take(0.5)
        if item is not None:
            indices.append(item.frame.index)
            time.sleep(0.001)  # a slow consumer: the file source must wait for it, not drop
    assert indices == list(range(CLIP_FRAMES))
    assert slot.dropped == 0 and runner.state == "ended" and runner.fatal is None


def test_realtime_file_drops_what_a_slow_worker_cannot_take() -> None:
    """Played at its own 29.97 fps to a worker that needs 100 ms a frame: about 2 of 3 frames dropped,
    counted, and the worker always gets a recent frame (never a queue)."""
    slot = LatestFrameSlot()
    settings = CameraSettings(source=str(DEMO_CLIP), realtime=True)
    runner = CaptureRunner(OpenCVSource("c", str(DEMO_CLIP), live=False), slot, settings)
    runner.start()
    taken = []
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        item = slot.take(0.5)
        if item is not None:
            taken.append(item.frame.index)
            time.sleep(0.1)
    runner.stop()
    read = runner.frames
    assert 60 <= read <= 80  # 2.5 s of a 29.97 fps clip
    assert read - 1 <= len(taken) + slot.dropped <= read  # the last one may still sit in the slot
    assert 0.5 * read < slot.dropped < 0.85 * read
    assert taken == sorted(taken)


def test_looped_file_keeps_frame_time_moving_forward() -> None:
    source = OpenCVSource("c", str(DEMO_CLIP), live=False, loop=True)
    source.open()
    frames = [source.read() for _ in range(CLIP_FRAMES + 10)]
    source.close()
    times = [f.captured_at for f in frames if f is not None]
    assert len(times) == CLIP_FRAMES + 10
    assert all(b > a for a, b in itertools.pairwise(times))


def test_a_camera_that_cannot_be_opened_is_retried_with_backoff() -> None:
    slot = LatestFrameSlot()
    settings = CameraSettings(
        source="/dev/video-none", kind="stream", reconnect_min_s=0.05, reconnect_max_s=0.2
    )
    lines: list[str] = []
    runner = CaptureRunner(OpenCVSource("c", settings.source, live=True), slot, settings, log=lines.append)
    runner.start()
    time.sleep(1.0)
    assert runner.alive and runner.state == "reconnecting"
    assert 3 <= runner.reconnects <= 20  # backoff: not a busy loop
    assert runner.last_error is not None and "/dev/video-none" in runner.last_error
    assert len(lines) == 1  # the same failure is logged once, not on every retry
    runner.stop()
    assert not runner.alive and slot.finished


def test_a_camera_that_opens_but_gives_no_frames_is_not_reopened_in_a_tight_loop(tmp_path: Path) -> None:
    """The demo clip with its picture data blanked: it opens (its index is intact) and every read fails,
    like a busy camera or an RTSP server that hangs up after the handshake."""
    data = bytearray(DEMO_CLIP.read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    data[start:end] = bytes(end - start)
    blank = tmp_path / "blank.mp4"
    blank.write_bytes(bytes(data))
    settings = CameraSettings(source=str(blank), kind="stream", reconnect_min_s=0.05, reconnect_max_s=0.4)
    lines: list[str] = []
    runner = CaptureRunner(
        OpenCVSource("c", str(blank), live=True), LatestFrameSlot(), settings, log=lines.append
    )
    runner.start()
    time.sleep(1.5)
    runner.stop()
    assert runner.frames == 0
    assert 2 <= runner.reconnects <= 12  # backoff 0.1, 0.2, 0.4, 0.4 ... s, not thousands of reopens
    assert runner.state == "ended" and len(lines) == 1, lines  # logged once, never "streaming"


def test_camera_credentials_never_reach_messages() -> None:
    text = "camera c: cannot open rtsp://admin:p@ss@10.0.0.5:554/stream1"
    assert redact(text) == "camera c: cannot open rtsp://***@10.0.0.5:554/stream1"
    assert redact("/dev/video0") == "/dev/video0"


def test_auto_kind_waits_only_for_devices_and_urls(tmp_path: Path) -> None:
    """A missing file or a folder is a file source (an error at once), not a camera to wait for."""
    from edge_agent.capture.source import is_file_source

    live = ["0", "/dev/video0", "/dev/v4l/by-id/usb-cam", "rtsp://cam/s", "http://cam/video.mjpg"]
    files = [str(DEMO_CLIP), str(tmp_path / "missing.mp4"), str(tmp_path), "clips/front.mp4"]
    assert [is_file_source(CameraSettings(source=source)) for source in live] == [False] * len(live)
    assert [is_file_source(CameraSettings(source=source)) for source in files] == [True] * len(files)
    assert not is_file_source(CameraSettings(source=str(DEMO_CLIP), kind="stream"))
    assert is_file_source(CameraSettings(source="rtsp://cam/s", kind="file"))

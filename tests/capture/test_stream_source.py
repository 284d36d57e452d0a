"""A network camera through the OpenCV URL path (the same one RTSP takes): reading, a camera that dies
and comes back, one that stalls, and a resolution it cannot give.

No RTSP server is available from PyPI or Debian without GStreamer's RTSP server libraries, so the
network camera here is an MJPEG-over-HTTP stream (tests/kits/mjpeg_server.py); OpenCV opens both through
FFmpeg with the same timeouts and the same reconnect logic.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from edge_agent.capture.opencv import CaptureFormat, OpenCVSource
from edge_agent.capture.runner import CaptureRunner, LatestFrameSlot
from edge_agent.capture.settings import CameraSettings, RtspTransport
from edge_agent.errors import CaptureError
from edge_agent.lab.mosquitto import free_port
from tests.kits.agent_kit import DEMO_CLIP
from tests.kits.mjpeg_server import MjpegCamera
from tests.kits.waiting import wait_until

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


# ---- RTSP transport ------------------------------------------------------------------------------------


def test_capture_options_carry_the_configured_rtsp_transport() -> None:
    from edge_agent.capture.opencv import ffmpeg_capture_options

    assert ffmpeg_capture_options("rtsp://cam/s", "auto") is None
    assert ffmpeg_capture_options("rtsp://cam/s", "tcp") == "rtsp_transport;tcp"
    assert ffmpeg_capture_options("RTSPS://cam/s", "udp") == "rtsp_transport;udp"
    assert ffmpeg_capture_options("http://cam/video.mjpg", "tcp") is None
    assert ffmpeg_capture_options("/clips/a.mp4", "tcp") is None
    kept = ffmpeg_capture_options("rtsp://cam/s", "tcp", "stimeout;5000000|rtsp_transport;udp")
    assert kept == "stimeout;5000000|rtsp_transport;tcp"


def test_the_jetson_pipeline_carries_the_configured_rtsp_transport() -> None:
    from edge_agent.capture.jetson import pipeline_string

    def pipeline(transport: str) -> str:
        camera = {"type": "jetson", "source": "rtsp://cam/s", "rtsp_transport": transport}
        return pipeline_string(CameraSettings.model_validate({**camera, "jetson": {"input": "rtsp"}}))

    assert "protocols" not in pipeline("auto")
    assert 'rtspsrc location="rtsp://cam/s" latency=200 protocols=tcp ! rtph264depay' in pipeline("tcp")
    assert " protocols=udp " in pipeline("udp")


def _rtsp_server(setups: list[str]) -> tuple[socket.socket, threading.Thread]:
    """A loopback RTSP server that answers OPTIONS and DESCRIBE (one H.264 track), records the Transport
    header of each SETUP and refuses it (461), so the client shows every transport it would try."""
    server = socket.create_server(("127.0.0.1", 0))
    sdp = (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=t\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:track1\r\n"
    )

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            conn.settimeout(10)
            with conn:
                pending = b""
                while data := conn.recv(4096):
                    pending += data
                    while b"\r\n\r\n" in pending:
                        head, pending = pending.split(b"\r\n\r\n", 1)
                        request = head.decode().split("\r\n")
                        headers = dict(line.split(": ", 1) for line in request[1:] if ": " in line)
                        method, cseq = request[0].split()[0], headers.get("CSeq", "0")
                        if method == "DESCRIBE":
                            reply = f"200 OK\r\nContent-Type: application/sdp\r\nContent-Length: {len(sdp)}"
                            conn.sendall(f"RTSP/1.0 {reply}\r\nCSeq: {cseq}\r\n\r\n{sdp}".encode())
                        elif method == "SETUP":
                            setups.append(headers.get("Transport", ""))
                            conn.sendall(
                                f"RTSP/1.0 461 Unsupported Transport\r\nCSeq: {cseq}\r\n\r\n".encode()
                            )
                        else:
                            public = "Public: OPTIONS, DESCRIBE, SETUP"
                            conn.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{public}\r\n\r\n".encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(
    ("transport", "offered"),
    [("tcp", ["RTP/AVP/TCP"]), ("udp", ["RTP/AVP/UDP"]), ("auto", ["RTP/AVP/TCP", "RTP/AVP/UDP"])],
)
def test_the_rtsp_transport_reaches_ffmpegs_setup_request(
    transport: RtspTransport, offered: list[str]
) -> None:
    """What OpenCV's FFmpeg really sends: the lower transport in each SETUP's Transport header."""
    setups: list[str] = []
    server, thread = _rtsp_server(setups)
    port = server.getsockname()[1]
    source = OpenCVSource(
        "ip", f"rtsp://127.0.0.1:{port}/s", live=True, network_timeout_s=5.0, rtsp_transport=transport
    )
    before = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
    with pytest.raises(CaptureError, match="cannot open"):
        source.open()
    server.close()
    thread.join(5)
    assert [setup.split(";")[0] for setup in setups][: len(offered)] == offered
    if transport != "auto":
        assert len(setups) == 1
    assert os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS") == before  # put back after the open

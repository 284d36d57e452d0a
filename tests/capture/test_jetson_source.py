"""The Jetson source: its GStreamer pipelines, quoting, and the clear error where OpenCV has no GStreamer
(pip's opencv-python-headless, as on this machine). No Jetson here: the pipelines are checked as text."""

from __future__ import annotations

import re
import time
from typing import Any

import cv2
import numpy as np
import pytest

from edge_agent.capture.jetson import JetsonSource, framerate, gst_quote, gstreamer_support, pipeline_string
from edge_agent.capture.runner import CaptureRunner, LatestFrameSlot
from edge_agent.capture.settings import CameraSettings
from edge_agent.capture.source import open_source
from edge_agent.errors import CaptureError, ConfigError
from tests.kits.agent_kit import DEMO_CLIP

TO_BGR = "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"
HAS_GSTREAMER = bool(re.search(r"^\s*GStreamer:\s*YES", cv2.getBuildInformation(), re.MULTILINE))


def jetson(source: str = "0", **options: Any) -> CameraSettings:
    names = ("width", "height", "fps", "loop", "reconnect_min_s", "reconnect_max_s")
    camera = {key: options.pop(key) for key in names if key in options}
    return CameraSettings(type="jetson", source=source, jetson=options, **camera)


def test_csi_pipeline() -> None:
    assert pipeline_string(jetson()) == (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,"
        "format=NV12 ! nvvidconv flip-method=0 ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )
    settings = jetson(sensor_id=1, flip_method=2, width=1280, height=720, fps=59.94)
    assert pipeline_string(settings) == (
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1280,height=720,"
        "framerate=60000/1001,format=NV12 ! nvvidconv flip-method=2 ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )


def test_rtsp_pipelines() -> None:
    url = "rtsp://admin:pw@10.0.0.5:554/Streaming/Channels/101"
    assert pipeline_string(jetson(url, input="rtsp")) == (
        f'rtspsrc location="{url}" latency=200 ! rtph264depay ! h264parse ! nvv4l2decoder ! '
        f"{TO_BGR} ! appsink drop=true max-buffers=1"
    )
    assert pipeline_string(jetson(url, input="rtsp", codec="h265", latency_ms=0)) == (
        f'rtspsrc location="{url}" latency=0 ! rtph265depay ! h265parse ! nvv4l2decoder ! '
        f"{TO_BGR} ! appsink drop=true max-buffers=1"
    )


def test_file_pipelines_deliver_every_frame() -> None:
    """No drop and no clock sync: every frame of a clip, as fast as inference takes them."""
    assert pipeline_string(jetson("/data/clips/a.mp4", input="file")) == (
        'filesrc location="/data/clips/a.mp4" ! qtdemux ! h264parse ! nvv4l2decoder ! '
        f"{TO_BGR} ! appsink sync=false"
    )
    settings = jetson("/data/b.MKV", input="file", codec="h265", flip_method=2, width=960, height=540)
    assert pipeline_string(settings) == (
        'filesrc location="/data/b.MKV" ! matroskademux ! h265parse ! nvv4l2decoder ! '
        "nvvidconv flip-method=2 ! video/x-raw,width=960,height=540,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink sync=false"
    )


def test_locations_are_quoted_for_gst_launch() -> None:
    """Spaces, `!`, quotes and backslashes stay inside one property value."""
    assert gst_quote("/media/dock/cam 7/clip!1.mp4") == '"/media/dock/cam 7/clip!1.mp4"'
    assert gst_quote('/a/"b"\\c.mp4') == '"/a/\\"b\\"\\\\c.mp4"'
    assert pipeline_string(jetson("/media/dock/cam 7/x.mp4", input="file")).startswith(
        'filesrc location="/media/dock/cam 7/x.mp4" ! qtdemux !'
    )
    url = "rtsp://u:p@cam/live?channel=1&subtype=0"
    assert f'location="{url}" latency' in pipeline_string(jetson(url, input="rtsp"))
    with pytest.raises(ConfigError, match=r"camera\.source .* cannot be written into a GStreamer pipeline"):
        pipeline_string(jetson("/clips/a\nb.mp4", input="file"))


def test_framerate_fractions() -> None:
    rates = (30.0, 25.0, 29.97, 59.94, 23.976, 12.5)
    assert [framerate(fps) for fps in rates] == [
        "30/1",
        "25/1",
        "30000/1001",
        "60000/1001",
        "24000/1001",
        "25/2",
    ]


def test_sources_are_live_except_files_and_hide_passwords() -> None:
    csi = open_source(jetson())
    assert isinstance(csi, JetsonSource) and csi.live and csi.source == "CSI sensor 0 (nvarguscamerasrc)"
    rtsp = JetsonSource(jetson("rtsp://admin:pw@cam/1", input="rtsp"))
    assert rtsp.live and "pw" not in rtsp.source and "rtsp://***@cam/1" in rtsp.source
    clip = JetsonSource(jetson(str(DEMO_CLIP), input="file"))
    assert not clip.live and clip.source == str(DEMO_CLIP)
    with pytest.raises(ConfigError, match=r"camera\.loop does not work with camera\.type = jetson"):
        JetsonSource(jetson(str(DEMO_CLIP), input="file", loop=True))


def test_gstreamer_support_reads_opencvs_build_information() -> None:
    supported, detail = gstreamer_support()
    assert supported == HAS_GSTREAMER
    assert detail.upper().startswith("YES" if HAS_GSTREAMER else "NO")


@pytest.mark.skipif(HAS_GSTREAMER, reason="this OpenCV has GStreamer")
def test_opencv_without_gstreamer_is_one_clear_error() -> None:
    for settings in (jetson(), jetson(str(DEMO_CLIP), input="file")):
        with pytest.raises(CaptureError) as raised:
            JetsonSource(settings).open()
        message = str(raised.value)
        assert message.startswith(f"camera cam-1: this OpenCV {cv2.__version__} was built without GStreamer")
        assert "opencv-python-headless has none" in message and "hardware/jetson/README.md" in message


@pytest.mark.skipif(HAS_GSTREAMER, reason="this OpenCV has GStreamer")
def test_runner_retries_a_live_jetson_camera_and_ends_a_file_run() -> None:
    """Without GStreamer a CSI camera is retried with backoff (the agent stays up and health says why);
    a file source ends the run with the error."""
    settings = jetson(reconnect_min_s=0.01, reconnect_max_s=0.02)
    runner = CaptureRunner(JetsonSource(settings), LatestFrameSlot(), settings)
    runner.start()
    deadline = time.monotonic() + 3.0
    while runner.reconnects < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    runner.stop()
    assert runner.reconnects >= 3 and runner.fatal is None
    assert runner.last_error is not None and "without GStreamer" in runner.last_error

    clip = jetson(str(DEMO_CLIP), input="file")
    runner = CaptureRunner(JetsonSource(clip), LatestFrameSlot(), clip)
    runner.start()
    deadline = time.monotonic() + 5.0
    while runner.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not runner.alive and runner.state == "ended"
    assert runner.fatal is not None and "without GStreamer" in str(runner.fatal)


@pytest.mark.skipif(not HAS_GSTREAMER, reason="this OpenCV has no GStreamer (pip's opencv-python-headless)")
def test_file_pipeline_with_software_decoding_delivers_every_frame_in_rgb() -> None:
    """Where OpenCV has GStreamer but no Jetson is at hand (e.g. Debian's python3-opencv): the file
    pipeline with software stand-ins for the two NVIDIA elements reads every frame of the demo clip, as
    RGB, with frame times from the frame rate (OpenCV's GStreamer position runs ahead of the frame)."""
    source = JetsonSource(jetson(str(DEMO_CLIP), input="file"))
    source.pipeline = source.pipeline.replace("nvv4l2decoder ! nvvidconv", "avdec_h264 ! videoconvert")
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    fps = source.fps
    assert fps is not None and fps == pytest.approx(29.97, abs=0.01)
    assert len(frames) == 275
    assert [frame.offset_s for frame in frames[:3]] == pytest.approx([0.0, 1 / fps, 2 / fps])
    clip_s = (frames[-1].captured_at - frames[0].captured_at).total_seconds()
    assert clip_s == pytest.approx(274 / fps, abs=1e-3)
    capture = cv2.VideoCapture(str(DEMO_CLIP))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    difference = np.abs(frames[0].image.astype(int) - cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(int))
    assert difference.mean() < 3.0  # another decoder, same picture, same channel order

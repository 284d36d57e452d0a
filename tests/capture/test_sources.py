"""`edge-agent sources`: what this machine offers (run for real here), and the V4L2 probing on a made-up
sysfs tree."""

from __future__ import annotations

import importlib.util
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import get_args

from edge_agent.capture.discover import (
    CAP_DEVICE_CAPS,
    CAP_META_CAPTURE,
    CAP_VIDEO_CAPTURE,
    CAP_VIDEO_M2M_MPLANE,
    Survey,
    VideoDevice,
    parse_capability,
    report,
    video_devices,
)
from edge_agent.capture.jetson import gstreamer_support
from edge_agent.capture.settings import CameraSettings
from edge_agent.capture.source import SOURCES
from tests.kits.agent_kit import DEMO_CLIP
from tests.kits.clihelp import run_cli


def _has_video_nodes() -> bool:
    return any(Path("/sys/class/video4linux").glob("video*")) or any(Path("/dev").glob("video*"))


def test_sources_on_this_machine() -> None:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("EDGE_AGENT_")}
    result = run_cli("sources", env=environment)  # the built-in defaults, whatever the caller's config
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "V4L2 devices (/sys/class/video4linux, /dev/video*):"
    if not _has_video_nodes():  # this x86 box and CI: no cameras at all
        assert lines[1] == "  none found"
    pi_header = lines.index("Pi cameras (picamera2):")
    if importlib.util.find_spec("picamera2") is None:
        assert lines[pi_header + 1].startswith("  picamera2 is not installed: on Pi OS `sudo apt install")
    supported, detail = gstreamer_support()
    gstreamer = next(line for line in lines if line.startswith("OpenCV "))
    assert f"GStreamer {detail}" in gstreamer
    assert ("camera.type = jetson needs an OpenCV built with GStreamer" in gstreamer) == (not supported)
    assert lines[-2:] == [
        "Configured camera cam-1 (camera.type = opencv):",
        "  V4L2 device 0 (/dev/video0); live: reopened with backoff, newest frame wins",
    ]


def test_explain_shows_the_jetson_pipeline_without_the_password(tmp_path: Path) -> None:
    config = tmp_path / "jetson.toml"
    config.write_text(
        '[camera]\ntype = "jetson"\nid = "gate"\nsource = "rtsp://admin:s3cret@10.0.0.5/ch1"\n'
        '[camera.jetson]\ninput = "rtsp"\ncodec = "h265"\n'
    )
    result = run_cli("--config", config, "sources", "--explain")
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout
    tail = result.stdout.splitlines()[-4:]
    assert tail == [
        "Configured camera gate (camera.type = jetson):",
        "  RTSP stream rtsp://***@10.0.0.5/ch1 (h265, nvv4l2decoder); live",
        "  GStreamer pipeline (OpenCV CAP_GSTREAMER):",
        '    rtspsrc location="rtsp://***@10.0.0.5/ch1" latency=200 ! rtph265depay ! h265parse ! '
        "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1",
    ]


def test_explain_for_the_other_camera_types() -> None:
    pi = CameraSettings(type="picamera2", width=1280, height=720, fps=30, picamera2={"lores": (640, 360)})
    lines = report(Survey([], None, "picamera2 is not installed", (False, "NO")), pi, explain=True)
    assert lines[-3:] == [
        "  Pi camera 0 through picamera2; live",
        "  Picamera2(0).create_video_configuration(main={'size': (1280, 720), 'format': 'RGB888'}, "
        "lores={'size': (640, 360), 'format': 'YUV420'}, controls={'FrameRate': 30.0})",
        "  frames carry the main stream; the lores stream is configured, not yet detected on",
    ]
    clip = CameraSettings(source=str(DEMO_CLIP))
    lines = report(Survey([], [], None, (True, "YES (1.22.0)")), clip, explain=True)
    assert "Pi cameras (picamera2):\n  none found" in "\n".join(lines)
    assert "OpenCV " in lines[-4] and lines[-4].endswith("GStreamer YES (1.22.0)")
    assert lines[-2:] == [
        f"  video file {DEMO_CLIP}; file: every frame, then the run ends",
        f"  OpenCV VideoCapture({str(DEMO_CLIP)!r})",
    ]
    usb = CameraSettings(source="/dev/video2", width=1280, height=720, fps=30, fourcc="MJPG")
    lines = report(Survey([], [], None, (False, "NO")), usb, explain=True)
    assert lines[-3:] == [
        "  path /dev/video2 (missing); live: reopened with backoff, newest frame wins",
        "  OpenCV VideoCapture('/dev/video2')",
        "  requested format: 1280x720 30 fps MJPG",
    ]
    dock = CameraSettings(
        type="bodycam",
        bodycam={"folder": "/srv/dock", "time_source": "filename", "filename_pattern": "%Y%m%d_%H%M%S"},
    )
    lines = report(Survey([], [], None, (False, "NO")), dock, explain=True)
    assert lines[-3].startswith("  body-cam docking folder /srv/dock (*.mp4, *.MP4")
    assert lines[-2:] == [
        "  recording time from file name '%Y%m%d_%H%M%S' in UTC; without one: skip",
        "  after processing: keep",
    ]


def _capability(driver: bytes, capabilities: int, device_caps: int) -> bytes:
    return struct.pack(
        "=16s32s32sIII12x", driver, b"HD Webcam", b"usb-0000:00:14.0-1", 0x60000, capabilities, device_caps
    )


def test_capabilities_tell_cameras_from_metadata_and_codec_nodes() -> None:
    both = CAP_VIDEO_CAPTURE | CAP_META_CAPTURE | CAP_DEVICE_CAPS
    assert parse_capability(_capability(b"uvcvideo", both, CAP_VIDEO_CAPTURE)) == (
        "uvcvideo",
        CAP_VIDEO_CAPTURE,
    )
    driver, caps = parse_capability(_capability(b"uvcvideo", both, CAP_META_CAPTURE))
    assert VideoDevice(Path("/dev/video1"), "HD Webcam", driver, caps).kind == "metadata only (not pictures)"
    old_driver = parse_capability(_capability(b"old", CAP_VIDEO_CAPTURE, 0))  # no per-node caps: use all
    assert old_driver == ("old", CAP_VIDEO_CAPTURE)
    codec = VideoDevice(Path("/dev/video10"), "bcm2835-codec-decode", "bcm2835-codec", CAP_VIDEO_M2M_MPLANE)
    assert codec.kind.startswith("memory-to-memory") and codec.capture is False
    camera = VideoDevice(Path("/dev/video0"), "HD Webcam", "uvcvideo", CAP_VIDEO_CAPTURE)
    assert camera.kind == "video capture" and camera.capture is True


def test_devices_listed_from_sysfs_even_when_they_cannot_be_opened(tmp_path: Path) -> None:
    sysfs, dev = tmp_path / "video4linux", tmp_path / "dev"
    for node, name in (
        ("video10", "bcm2835-codec-decode"),
        ("video0", "HD Webcam: HD Webcam"),
        ("vbi0", "x"),
    ):
        (sysfs / node).mkdir(parents=True)
        (sysfs / node / "name").write_text(name + "\n")
    dev.mkdir()
    (dev / "video2").write_text("")  # a regular file: opens, but the ioctl fails
    devices = video_devices(sysfs, dev)
    assert [(d.path.name, d.name, d.capture) for d in devices] == [
        ("video0", "HD Webcam: HD Webcam", None),
        ("video2", "", None),
        ("video10", "bcm2835-codec-decode", None),
    ]
    assert devices[0].kind == "unknown (No such file or directory)"
    lines = report(
        Survey(devices, [{"Model": "imx708", "Id": "/base/imx708@1a", "Num": 0}], None, (True, "YES")),
        CameraSettings(),
    )
    assert lines[1] == f"  {dev / 'video0'}  HD Webcam: HD Webcam: unknown (No such file or directory)"
    assert lines[2].startswith(f"  {dev / 'video2'}  (no name): unknown (")
    assert "  camera_num 0: imx708  /base/imx708@1a" in lines


def test_every_camera_type_has_a_registered_source_and_the_settings_load_no_camera_library() -> None:
    """The registry and `camera.type` name the same sources; settings import neither OpenCV nor picamera2."""
    assert set(SOURCES) == set(get_args(CameraSettings.model_fields["type"].annotation))
    code = (
        "import sys; import edge_agent.config; "
        "print(sorted(m for m in ('cv2', 'picamera2', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

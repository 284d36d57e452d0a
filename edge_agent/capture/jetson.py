"""NVIDIA Jetson cameras and hardware-decoded streams: GStreamer pipelines opened by OpenCV
(`camera.type = "jetson"`).

Three inputs (`camera.jetson.input`):

- `csi`: a MIPI CSI sensor through `nvarguscamerasrc` (the Argus ISP), NV12 in NVMM memory, converted and
  flipped by `nvvidconv` (the VIC);
- `rtsp`: an RTSP camera (`camera.source` is the URL), depayloaded, parsed and decoded by `nvv4l2decoder`
  (NVDEC); `camera.rtsp_transport` tcp or udp becomes `rtspsrc protocols=tcp` (or `udp`: rtspsrc's
  `protocols` flags, whose default tries UDP and then TCP);
- `file`: a video file (`camera.source` is the path), demuxed and decoded the same way, every frame.

Element names and caps follow NVIDIA's "Accelerated GStreamer" chapter of the Jetson Linux Developer Guide
(r35.x, docs.nvidia.com/jetson/archives/r35.6.1/DeveloperGuide/SD/Multimedia/AcceleratedGstreamer.html:
`nvv4l2decoder` is the V4L2 H.264/H.265 decoder, `nvarguscamerasrc` the camera source, `nvvidconv` the
converter) and `gst-inspect-1.0 nvv4l2decoder` (its sink takes byte-stream/au H.264 or H.265, hence
`h264parse`/`h265parse` in front). `nvvidconv` has no packed 24-bit output, so it converts to BGRx and
`videoconvert` drops the padding byte for OpenCV's BGR. None of this was run on a Jetson here.

OpenCV finds the `appsink`, sets it to one buffer (unless `max-buffers=` is given) and pulls from it; a
live pipeline drops what is not read (`drop=true`), a file pipeline does not drop and does not sync to the
clock (`sync=false`: every frame as fast as inference goes; `camera.realtime` paces files instead). Frames
are stamped by `OpenCVSource`, which this class extends (live: the wall clock when grabbed), with one
exception: for files OpenCV's GStreamer backend reports a position (CAP_PROP_POS_MSEC) that runs ahead of
the frame and repeats at the start (OpenCV warns it "may be unreliable", opencv/opencv#19025; seen here
with Debian's OpenCV 4.6 + GStreamer 1.22 on the demo clip: the first frames all at 0.92 s), so a file's
frame `i` is placed at `i / fps` from the file's time instead. `camera.loop` is refused for files: that
backend cannot restart a pipeline that reached its end (seen here too). pip's `opencv-python-headless` has
no GStreamer; `open()` then says so in one line.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import cv2

from edge_agent.capture.opencv import OpenCVSource
from edge_agent.capture.settings import CameraSettings
from edge_agent.errors import CaptureError, ConfigError
from edge_agent.redaction import redact
from edge_agent.types import Frame

DEFAULT_CSI_SIZE = (1920, 1080)
DEFAULT_CSI_FPS = 30.0
_TO_BGR = "videoconvert ! video/x-raw,format=BGR"
_LIVE_SINK = "appsink drop=true max-buffers=1"
_FILE_SINK = "appsink sync=false"
_DEMUXERS = {".mkv": "matroskademux", ".webm": "matroskademux", ".ts": "tsdemux", ".m2ts": "tsdemux"}


def gst_quote(value: str) -> str:
    """`value` as one double-quoted property value in gst-launch syntax.

    `gst_parse_launch` strips the outer quotes and then drops each backslash, keeping the character after
    it (`gst_parse_unescape` in gst/parse/grammar.y), so backslashes and quotes are escaped. Control
    characters cannot be written at all and are refused.
    """
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(f"{value!r} contains a control character")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def framerate(fps: float) -> str:
    """A GStreamer fraction: 30 -> 30/1, 12.5 -> 25/2, and the NTSC rates as such: 29.97 -> 30000/1001."""
    ntsc = round(fps * 1.001)
    if abs(fps - round(fps)) > 0.005 and abs(fps - ntsc / 1.001) < 0.005:
        return f"{ntsc * 1000}/1001"
    fraction = Fraction(fps).limit_denominator(1000)
    return f"{fraction.numerator}/{fraction.denominator}"


def pipeline_string(settings: CameraSettings) -> str:
    """The GStreamer pipeline for the configured Jetson input (ConfigError for a source it cannot hold)."""
    jetson = settings.jetson
    if jetson.input == "csi":
        width, height = (settings.width, settings.height) if settings.width else DEFAULT_CSI_SIZE
        caps = f"width={width},height={height},framerate={framerate(settings.fps or DEFAULT_CSI_FPS)}"
        return (
            f"nvarguscamerasrc sensor-id={jetson.sensor_id} ! video/x-raw(memory:NVMM),{caps},format=NV12"
            f" ! nvvidconv flip-method={jetson.flip_method} ! video/x-raw,format=BGRx ! {_TO_BGR}"
            f" ! {_LIVE_SINK}"
        )
    location = _quoted_source(settings)
    codec = jetson.codec
    if jetson.input == "rtsp":
        protocols = "" if settings.rtsp_transport == "auto" else f" protocols={settings.rtsp_transport}"
        head = f"rtspsrc location={location} latency={jetson.latency_ms}{protocols} ! rtp{codec}depay"
        sink = _LIVE_SINK
    else:
        demuxer = _DEMUXERS.get(Path(settings.source).suffix.lower(), "qtdemux")
        head = f"filesrc location={location} ! {demuxer}"
        sink = _FILE_SINK
    flip = f" flip-method={jetson.flip_method}" if jetson.flip_method else ""
    size = f"width={settings.width},height={settings.height}," if settings.width else ""
    return (
        f"{head} ! {codec}parse ! nvv4l2decoder ! nvvidconv{flip} ! video/x-raw,{size}format=BGRx"
        f" ! {_TO_BGR} ! {sink}"
    )


def _quoted_source(settings: CameraSettings) -> str:
    try:
        return gst_quote(settings.source)
    except ValueError:
        raise ConfigError(
            f"camera.source {redact(settings.source)!r} cannot be written into a GStreamer pipeline "
            "(it contains a control character)"
        ) from None


def gstreamer_support() -> tuple[bool, str]:
    """Whether this OpenCV was built with GStreamer, and the line of its build information that says so."""
    match = re.search(r"^\s*GStreamer:\s*(.+?)\s*$", cv2.getBuildInformation(), re.MULTILINE)
    if match is None:
        return False, "not listed"
    detail = match.group(1)
    return detail.upper().startswith("YES"), detail


def describe_input(settings: CameraSettings) -> str:
    """What the pipeline reads, for log lines and errors (passwords in URLs hidden)."""
    jetson = settings.jetson
    if jetson.input == "csi":
        return f"CSI sensor {jetson.sensor_id} (nvarguscamerasrc)"
    kind = "RTSP stream" if jetson.input == "rtsp" else "video file"
    return f"{kind} {redact(settings.source)} ({jetson.codec}, nvv4l2decoder)"


class JetsonSource(OpenCVSource):
    """A CSI camera or RTSP stream (live: reopened with backoff by the runner, newest frame wins) or a
    video file (read to its end, every frame), decoded on the Jetson's hardware."""

    def __init__(self, settings: CameraSettings) -> None:
        self.pipeline = pipeline_string(settings)
        is_file = settings.jetson.input == "file"
        if is_file and settings.loop:
            raise ConfigError(
                "camera.loop does not work with camera.type = jetson: OpenCV's GStreamer backend cannot "
                "restart a pipeline at the end of a file (use camera.type = opencv to loop a clip)"
            )
        super().__init__(
            settings.id, settings.source if is_file else describe_input(settings), live=not is_file
        )

    def open(self) -> None:
        supported, detail = gstreamer_support()
        if not supported:
            raise CaptureError(
                f"camera {self.camera_id}: this OpenCV {cv2.__version__} was built without GStreamer "
                f"(GStreamer: {detail}), which camera.type = jetson needs: pip's opencv-python-headless "
                "has none; use JetPack's OpenCV or one built with GStreamer (hardware/jetson/README.md)"
            )
        super().open()

    def read(self) -> Frame | None:
        frame = super().read()
        if frame is None or self.live or not self.fps:
            return frame
        offset_s = frame.index / self.fps
        start = frame.captured_at - timedelta(seconds=frame.offset_s)  # the file's time
        return dataclasses.replace(frame, offset_s=offset_s, captured_at=start + timedelta(seconds=offset_s))

    def new_capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER)

"""The `[camera]` section: the frame source the live agent watches, composed of each source's own settings.

The fields every source shares (id, source, kind, size, rate, reconnect backoff, RTSP transport) live
here; what only one source knows sits beside that source (`picamera2_settings.py`, `jetson_settings.py`,
`bodycam/settings.py`) and appears as a sub-table (`[camera.jetson]`). Light on purpose: pydantic and base
modules only, so validating a config loads no camera library.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.capture.bodycam.settings import BodycamSettings
from edge_agent.capture.jetson_settings import JetsonSettings
from edge_agent.capture.picamera2_settings import Picamera2Settings
from edge_agent.section import Section

IDENTIFIER = r"^[A-Za-z0-9_.-]+$"


RtspTransport = Literal["auto", "tcp", "udp"]


class CameraSettings(Section):
    """The frame source the live agent (`edge-agent run`) watches."""

    type: Literal["opencv", "picamera2", "jetson", "bodycam"] = Field(
        "opencv",
        description="Source plugin: opencv (V4L2/USB, RTSP/HTTP, video files), picamera2 (Pi camera), "
        "jetson (CSI or hardware-decoded RTSP/files via GStreamer), bodycam (a docking folder of clips).",
    )

    id: str = Field(
        "cam-1", min_length=1, max_length=64, pattern=IDENTIFIER, description="Camera name in events."
    )
    source: str = Field(
        "0",
        min_length=1,
        description="What to open: a V4L2 device number or path (0, /dev/video0), an rtsp:// or http:// URL, "
        "or a video file.",
    )
    kind: Literal["auto", "file", "stream"] = Field(
        "auto",
        description="file: a clip read to its end, every frame, then a clean exit (a missing, unreadable or "
        "corrupt file ends the run with exit 1); stream: a live camera, reopened with backoff when it fails "
        "or ends, newest frame wins. auto: stream for a device number, a /dev/ path or a URL (a camera "
        "that may appear later), file for any other path.",
    )
    loop: bool = Field(False, description="Files only: start again at the end (demos and soak runs).")
    realtime: bool = Field(
        False,
        description="Files only: deliver frames at the clip's own rate and drop what inference cannot "
        "keep up with, like a camera (default: every frame, as fast as inference goes).",
    )
    reconnect_min_s: float = Field(0.5, gt=0.0, le=60.0, description="First wait before reopening a camera.")
    reconnect_max_s: float = Field(30.0, gt=0.0, le=3600.0, description="Longest wait between reopen tries.")
    timeout_s: float = Field(
        10.0, gt=0.0, le=600.0, description="Open and read timeout of network streams (RTSP/HTTP)."
    )
    rtsp_transport: RtspTransport = Field(
        "auto",
        description="How RTSP streams carry their packets: auto (the library offers several in turn: "
        "OpenCV's FFmpeg TCP, then UDP, then multicast; GStreamer's rtspsrc UDP first), tcp (interleaved in "
        "the RTSP connection: through NAT and firewalls, no lost packets) or udp (only). Applied as "
        "OPENCV_FFMPEG_CAPTURE_OPTIONS rtsp_transport;tcp (camera.type = opencv) and rtspsrc protocols=tcp "
        "(camera.type = jetson).",
    )
    width: int | None = Field(None, ge=16, le=16384, description="Requested frame width (live cameras).")
    height: int | None = Field(None, ge=16, le=16384, description="Requested frame height (live cameras).")
    fps: float | None = Field(None, gt=0.0, le=1000.0, description="Requested frame rate (live cameras).")
    fourcc: str | None = Field(
        None, pattern=r"^[A-Za-z0-9 ]{4}$", description='V4L2 pixel format, e.g. "MJPG" or "YUYV".'
    )
    picamera2: Picamera2Settings = Field(default_factory=Picamera2Settings)
    jetson: JetsonSettings = Field(default_factory=JetsonSettings)
    bodycam: BodycamSettings = Field(default_factory=BodycamSettings)

    @field_validator("source", mode="before")
    @classmethod
    def _device_number(cls, value: object) -> object:
        """`source = 0` in TOML (an integer: the natural way to write a device number) is device "0"."""
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError(f"a device number is 0 or more, got {value}")
            return str(value)
        return value

    @model_validator(mode="after")
    def _backoff_range(self) -> CameraSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together")
        if self.type == "bodycam" and self.bodycam.folder is None:
            raise ValueError("type = bodycam needs bodycam.folder")
        if self.type == "bodycam" and (self.realtime or self.loop):
            raise ValueError("realtime and loop are for single video files, not a body-cam folder")
        return self

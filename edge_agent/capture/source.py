"""What every frame source offers, and the one place that picks a source for the configured camera."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from edge_agent.config import CameraSettings
from edge_agent.redaction import redact as redact  # re-exported: the one redaction, for older imports
from edge_agent.types import Frame


class FrameSource(Protocol):
    """A camera, stream or clip. `live` sources are reopened when they fail or end and may drop frames;
    file sources are read to their end, every frame.

    `open` and `read` raise `CaptureError` naming the camera and what failed; `read` returns None at the
    end of a file.
    """

    camera_id: str
    live: bool
    fps: float | None  # the rate the source itself delivers at, when it says

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...

    def processed(self, frame: Frame) -> None:
        """The worker has finished with `frame` (its events are committed): sources that keep progress
        (the body-cam folder) record it here, never earlier, so a crash repeats nothing and skips nothing."""

    def interrupt(self) -> None:
        """Make a blocked `read` return None soon (called from another thread when the agent stops)."""


def is_device_or_url(source: str) -> bool:
    """A V4L2 device number, a /dev/ path or a URL: a camera that may be absent now and appear later."""
    return source.isdigit() or source.startswith("/dev/") or "://" in source


def is_file_source(settings: CameraSettings) -> bool:
    """Whether the source is a file read to its end (else a live camera reopened with backoff). With
    `kind = auto`, any path that is not a device or URL is a file, so a missing file or a folder is an
    error at once, not a camera waited for."""
    if settings.kind != "auto":
        return settings.kind == "file"
    return not is_device_or_url(settings.source)


def open_source(settings: CameraSettings, log: Callable[[str], None] = lambda line: None) -> FrameSource:
    """The source plugin `camera.type` names (not yet opened); each is imported only when chosen, so the
    agent runs where picamera2 or GStreamer are absent."""
    if settings.type == "picamera2":
        from edge_agent.capture.picamera2 import Picamera2Source

        return Picamera2Source(settings)
    if settings.type == "jetson":
        from edge_agent.capture.jetson import JetsonSource

        return JetsonSource(settings)
    if settings.type == "bodycam":
        from edge_agent.capture.bodycam import BodycamSource

        return BodycamSource(settings, log)
    from edge_agent.capture.opencv import CaptureFormat, OpenCVSource

    return OpenCVSource(
        settings.id,
        settings.source,
        live=not is_file_source(settings),
        loop=settings.loop,
        requested=CaptureFormat.from_settings(settings),
        network_timeout_s=settings.timeout_s,
        rtsp_transport=settings.rtsp_transport,
    )

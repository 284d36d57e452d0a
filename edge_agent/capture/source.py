"""What every frame source offers, and the one place that picks a source for the configured camera."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from edge_agent.capture.settings import CameraSettings
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


Log = Callable[[str], None]
SourceFactory = Callable[[CameraSettings, Log], FrameSource]


def _opencv(settings: CameraSettings, log: Log) -> FrameSource:
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


def _picamera2(settings: CameraSettings, log: Log) -> FrameSource:
    from edge_agent.capture.picamera2 import Picamera2Source

    return Picamera2Source(settings)


def _jetson(settings: CameraSettings, log: Log) -> FrameSource:
    from edge_agent.capture.jetson import JetsonSource

    return JetsonSource(settings)


def _bodycam(settings: CameraSettings, log: Log) -> FrameSource:
    from edge_agent.capture.bodycam.source import BodycamSource

    return BodycamSource(settings, log)


# `camera.type` -> the factory of its source. Each factory imports its module only when called, so the
# agent runs where picamera2 or GStreamer are absent. A new source: its module, its settings (a field of
# `CameraSettings` named like it, a value of `camera.type`), and one line here.
SOURCES: Mapping[str, SourceFactory] = {
    "opencv": _opencv,
    "picamera2": _picamera2,
    "jetson": _jetson,
    "bodycam": _bodycam,
}


def open_source(settings: CameraSettings, log: Log = lambda line: None) -> FrameSource:
    """The source plugin `camera.type` names (not yet opened)."""
    return SOURCES[settings.type](settings, log)

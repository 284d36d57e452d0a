"""What every frame source offers, and the one place that picks a source for the configured camera."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from edge_agent.config import CameraSettings
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


def is_file_source(settings: CameraSettings) -> bool:
    if settings.kind != "auto":
        return settings.kind == "file"
    return Path(settings.source).is_file()


def open_source(settings: CameraSettings) -> FrameSource:
    """The source for the configured camera (not yet opened)."""
    from edge_agent.capture.opencv import OpenCVSource

    return OpenCVSource(settings.id, settings.source, live=not is_file_source(settings), loop=settings.loop)


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]*@")


def redact(text: str) -> str:
    """Hide the user:password of any URL in `text` (RTSP cameras carry them), for logs and health."""
    return _USERINFO.sub(r"\g<scheme>***@", text)

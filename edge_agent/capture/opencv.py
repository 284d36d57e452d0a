"""USB/V4L2 cameras, RTSP/HTTP streams and video files through OpenCV's `VideoCapture`.

Live frames are stamped with the wall clock when grabbed, advanced by the monotonic clock so that their
times never go backwards (tracking and the vote's cool-down compare frame times; an NTP step back must not
freeze them). A file's frames carry the file's modification time plus their offset in the clip (a looped
clip keeps counting).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from edge_agent.capture.source import redact
from edge_agent.config import CameraSettings
from edge_agent.errors import CaptureError
from edge_agent.types import Frame, RGBImage


@dataclass(frozen=True)
class CaptureFormat:
    """What to ask a live camera for; None leaves the driver's default."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fourcc: str | None = None

    @classmethod
    def from_settings(cls, settings: CameraSettings) -> CaptureFormat:
        return cls(settings.width, settings.height, settings.fps, settings.fourcc)

    def apply(self, capture: cv2.VideoCapture, camera_id: str) -> None:
        """Ask for the format, then check what the driver granted: V4L2 silently picks the nearest mode,
        and a camera delivering another size than configured deserves one clear line."""
        if self.fourcc is not None:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.fourcc))
        if self.width is not None and self.height is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            granted = (
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            )
            if granted != (self.width, self.height):
                raise CaptureError(
                    f"camera {camera_id}: resolution {self.width}x{self.height} not supported "
                    f"(the device offers {granted[0]}x{granted[1]})"
                )
        if self.fps is not None:
            capture.set(cv2.CAP_PROP_FPS, self.fps)


def capture_target(source: str) -> int | str:
    """A bare number is a V4L2 device index; anything else (path, URL) is passed through."""
    return int(source) if source.isdigit() else source


class OpenCVSource:
    def __init__(
        self,
        camera_id: str,
        source: str,
        *,
        live: bool,
        loop: bool = False,
        requested: CaptureFormat | None = None,
        network_timeout_s: float = 10.0,
    ) -> None:
        self.camera_id = camera_id
        self.source = source
        self.live = live
        self.loop = loop and not live
        self.fps: float | None = None
        self._capture: cv2.VideoCapture | None = None
        self.requested = requested or CaptureFormat()
        self.network_timeout_s = network_timeout_s
        self._index = 0
        self._start = datetime.now(UTC)
        self._offset_base_s = 0.0  # clip time already played in earlier loops
        self._last_offset_s = 0.0
        self._anchor = (datetime.now(UTC), time.monotonic())  # live frames: wall time at a monotonic time
        self._last_live: datetime | None = None

    def open(self) -> None:
        self.close()
        if self.live:
            self._reanchor()
        else:
            path = Path(self.source)
            if not path.is_file():
                raise CaptureError(f"camera {self.camera_id}: no such video file {self.source}")
            self._start = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        capture = self.new_capture()
        if not capture.isOpened():
            capture.release()
            raise CaptureError(f"camera {self.camera_id}: cannot open {redact(self.source)}")
        if self.live:
            try:
                self.requested.apply(capture, self.camera_id)
            except CaptureError:
                capture.release()
                raise
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else None
        self._capture = capture

    def read(self) -> Frame | None:
        if self._capture is None:
            raise CaptureError(f"camera {self.camera_id}: read before open")
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            if self.live:
                raise CaptureError(
                    f"camera {self.camera_id}: stopped delivering frames ({redact(self.source)})"
                )
            if self.loop and self._index > 0 and self._rewind():
                return self.read()
            return None
        wall, mono = self._anchor
        grabbed_at = wall + timedelta(seconds=time.monotonic() - mono)
        rgb: RGBImage = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)
        if self.live:
            captured_at, offset_s = grabbed_at, 0.0
            self._last_live = grabbed_at
        else:
            self._last_offset_s = max(0.0, self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
            offset_s = self._offset_base_s + self._last_offset_s
            captured_at = self._start + timedelta(seconds=offset_s)
        frame = Frame(
            rgb, source_id=self.camera_id, index=self._index, captured_at=captured_at, offset_s=offset_s
        )
        self._index += 1
        return frame

    def _reanchor(self) -> None:
        """Follow the wall clock again at each (re)open, unless that would take frame time backwards."""
        now = datetime.now(UTC)
        if self._last_live is None or now > self._last_live:
            self._anchor = (now, time.monotonic())

    def _rewind(self) -> bool:
        assert self._capture is not None
        step = 1.0 / self.fps if self.fps else 0.04
        self._offset_base_s += self._last_offset_s + step
        return bool(self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def new_capture(self) -> cv2.VideoCapture:
        """Network streams get open and read timeouts: without them FFmpeg can block forever on a camera
        that stops sending without closing the connection, and the capture thread would hang."""
        target = capture_target(self.source)
        if isinstance(target, str) and "://" in target:
            milliseconds = int(self.network_timeout_s * 1000)
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, milliseconds]
            timeouts += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, milliseconds]
            return cv2.VideoCapture(target, cv2.CAP_FFMPEG, timeouts)
        return cv2.VideoCapture(target)

    def processed(self, frame: Frame) -> None:
        """Nothing to record: a camera has no progress, and a clip file is read from its start."""

    def interrupt(self) -> None:
        """Reads here block at most one frame period (or a stream's own timeout); nothing to do."""

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

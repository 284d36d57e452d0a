"""USB/V4L2 cameras, RTSP/HTTP streams and video files through OpenCV's `VideoCapture`.

Live frames are stamped with the wall clock when grabbed, advanced by the monotonic clock so that their
times never go backwards (tracking and the vote's cool-down compare frame times; an NTP step back must not
freeze them). A file's frames carry the file's modification time plus their offset in the clip (a looped
clip keeps counting).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from edge_agent.capture.source import redact
from edge_agent.errors import CaptureError
from edge_agent.types import Frame, RGBImage


def capture_target(source: str) -> int | str:
    """A bare number is a V4L2 device index; anything else (path, URL) is passed through."""
    return int(source) if source.isdigit() else source


class OpenCVSource:
    def __init__(self, camera_id: str, source: str, *, live: bool, loop: bool = False) -> None:
        self.camera_id = camera_id
        self.source = source
        self.live = live
        self.loop = loop and not live
        self.fps: float | None = None
        self._capture: cv2.VideoCapture | None = None
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
        capture = cv2.VideoCapture(capture_target(self.source))
        if not capture.isOpened():
            capture.release()
            raise CaptureError(f"camera {self.camera_id}: cannot open {redact(self.source)}")
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

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

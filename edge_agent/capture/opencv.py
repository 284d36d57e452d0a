"""USB/V4L2 cameras, RTSP/HTTP streams and video files through OpenCV's `VideoCapture`.

Live frames are stamped with the wall clock when grabbed, advanced by the monotonic clock so that their
times never go backwards (tracking and the vote's cool-down compare frame times; an NTP step back must not
freeze them). A file's frames carry the file's modification time plus their offset in the clip (a looped
clip keeps counting).

A file source that cannot be read is an error that ends the run (`CaptureError`, exit 1), never a silent
end: a missing file or a folder, a picture that is not one or is truncated, a clip that decodes to no
frame, and a clip that stops well before the frame count its container declares (after its good frames
were delivered). Frames larger than `bounded.MAX_IMAGE_PIXELS` are refused once the capture is open,
before the first frame is decoded.

RTSP transport: left alone, OpenCV's FFmpeg offers TCP, then UDP, then multicast in its SETUP requests
(seen with opencv-python-headless 5.1 against a test server); `camera.rtsp_transport` forces one through
`OPENCV_FFMPEG_CAPTURE_OPTIONS` (`rtsp_transport;tcp`), which OpenCV reads each time a capture opens: it
is set for that one call, under a lock, and put back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from edge_agent.bounded import InputRefusedError
from edge_agent.capture.media import (
    IMAGE_SUFFIXES,
    check_frame_size,
    check_image_file,
    declared_frames,
    ended_early,
    ended_early_text,
    quiet_decoders,
)
from edge_agent.capture.settings import CameraSettings, RtspTransport
from edge_agent.errors import CaptureError, MediaError
from edge_agent.redaction import redact
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


CAPTURE_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_OPTIONS_LOCK = threading.Lock()


def ffmpeg_capture_options(source: str, transport: RtspTransport, existing: str | None = None) -> str | None:
    """The `OPENCV_FFMPEG_CAPTURE_OPTIONS` value to open `source` with (`key;value|key;value`), or None to
    leave the variable as it is: `auto`, or a source that is not RTSP. Options already in the variable are
    kept, except an `rtsp_transport` of their own, which the configured one replaces."""
    if transport == "auto" or not source.lower().startswith(("rtsp://", "rtsps://")):
        return None
    kept = [
        pair
        for pair in (existing or "").split("|")
        if pair and pair.split(";", 1)[0].strip() != "rtsp_transport"
    ]
    return "|".join([*kept, f"rtsp_transport;{transport}"])


@contextmanager
def capture_options(options: str | None) -> Iterator[None]:
    """`OPENCV_FFMPEG_CAPTURE_OPTIONS` = `options` while a capture opens (nothing when None)."""
    if options is None:
        yield
        return
    with _OPTIONS_LOCK:
        before = os.environ.get(CAPTURE_OPTIONS)
        os.environ[CAPTURE_OPTIONS] = options
        try:
            yield
        finally:
            if before is None:
                del os.environ[CAPTURE_OPTIONS]
            else:
                os.environ[CAPTURE_OPTIONS] = before


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
        rtsp_transport: RtspTransport = "auto",
    ) -> None:
        self.camera_id = camera_id
        self.source = source
        self.live = live
        self.loop = loop and not live
        self.fps: float | None = None
        self._capture: cv2.VideoCapture | None = None
        self.requested = requested or CaptureFormat()
        self.network_timeout_s = network_timeout_s
        self.rtsp_transport: RtspTransport = rtsp_transport
        self._index = 0
        self._expected = 0  # frames a file declares (0: unknown)
        self._pass_frames = 0  # frames read since the file was opened or rewound
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
            self._check_file()
        quiet_decoders()
        capture = self.new_capture()
        if not capture.isOpened():
            capture.release()
            raise CaptureError(f"camera {self.camera_id}: cannot open {redact(self.source)}")
        try:
            if self.live:
                self.requested.apply(capture, self.camera_id)
            check_frame_size(capture, "frame")
        except InputRefusedError as exc:
            capture.release()
            raise CaptureError(
                f"camera {self.camera_id}: {redact(self.source)}: {exc} (not decoded)"
            ) from None
        except CaptureError:
            capture.release()
            raise
        self._expected = 0 if self.live else declared_frames(capture)
        self._pass_frames = 0
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
            self._check_file_end()
            if self.loop and self._rewind():
                return self.read()
            return None
        self._pass_frames += 1
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

    def _check_file(self) -> None:
        """A file source must be a readable file; a picture must be complete and within the pixel bound
        (OpenCV would hand a truncated JPEG over half grey)."""
        path = Path(self.source)
        shown = redact(self.source)
        if path.is_dir():
            raise CaptureError(
                f"camera {self.camera_id}: {shown} is a folder, not a video file "
                '(camera.type = "bodycam" watches a folder of clips)'
            )
        if not path.is_file():
            raise CaptureError(f"camera {self.camera_id}: no such video file {shown}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            try:
                check_image_file(path)
            except MediaError as exc:
                raise CaptureError(f"camera {self.camera_id}: {redact(str(exc))}") from None
        self._start = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)

    def _check_file_end(self) -> None:
        """At the end of a file: an error if this pass gave no frame or stopped well short of the frames
        the container declares (a decoder that gave up on corrupt data ends the clip early)."""
        where = f"camera {self.camera_id}: {redact(self.source)}"
        if self._pass_frames == 0:
            if self._index == 0:
                raise CaptureError(f"{where}: no frame could be decoded (corrupt, truncated or not a video)")
            raise CaptureError(f"{where}: no frame after rewinding to the start")
        if ended_early(self._pass_frames, self._expected):
            raise CaptureError(f"{where}: {ended_early_text(self._pass_frames, self._expected)}")

    def _reanchor(self) -> None:
        """Follow the wall clock again at each (re)open, unless that would take frame time backwards."""
        now = datetime.now(UTC)
        if self._last_live is None or now > self._last_live:
            self._anchor = (now, time.monotonic())

    def _rewind(self) -> bool:
        assert self._capture is not None
        step = 1.0 / self.fps if self.fps else 0.04
        self._offset_base_s += self._last_offset_s + step
        self._pass_frames = 0
        return bool(self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def new_capture(self) -> cv2.VideoCapture:
        """Network streams get open and read timeouts: without them FFmpeg can block forever on a camera
        that stops sending without closing the connection, and the capture thread would hang."""
        target = capture_target(self.source)
        if isinstance(target, str) and "://" in target:
            milliseconds = int(self.network_timeout_s * 1000)
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, milliseconds]
            timeouts += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, milliseconds]
            options = ffmpeg_capture_options(target, self.rtsp_transport, os.environ.get(CAPTURE_OPTIONS))
            with capture_options(options):
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

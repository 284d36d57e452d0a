"""The capture thread and the one-slot buffer between it and the inference worker.

Cameras block, so capture runs in its own thread. It hands frames over through `LatestFrameSlot`, which
holds one frame: for a live camera a newer frame replaces an unread one (the replaced one is counted as
dropped, so a slow board shows it in health instead of queueing without bound); a file source waits for
the worker instead, so every frame of a clip is looked at. A camera that cannot be opened or dies is
reopened with capped exponential backoff for as long as the agent runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from edge_agent.capture.settings import CameraSettings
from edge_agent.capture.source import FrameSource
from edge_agent.errors import CaptureError
from edge_agent.redaction import redact
from edge_agent.types import Frame

CameraState = Literal["starting", "streaming", "reconnecting", "ended"]


@dataclass(frozen=True, slots=True)
class Captured:
    frame: Frame
    read_at: float  # time.monotonic() when the frame was read from the source


class LatestFrameSlot:
    """A bounded hand-over of one frame; `close` marks the end of the source."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._item: Captured | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: Captured, *, wait: bool, stop: threading.Event) -> None:
        """Offer a frame; with `wait`, block until the previous one was taken (or `stop` is set),
        else replace an untaken frame and count it as dropped."""
        with self._ready:
            while wait and self._item is not None and not stop.is_set():
                self._ready.wait(0.05)
            if stop.is_set() and self._item is not None:
                return  # shutting down: keep the unread frame, and do not count a drop that is not one
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._ready.notify_all()

    def take(self, timeout: float) -> Captured | None:
        """The newest frame, or None if none came within `timeout` or the source has ended."""
        with self._ready:
            if self._item is None and not self._closed:
                self._ready.wait(timeout)
            item, self._item = self._item, None
            self._ready.notify_all()
            return item

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    @property
    def finished(self) -> bool:
        """The source has ended and its last frame was taken."""
        with self._ready:
            return self._closed and self._item is None


class CaptureRunner:
    """Reads a source in a thread: reopens live cameras with backoff, paces files when asked."""

    def __init__(
        self,
        source: FrameSource,
        slot: LatestFrameSlot,
        settings: CameraSettings,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.source = source
        self.slot = slot
        self.settings = settings
        self.log = log
        self.state: CameraState = "starting"
        self.frames = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.fatal: CaptureError | None = None  # a file source that cannot be read: the run ends with it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{source.camera_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.source.interrupt()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        delay = self.settings.reconnect_min_s
        try:
            while not self._stop.is_set():
                try:
                    self._open()
                except CaptureError as exc:
                    if not self.source.live:
                        self.fatal = CaptureError(redact(str(exc)))
                        self.last_error = str(self.fatal)
                    break
                delivered = self.frames
                try:
                    if self._stream():
                        break  # the file ended
                except Exception as exc:  # a driver or decoder error counts as the camera failing
                    error = as_capture_error(exc, self.source.camera_id)
                    if not self.source.live:
                        self.fatal = CaptureError(redact(str(error)))
                        self.last_error = str(self.fatal)
                        break
                    self._failed(str(error))
                    self.reconnects += 1
                    # a camera that opens but fails at once must not be reopened in a tight loop
                    grew = self.frames > delivered
                    delay = (
                        self.settings.reconnect_min_s
                        if grew
                        else min(2 * delay, self.settings.reconnect_max_s)
                    )
                    self._stop.wait(delay)
        finally:
            self.source.close()
            self.state = "ended"
            self.slot.close()

    def _open(self) -> None:
        """Open the source, retrying live cameras with capped exponential backoff until stopped."""
        if not self.source.live:
            self._open_source()
            return
        retrying = Retrying(
            retry=retry_if_exception_type(CaptureError),
            wait=wait_exponential(
                multiplier=self.settings.reconnect_min_s,
                min=self.settings.reconnect_min_s,
                max=self.settings.reconnect_max_s,
            ),
            stop=lambda _state: self._stop.is_set(),
            sleep=self._sleep,
            before_sleep=self._before_retry,
            reraise=True,
        )
        retrying(self._open_source)

    def _open_source(self) -> None:
        try:
            self.source.open()
        except Exception as exc:
            raise as_capture_error(exc, self.source.camera_id) from None

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _before_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        self._failed(str(error))
        self.reconnects += 1

    def _failed(self, message: str) -> None:
        message = redact(message)  # health's last_error and the log: never a camera's password
        if message != self.last_error:
            self.log(f"{message}; retrying")
        self.last_error = message
        self.state = "reconnecting"

    def _stream(self) -> bool:
        """Read until stopped (False) or a file ends (True); CaptureError when a live camera fails."""
        paced = self.settings.realtime or self.source.live
        start_wall: float | None = None
        first_offset = 0.0
        while not self._stop.is_set():
            frame = self.source.read()
            if frame is None:
                return True
            if self.state != "streaming":  # streaming means frames arrive, not merely an open device
                if self.source.live:
                    self.log(f"camera {self.source.camera_id}: streaming from {redact(self.settings.source)}")
                self.state = "streaming"
                self.last_error = None
            now = time.monotonic()
            if self.settings.realtime and not self.source.live:
                if start_wall is None:
                    start_wall, first_offset = now, frame.offset_s
                delay = start_wall + (frame.offset_s - first_offset) - now
                if delay > 0 and self._stop.wait(delay):
                    return False
                now = time.monotonic()
            self.frames += 1
            self.slot.put(Captured(frame, now), wait=not paced, stop=self._stop)
        return False


def as_capture_error(exc: BaseException, camera_id: str) -> CaptureError:
    if isinstance(exc, CaptureError):
        return exc
    return CaptureError(f"camera {camera_id}: {type(exc).__name__}: {redact(str(exc))}")

"""Body-cam docking folders (`camera.type = "bodycam"`): every frame of every clip, once, oldest first.

Docking stations unload body-cam footage into a folder. This source asks the catalogue (`catalogue`) which
clip is next (it watches the folder, `folder`: which files are complete), keeps per-clip progress in SQLite
(`state`), stamps frames with the clip's recording time (`clip_time`) plus their offset in the clip, and
reads each clip with OpenCV.

Progress: the worker calls `processed(frame)` once the frame's events are committed. Progress is written
at most every `PROGRESS_EVERY_S` or `PROGRESS_EVERY_FRAMES` (each write is an fsync; an SD card should not
get one per frame), always at a clip's last frame (which marks it done) and when the source closes. So a
clean stop and restart repeats nothing and skips nothing; a crash or power cut repeats at most about a
second of frames, never skips one. The last frame is known by reading one frame ahead (`clip_last`).

A restarted clip resumes at its `frames_done`: OpenCV seeks there (`CAP_PROP_POS_FRAMES`) and the
position it reports afterwards (derived from the decoded frame's timestamp) must be the one asked for;
if not, the clip is reopened and the frames before are decoded and dropped.

Clips go oldest recording first among those complete when the previous one ends. `after` (keep, delete,
move) applies to done clips only: skipped and failed ones stay where they are, for a person to look at.
With `once`, `read` ends when every clip present at `open` is done, skipped or failed (done meaning its
last frame was reported by the worker), so the agent can drain its outbox and exit.

Each frame's `meta`: `clip` (path), `clip_id` (fingerprint), `clip_frame` (index in the clip, from 0),
`recorded_at` (the clip's start, UTC), and `clip_last = "1"` on its last frame.

Threads: `read` runs on the capture thread, `processed` on the inference worker, `interrupt` on whichever
stops the agent. They share the state database through its lock and meet in `_wake` (an Event).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from edge_agent.capture.bodycam.catalogue import ClipCatalogue
from edge_agent.capture.bodycam.clip_time import pattern_regex
from edge_agent.capture.bodycam.state import Clip, ClipState
from edge_agent.capture.settings import CameraSettings
from edge_agent.errors import CaptureError
from edge_agent.types import Frame, RGBImage

PROGRESS_EVERY_S = 1.0
PROGRESS_EVERY_FRAMES = 50
MAX_ATTEMPTS = 3  # openings of a clip without any progress before it is given up (a decoder crash loop)


def _ignore(_line: str) -> None:
    pass


@dataclass
class _Reader:
    """The clip being read: its capture, the next index to hand out, and the frame read ahead."""

    clip: Clip
    recorded_at: datetime
    capture: cv2.VideoCapture
    index: int
    ahead: tuple[RGBImage, float] | None = None
    declared: int = 0  # the container's frame count (0 when unknown)

    def read(self) -> tuple[RGBImage, float] | None:
        ok, bgr = self.capture.read()
        if not ok or bgr is None:
            return None
        offset_s = max(0.0, float(self.capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0)
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8), offset_s

    def close(self) -> None:
        self.capture.release()


@dataclass
class _Progress:
    """What the worker has committed but not yet written (guarded by the source's progress lock)."""

    clip_id: str | None = None
    frames_done: int = 0
    unwritten: int = 0
    written_at: float = field(default_factory=time.monotonic)


class BodycamSource:
    """A `FrameSource` over a docking folder (see the module docstring)."""

    live = False

    def __init__(self, settings: CameraSettings, log: Callable[[str], None] = _ignore) -> None:
        self.settings = settings
        self.bodycam = settings.bodycam
        self.camera_id = settings.id
        self.fps: float | None = None
        self.log = log  # one line per clip started, skipped, failed, moved or deleted
        # True while `read` waits for a clip to arrive: an idle docking station is no stalled camera
        self.waiting = False
        self._catalogue = ClipCatalogue(settings.bodycam, settings.id, log)
        self._state: ClipState | None = None
        self._interrupted = threading.Event()
        self._wake = threading.Event()
        self._reader: _Reader | None = None
        self._index = 0
        self._progress = _Progress()
        self._progress_lock = threading.Lock()

    # ---- FrameSource -------------------------------------------------------------------------------

    def open(self) -> None:
        self.close()
        folder = self.bodycam.folder
        if folder is None or not folder.is_dir():
            raise CaptureError(f"camera {self.camera_id}: body-cam folder {folder} does not exist")
        if self.bodycam.time_source == "filename" and self.bodycam.filename_pattern:
            try:
                pattern_regex(self.bodycam.filename_pattern)
            except ValueError as exc:
                raise CaptureError(f"camera {self.camera_id}: {exc}") from None
        self._state = ClipState.open(self.bodycam.state_path)
        self._catalogue.start(self._state)

    def read(self) -> Frame | None:
        """The next frame; blocks, looking at the folder every `poll_s`, until there is one. None once
        `interrupt` was called, or (with `once`) when every clip present at `open` is finished."""
        if self._state is None:
            raise CaptureError(f"camera {self.camera_id}: read before open")
        while not self._interrupted.is_set():
            if self._reader is not None:
                frame = self._next_frame(self._reader)
                if frame is not None:
                    self.waiting = False
                    return frame
                continue
            if self._start_next_clip():
                continue
            if self._catalogue.initial is not None and self._catalogue.once_finished():
                return None
            self.waiting = True
            self._wake.wait(self.bodycam.poll_s)
            self._wake.clear()
        return None

    def processed(self, frame: Frame) -> None:
        """Record that `frame`'s events are committed (worker thread); see the module docstring."""
        clip_id = frame.meta.get("clip_id")
        if clip_id is None or self._state is None:
            return
        last = frame.meta.get("clip_last") == "1"
        with self._progress_lock:
            progress = self._progress
            if progress.clip_id not in (None, clip_id):
                self._write_progress(done=False)  # a clip that ended early (failed): keep what it got
            progress.clip_id = clip_id
            progress.frames_done = int(frame.meta["clip_frame"]) + 1
            progress.unwritten += 1
            if (
                last
                or progress.unwritten >= PROGRESS_EVERY_FRAMES
                or time.monotonic() - progress.written_at >= PROGRESS_EVERY_S
            ):
                self._write_progress(done=last)
        if last:
            self._wake.set()  # a `once` run may be waiting for exactly this

    def interrupt(self) -> None:
        self._interrupted.set()
        self._wake.set()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            if self._state is not None:  # a clean stop: this opening was no failed attempt
                self._state.unstart(self._reader.clip.fingerprint)
            self._reader = None
        with self._progress_lock:
            self._write_progress(done=False)
        if self._state is not None:
            self._state.close()  # kept: a late `processed` opens a connection for its one write

    # ---- progress (worker thread, under the progress lock) ------------------------------------------

    def _write_progress(self, *, done: bool) -> None:
        progress = self._progress
        if progress.clip_id is None or self._state is None:
            return
        try:
            self._state.progress(progress.clip_id, progress.frames_done, done=done)
        except Exception as exc:  # sqlite3.Error, OSError: a full or read-only disk
            raise CaptureError(f"camera {self.camera_id}: cannot record clip progress ({exc})") from None
        progress.unwritten = 0
        progress.written_at = time.monotonic()
        if done:
            progress.clip_id = None

    # ---- reading a clip (capture thread) -------------------------------------------------------------

    def _next_frame(self, reader: _Reader) -> Frame | None:
        """The frame read ahead, reading the one after it; None when the clip has failed meanwhile."""
        current = reader.ahead
        assert current is not None
        try:
            reader.ahead = reader.read()
        except cv2.error as exc:
            self._give_up(reader, f"decoding failed after frame {reader.index}: {exc}")
            return None
        last = reader.ahead is None
        rgb, offset_s = current
        clip = reader.clip
        meta = {
            "clip": str(clip.path),
            "clip_id": clip.fingerprint,
            "clip_frame": str(reader.index),
            "recorded_at": reader.recorded_at.isoformat(),
        }
        if last:
            meta["clip_last"] = "1"
            self._end_reader(reader)
        frame = Frame(
            rgb,
            source_id=self.camera_id,
            index=self._index,
            captured_at=reader.recorded_at + timedelta(seconds=offset_s),
            offset_s=offset_s,
            meta=meta,
        )
        reader.index += 1
        self._index += 1
        return frame

    def _end_reader(self, reader: _Reader) -> None:
        reader.close()
        self._reader = None
        self._catalogue.delivered(reader.clip.fingerprint)
        frames = reader.index + 1
        if reader.declared and frames < reader.declared - 1:
            name = self._catalogue.name(reader.clip.path)
            self.log(
                f"camera {self.camera_id}: clip {name} ended at frame {frames} of "
                f"{reader.declared} its container declares"
            )

    def _give_up(self, reader: _Reader, reason: str) -> None:
        reader.close()
        self._reader = None
        self._catalogue.delivered(reader.clip.fingerprint)
        self._catalogue.fail(reader.clip, reason)

    # ---- opening the next clip (capture thread) ------------------------------------------------------

    def _start_next_clip(self) -> bool:
        """Look at the folder, then open the oldest waiting clip; False when none is ready."""
        return any(self._open_clip(clip) for clip in self._catalogue.waiting())

    def _open_clip(self, clip: Clip) -> bool:
        """Start reading `clip` at its frames_done; False (and the clip marked) when it cannot be read."""
        db = self._state
        assert db is not None and clip.recorded_at is not None
        if clip.attempts >= MAX_ATTEMPTS:
            self._catalogue.fail(
                clip, f"opened {clip.attempts} times without progress (does it crash the decoder?)"
            )
            return False
        db.start(clip.fingerprint)
        capture = cv2.VideoCapture(str(clip.path))
        if not capture.isOpened():
            capture.release()
            self._catalogue.fail(clip, "OpenCV cannot open it (not a video it can decode)")
            return False
        start = clip.frames_done
        try:
            capture = self._seek(capture, clip.path, start)
            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            reader = _Reader(
                clip,
                clip.recorded_at,
                capture,
                start,
                declared=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
            )
            reader.ahead = reader.read()
        except cv2.error as exc:
            capture.release()
            self._catalogue.fail(clip, f"decoding failed: {exc}")
            return False
        if reader.ahead is None:
            reader.close()
            if start == 0:
                self._catalogue.fail(clip, "no frame could be decoded")
            else:  # every frame was processed before a stop that came before the clip was marked done
                db.progress(clip.fingerprint, start, done=True)
                self._catalogue.delivered(clip.fingerprint)
            return False
        self.fps = fps if 0.0 < fps < 1000.0 else None
        self._reader = reader
        resumed = f", resuming at frame {start}" if start else ""
        name = self._catalogue.name(clip.path)
        self.log(
            f"camera {self.camera_id}: clip {name} recorded {clip.recorded_at.isoformat()}, "
            f"{reader.declared or '?'} frames{resumed}"
        )
        return True

    def _seek(self, capture: cv2.VideoCapture, path: Path, start: int) -> cv2.VideoCapture:
        """Position `capture` so its next frame is `start`: seek, and check where the decoder landed;
        if not there, reopen and decode-and-drop the frames before."""
        if start == 0:
            return capture
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        if round(float(capture.get(cv2.CAP_PROP_POS_FRAMES))) == start:
            return capture
        capture.release()
        name = self._catalogue.name(path)
        self.log(f"camera {self.camera_id}: clip {name}: seeking is not exact, reading up to frame {start}")
        capture = cv2.VideoCapture(str(path))
        for _ in range(start):
            if not capture.grab():
                break
        return capture

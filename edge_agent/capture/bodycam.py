"""Body-cam docking folders (`camera.type = "bodycam"`): every frame of every clip, once, oldest first.

Docking stations unload body-cam footage into a folder. This source watches it (`clip_folder`: which files
are complete), keeps per-clip progress in SQLite (`clip_state`), stamps frames with the clip's recording
time (`clip_time`) plus their offset in the clip, and reads each clip with OpenCV.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from edge_agent.capture.clip_folder import DockFolder, FileState, fingerprint
from edge_agent.capture.clip_state import FINAL, Clip, ClipState
from edge_agent.capture.clip_time import (
    ClipError,
    MissingTimeError,
    check_complete,
    pattern_regex,
    recording_time,
)
from edge_agent.config import CameraSettings
from edge_agent.errors import CaptureError
from edge_agent.types import Frame, RGBImage

__all__ = ["BodycamSource", "recording_time"]

PROGRESS_EVERY_S = 1.0
PROGRESS_EVERY_FRAMES = 50
_NEVER = datetime.max.replace(tzinfo=UTC)
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
        self._folder = DockFolder(settings.bodycam)
        self._state: ClipState | None = None
        self._interrupted = threading.Event()
        self._wake = threading.Event()
        self._reader: _Reader | None = None
        self._index = 0
        self._delivered: set[str] = set()  # clips whose frames were all handed out in this run
        self._settled: set[FileState] = set()  # files with nothing more to do (final, after applied)
        self._clip_of: dict[Path, str] = {}  # file -> fingerprint, for the files met in this run
        self._unusable: set[Path] = set()  # files that could not even be fingerprinted (logged)
        self._initial: set[Path] | None = None  # once: the clip files present at open
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
        self._initial = {state.path for state in self._folder.files()} if self.bodycam.once else None

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
            if self._initial is not None and self._once_finished():
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
        self._delivered.add(reader.clip.fingerprint)
        frames = reader.index + 1
        if reader.declared and frames < reader.declared - 1:
            self.log(
                f"camera {self.camera_id}: clip {self._name(reader.clip.path)} ended at frame {frames} of "
                f"{reader.declared} its container declares"
            )

    def _give_up(self, reader: _Reader, reason: str) -> None:
        reader.close()
        self._reader = None
        self._delivered.add(reader.clip.fingerprint)
        self._fail(reader.clip, reason)

    # ---- choosing the next clip (capture thread) -----------------------------------------------------

    def _start_next_clip(self) -> bool:
        """Look at the folder, then open the oldest waiting clip; False when none is ready."""
        waiting: list[Clip] = []
        listed = self._folder.files()
        self._settled.intersection_update(listed)  # forget files that are gone
        for state in self._folder.ready([state for state in listed if state not in self._settled]):
            clip = self._known(state)
            if clip is None:
                continue
            if clip.status in FINAL:
                self._settle(state, clip)
            elif clip.fingerprint not in self._delivered and (
                self._initial is None or state.path in self._initial
            ):
                waiting.append(clip)
        waiting.sort(key=lambda clip: (clip.recorded_at or _NEVER, str(clip.path)))
        return any(self._open_clip(clip) for clip in waiting)

    def _known(self, state: FileState) -> Clip | None:
        """The clip row of a complete file, adding it (pending, skipped or failed) when it is new."""
        db = self._state
        assert db is not None
        clip = db.by_file(state.path, state.size, state.mtime_ns)
        if clip is None:
            try:
                key = fingerprint(state.path, state.size)
            except OSError as exc:
                if state.path.exists() and state.path not in self._unusable:
                    self._unusable.add(state.path)
                    self.log(f"camera {self.camera_id}: clip {self._name(state.path)} cannot be read: {exc}")
                return None
            clip = db.by_fingerprint(key)
            if clip is not None:
                db.relocate(key, state.path, state.size, state.mtime_ns)
            else:
                clip = self._admit(state, key)
        self._clip_of[state.path] = clip.fingerprint
        return clip

    def _admit(self, state: FileState, key: str) -> Clip:
        """A new clip: pending with its recording time, or skipped/failed with one logged line."""
        db = self._state
        assert db is not None
        name = self._name(state.path)
        try:
            if state.size == 0:
                raise ClipError("empty file (0 bytes)")
            check_complete(state.path)
            recorded = recording_time(state.path, self.bodycam)
        except MissingTimeError as exc:
            self.log(f"camera {self.camera_id}: clip {name} skipped: {exc}")
            return db.add(
                key,
                state.path,
                state.size,
                state.mtime_ns,
                status="skipped",
                recorded_at=None,
                error=str(exc),
            )
        except (ClipError, OSError) as exc:
            self.log(f"camera {self.camera_id}: clip {name} failed: {exc}")
            return db.add(
                key, state.path, state.size, state.mtime_ns, status="failed", recorded_at=None, error=str(exc)
            )
        return db.add(key, state.path, state.size, state.mtime_ns, status="pending", recorded_at=recorded)

    def _settle(self, state: FileState, clip: Clip) -> None:
        """A finished clip's file: apply `after` to a done one (once), then stop looking at it."""
        self._settled.add(state)
        if clip.status != "done" or self.bodycam.after == "keep":
            return
        try:
            moved = self._folder.dispose(state.path)
        except OSError as exc:
            self.log(
                f"camera {self.camera_id}: clip {self._name(state.path)}: cannot {self.bodycam.after} "
                f"it: {exc}"
            )
            return
        where = f"moved to {moved}" if moved is not None else "deleted"
        self.log(f"camera {self.camera_id}: clip {self._name(state.path)} done, {where}")

    def _open_clip(self, clip: Clip) -> bool:
        """Start reading `clip` at its frames_done; False (and the clip marked) when it cannot be read."""
        db = self._state
        assert db is not None and clip.recorded_at is not None
        if clip.attempts >= MAX_ATTEMPTS:
            self._fail(clip, f"opened {clip.attempts} times without progress (does it crash the decoder?)")
            return False
        db.start(clip.fingerprint)
        capture = cv2.VideoCapture(str(clip.path))
        if not capture.isOpened():
            capture.release()
            self._fail(clip, "OpenCV cannot open it (not a video it can decode)")
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
            self._fail(clip, f"decoding failed: {exc}")
            return False
        if reader.ahead is None:
            reader.close()
            if start == 0:
                self._fail(clip, "no frame could be decoded")
            else:  # every frame was processed before a stop that came before the clip was marked done
                db.progress(clip.fingerprint, start, done=True)
                self._delivered.add(clip.fingerprint)
            return False
        self.fps = fps if 0.0 < fps < 1000.0 else None
        self._reader = reader
        resumed = f", resuming at frame {start}" if start else ""
        self.log(
            f"camera {self.camera_id}: clip {self._name(clip.path)} recorded {clip.recorded_at.isoformat()}, "
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
        self.log(
            f"camera {self.camera_id}: clip {self._name(path)}: seeking is not exact, reading up to "
            f"frame {start}"
        )
        capture = cv2.VideoCapture(str(path))
        for _ in range(start):
            if not capture.grab():
                break
        return capture

    def _fail(self, clip: Clip, reason: str) -> None:
        assert self._state is not None
        self._state.finish(clip.fingerprint, "failed", reason)
        self.log(f"camera {self.camera_id}: clip {self._name(clip.path)} failed: {reason}")

    def _once_finished(self) -> bool:
        """Every clip file present at `open` is finished, gone, or unreadable."""
        assert self._initial is not None and self._state is not None
        for path in self._initial:
            if not path.exists() or path in self._unusable:
                continue
            key = self._clip_of.get(path)
            clip = self._state.by_fingerprint(key) if key is not None else None
            if clip is None or clip.status not in FINAL:
                return False
        return True

    def _name(self, path: Path) -> str:
        try:
            return str(path.relative_to(self._folder.root))
        except ValueError:
            return str(path)

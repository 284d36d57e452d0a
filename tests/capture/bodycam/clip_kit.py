"""Body-cam test helpers: clips with a known recording time, and the source run as the agent runs it.

Neither project clip sets a recording time (`mvhd` creation_time is 0 in both), so tests write copies whose
header carries a known time, version 0 (32-bit) or version 1 (64-bit). Both clips keep their `moov` after
`mdat`, so growing the header moves no sample offset and OpenCV still plays every frame of the copy.
"""

from __future__ import annotations

import sqlite3
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2

from edge_agent.capture.bodycam.clip_time import (
    MP4_EPOCH,
)
from edge_agent.capture.bodycam.settings import BodycamSettings
from edge_agent.capture.bodycam.source import BodycamSource
from edge_agent.capture.settings import CameraSettings
from edge_agent.types import Frame

DEMO_FRAMES = 275
WALKERS_FRAMES = 105
T1 = datetime(2024, 5, 1, 10, 3, 1, tzinfo=UTC)
T2 = datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC)


# ---- writing clips with a known recording time -------------------------------------------------------


def mvhd_seconds_by_scan(data: bytes) -> int:
    """The creation_time field found by searching for the 'mvhd' tag (not by walking boxes)."""
    at = data.index(b"mvhd") + 4
    version = data[at]
    if version == 1:
        return int(struct.unpack(">Q", data[at + 4 : at + 12])[0])
    return int(struct.unpack(">I", data[at + 4 : at + 8])[0])


def with_creation_time(source: Path, target: Path, moment: datetime | None, *, version: int = 0) -> Path:
    """A copy of `source` whose movie header says it was created at `moment` (None: 0, i.e. unset)."""
    data = bytearray(source.read_bytes())
    seconds = 0 if moment is None else int((moment - MP4_EPOCH).total_seconds())
    moov = data.rindex(b"moov") - 4
    assert moov > data.index(b"mdat"), "the header must follow the media for this patch"
    mvhd = data.index(b"mvhd") - 4
    size = struct.unpack(">I", data[mvhd : mvhd + 4])[0]
    assert data[mvhd + 8] == 0, "the project's clips have version-0 headers"
    if version == 0:
        data[mvhd + 12 : mvhd + 16] = struct.pack(">I", seconds)
    else:  # rewrite as version 1: creation, modification and duration widen to 64 bits
        body = data[mvhd + 12 : mvhd + size]
        _creation, modified, timescale, duration = struct.unpack(">IIII", body[:16])
        wide = struct.pack(">QQIQ", seconds, modified, timescale, duration) + body[16:]
        header = struct.pack(">I4s", size + 12, b"mvhd") + bytes([1]) + data[mvhd + 9 : mvhd + 12]
        data[mvhd : mvhd + size] = header + wide
        moov_size = struct.unpack(">I", data[moov : moov + 4])[0]
        data[moov : moov + 4] = struct.pack(">I", moov_size + 12)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    return target


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


# ---- running the source like the agent does ----------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    clip: str  # file name
    clip_frame: int
    captured_at: datetime
    offset_s: float
    last: bool
    read_at: float  # time.monotonic()
    recorded_at: datetime


def seen(frame: Frame) -> Seen:
    return Seen(
        Path(frame.meta["clip"]).name,
        int(frame.meta["clip_frame"]),
        frame.captured_at,
        frame.offset_s,
        frame.meta.get("clip_last") == "1",
        time.monotonic(),
        datetime.fromisoformat(frame.meta["recorded_at"]),
    )


def drain(source: BodycamSource, *, stop: Any = None) -> list[Seen]:
    """Read and report every frame as the worker would, until read() ends (or `stop(seen)` is true)."""
    frames: list[Seen] = []
    while (frame := source.read()) is not None:
        frames.append(seen(frame))
        source.processed(frame)
        if stop is not None and stop(frames[-1]):
            break
    return frames


def camera(folder: Path, **bodycam: Any) -> CameraSettings:
    options: dict[str, Any] = {
        "folder": folder,
        "state_path": folder.parent / "state" / "bodycam.db",
        "stable_s": 0.0,
        "poll_s": 0.05,
        "once": True,
        **bodycam,
    }
    return CameraSettings(type="bodycam", id="dock-1", bodycam=BodycamSettings(**options))


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)

    def about(self, text: str) -> list[str]:
        return [line for line in self if text in line]


def run_once(settings: CameraSettings, log: Log | None = None) -> list[Seen]:
    source = BodycamSource(settings, log=log if log is not None else Log())
    source.open()
    try:
        return drain(source)
    finally:
        source.close()


def statuses(settings: CameraSettings) -> dict[str, tuple[str, int, str | None]]:
    conn = sqlite3.connect(f"file:{settings.bodycam.state_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT path, status, frames_done, error FROM clips").fetchall()
    finally:
        conn.close()
    return {Path(path).name: (status, done, error) for path, status, done, error in rows}

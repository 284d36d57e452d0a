"""The body-cam docking folder source, on the project's real clips (copied, some with a patched header).

Neither clip sets a recording time (`mvhd` creation_time is 0 in both, read here two ways), so the
container-time tests write copies whose header carries a known time, version 0 (32-bit) and version 1
(64-bit), and check the parser returns exactly that. Both clips keep their `moov` after `mdat`, so growing
the header moves no sample offset and OpenCV still plays every frame of the copy.
"""

from __future__ import annotations

import fcntl
import shutil
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest

from edge_agent.capture.bodycam import MAX_ATTEMPTS, PROGRESS_EVERY_FRAMES, BodycamSource
from edge_agent.capture.clip_time import (
    MP4_EPOCH,
    ClipError,
    MissingTimeError,
    check_complete,
    container_time,
    filename_time,
    recording_time,
)
from edge_agent.config import BodycamSettings, CameraSettings
from edge_agent.errors import CaptureError
from edge_agent.service import Agent
from edge_agent.types import Frame
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from tests.kits.agent_kit import DEMO_CLIP, MATCH_TOPIC, agent_settings, enrol_demo_people, payloads
from tests.kits.broker import Broker, Subscriber

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


@pytest.fixture
def dock(tmp_path: Path) -> Path:
    folder = tmp_path / "dock"
    folder.mkdir()
    return folder


@pytest.fixture
def walkers(faces_dir: Path) -> Path:
    return faces_dir / "video" / "walkers.mp4"


# ---- recording time ------------------------------------------------------------------------------------


def test_the_project_clips_carry_no_container_time(walkers: Path) -> None:
    for clip in (DEMO_CLIP, walkers):
        assert mvhd_seconds_by_scan(clip.read_bytes()) == 0  # what the encoder wrote: unset
        assert container_time(clip) is None
        check_complete(clip)


@pytest.mark.parametrize("version", [0, 1])
def test_container_time_is_read_from_version_0_and_1_headers(tmp_path: Path, version: int) -> None:
    # version 1 gets a time past 2040-02-06, where 32-bit seconds since 1904 run out
    moment = T1 if version == 0 else datetime(2051, 7, 4, 8, 30, 15, tzinfo=UTC)
    clip = with_creation_time(DEMO_CLIP, tmp_path / "clip.mp4", moment, version=version)
    data = clip.read_bytes()
    assert mvhd_seconds_by_scan(data) == int((moment - MP4_EPOCH).total_seconds())
    assert container_time(clip) == moment
    assert frame_count(clip) == DEMO_FRAMES  # the patched file is still a valid movie


def test_a_truncated_mp4_is_refused(tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(DEMO_CLIP.read_bytes()[:300_000])
    with pytest.raises(ClipError, match="truncated: box 'mdat'"):
        check_complete(cut)
    no_header = tmp_path / "no_moov.mp4"
    data = DEMO_CLIP.read_bytes()
    no_header.write_bytes(data[: data.rindex(b"moov") - 4])
    with pytest.raises(ClipError, match="no 'moov'"):
        check_complete(no_header)


def test_filename_time_in_the_configured_zone() -> None:
    pattern = "%Y%m%d_%H%M%S"
    # Berlin is UTC+2 in May
    assert filename_time("CAM07_20240501_120301.mp4", pattern, "Europe/Berlin") == T1
    assert filename_time("CAM0720240501_120301.MP4", pattern, "Europe/Berlin") == T1
    # an impossible date first (month 13), the real one after it
    assert filename_time("x_20241301_000000_20240501_100301.mp4", pattern, "UTC") == T1
    assert filename_time("clip-0001.mp4", pattern, "UTC") is None
    assert filename_time("2024-05-01T12-03-01+0200.mp4", "%Y-%m-%dT%H-%M-%S%z", "UTC") == T1


def test_recording_time_by_time_source(tmp_path: Path) -> None:
    unset = with_creation_time(DEMO_CLIP, tmp_path / "CAM1_20240501_100301.mp4", None)
    stamped = with_creation_time(DEMO_CLIP, tmp_path / "clip.mp4", T2)
    mtime = datetime.fromtimestamp(unset.stat().st_mtime, tz=UTC)
    container = BodycamSettings(time_source="container")
    assert recording_time(stamped, container) == T2
    with pytest.raises(MissingTimeError, match="mvhd creation_time is 0"):
        recording_time(unset, container)
    assert recording_time(unset, container.model_copy(update={"missing_time": "mtime"})) == mtime
    by_name = BodycamSettings(time_source="filename", filename_pattern="%Y%m%d_%H%M%S")
    assert recording_time(unset, by_name) == T1
    with pytest.raises(MissingTimeError, match="no time matching"):
        recording_time(stamped, by_name)
    assert recording_time(stamped, BodycamSettings(time_source="mtime")) == datetime.fromtimestamp(
        stamped.stat().st_mtime, tz=UTC
    )


# ---- the source ----------------------------------------------------------------------------------------


def test_frames_are_stamped_with_the_file_name_time_plus_offset(dock: Path, walkers: Path) -> None:
    (dock / "unit2").mkdir()
    shutil.copy(walkers, dock / "unit2" / "CAM2_20240501_120301.mp4")
    with_creation_time(DEMO_CLIP, dock / "demo.mp4", T2)  # no time in its name: skipped
    log = Log()
    settings = camera(
        dock, time_source="filename", filename_pattern="%Y%m%d_%H%M%S", timezone="Europe/Berlin"
    )
    frames = run_once(settings, log)
    assert log.about("demo.mp4 skipped: no time matching '%Y%m%d_%H%M%S' in the file name")
    assert [f.clip_frame for f in frames] == list(range(WALKERS_FRAMES))
    for f in frames:
        assert f.recorded_at == T1  # 12:03:01 in Berlin
        assert f.captured_at == T1 + timedelta(seconds=f.offset_s)
        assert f.offset_s == pytest.approx(f.clip_frame / 25.0, abs=1e-6)
    assert [f.last for f in frames] == [False] * (WALKERS_FRAMES - 1) + [True]


def test_container_time_frames_and_oldest_first(dock: Path) -> None:
    with_creation_time(DEMO_CLIP, dock / "z_older.mp4", T1)
    with_creation_time(DEMO_CLIP, dock / "a_newer.mp4", T2, version=1)
    frames = run_once(camera(dock))
    assert [f.clip for f in frames] == ["z_older.mp4"] * DEMO_FRAMES + ["a_newer.mp4"] * DEMO_FRAMES
    for f in frames:
        start = T1 if f.clip == "z_older.mp4" else T2
        assert f.captured_at == start + timedelta(seconds=f.offset_s)
        assert f.offset_s == pytest.approx(f.clip_frame / 29.97, abs=1e-6)  # its time base: 29.97 fps


@pytest.mark.parametrize("locked", [False, True], ids=["copying", "copying-then-locked"])
def test_a_clip_being_copied_is_not_read_before_it_is_complete(dock: Path, locked: bool) -> None:
    """A writer copies the clip in 15 chunks over 2 s (pauses of 0.15 s: below stable_s = 0.5 s, above
    poll_s = 0.05 s, so the source looks at the file several times while it stands still); the
    locked variant then keeps an exclusive flock for 1 s more with the file unchanged (longer than stable_s),
    which must hold the source back too."""
    data = with_creation_time(DEMO_CLIP, dock.parent / "src.mp4", T1).read_bytes()
    target = dock / "incoming.mp4"
    finished = threading.Event()
    done_at: list[float] = []
    file = target.open("wb")
    if locked:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
    chunk = len(data) // 15 + 1
    file.write(data[:chunk])
    file.flush()

    def write() -> None:
        for start in range(chunk, len(data), chunk):
            time.sleep(0.15)
            file.write(data[start : start + chunk])
            file.flush()
        if locked:
            time.sleep(1.0)
        done_at.append(time.monotonic())
        file.close()  # releases the flock
        finished.set()

    writer = threading.Thread(target=write)
    log = Log()
    source = BodycamSource(camera(dock, stable_s=0.5, poll_s=0.05), log=log)
    source.open()  # the partial file is there at the start: `once` waits for it
    writer.start()
    try:
        frames = drain(source)
    finally:
        source.close()
        writer.join()
    assert finished.is_set()
    assert len(frames) == DEMO_FRAMES
    assert frames[0].read_at > done_at[0]
    assert [f.clip_frame for f in frames] == list(range(DEMO_FRAMES))
    # not even looked at early: a partial MP4 would have been marked failed (its 'mdat' runs past the end)
    assert log == [f"camera dock-1: clip incoming.mp4 recorded {T1.isoformat()}, {DEMO_FRAMES} frames"]


def _first_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray[Any, Any]]:
    capture = cv2.VideoCapture(str(path))
    found: dict[int, np.ndarray[Any, Any]] = {}
    index = 0
    while capture.grab():
        if index in indices:
            found[index] = cv2.cvtColor(capture.retrieve()[1], cv2.COLOR_BGR2RGB)
        index += 1
    capture.release()
    return found


@pytest.mark.parametrize("stop", ["clean", "crash"])
def test_restart_resumes_mid_clip_without_repeating_or_skipping(dock: Path, walkers: Path, stop: str) -> None:
    """First run: the older clip fully, the newer one up to frame N. Second run on the same state: the
    newer one from N + 1 to its end (a clean stop), or from at most PROGRESS_EVERY_FRAMES before it (a
    crash: progress not yet written is repeated, never skipped). The first is never read again."""
    first = with_creation_time(DEMO_CLIP, dock / "first.mp4", T1)
    second = with_creation_time(walkers, dock / "second.mp4", T2)
    settings = camera(dock)
    n = 60
    source = BodycamSource(settings, log=Log())
    source.open()
    run1 = drain(source, stop=lambda f: f.clip == "second.mp4" and f.clip_frame == n)
    if stop == "clean":
        source.close()
    log = Log()
    second_source = BodycamSource(settings, log=log)
    second_source.open()
    image = second_source.read()
    assert image is not None
    run2 = [seen(image)]
    second_source.processed(image)
    run2 += drain(second_source)
    second_source.close()

    assert [f.clip for f in run1].count("first.mp4") == DEMO_FRAMES
    assert all(f.clip == "second.mp4" for f in run2)
    resumed_at = run2[0].clip_frame
    if stop == "clean":
        assert resumed_at == n + 1
        assert len(run1) + len(run2) == DEMO_FRAMES + WALKERS_FRAMES
    else:
        assert n + 1 - PROGRESS_EVERY_FRAMES <= resumed_at <= n + 1
    assert [f.clip_frame for f in run2] == list(range(resumed_at, WALKERS_FRAMES))
    for f in run2:  # the resumed frames keep their own offsets in the clip
        assert f.offset_s == pytest.approx(f.clip_frame / 25.0, abs=1e-6)
        assert f.captured_at == T2 + timedelta(seconds=f.offset_s)
    assert log.about(f"resuming at frame {resumed_at}")
    # the seek landed exactly: the first resumed frame is the clip's frame N + 1, pixel for pixel
    reference = _first_frames(second, {resumed_at})[resumed_at]
    assert np.array_equal(image.image, reference)
    assert statuses(settings) == {"first.mp4": ("done", DEMO_FRAMES, None), "second.mp4": ("done", 105, None)}
    assert first.exists() and second.exists()  # after = keep


class _InexactSeek:
    """A capture whose seek lands elsewhere than asked (as with some variable-rate or broken files)."""

    def __init__(self, path: Path) -> None:
        self.capture = cv2.VideoCapture(str(path))

    def set(self, prop: int, value: float) -> bool:
        return bool(self.capture.set(prop, max(0.0, value - 7)))

    def get(self, prop: int) -> float:
        return float(self.capture.get(prop))

    def release(self) -> None:
        self.capture.release()


def test_an_inexact_seek_falls_back_to_reading_up_to_the_frame(dock: Path) -> None:
    log = Log()
    source = BodycamSource(camera(dock), log=log)
    capture = source._seek(cast(Any, _InexactSeek(DEMO_CLIP)), DEMO_CLIP, 100)
    ok, bgr = capture.read()
    capture.release()
    assert ok and np.array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), _first_frames(DEMO_CLIP, {100})[100])
    assert log.about("seeking is not exact, reading up to frame 100")


def test_a_clip_without_time_is_skipped_and_the_next_one_processed(dock: Path) -> None:
    with_creation_time(DEMO_CLIP, dock / "a_unset.mp4", None)
    with_creation_time(DEMO_CLIP, dock / "b_set.mp4", T1)
    log = Log()
    settings = camera(dock)
    frames = run_once(settings, log)
    assert {f.clip for f in frames} == {"b_set.mp4"} and len(frames) == DEMO_FRAMES
    assert log.about("a_unset.mp4") == [
        "camera dock-1: clip a_unset.mp4 skipped: no recording time in the container "
        "(mvhd creation_time is 0 or missing)"
    ]
    assert statuses(settings)["a_unset.mp4"][0] == "skipped"
    again = Log()
    assert run_once(settings, again) == [] and not again.about("a_unset.mp4")  # decided once


def test_a_corrupt_clip_fails_once_and_the_next_one_is_processed(dock: Path) -> None:
    data = DEMO_CLIP.read_bytes()
    (dock / "a_cut.mp4").write_bytes(data[: len(data) // 2])  # a copy cut short
    (dock / "b_no_header.mp4").write_bytes(data[: data.rindex(b"moov") - 4])  # the camera died
    (dock / "c_garbage.mp4").write_bytes(np.random.default_rng(7).bytes(50_000))  # not a video at all
    (dock / "c_empty.mp4").touch()
    shutil.copy(DEMO_CLIP, dock / "d_whole.mp4")
    log = Log()
    settings = camera(dock, time_source="mtime")
    frames = run_once(settings, log)
    assert {f.clip for f in frames} == {"d_whole.mp4"} and len(frames) == DEMO_FRAMES
    assert len(log.about("a_cut.mp4 failed: truncated: box 'mdat'")) == 1
    assert len(log.about("b_no_header.mp4 failed: no 'moov' box")) == 1
    assert len(log.about("c_garbage.mp4 failed")) == 1
    assert log.about("c_empty.mp4") == ["camera dock-1: clip c_empty.mp4 failed: empty file (0 bytes)"]
    state = statuses(settings)
    assert {name: state[name][0] for name in state} == {
        "a_cut.mp4": "failed",
        "b_no_header.mp4": "failed",
        "c_garbage.mp4": "failed",
        "c_empty.mp4": "failed",
        "d_whole.mp4": "done",
    }
    again = Log()
    assert run_once(settings, again) == [] and again == []  # never retried, nothing logged again


def test_processed_clips_are_moved_keeping_their_folder_and_never_overwriting(dock: Path) -> None:
    archive = dock.parent / "archive"
    clip = with_creation_time(DEMO_CLIP, dock / "unit7" / "clip.mp4", T1)
    occupied = archive / "unit7" / "clip.mp4"
    occupied.parent.mkdir(parents=True)
    occupied.write_bytes(b"someone else's file")
    log = Log()
    frames = run_once(camera(dock, after="move", move_to=archive), log)
    assert len(frames) == DEMO_FRAMES
    assert not clip.exists()
    assert occupied.read_bytes() == b"someone else's file"
    assert (archive / "unit7" / "clip-1.mp4").read_bytes() == with_creation_time(
        DEMO_CLIP, dock.parent / "check.mp4", T1
    ).read_bytes()
    assert log.about("clip.mp4 done, moved to")


def test_processed_clips_are_deleted_with_after_delete_but_skipped_ones_stay(dock: Path) -> None:
    done = with_creation_time(DEMO_CLIP, dock / "done.mp4", T1)
    skipped = with_creation_time(DEMO_CLIP, dock / "skipped.mp4", None)
    frames = run_once(camera(dock, after="delete"))
    assert len(frames) == DEMO_FRAMES
    assert not done.exists() and skipped.exists()


def test_interrupt_unblocks_a_waiting_read(dock: Path) -> None:
    source = BodycamSource(camera(dock, once=False, poll_s=0.1))
    source.open()
    result: list[Frame | None] = []
    reader = threading.Thread(target=lambda: result.append(source.read()))
    reader.start()
    time.sleep(0.3)
    assert reader.is_alive() and source.waiting  # an empty folder: read waits for a clip
    asked = time.monotonic()
    source.interrupt()
    reader.join(1.0)
    assert not reader.is_alive() and result == [None]
    assert time.monotonic() - asked < 0.15
    source.close()


def test_once_ends_on_an_empty_folder_and_open_names_a_missing_one(dock: Path) -> None:
    assert run_once(camera(dock)) == []
    missing = BodycamSource(camera(dock / "nowhere"))
    with pytest.raises(CaptureError, match="dock/nowhere does not exist"):
        missing.open()


# ---- through the real agent ----------------------------------------------------------------------------


def test_the_agent_reports_the_performer_in_a_docked_clip_at_its_recording_time(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog
) -> None:
    """`once`: the agent processes the clip docked before it started, sends the match, moves the clip and
    exits 0. The event's captured_at is the clip's recording time plus the offset of one of its frames."""
    dock = tmp_path / "dock"
    clip = with_creation_time(DEMO_CLIP, dock / "unit3" / "clip.mp4", T1)
    bodycam = {
        "folder": dock,
        "state_path": tmp_path / "bodycam.db",
        "stable_s": 0.1,
        "poll_s": 0.05,
        "once": True,
        "after": "move",
        "move_to": tmp_path / "archive",
    }
    settings = agent_settings(
        tmp_path, broker, camera={"type": "bodycam", "id": "dock-1", "bodycam": bodycam}
    )
    faces = FacePipeline.from_settings(settings, catalog)
    people = enrol_demo_people(settings, faces)
    subscriber = Subscriber(broker, MATCH_TOPIC).start()

    assert Agent(settings, catalog=catalog).run() == 0

    events = payloads(subscriber.wait_for(1, MATCH_TOPIC, timeout_s=10))
    assert {event["subject_id"] for event in events} == {people["lin_manuel_miranda"]}
    assert {event["camera_id"] for event in events} == {"dock-1"}
    offsets = {round(index / 29.97, 6) for index in range(DEMO_FRAMES)}
    for event in events:
        offset = (datetime.fromisoformat(event["captured_at"]) - T1).total_seconds()
        assert round(offset, 6) in offsets, event["captured_at"]
    assert statuses(settings.camera) == {"clip.mp4": ("done", DEMO_FRAMES, None)}
    assert not clip.exists() and (tmp_path / "archive" / "unit3" / "clip.mp4").is_file()


def test_a_clip_that_keeps_crashing_the_agent_is_given_up(dock: Path) -> None:
    """Opened MAX_ATTEMPTS times without one frame processed (each run "crashes": no close): failed."""
    with_creation_time(DEMO_CLIP, dock / "crasher.mp4", T1)
    with_creation_time(DEMO_CLIP, dock / "next.mp4", T2)
    settings = camera(dock)
    for _ in range(MAX_ATTEMPTS):
        crashed = BodycamSource(settings)
        crashed.open()
        frame = crashed.read()
        assert frame is not None and frame.meta["clip_frame"] == "0"
    log = Log()
    frames = run_once(settings, log)
    assert {f.clip for f in frames} == {"next.mp4"}
    assert log.about("crasher.mp4 failed: opened 3 times without progress")


def test_a_last_frame_reported_after_close_still_marks_the_clip_done(dock: Path) -> None:
    with_creation_time(DEMO_CLIP, dock / "clip.mp4", T1)
    settings = camera(dock, once=False)
    source = BodycamSource(settings)
    source.open()
    frames = [source.read() for _ in range(DEMO_FRAMES)]
    for frame in frames[:-1]:
        assert frame is not None
        source.processed(frame)
    source.close()  # the capture thread ends first (a fatal error), the worker still finishes its frame
    last = frames[-1]
    assert last is not None and last.meta["clip_last"] == "1"
    source.processed(last)
    assert statuses(settings) == {"clip.mp4": ("done", DEMO_FRAMES, None)}

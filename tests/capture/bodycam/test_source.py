"""The body-cam docking folder source, on the project's real clips (copied, some with a patched header):
order, recording times, copies in progress, restarts, damaged clips, `after`, `once` and `interrupt`."""

from __future__ import annotations

import fcntl
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest

from edge_agent.capture.bodycam.source import PROGRESS_EVERY_FRAMES, BodycamSource
from edge_agent.errors import CaptureError
from edge_agent.types import Frame
from tests.capture.bodycam.clip_kit import (
    DEMO_FRAMES,
    T1,
    T2,
    WALKERS_FRAMES,
    Log,
    camera,
    drain,
    run_once,
    seen,
    statuses,
    with_creation_time,
)
from tests.kits.agent_kit import DEMO_CLIP


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

"""The tracker: association geometry with hand-built boxes, splits, and real footage."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge_agent.capture.media import read_frames
from edge_agent.engine.settings import TrackingSettings
from edge_agent.engine.tracking import Tracker
from edge_agent.lab.demo.kit import default_kit
from edge_agent.types import Box, Face
from edge_agent.vision.detect import FaceDetector

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DEMO_CLIP = default_kit() / "short_hamilton_clip.mp4"


def face(x: float, y: float, size: float = 50.0) -> Face:
    """A square face with its top-left corner at (x, y); keypoints placed where a frontal face has them."""
    rel = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.5, 0.75], [0.05, 0.4], [0.95, 0.4]])
    keypoints = (np.array([x, y]) + rel * size).astype(np.float32)
    return Face(Box(x, y, x + size, y + size), keypoints, 0.9)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ids(tracker: Tracker, faces: list[Face], seconds: float) -> list[int]:
    return [tracked.track_id for tracked in tracker.update(faces, at(seconds))]


def tracker(**overrides: float) -> Tracker:
    return Tracker(TrackingSettings.model_validate(overrides))


def test_a_moving_face_keeps_its_track() -> None:
    t = tracker()
    for step in range(10):
        assert ids(t, [face(100 + 8 * step, 100)], step / 10) == [1]
    assert t.update([face(180, 100)], at(1.0))[0].hits == 11
    assert (t.active, t.started) == (1, 1)


def test_a_fast_face_without_overlap_continues_by_centre_distance() -> None:
    t = tracker(min_iou=0.3, max_centre_shift=0.6)
    assert ids(t, [face(100, 100)], 0.0) == [1]
    assert ids(t, [face(125, 100)], 0.1) == [1]  # IoU 0.33
    assert ids(t, [face(150, 105)], 0.2) == [1]  # IoU 0.29, centre moved 25.5 px < 0.6 * 50
    assert ids(t, [face(185, 105)], 0.3) == [2]  # centre moved 35 px: someone else


def test_a_much_larger_face_without_overlap_is_someone_else() -> None:
    t = tracker()
    ids(t, [face(100, 100, 40)], 0.0)
    assert ids(t, [face(90, 90, 70)], 0.1) == [1]  # overlaps: the same face, closer to the camera
    t = tracker()
    ids(t, [face(100, 100, 40)], 0.0)
    assert ids(t, [face(110, 110, 19)], 0.1) == [2]  # inside it (IoU 0.23) but half the width


def test_without_overlap_the_track_seen_last_frame_chooses_first() -> None:
    """A jittery box lands nearer a track lost a few frames ago; the track that saw it last frame keeps it."""
    t = tracker(max_centre_shift=1.0)
    assert ids(t, [face(100, 100), face(100, 40)], 0.0) == [1, 2]
    for step in range(1, 6):
        assert ids(t, [face(100, 100)], step * 0.04) == [1]  # track 2 is not seen any more
    assert ids(t, [face(100, 68)], 0.24) == [1]  # centre 32 px from track 1, 28 px from track 2


def test_two_faces_keep_their_tracks_in_input_order() -> None:
    t = tracker()
    assert ids(t, [face(100, 100), face(300, 100)], 0.0) == [1, 2]
    assert ids(t, [face(305, 100), face(95, 100)], 0.04) == [2, 1]


def test_crossing_faces_keep_their_tracks() -> None:
    """A near face walks right in front of a farther one walking left; both stay detected as they pass."""
    t = tracker()
    for step in range(30):
        near, far = face(100 + 10 * step, 100, 60), face(400 - 10 * step, 110, 40)
        assert ids(t, [far, near], step * 0.04) == [2, 1]  # the larger face got the first id
    assert t.started == 2


def test_a_face_in_a_new_place_starts_a_new_track() -> None:
    t = tracker()
    ids(t, [face(100, 100)], 0.0)
    assert ids(t, [face(400, 300)], 0.04) == [2]
    assert t.active == 2  # the first is missed, not ended yet


def test_a_track_ends_after_max_missed_s_and_ids_are_never_reused() -> None:
    t = tracker(max_missed_s=1.0)
    assert ids(t, [face(100, 100)], 0.0) == [1]
    assert ids(t, [], 0.5) == []
    assert ids(t, [face(100, 100)], 1.0) == [1]  # missed for exactly max_missed_s: still alive
    assert t.ended() == []
    assert ids(t, [], 2.1) == []
    assert t.ended() == [1]
    assert t.active == 0
    assert ids(t, [face(100, 100)], 2.2) == [2]  # same place, new person as far as we know
    assert t.ended() == []  # only what ended in the last update
    assert t.started == 2


def test_frame_time_not_wall_clock_ends_tracks() -> None:
    t = tracker(max_missed_s=1.0)
    ids(t, [face(100, 100)], 0.0)
    assert ids(t, [face(100, 100)], 0.9) == [1]
    assert ids(t, [face(100, 100)], 10.0) == [2]  # 9.1 s of frame time later
    assert t.ended() == [1]


def test_max_tracks_keeps_the_largest_faces() -> None:
    t = tracker(max_tracks=2)
    small, medium, large = face(0, 0, 20), face(100, 0, 40), face(200, 0, 60)
    got = t.update([small, medium, large], at(0.0))
    assert [(tracked.track_id, tracked.face) for tracked in got] == [(2, medium), (1, large)]
    assert (t.active, t.started) == (2, 2)
    # A larger new face replaces a track not seen in this frame; a smaller one gets none.
    got = t.update([face(200, 0, 60), face(400, 0, 50)], at(0.04))
    assert [tracked.track_id for tracked in got] == [1, 3]
    assert t.ended() == [2]
    assert ids(t, [face(200, 0, 60), face(400, 0, 50), face(600, 0, 10)], 0.08) == [1, 3]
    assert t.active == 2


def test_boxes_are_where_the_live_tracks_were_last_seen() -> None:
    t = tracker(max_missed_s=1.0)
    assert t.boxes() == {}
    ids(t, [face(100, 100), face(300, 100)], 0.0)
    ids(t, [face(104, 100)], 0.5)  # track 2 missed, not ended
    assert t.boxes() == {1: Box(104, 100, 154, 150), 2: Box(300, 100, 350, 150)}
    ids(t, [face(108, 100)], 1.2)  # track 2 ended
    assert t.boxes() == {1: Box(108, 100, 158, 150)}


def test_a_split_track_goes_on_under_a_new_id() -> None:
    t = tracker(max_missed_s=1.0)
    assert ids(t, [face(100, 100), face(300, 100)], 0.0) == [1, 2]
    ids(t, [face(102, 100), face(300, 100)], 0.04)
    assert t.split(1) == 3
    assert (t.active, t.started) == (2, 3)  # the new id counts as started; no track was added
    assert t.boxes() == {3: Box(102, 100, 152, 150), 2: Box(300, 100, 350, 150)}
    assert t.ended() == []  # the old id did not end: the caller forgets it (engine.identity)
    got = t.update([face(104, 100), face(300, 100)], at(0.08))
    assert [(tracked.track_id, tracked.hits) for tracked in got] == [(3, 2), (2, 3)]  # hits start again
    for step in range(3, 20):  # the old id never comes back, wherever the face goes
        assert ids(t, [face(100 + 2 * step, 100), face(300, 100)], step * 0.04) == [3, 2]
    assert t.split(3) == 4
    assert ids(t, [face(140, 100)], 0.8) == [4]
    assert ids(t, [], 2.0) == []
    assert sorted(t.ended()) == [2, 4]
    assert ids(t, [face(140, 100)], 2.1) == [5]  # a new person where the split track was: a new id
    assert t.started == 5


def test_splitting_a_track_that_is_not_live_is_refused() -> None:
    t = tracker()
    ids(t, [face(100, 100)], 0.0)
    t.split(1)
    with pytest.raises(KeyError):
        t.split(1)  # the old id is gone
    with pytest.raises(KeyError):
        t.split(7)
    assert (t.active, t.started) == (1, 2)


def test_update_needs_frame_time_with_a_zone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        tracker().update([face(0, 0)], datetime(2024, 5, 1, 12, 0))


# ---- real footage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipTracks:
    frames: int
    detections: int
    started: int
    hits: dict[int, int]  # track id → frames in which it was detected

    def long_tracks(self, min_frames: int = 10) -> list[int]:
        return [track for track, hits in self.hits.items() if hits >= min_frames]

    @property
    def in_long_tracks(self) -> float:
        return sum(self.hits[track] for track in self.long_tracks()) / self.detections

    @property
    def longest(self) -> int:
        return max(self.hits.values())


def track_clip(detections: list[tuple[datetime, list[Face]]]) -> ClipTracks:
    t = Tracker(TrackingSettings())
    hits: Counter[int] = Counter()
    for captured_at, faces in detections:
        hits.update(tracked.track_id for tracked in t.update(faces, captured_at))
    total = sum(len(faces) for _, faces in detections)
    return ClipTracks(len(detections), total, t.started, dict(hits))


def detect_clip(detector: FaceDetector, path: Path) -> list[tuple[datetime, list[Face]]]:
    return [(frame.captured_at, detector.detect(frame.image)) for frame in read_frames(path)]


# The detections the tracker was measured on: one whole-frame pass, faces 16 px wide and up (min_face_px
# 32 drops those under half of it). The default plan (tiles = "auto", min_face_px 40) finds about twice as
# many faces on the walkers clip (771 instead of ~300), which is the detector's business, not the tracker's.
MEASURED_DETECTOR = {"tiles": (1, 1), "min_face_px": 32}


@pytest.fixture(scope="module")
def hamilton(make_detector: Callable[..., FaceDetector]) -> list[tuple[datetime, list[Face]]]:
    return detect_clip(make_detector(**MEASURED_DETECTOR), DEMO_CLIP)


@pytest.fixture(scope="module")
def walkers(make_detector: Callable[..., FaceDetector], faces_dir: Path) -> list[tuple[datetime, list[Face]]]:
    return detect_clip(make_detector(**MEASURED_DETECTOR), faces_dir / "video" / "walkers.mp4")


def report(name: str, clip: ClipTracks) -> None:
    print(
        f"\n{name}: {clip.frames} frames, {clip.detections} detections, {clip.started} tracks, "
        f"{len(clip.long_tracks())} of >= 10 frames holding {clip.in_long_tracks:.0%} of the detections, "
        f"longest {clip.longest} frames"
    )


def test_hamilton_clip_gives_few_long_tracks(hamilton: list[tuple[datetime, list[Face]]]) -> None:
    """A stage clip with cuts: one singer, close-ups and audience shots (measured: 12 tracks, 7 long)."""
    clip = track_clip(hamilton)
    report("short_hamilton_clip", clip)
    assert clip.frames == 275
    assert 350 <= clip.detections <= 450
    assert clip.started <= 20  # a tracker without memory would start one per detection
    assert len(clip.long_tracks()) <= 10
    assert clip.in_long_tracks >= 0.9
    assert clip.longest >= 150  # the singer's close-up runs for ~190 frames
    assert sum(clip.hits.values()) == clip.detections  # far below max_tracks: every face has a track


def test_walkers_clip_gives_one_track_per_walker(walkers: list[tuple[datetime, list[Face]]]) -> None:
    """People walking toward the camera (measured: 14 tracks; the four walkers in view are 4 tracks)."""
    clip = track_clip(walkers)
    report("walkers", clip)
    assert clip.frames == 105
    assert 250 <= clip.detections <= 370
    assert clip.started <= 20
    assert len(clip.long_tracks()) <= 7
    assert clip.in_long_tracks >= 0.85
    # The three walkers who stay in view for most of the clip each keep one track.
    assert min(sorted(clip.hits.values())[-3:]) >= 60
    assert sum(clip.hits.values()) == clip.detections


def test_tracks_are_the_same_on_every_run(walkers: list[tuple[datetime, list[Face]]]) -> None:
    assert track_clip(walkers) == track_clip(walkers)

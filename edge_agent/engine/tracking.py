"""Detections → tracks: the same face across frames gets one track id, so a person walking past is
embedded a few times and decided once, not once per frame.

All times are frame times (`Frame.captured_at`), never the wall clock: a file source gives the same
tracks on every run, and a slow machine that skips frames ages tracks by what the camera saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from edge_agent.engine.settings import TrackingSettings
from edge_agent.types import Box, Face, TrackedFace

MAX_SCALE_CHANGE = 1.5
"""Without overlap, a face continues a track only if its width is within this factor of the track's.

Detector jitter stays under 1.4 on the project's clips; a larger jump with no overlap is another face
(on the Hamilton clip, without it a track ran on from an audience face to the singer across a cut).
"""

_Pair = tuple[tuple[float, float], int, int]  # (sort key, track id, face index)


@dataclass(slots=True)
class _Track:
    """What the tracker remembers of one person: where and when last seen (what to embed, and when, is
    `edge_agent.engine.identity`'s)."""

    track_id: int
    box: Box
    last_seen: datetime
    hits: int = 1


class Tracker:
    """IoU/centre tracker over detections, so one person walking past is one track.

    Time is the frame's own time (`at`, timezone-aware), never the wall clock, so file sources give the
    same tracks on every run. Association uses each track's last box: on the project's clips a
    constant-velocity prediction of the centre gave more tracks, not fewer (13 and 16 instead of 12 and 14
    on the Hamilton and walkers clips: BlazeFace boxes jitter more than the faces move), so it is left out.

    Appearance is used, but after association, in `engine.identity`: a look that fits none of the track's
    recent looks splits the track (`split`), which is what separates people who cross or hand over at one
    spot (`tests/service/test_scenes.py`). A library tracker (norfair, with its Kalman filter and
    re-identification) was not adopted: it brings scipy and rich onto a Pi for a motion model that did not
    help here, and its re-identification would need the embeddings at every frame, which the look budget
    does not pay for.
    """

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._ended: list[int] = []

    @property
    def active(self) -> int:
        """Tracks alive now."""
        return len(self._tracks)

    @property
    def started(self) -> int:
        """Tracks ever started (the last id handed out)."""
        return self._next_id - 1

    def ended(self) -> list[int]:
        """Ids of the tracks that ended in the last `update`, so their votes can be forgotten."""
        return list(self._ended)

    def boxes(self) -> dict[int, Box]:
        """Where each live track was last seen, by track id."""
        return {track_id: track.box for track_id, track in self._tracks.items()}

    def split(self, track_id: int) -> int:
        """The live track `track_id` shows somebody else now: it goes on, from where it is, under a new id
        (returned), and the old id is not used again. The caller forgets what it kept under the old id."""
        track = self._tracks.pop(track_id)
        track.track_id, track.hits = self._next_id, 1
        self._next_id += 1
        self._tracks[track.track_id] = track
        return track.track_id

    def update(self, faces: Sequence[Face], at: datetime) -> list[TrackedFace]:
        """Give each face of the frame taken `at` a track; one `TrackedFace` per tracked face, in input order.

        Faces that continue no track start new ones while fewer than `max_tracks` are alive (larger faces
        first; a track not seen in this frame gives way to a larger new face). A face left without a track
        is not returned.
        """
        if at.tzinfo is None:
            raise ValueError("at must be timezone-aware (frame time)")
        self._ended = self._expire(at)
        owner = self._associate(faces, at)
        for index, track in owner.items():
            track.box = faces[index].box
            track.last_seen = at
            track.hits += 1
        self._start_tracks(faces, owner, at)
        return [
            TrackedFace(track.track_id, faces[index], track.hits) for index, track in sorted(owner.items())
        ]

    def _expire(self, at: datetime) -> list[int]:
        """End the tracks unseen for more than `max_missed_s` before `at`; their ids, ascending."""
        gone = [
            track_id
            for track_id, track in self._tracks.items()
            if (at - track.last_seen).total_seconds() > self.settings.max_missed_s
        ]
        for track_id in gone:
            del self._tracks[track_id]
        return gone

    def _associate(self, faces: Sequence[Face], at: datetime) -> dict[int, _Track]:
        """Greedy one-to-one pairing of face indices with live tracks: by IoU, then by centre distance.

        In the centre-distance round the tracks seen most recently choose first (as in DeepSORT's matching
        cascade): a track that lost its face a few frames ago must not take a neighbour's jittery box from
        the track that saw that face in the last frame.
        """
        s = self.settings
        overlaps: list[_Pair] = []
        for index, face in enumerate(faces):
            for track in self._tracks.values():
                iou = face.box.iou(track.box)
                if iou > 0.0 and iou >= s.min_iou:
                    overlaps.append(((-iou, 0.0), track.track_id, index))
        owner: dict[int, _Track] = {}
        self._claim(overlaps, owner)
        taken = {track.track_id for track in owner.values()}
        nearby: list[_Pair] = []
        for index, face in enumerate(faces):
            for track in self._tracks.values():
                if index in owner or track.track_id in taken:
                    continue
                distance = _centre_distance(face.box, track.box)
                if distance < s.max_centre_shift * track.box.width and _similar_size(face.box, track.box):
                    missed_s = (at - track.last_seen).total_seconds()
                    nearby.append(((missed_s, distance), track.track_id, index))
        self._claim(nearby, owner)
        return owner

    def _claim(self, pairs: list[_Pair], owner: dict[int, _Track]) -> None:
        """Pair faces and tracks in key order, each face and each track at most once (adds to `owner`)."""
        taken = {track.track_id for track in owner.values()}
        for _, track_id, index in sorted(pairs):
            if index not in owner and track_id not in taken:
                owner[index] = self._tracks[track_id]
                taken.add(track_id)

    def _start_tracks(self, faces: Sequence[Face], owner: dict[int, _Track], at: datetime) -> None:
        """New tracks for the unpaired faces, largest first, within `max_tracks` (adds them to `owner`)."""
        fresh = sorted((i for i in range(len(faces)) if i not in owner), key=lambda i: -faces[i].box.area)
        for index in fresh:
            box = faces[index].box
            if len(self._tracks) >= self.settings.max_tracks and not self._evict_smaller(box, owner):
                continue
            track = _Track(self._next_id, box, at)
            self._next_id += 1
            self._tracks[track.track_id] = track
            owner[index] = track

    def _evict_smaller(self, box: Box, owner: dict[int, _Track]) -> bool:
        """Make room for a new face by ending the smallest track not seen in this frame, if smaller."""
        seen = {track.track_id for track in owner.values()}
        unseen = [track for track in self._tracks.values() if track.track_id not in seen]
        if not unseen:
            return False
        smallest = min(unseen, key=lambda track: (track.box.area, track.track_id))
        if smallest.box.area >= box.area:
            return False
        del self._tracks[smallest.track_id]
        self._ended.append(smallest.track_id)
        return True


def _centre_distance(a: Box, b: Box) -> float:
    """Distance between the centres of two boxes, in pixels."""
    dx = (a.x0 + a.x1 - b.x0 - b.x1) / 2.0
    dy = (a.y0 + a.y1 - b.y0 - b.y1) / 2.0
    return float((dx * dx + dy * dy) ** 0.5)


def _similar_size(a: Box, b: Box) -> bool:
    """Whether the widths of two boxes are within `MAX_SCALE_CHANGE` of each other."""
    small, large = sorted((a.width, b.width))
    return large <= MAX_SCALE_CHANGE * small

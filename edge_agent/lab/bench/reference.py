"""When could an enrolled face first be recognised at all? A reference pass over the clip's frames.

Two definitions, both from a pass that runs the agent's own detector on every frame and describes every
face it finds (the agent's aligner and embedder, that frame alone; no quality gates, no tracking, no
vote), reading the clip with the agent's own source class:

- first recognisable frame: the first frame with a face within the calibrated threshold of the
  subject's enrolled template (the earliest any per-frame recogniser on these models could name them);
- first steadily recognisable frame: the first frame of the first run of `run` consecutive frames that
  each have such a face (`run` = the vote's k: no k-of-n vote can decide on one lucky frame).

The live agent's delay from either includes its quality gates and its vote.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.capture.opencv import OpenCVSource
from edge_agent.lab.bench.agent_setup import Enrolled
from edge_agent.types import Frame
from edge_agent.vision.faces import FacePipeline


@dataclass(frozen=True)
class ClipInfo:
    frames: int
    fps: float | None
    width: int
    height: int

    @property
    def seconds(self) -> float | None:
        return self.frames / self.fps if self.fps else None


@dataclass(frozen=True)
class FrameHit:
    frame_index: int
    offset_s: float
    distance: float  # of the nearest face in that frame to the enrolled template


@dataclass(frozen=True)
class FirstRecognisable:
    subject_id: str
    first: FrameHit | None  # None: never within the threshold in the whole clip
    steady: FrameHit | None  # first frame of the first run of `run` consecutive recognisable frames
    run: int

    @property
    def frames(self) -> set[int]:
        return {hit.frame_index for hit in (self.first, self.steady) if hit is not None}


def clip_frames(source: Path, limit: int | None = None) -> Iterator[Frame]:
    """The clip's frames as the agent reads them (OpenCVSource, file mode), at most `limit`."""
    reader = OpenCVSource("bench", str(source), live=False)
    reader.open()
    try:
        count = 0
        while limit is None or count < limit:
            frame = reader.read()
            if frame is None:
                return
            count += 1
            yield frame
    finally:
        reader.close()


def clip_info(source: Path) -> ClipInfo:
    reader = OpenCVSource("bench", str(source), live=False)
    reader.open()
    try:
        frames, width, height = 0, 0, 0
        while (frame := reader.read()) is not None:
            frames += 1
            height, width = frame.image.shape[:2]
        return ClipInfo(frames, reader.fps, width, height)
    finally:
        reader.close()


def first_recognisable(
    faces: FacePipeline, source: Path, enrolled: Sequence[Enrolled], run: int
) -> dict[str, FirstRecognisable]:
    """Per subject, the first recognisable and the first steadily recognisable frame (reads the clip
    until both are known for every subject, or it ends)."""
    threshold = faces.embedder.threshold
    first: dict[str, FrameHit] = {}
    steady: dict[str, FrameHit] = {}
    streak: dict[str, list[FrameHit]] = {s.subject_id: [] for s in enrolled}
    for frame in clip_frames(source):
        descriptors = [described.descriptor for described in faces.describe_frame(frame.image)]
        for subject in enrolled:
            sid = subject.subject_id
            if sid in steady:
                continue
            hit = None
            if descriptors:
                distance = float(np.min(np.linalg.norm(np.stack(descriptors) - subject.descriptor, axis=1)))
                if distance < threshold:
                    hit = FrameHit(frame.index, frame.offset_s, distance)
            if hit is None:
                streak[sid] = []
                continue
            first.setdefault(sid, hit)
            streak[sid].append(hit)
            if len(streak[sid]) >= run:
                steady[sid] = streak[sid][0]
        if len(steady) == len(enrolled):
            break
    return {
        s.subject_id: FirstRecognisable(s.subject_id, first.get(s.subject_id), steady.get(s.subject_id), run)
        for s in enrolled
    }

"""The README's demo: the bundled models run over the bundled demo kit (photos and a clip).

It grows with the product; today it shows detection (faces per photo; for the clip, how many frames
had faces and how fast the detector ran; annotated pictures go to the output folder) and matching: each
photo's face enrolled in a throw-away watchlist (a temporary folder) and the clip searched for it at the
configured false-match rate.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np

from edge_agent.capture.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_frames, read_image
from edge_agent.draw import draw_faces, save_jpeg
from edge_agent.errors import EdgeAgentError
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.pipeline import FacePipeline
from edge_agent.watchlist.records import NewSubject, NewTemplate
from edge_agent.watchlist.store import Watchlist


@dataclass
class MediaSummary:
    file: Path
    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    seconds: float = 0.0
    drawn: list[Path] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def default_kit() -> Path:
    return Path(__file__).resolve().parent.parent / "tests" / "data" / "demo"


def kit_files(kit: Path) -> list[Path]:
    if not kit.is_dir():
        raise EdgeAgentError(f"demo kit not found: {kit} (pass --kit DIR)")
    files = sorted(p for p in kit.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    if not files:
        raise EdgeAgentError(f"demo kit {kit} holds no photos or clips")
    return files


def run_detection_demo(detector: FaceDetector, kit: Path, out: Path) -> list[MediaSummary]:
    """Detect faces in every kit file; draw each photo and the clip's first frame with faces."""
    summaries = []
    for path in kit_files(kit):
        summary = MediaSummary(path)
        for frame in read_frames(path):
            start = time.perf_counter()
            faces = detector.detect(frame.image)
            summary.seconds += time.perf_counter() - start
            summary.frames += 1
            summary.faces += len(faces)
            if faces:
                summary.frames_with_faces += 1
                if not summary.drawn:
                    target = out / f"{path.stem}_frame{frame.index:05d}.jpg"
                    save_jpeg(draw_faces(frame.image, faces), target)
                    summary.drawn.append(target)
        summaries.append(summary)
    return summaries


@dataclass(frozen=True)
class MatchSummary:
    reference: Path
    clip: Path
    frames_searched: int
    frames_matched: int
    best_distance: float


def enrol_kit_photos(pipeline: FacePipeline, watchlist: Watchlist, kit: Path) -> dict[str, Path]:
    """Each kit photo's face enrolled as a demo subject (expires in a day); subject id -> photo."""
    now = watchlist.clock()
    enrolled = {}
    for path in (p for p in kit_files(kit) if p.suffix.lower() in IMAGE_SUFFIXES):
        described, _ = pipeline.describe_one(read_image(path), "largest")
        if described is None:
            continue
        subject = NewSubject(
            path.stem, "demo", "demo enrolment", f"demo kit: {path.name}", "demo", now + timedelta(days=1)
        )
        template = NewTemplate(
            described.descriptor, described.quality.score, hashlib.sha256(path.read_bytes()).hexdigest()
        )
        enrolled[watchlist.enroll(subject, [template]).id] = path
    return enrolled


def run_matching_demo(
    pipeline: FacePipeline, watchlist: Watchlist, kit: Path, every: int = 5
) -> list[MatchSummary]:
    """The kit photos enrolled in `watchlist`, then every clip searched for them frame by frame at the
    configured false-match rate."""
    enrolled = enrol_kit_photos(pipeline, watchlist, kit)
    summaries = []
    for clip in (p for p in kit_files(kit) if p.suffix.lower() in VIDEO_SUFFIXES):
        best = dict.fromkeys(enrolled, np.inf)
        matched = dict.fromkeys(enrolled, 0)
        frames = 0
        for frame in read_frames(clip, every):
            frames += 1
            hits: set[str] = set()
            for face in pipeline.describe_all(frame.image):
                for match in watchlist.search(face.descriptor, k=len(enrolled)):
                    best[match.subject.id] = min(best[match.subject.id], match.distance)
                    if pipeline.embedder.is_match(match.distance):
                        hits.add(match.subject.id)
            for subject_id in hits:
                matched[subject_id] += 1
        summaries += [
            MatchSummary(enrolled[sid], clip, frames, matched[sid], float(best[sid])) for sid in enrolled
        ]
    return summaries

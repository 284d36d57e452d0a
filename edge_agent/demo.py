"""The README's demo: the bundled models run over the bundled demo kit (photos and a clip).

It grows with the product; today it shows detection (faces per photo; for the clip, how many frames
had faces and how fast the detector ran; annotated pictures go to the output folder) and matching: each
photo's face searched for in the clip at the configured false-match rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_agent.capture.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_frames, read_image
from edge_agent.draw import draw_faces, save_jpeg
from edge_agent.errors import EdgeAgentError
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.embed import distance
from edge_agent.vision.pipeline import FacePipeline


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


def run_matching_demo(pipeline: FacePipeline, kit: Path, every: int = 5) -> list[MatchSummary]:
    """Each kit photo's face is the (in-memory) reference; each clip is searched for it at the
    configured false-match rate. Nothing is stored: this shows the embedder, not the watchlist."""
    files = kit_files(kit)
    references = []
    for path in (p for p in files if p.suffix.lower() in IMAGE_SUFFIXES):
        described, _ = pipeline.describe_one(read_image(path), "largest")
        if described is not None:
            references.append((path, described.descriptor))
    summaries = []
    for clip in (p for p in files if p.suffix.lower() in VIDEO_SUFFIXES):
        best = {path: np.inf for path, _ in references}
        matched = dict.fromkeys(best, 0)
        frames = 0
        for frame in read_frames(clip, every):
            frames += 1
            descriptors = [d.descriptor for d in pipeline.describe_all(frame.image)]
            for path, reference in references:
                distances = [distance(reference, d) for d in descriptors]
                if distances:
                    best[path] = min(best[path], min(distances))
                    matched[path] += pipeline.embedder.is_match(min(distances))
        summaries += [MatchSummary(path, clip, frames, matched[path], best[path]) for path, _ in references]
    return summaries

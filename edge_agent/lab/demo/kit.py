"""The README's demo: the bundled models run over the bundled demo kit (photos and a clip).

Detection (faces per photo; for the clip, how many frames had faces and how fast the detector ran;
annotated pictures go to the output folder) and the kit photos' enrolment; the live agent part is in
`edge_agent.lab.demo.live`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from edge_agent.capture.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_frames, read_image
from edge_agent.errors import EdgeAgentError
from edge_agent.lab.draw import draw_faces, save_jpeg
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.faces import FacePipeline
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
    """The kit inside the package (`files/`, with its README naming each file's origin), so an installed
    wheel finds it from any folder."""
    return Path(__file__).resolve().parent / "files"


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

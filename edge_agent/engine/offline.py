"""Detection over files: images, folders and videos, one result per frame, errors as values.

A bad file yields a `MediaError` item instead of stopping the run, so a folder with one corrupt
picture is still processed and the caller decides how to report it. A video's frames are searched as a
camera's are (every window of the detector's plan), a photo whole (`FaceDetector.detect_photo`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_agent.capture.media import expand_paths, is_still_image, read_frames
from edge_agent.errors import MediaError
from edge_agent.types import Face, Frame
from edge_agent.vision.detect import FaceDetector


@dataclass(frozen=True)
class FrameFaces:
    frame: Frame
    faces: list[Face]


def detect_in_files(
    paths: Iterable[Path], detector: FaceDetector, every: int = 1
) -> Iterator[FrameFaces | MediaError]:
    """Faces of every frame of every file below `paths`; unreadable files come out as errors."""
    for path in expand_paths(paths):
        try:
            for frame in read_frames(path, every):
                still = is_still_image(frame.source_id)
                found = detector.detect_photo(frame.image) if still else detector.detect(frame.image)
                yield FrameFaces(frame, found)
        except MediaError as exc:
            yield exc

"""Still images, folders of them, and video files as `Frame`s (the offline source for `detect`).

Every unreadable input becomes a `MediaError` naming the file, so a folder run can report it and go on.
Decoding uses `IMREAD_COLOR`, which applies EXIF orientation, drops an alpha channel and brings 16-bit
and grey pictures to 8-bit RGB.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from edge_agent.errors import MediaError
from edge_agent.types import Frame, RGBImage

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm"}
)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".h264", ".mjpeg"}
)
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus the media files (by suffix) found below any folder, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p) in MEDIA_SUFFIXES))
        else:
            found.append(path)
    return found


def read_image(path: Path) -> RGBImage:
    """Decode one picture to RGB, or raise `MediaError` saying what is wrong with the file."""
    data = _read_bytes(path)
    _check_complete(path, data)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(f"{path}: not a readable image (corrupt, truncated or unknown format)")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def file_time(path: Path) -> datetime:
    """The file's modification time: the best capture time a plain file offers."""
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def read_frames(path: Path, every: int = 1) -> Iterator[Frame]:
    """Frames of an image (one) or a video (every `every`-th), with capture times and indices."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if _suffix(path) in IMAGE_SUFFIXES:
        yield Frame(read_image(path), source_id=str(path), index=0, captured_at=file_time(path))
    elif _suffix(path) in VIDEO_SUFFIXES:
        yield from _video_frames(path, every)
    else:
        try:
            image = read_image(path)
        except MediaError:
            yield from _video_frames(path, every)
            return
        yield Frame(image, source_id=str(path), index=0, captured_at=file_time(path))


def _video_frames(path: Path, every: int) -> Iterator[Frame]:
    _read_bytes(path)  # existence, permissions and emptiness, with the same messages as images
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise MediaError(f"{path}: not a readable video or image")
    start = file_time(path)
    index = 0
    decoded = 0
    try:
        while True:
            ok = capture.grab()
            if not ok:
                break
            if index % every == 0:
                ok, bgr = capture.retrieve()
                if not ok or bgr is None:
                    break
                offset_s = max(0.0, capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
                rgb: RGBImage = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)
                decoded += 1
                yield Frame(
                    rgb,
                    source_id=str(path),
                    index=index,
                    captured_at=start + timedelta(seconds=offset_s),
                    offset_s=offset_s,
                )
            index += 1
    finally:
        capture.release()
    if decoded == 0:
        raise MediaError(f"{path}: no frame could be decoded (corrupt, truncated or not a video)")


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: permission denied")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"{path}: cannot be read ({exc.strerror})") from None
    if not data:
        raise MediaError(f"{path}: empty file (0 bytes)")
    return data


def _check_complete(path: Path, data: bytes) -> None:
    """Catch truncated JPEG and PNG files, which some decoders would return half-grey."""
    # In JPEG entropy-coded data 0xFF is always stuffed, so the end-of-image marker must follow
    # the last start-of-scan marker (an EXIF thumbnail's own markers come before both).
    if data[:3] == b"\xff\xd8\xff" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise MediaError(f"{path}: truncated JPEG (no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-64:]:
        raise MediaError(f"{path}: truncated PNG (no IEND chunk)")

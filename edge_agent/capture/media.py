"""Still images, folders of them, and video files as `Frame`s (the offline source for `detect`).

Every unreadable input becomes a `MediaError` naming the file, so a folder run can report it and go on.
Decoding uses `IMREAD_COLOR`, which applies EXIF orientation, drops an alpha channel and brings 16-bit
and grey pictures to 8-bit RGB.

Hostile files are refused before they are decoded: a picture's width and height come from its header
(Pillow's `Image.open` reads only the header) and must fit `bounded.MAX_IMAGE_PIXELS`; a video's frame size
is checked once it is opened, before the first frame. A video that stops well before the frame count its
container declares is reported as corrupt or truncated, after its good frames were delivered.

The decoders' own chatter is kept off stderr: FFmpeg's through `OPENCV_FFMPEG_LOGLEVEL` (read by OpenCV
when the first capture opens) and OpenCV's through its log level (`quiet_decoders`); libpng and libjpeg
write to file descriptor 2 directly, so `imdecode` runs with fd 2 on /dev/null while no other Python
thread could be writing there. Setting `OPENCV_FFMPEG_LOGLEVEL` or `OPENCV_LOG_LEVEL` yourself wins.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_agent.bounded import MAX_IMAGE_PIXELS, InputRefusedError, check_pixels
from edge_agent.errors import MediaError
from edge_agent.quiet import native_logs_shown, quiet_stderr
from edge_agent.types import Frame, RGBImage

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm"}
)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".h264", ".mjpeg"}
)
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


def is_still_image(source_id: str) -> bool:
    """Whether a frame's source names a photo (by its suffix), not a video or a camera."""
    return Path(source_id).suffix.lower() in IMAGE_SUFFIXES


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
    data = check_image_file(path)
    try:
        with quiet_stderr():
            image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise MediaError(f"{path}: not a readable image (corrupt, truncated or unknown format)")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def check_image_file(path: Path) -> bytes:
    """The bytes of a picture that exists, is complete and is within the pixel bound (nothing decoded),
    or `MediaError` saying what is wrong with it."""
    data = _read_bytes(path)
    _check_complete(path, data)
    image_size(path, data)
    return data


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def image_size(path: Path, data: bytes) -> tuple[int, int]:
    """Width and height from the picture's header, checked against `MAX_IMAGE_PIXELS`.

    Pillow refuses pictures past its own `Image.MAX_IMAGE_PIXELS` (89 MP, an error past twice that) before
    we see their size; both are above our bound, so its warning is turned into an error here (locally:
    `catch_warnings`) and its message gives the pixel count."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = _BOMB_PIXELS.search(str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise MediaError(
            f"{path}: image of {pixels}, over the limit of {MAX_IMAGE_PIXELS:,} pixels (not decoded)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error):
        raise MediaError(f"{path}: not a readable image (corrupt, truncated or unknown format)") from None
    try:
        check_pixels(width, height, "image")
    except InputRefusedError as exc:
        raise MediaError(f"{path}: {exc} (not decoded)") from None
    return width, height


_quieted = False


def quiet_decoders() -> None:
    """Keep FFmpeg's and OpenCV's own log lines off stderr (we report each failure in one line of ours).

    Called before a capture is opened: OpenCV reads `OPENCV_FFMPEG_LOGLEVEL` once, when its FFmpeg backend
    starts (-8 is AV_LOG_QUIET). Either variable set in the environment is left as it is, for debugging."""
    global _quieted
    if _quieted or native_logs_shown():  # `edge-agent -v`: every library's own lines
        return
    _quieted = True
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


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
    _read_nonempty(path)  # existence, permissions and emptiness, with the same messages as images
    quiet_decoders()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise MediaError(f"{path}: not a readable video or image")
    try:
        check_frame_size(capture, "video frame")
    except InputRefusedError as exc:
        capture.release()
        raise MediaError(f"{path}: {exc} (not decoded)") from None
    expected = declared_frames(capture)
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
    if ended_early(index, expected):
        raise MediaError(f"{path}: {ended_early_text(index, expected)}")


def check_frame_size(capture: cv2.VideoCapture, what: str) -> None:
    """`InputRefusedError` for an opened capture whose frames would be over `MAX_IMAGE_PIXELS`; a
    capture that does not say its size yet (0x0, some streams) passes, the decoder bounds it then."""
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    if width > 0 and height > 0:
        check_pixels(width, height, what)


def declared_frames(capture: cv2.VideoCapture) -> int:
    """The frame count the container declares (MP4/MOV: exact; others: estimated from the duration), or 0
    when it declares none."""
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if 0 < count < 1e9 else 0


def ended_early(frames: int, expected: int) -> bool:
    """A clip that stopped before its declared length, past a slack of 2 % and 2 frames (an estimated
    count may be a little off; a decoder that gives up in the middle is far off)."""
    return expected > 0 and frames < expected - max(2, expected // 50)


def ended_early_text(frames: int, expected: int) -> str:
    return f"decoding stopped after {frames} of {expected} frames (corrupt or truncated video)"


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _read_nonempty(path: Path) -> None:
    """What `_read_bytes` checks, without reading a video into memory."""
    _check_readable(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MediaError(f"{path}: cannot be read ({exc.strerror})") from None
    if size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: permission denied")


def _read_bytes(path: Path) -> bytes:
    _check_readable(path)
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

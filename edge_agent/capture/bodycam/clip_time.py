"""When a body-cam clip was recorded, and whether an MP4/MOV file is whole.

Three places can say when recording started (`camera.bodycam.time_source`):
- "container": the `creation_time` of the movie header (`moov/mvhd`) of an ISO BMFF file (MP4, MOV, M4V,
  3GP). Seconds since 1904-01-01 UTC, 32-bit in a version-0 header, 64-bit in version 1; zero means the
  recorder did not set it (ffmpeg without `-metadata creation_time`, cameras without a set clock).
  The boxes are read here directly: a few seeks, no decoder, no extra dependency.
- "filename": a strptime pattern found in the file name, read in the configured time zone (body-cam
  clocks usually run local time) unless the pattern itself has %z.
- "mtime": the file's modification time. Weakest of the three: it is when the camera stopped writing
  (or when the file was copied, if the copy did not keep it), not when recording began.

`check_complete` walks the top-level boxes of a BMFF file: a box that runs past the end of the file, or
no `moov` at all, is a truncated or unfinished recording that must not be read (OpenCV would play its
first part and call it the end).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

from edge_agent.capture.bodycam.settings import BodycamSettings

MP4_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)
# Box types that may open an ISO BMFF / QuickTime file; anything else (RIFF/AVI, Matroska) is not one.
_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp", b"uuid"})
_MAX_BOXES = 100_000  # a corrupt file must not make us walk forever


class ClipError(Exception):
    """The clip is damaged or incomplete (it is marked failed, never read)."""


class MissingTimeError(Exception):
    """The clip's recording time cannot be read from the configured time source."""


def is_bmff(path: Path) -> bool:
    with path.open("rb") as file:
        head = file.read(8)
    return len(head) == 8 and head[4:8] in _FIRST_BOXES


def _boxes(file: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload offset, box end) of each box in file[start:end]; ClipError for one past `end`."""
    offset = start
    count = 0
    while offset < end:
        count += 1
        if count > _MAX_BOXES:
            raise ClipError(f"more than {_MAX_BOXES} boxes: not a sane MP4/MOV")
        file.seek(offset)
        header = file.read(8)
        if len(header) < 8:
            raise ClipError(f"truncated: a box header at byte {offset} is cut off")
        size, kind = struct.unpack(">I4s", header)
        payload = offset + 8
        if size == 1:
            large = file.read(8)
            if len(large) < 8:
                raise ClipError(f"truncated: the 64-bit size of box {_name(kind)} is cut off")
            (size,) = struct.unpack(">Q", large)
            payload += 8
        elif size == 0:
            size = end - offset  # "extends to the end of the file"
        if size < payload - offset:
            raise ClipError(f"box {_name(kind)} at byte {offset} has an impossible size {size}")
        box_end = offset + size
        if box_end > end:
            raise ClipError(
                f"truncated: box {_name(kind)} at byte {offset} needs {size} bytes, {end - offset} are there"
            )
        yield kind, payload, box_end
        offset = box_end


def _name(kind: bytes) -> str:
    return repr(kind.decode("latin-1"))


def _top_level(file: BinaryIO) -> dict[bytes, tuple[int, int]]:
    """Every top-level box (the first of each type), checked to lie within the file."""
    end = os.fstat(file.fileno()).st_size
    found: dict[bytes, tuple[int, int]] = {}
    for kind, payload, box_end in _boxes(file, 0, end):
        found.setdefault(kind, (payload, box_end))
    if b"moov" not in found:
        raise ClipError("no 'moov' box: the recording was not finished (or the copy is cut short)")
    return found


def check_complete(path: Path) -> None:
    """ClipError if a BMFF file is truncated or has no movie header; other formats pass unchecked."""
    if is_bmff(path):
        with path.open("rb") as file:
            _top_level(file)


def container_time(path: Path) -> datetime | None:
    """The `mvhd` creation time of an MP4/MOV file (UTC), None when zero, absent, or not a BMFF file.

    ClipError when the file is truncated or the header is malformed.
    """
    if not is_bmff(path):
        return None
    with path.open("rb") as file:
        payload, moov_end = _top_level(file)[b"moov"]
        for kind, start, box_end in _boxes(file, payload, moov_end):
            if kind == b"mvhd":
                return _mvhd_time(file, start, box_end)
    return None


def _mvhd_time(file: BinaryIO, start: int, end: int) -> datetime | None:
    file.seek(start)
    version_flags = file.read(4)
    if len(version_flags) < 4 or version_flags[0] not in (0, 1):
        raise ClipError("malformed 'mvhd' box (unknown version)")
    width = 8 if version_flags[0] == 1 else 4
    if start + 4 + width > end:
        raise ClipError("malformed 'mvhd' box (too short)")
    raw = file.read(width)
    seconds = int.from_bytes(raw, "big")
    if seconds == 0:
        return None
    return MP4_EPOCH + timedelta(seconds=seconds)


# strptime directives and what they match in a file name (fixed widths: names are machine-written).
_DIRECTIVES = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"\d{2}",
    "d": r"\d{2}",
    "H": r"\d{2}",
    "I": r"\d{2}",
    "M": r"\d{2}",
    "S": r"\d{2}",
    "j": r"\d{3}",
    "f": r"\d{1,6}",
    "p": r"[AaPp][Mm]",
    "b": r"[A-Za-z]{3}",
    "a": r"[A-Za-z]{3}",
    "B": r"[A-Za-z]+",
    "A": r"[A-Za-z]+",
    "z": r"(?:[+-]\d{2}:?\d{2}|Z)",
    "%": "%",
}


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A regular expression that finds text `datetime.strptime(text, pattern)` can parse.

    ValueError naming the directive for one it does not know.
    """
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char != "%":
            parts.append(re.escape(char))
            i += 1
            continue
        directive = pattern[i + 1 : i + 2]
        if directive not in _DIRECTIVES:
            raise ValueError(
                f"filename_pattern {pattern!r}: %{directive} is not supported "
                f"(use %{', %'.join(d for d in _DIRECTIVES if d != '%')})"
            )
        parts.append(_DIRECTIVES[directive])
        i += 2
    return re.compile("".join(parts))


def filename_time(name: str, pattern: str, timezone: str) -> datetime | None:
    """The first time in `name` that `pattern` parses (in `timezone` unless it has %z), as UTC."""
    regex = pattern_regex(pattern)
    position = 0
    while (found := regex.search(name, position)) is not None:
        try:
            moment = datetime.strptime(found.group(0), pattern)
        except ValueError:  # e.g. month 13: try the next place
            position = found.start() + 1
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(timezone))
        return moment.astimezone(UTC)
    return None


def mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def recording_time(path: Path, settings: BodycamSettings) -> datetime:
    """When recording of the clip at `path` started (UTC), from `settings.time_source`.

    Falls back to the file's mtime when the source has no time and `missing_time = "mtime"`; raises
    MissingTimeError (one-line reason) when it has none and `missing_time = "skip"`, and ClipError for a
    damaged MP4/MOV.
    """
    found: datetime | None
    if settings.time_source == "mtime":
        return mtime(path)
    if settings.time_source == "container":
        found = container_time(path)
        reason = (
            "no recording time in the container (mvhd creation_time is 0 or missing)"
            if is_bmff(path)
            else "no recording time: not an MP4/MOV container (use time_source filename or mtime)"
        )
    else:
        assert settings.filename_pattern is not None  # the settings refuse filename without a pattern
        found = filename_time(path.name, settings.filename_pattern, settings.timezone)
        reason = f"no time matching {settings.filename_pattern!r} in the file name"
    if found is not None:
        return found
    if settings.missing_time == "mtime":
        return mtime(path)
    raise MissingTimeError(reason)

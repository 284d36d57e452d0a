"""When a clip was recorded (container, file name, mtime) and whether an MP4 is whole, on the project's
real clips (copied, some with a patched header; the container times are read two ways)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.capture.bodycam.clip_time import (
    MP4_EPOCH,
    ClipError,
    MissingTimeError,
    check_complete,
    container_time,
    filename_time,
    recording_time,
)
from edge_agent.capture.bodycam.settings import BodycamSettings
from tests.capture.bodycam.clip_kit import (
    DEMO_FRAMES,
    T1,
    T2,
    frame_count,
    mvhd_seconds_by_scan,
    with_creation_time,
)
from tests.kits.agent_kit import DEMO_CLIP


def test_the_project_clips_carry_no_container_time(walkers: Path) -> None:
    for clip in (DEMO_CLIP, walkers):
        assert mvhd_seconds_by_scan(clip.read_bytes()) == 0  # what the encoder wrote: unset
        assert container_time(clip) is None
        check_complete(clip)


@pytest.mark.parametrize("version", [0, 1])
def test_container_time_is_read_from_version_0_and_1_headers(tmp_path: Path, version: int) -> None:
    # version 1 gets a time past 2040-02-06, where 32-bit seconds since 1904 run out
    moment = T1 if version == 0 else datetime(2051, 7, 4, 8, 30, 15, tzinfo=UTC)
    clip = with_creation_time(DEMO_CLIP, tmp_path / "clip.mp4", moment, version=version)
    data = clip.read_bytes()
    assert mvhd_seconds_by_scan(data) == int((moment - MP4_EPOCH).total_seconds())
    assert container_time(clip) == moment
    assert frame_count(clip) == DEMO_FRAMES  # the patched file is still a valid movie


def test_a_truncated_mp4_is_refused(tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(DEMO_CLIP.read_bytes()[:300_000])
    with pytest.raises(ClipError, match="truncated: box 'mdat'"):
        check_complete(cut)
    no_header = tmp_path / "no_moov.mp4"
    data = DEMO_CLIP.read_bytes()
    no_header.write_bytes(data[: data.rindex(b"moov") - 4])
    with pytest.raises(ClipError, match="no 'moov'"):
        check_complete(no_header)


def test_filename_time_in_the_configured_zone() -> None:
    pattern = "%Y%m%d_%H%M%S"
    # Berlin is UTC+2 in May
    assert filename_time("CAM07_20240501_120301.mp4", pattern, "Europe/Berlin") == T1
    assert filename_time("CAM0720240501_120301.MP4", pattern, "Europe/Berlin") == T1
    # an impossible date first (month 13), the real one after it
    assert filename_time("x_20241301_000000_20240501_100301.mp4", pattern, "UTC") == T1
    assert filename_time("clip-0001.mp4", pattern, "UTC") is None
    assert filename_time("2024-05-01T12-03-01+0200.mp4", "%Y-%m-%dT%H-%M-%S%z", "UTC") == T1


def test_recording_time_by_time_source(tmp_path: Path) -> None:
    unset = with_creation_time(DEMO_CLIP, tmp_path / "CAM1_20240501_100301.mp4", None)
    stamped = with_creation_time(DEMO_CLIP, tmp_path / "clip.mp4", T2)
    mtime = datetime.fromtimestamp(unset.stat().st_mtime, tz=UTC)
    container = BodycamSettings(time_source="container")
    assert recording_time(stamped, container) == T2
    with pytest.raises(MissingTimeError, match="mvhd creation_time is 0"):
        recording_time(unset, container)
    assert recording_time(unset, container.model_copy(update={"missing_time": "mtime"})) == mtime
    by_name = BodycamSettings(time_source="filename", filename_pattern="%Y%m%d_%H%M%S")
    assert recording_time(unset, by_name) == T1
    with pytest.raises(MissingTimeError, match="no time matching"):
        recording_time(stamped, by_name)
    assert recording_time(stamped, BodycamSettings(time_source="mtime")) == datetime.fromtimestamp(
        stamped.stat().st_mtime, tz=UTC
    )

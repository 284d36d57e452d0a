"""Settings of the body-cam docking folder source (`[camera.bodycam]`, used by `capture/bodycam/`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, model_validator

from edge_agent.section import Section
from edge_agent.state_dir import default_data_path


class BodycamSettings(Section):
    """A docking-station folder where body-cams unload clips (`camera.type = "bodycam"`)."""

    folder: Path | None = Field(None, description="The docking folder to watch (searched recursively).")
    state_path: Path = Field(
        default_factory=lambda: default_data_path("bodycam.db"),
        description="Which clips were processed and how far (SQLite): a restart neither skips nor repeats. "
        "Default: bodycam.db in the state directory (edge_agent/state_dir.py), beside the watchlist.",
    )
    patterns: list[str] = Field(
        default_factory=lambda: ["*.mp4", "*.MP4", "*.mov", "*.MOV", "*.avi", "*.AVI", "*.mkv"],
        description="File name patterns of clips.",
    )
    stable_s: float = Field(
        5.0, ge=0.0, le=3600.0, description="A clip is complete once size and mtime hold still this long."
    )
    poll_s: float = Field(2.0, gt=0.0, le=600.0, description="How often the folder is looked at.")
    time_source: Literal["container", "filename", "mtime"] = Field(
        "container",
        description="Where a clip's recording time comes from: the container's creation time (MP4/MOV mvhd), "
        "a pattern in the file name, or the file's modification time.",
    )
    filename_pattern: str | None = Field(
        None, description='strptime format found in the file name, e.g. "%Y%m%d_%H%M%S".'
    )
    timezone: str = Field("UTC", description="Time zone of file-name times (body-cam clocks run local).")
    missing_time: Literal["skip", "mtime"] = Field(
        "skip",
        description="A clip without a readable recording time: skip it (one line says so) or use its mtime.",
    )
    after: Literal["keep", "delete", "move"] = Field("keep", description="What to do with a processed clip.")
    move_to: Path | None = Field(None, description="Where processed clips go with after = move.")
    once: bool = Field(False, description="Process the clips present now, then stop (batch runs).")

    @model_validator(mode="after")
    def _consistent(self) -> BodycamSettings:
        if self.after == "move" and self.move_to is None:
            raise ValueError("after = move needs move_to")
        if self.time_source == "filename" and not self.filename_pattern:
            raise ValueError("time_source = filename needs filename_pattern")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        return self

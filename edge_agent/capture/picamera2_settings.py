"""Settings of the Raspberry Pi camera source (`[camera.picamera2]`, used by `capture/picamera2.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.section import Section


class Picamera2Settings(Section):
    """Raspberry Pi cameras through libcamera's picamera2 (`camera.type = "picamera2"`)."""

    camera_num: int = Field(0, ge=0, le=15, description="Which Pi camera (0 for the first).")
    format: Literal["RGB888", "BGR888", "XRGB8888", "XBGR8888"] = Field(
        "RGB888", description="Pixel format of the main stream (libcamera names; RGB888 is BGR in memory)."
    )
    lores: tuple[int, int] | None = Field(
        None,
        description="Width, height of a low-resolution stream to detect on; the main stream then serves "
        "the face crops (alignment), so small faces keep their pixels.",
    )

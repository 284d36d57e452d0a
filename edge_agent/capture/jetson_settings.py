"""Settings of the NVIDIA Jetson GStreamer source (`[camera.jetson]`, used by `capture/jetson.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.section import Section


class JetsonSettings(Section):
    """NVIDIA Jetson: GStreamer pipelines through OpenCV's GStreamer backend (`camera.type = "jetson"`)."""

    input: Literal["csi", "rtsp", "file"] = Field(
        "csi", description="csi: nvarguscamerasrc; rtsp or file: hardware decoding with nvv4l2decoder."
    )
    sensor_id: int = Field(0, ge=0, le=15, description="CSI sensor number.")
    flip_method: int = Field(0, ge=0, le=7, description="nvvidconv flip-method (0 = none, 2 = rotate 180).")
    codec: Literal["h264", "h265"] = Field("h264", description="Codec of the RTSP stream or file.")
    latency_ms: int = Field(200, ge=0, le=10000, description="rtspsrc jitter buffer.")

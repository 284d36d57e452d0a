"""Settings of the models and what runs them: `[runtime]`, `[detector]`, `[embedder]`, `[quality]`.

A base module (pydantic and `edge_agent.section` only), composed by `config.py`: validating a config
loads no interpreter and no model.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from edge_agent.section import Section


class RuntimeSettings(Section):
    backend: Literal["auto", "ai_edge_litert", "tflite_runtime", "tensorflow"] = Field(
        "auto",
        description="TFLite interpreter: auto tries ai_edge_litert, then tflite_runtime, "
        "then tensorflow.lite.",
    )
    threads: int = Field(2, ge=1, le=64, description="Interpreter threads per model.")


class DetectorSettings(Section):
    model: Literal["short_range", "full_range"] = Field(
        "full_range",
        description="BlazeFace variant: short_range (128 px input, faces within ~2 m) or "
        "full_range (192 px input, faces up to ~5 m).",
    )
    precision: Literal["auto", "float32", "dyn8", "int8"] = Field(
        "auto",
        description="Which build of the model to run. auto takes the manifest's "
        "default_precision for the model (chosen from measurements in docs/benchmarks.md).",
    )
    min_score: float = Field(0.5, gt=0.0, lt=1.0, description="Minimum detection score.")
    min_face_px: int = Field(
        40,
        ge=8,
        le=4096,
        description='The narrowest face to find anywhere in the frame (pixels). With tiles = "auto" the '
        "detection windows are planned from it and the frame size; detections narrower than half of it are "
        "dropped.",
    )
    nms_iou: float = Field(
        0.3, gt=0.0, lt=1.0, description="IoU above which detections merge (weighted NMS)."
    )
    tiles: Literal["auto"] | tuple[int, int] = Field(
        "auto",
        description='"auto": the whole frame, plus overlapping tiles sized so a min_face_px face fills '
        "16 model pixels (docs/detection.md). Or columns, rows: the frame (or ROI) split into that many "
        "overlapping tiles.",
    )
    tile_overlap: float = Field(
        0.25,
        ge=0.0,
        lt=0.9,
        description="With explicit tiles: the fraction of a tile shared with its neighbour.",
    )
    full_frame: bool = Field(
        True, description="With explicit tiles, also run once on the whole frame/ROI (catches big faces)."
    )
    sweep_frames: int = Field(
        3,
        ge=1,
        le=30,
        description="Live agent: every tile is searched at least once in this many frames; the whole frame, "
        "and the tiles holding a face not yet identified, every frame. 1 searches every tile every frame.",
    )
    roi: tuple[float, float, float, float] | None = Field(
        None,
        description="Region of interest as fractions of the frame: x0, y0, x1, y1. "
        "Only faces inside it are searched.",
    )

    @model_validator(mode="after")
    def _check_geometry(self) -> DetectorSettings:
        if self.tiles != "auto":
            cols, rows = self.tiles
            if not (1 <= cols <= 8 and 1 <= rows <= 8):
                raise ValueError(f'tiles must be "auto" or two integers in 1..8, got {list(self.tiles)}')
        if self.roi is not None:
            x0, y0, x1, y1 = self.roi
            if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
                raise ValueError(f"roi must be x0 < x1 and y0 < y1 within 0..1, got {list(self.roi)}")
        return self


# Decades and half decades (3e-x) from 1e-2 to 1e-6: the half steps let an alert budget follow the
# watchlist's size in steps of about 3x. 1e-6 is the strictest the calibration resolves: lfw-devtrain gives
# 5.9 million impostor pairs, and a rate needs at least 3 / rate of them (tools/calibrate.py).
CALIBRATED_FMRS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
CALIBRATED_FMRS_TEXT = ", ".join(f"{rate:g}" for rate in CALIBRATED_FMRS)


def calibrated_fmr(value: float) -> float:
    """`value` as the calibrated rate it names; ValueError when it is none of them."""
    for known in CALIBRATED_FMRS:
        if math.isclose(value, known, rel_tol=1e-9):
            return known
    raise ValueError(f"must be one of the calibrated false-match rates {CALIBRATED_FMRS_TEXT}")


TargetFmr = Annotated[float, AfterValidator(calibrated_fmr)]


class EmbedderSettings(Section):
    model: Literal["dlib_resnet_v1"] = Field(
        "dlib_resnet_v1", description="Face descriptor network (dlib's ResNet rebuilt as TFLite)."
    )
    precision: Literal["auto", "float32", "dyn8", "int8"] = Field(
        "auto",
        description="Which build: float32 (dlib's numbers to 1e-5), dyn8 (int8 weights, within 0.05 of "
        "dlib), int8 (int8 weights and activations, opt-in). auto takes the manifest's default_precision.",
    )
    target_fmr: TargetFmr = Field(
        1e-4,
        description="False-match rate the match threshold is calibrated for when decision.operating_point "
        f'= "target_fmr" (one of {CALIBRATED_FMRS_TEXT}; thresholds per build are in models/manifest.toml, '
        "measured on lfw-devtrain). Under the default budget the rate follows the watchlist's size instead.",
    )


class QualitySettings(Section):
    """Gates the live pipeline applies before a face may be searched (see edge_agent/vision/quality.py)."""

    min_face_px: int = Field(40, ge=1, le=4096, description="Minimum face box width in source pixels.")
    min_sharpness: float = Field(
        2.0,
        ge=0.0,
        description="Minimum variance of the Laplacian of the aligned grey chip (0 = gate off). The default "
        "is the 1% quantile of 287 real faces in the shared photos and clips (tools/measure_gates.py).",
    )
    edge_margin: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="A face whose box comes nearer a frame edge than this fraction of its width (height) "
        "is refused as truncated, as is one with an eye, the nose or the mouth outside the frame (the "
        "detector clamps boxes to the frame: a face cut off at the edge has a box touching it).",
    )
    max_yaw_deg: float = Field(45.0, gt=0.0, le=90.0, description="Largest estimated head turn (degrees).")
    max_roll_deg: float = Field(45.0, gt=0.0, le=180.0, description="Largest in-plane head tilt (degrees).")
    min_brightness: float = Field(30.0, ge=0.0, le=255.0, description="Minimum mean grey level of the chip.")
    max_brightness: float = Field(230.0, ge=0.0, le=255.0, description="Maximum mean grey level of the chip.")

    @model_validator(mode="after")
    def _brightness_range(self) -> QualitySettings:
        if self.min_brightness >= self.max_brightness:
            raise ValueError(
                f"min_brightness ({self.min_brightness}) must be below max_brightness ({self.max_brightness})"
            )
        return self

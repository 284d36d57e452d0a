"""One `Settings` object for the whole agent: a TOML file, overridden by `EDGE_AGENT_*` variables.

Nested fields use a double underscore in the environment, e.g. `EDGE_AGENT_DETECTOR__MIN_SCORE=0.6`.
Every model forbids unknown keys, so a typo is an error that names the key instead of a silent default.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge_agent.errors import ConfigError

ENV_PREFIX = "EDGE_AGENT_"
# Variables with the prefix that are not settings: where the config file is, where test photos are.
NON_SETTING_VARIABLES = frozenset({"EDGE_AGENT_CONFIG", "EDGE_AGENT_TEST_FACES", "EDGE_AGENT_SLOW"})


class Section(BaseModel):
    """Base of every config section: strict keys, validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
        16, ge=1, le=4096, description="Drop faces whose box is narrower than this (pixels)."
    )
    nms_iou: float = Field(
        0.3, gt=0.0, lt=1.0, description="IoU above which detections merge (weighted NMS)."
    )
    tiles: tuple[int, int] = Field(
        (1, 1),
        description="Columns, rows: split the frame (or ROI) into overlapping tiles and "
        "detect in each, for small distant faces in wide frames.",
    )
    tile_overlap: float = Field(
        0.25, ge=0.0, lt=0.9, description="Fraction of a tile shared with its neighbour."
    )
    full_frame: bool = Field(
        True, description="With tiles, also run once on the whole frame/ROI (catches big faces)."
    )
    roi: tuple[float, float, float, float] | None = Field(
        None,
        description="Region of interest as fractions of the frame: x0, y0, x1, y1. "
        "Only faces inside it are searched.",
    )

    @model_validator(mode="after")
    def _check_geometry(self) -> DetectorSettings:
        cols, rows = self.tiles
        if not (1 <= cols <= 8 and 1 <= rows <= 8):
            raise ValueError(f"tiles must be two integers in 1..8, got {list(self.tiles)}")
        if self.roi is not None:
            x0, y0, x1, y1 = self.roi
            if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
                raise ValueError(f"roi must be x0 < x1 and y0 < y1 within 0..1, got {list(self.roi)}")
        return self


CALIBRATED_FMRS = (1e-2, 1e-3, 1e-4, 1e-5)


def _calibrated_fmr(value: float) -> float:
    for known in CALIBRATED_FMRS:
        if math.isclose(value, known, rel_tol=1e-9):
            return known
    raise ValueError("must be one of the calibrated false-match rates 1e-2, 1e-3, 1e-4, 1e-5")


TargetFmr = Annotated[float, AfterValidator(_calibrated_fmr)]


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
        description="False-match rate the match threshold is calibrated for (one of 1e-2, 1e-3, 1e-4, "
        "1e-5; thresholds per build are in models/manifest.toml, measured on lfw-devtrain).",
    )


class QualitySettings(Section):
    """Gates the live pipeline applies before a face may be searched (see edge_agent/vision/quality.py)."""

    min_face_px: int = Field(40, ge=1, le=4096, description="Minimum face box width in source pixels.")
    min_sharpness: float = Field(
        0.0,
        ge=0.0,
        description="Minimum variance of the Laplacian of the aligned grey chip (0 = gate off until the "
        "live pipeline's blur threshold is measured on camera footage).",
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


HEX_KEY = r"^[0-9a-f]{64}$"


class WatchlistSettings(Section):
    path: Path = Field(
        Path("edge-agent-data/watchlist.db"),
        description="The watchlist database (SQLite); its vector index lives beside it in <path>.index/.",
    )
    index_dtype: Literal["f32", "f16", "i8"] = Field(
        "f16",
        description="Storage of vectors in the usearch index; distances are always re-computed exactly "
        "from SQLite's float32 templates. i8 is not recommended: usearch normalises i8 vectors to unit "
        "length, so its candidates are found by angle, not Euclidean distance (docs/benchmarks.md).",
    )
    default_watchlist: str = Field("default", min_length=1, description="Watchlist name when none is given.")
    search_k: int = Field(5, ge=1, le=100, description="How many subjects `watchlist search` lists.")
    signing_key: Path | None = Field(
        None, description="Ed25519 private key (PEM) that signs exported bundles (`watchlist keygen`)."
    )
    trusted_keys: list[Annotated[str, Field(pattern=HEX_KEY)]] = Field(
        default_factory=list,
        description="Ed25519 public keys (64 hex digits) whose bundles this device imports.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    device_id: str = Field(
        "edge-1",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Name of this device in MQTT topics and events.",
    )
    models_dir: Path | None = Field(
        None, description="Folder with manifest.toml and the model files (default: bundled)."
    )
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    watchlist: WatchlistSettings = Field(default_factory=WatchlistSettings)


def _settings_class_for(path: Path | None, use_environment: bool) -> type[Settings]:
    """A `Settings` subclass whose lowest-priority source is the given TOML file."""

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings]
            if use_environment:
                sources.append(env_settings)
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    return FileSettings


def describe_validation_error(err: ValidationError) -> str:
    """All problems of a validation error on one line, each naming its dotted field."""
    parts = []
    for problem in err.errors():
        field = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        given = problem.get("input")
        shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
        parts.append(f"{field}: {message}{shown}")
    return "; ".join(parts)


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse `EDGE_AGENT_*` variables that name no setting: a typo must not pass silently."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for variable in sorted(environ):
        if not variable.upper().startswith(ENV_PREFIX) or variable.upper() in NON_SETTING_VARIABLES:
            continue
        top = variable.upper().split("__", 1)[0]
        if top not in known:
            raise ConfigError(f"environment variable {variable} names no setting")


def load_settings(path: Path | str | None = None, use_environment: bool = True, **overrides: Any) -> Settings:
    """Read settings from `path` (TOML) and the environment; raise `ConfigError` on any problem.

    `overrides` (e.g. `detector={"tiles": (2, 2)}`) win over both and are merged key by key.
    """
    if use_environment:
        check_environment(os.environ)
    toml_path = Path(path) if path is not None else None
    where = f" in {toml_path}" if toml_path else ""
    if toml_path is not None:
        if not toml_path.is_file():
            raise ConfigError(f"config file not found: {toml_path}")
        try:
            tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {toml_path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {toml_path} cannot be read: {exc.strerror}") from None
    try:
        return _settings_class_for(toml_path, use_environment)(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid config{where}: {describe_validation_error(exc)}") from None


def settings_as_toml(settings: Settings) -> str:
    """The effective settings as TOML text (what `edge-agent config show` prints)."""
    data = settings.model_dump(mode="json", exclude_none=True)
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

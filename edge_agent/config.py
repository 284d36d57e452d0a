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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
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
    default_watchlist: str = Field(
        "default", min_length=1, max_length=64, description="Watchlist name when none is given."
    )
    search_k: int = Field(5, ge=1, le=100, description="How many subjects `watchlist search` lists.")
    signing_key: Path | None = Field(
        None, description="Ed25519 private key (PEM) that signs exported bundles (`watchlist keygen`)."
    )
    trusted_keys: list[Annotated[str, Field(pattern=HEX_KEY)]] = Field(
        default_factory=list,
        description="Ed25519 public keys (64 hex digits) whose bundles this device imports.",
    )


IDENTIFIER = r"^[A-Za-z0-9_.-]+$"


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


class JetsonSettings(Section):
    """NVIDIA Jetson: GStreamer pipelines through OpenCV's GStreamer backend (`camera.type = "jetson"`)."""

    input: Literal["csi", "rtsp", "file"] = Field(
        "csi", description="csi: nvarguscamerasrc; rtsp or file: hardware decoding with nvv4l2decoder."
    )
    sensor_id: int = Field(0, ge=0, le=15, description="CSI sensor number.")
    flip_method: int = Field(0, ge=0, le=7, description="nvvidconv flip-method (0 = none, 2 = rotate 180).")
    codec: Literal["h264", "h265"] = Field("h264", description="Codec of the RTSP stream or file.")
    latency_ms: int = Field(200, ge=0, le=10000, description="rtspsrc jitter buffer.")


class BodycamSettings(Section):
    """A docking-station folder where body-cams unload clips (`camera.type = "bodycam"`)."""

    folder: Path | None = Field(None, description="The docking folder to watch (searched recursively).")
    state_path: Path = Field(
        Path("edge-agent-data/bodycam.db"),
        description="Which clips were processed and how far (SQLite): a restart neither skips nor repeats.",
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


RtspTransport = Literal["auto", "tcp", "udp"]


class CameraSettings(Section):
    """The frame source the live agent (`edge-agent run`) watches."""

    type: Literal["opencv", "picamera2", "jetson", "bodycam"] = Field(
        "opencv",
        description="Source plugin: opencv (V4L2/USB, RTSP/HTTP, video files), picamera2 (Pi camera), "
        "jetson (CSI or hardware-decoded RTSP/files via GStreamer), bodycam (a docking folder of clips).",
    )

    id: str = Field(
        "cam-1", min_length=1, max_length=64, pattern=IDENTIFIER, description="Camera name in events."
    )
    source: str = Field(
        "0",
        min_length=1,
        description="What to open: a V4L2 device number or path (0, /dev/video0), an rtsp:// or http:// URL, "
        "or a video file.",
    )
    kind: Literal["auto", "file", "stream"] = Field(
        "auto",
        description="file: a clip read to its end, every frame, then a clean exit (a missing, unreadable or "
        "corrupt file ends the run with exit 1); stream: a live camera, reopened with backoff when it fails "
        "or ends, newest frame wins. auto: stream for a device number, a /dev/ path or a URL (a camera "
        "that may appear later), file for any other path.",
    )
    loop: bool = Field(False, description="Files only: start again at the end (demos and soak runs).")
    realtime: bool = Field(
        False,
        description="Files only: deliver frames at the clip's own rate and drop what inference cannot "
        "keep up with, like a camera (default: every frame, as fast as inference goes).",
    )
    reconnect_min_s: float = Field(0.5, gt=0.0, le=60.0, description="First wait before reopening a camera.")
    reconnect_max_s: float = Field(30.0, gt=0.0, le=3600.0, description="Longest wait between reopen tries.")
    timeout_s: float = Field(
        10.0, gt=0.0, le=600.0, description="Open and read timeout of network streams (RTSP/HTTP)."
    )
    rtsp_transport: RtspTransport = Field(
        "auto",
        description="How RTSP streams carry their packets: auto (the library offers several in turn: "
        "OpenCV's FFmpeg TCP, then UDP, then multicast; GStreamer's rtspsrc UDP first), tcp (interleaved in "
        "the RTSP connection: through NAT and firewalls, no lost packets) or udp (only). Applied as "
        "OPENCV_FFMPEG_CAPTURE_OPTIONS rtsp_transport;tcp (camera.type = opencv) and rtspsrc protocols=tcp "
        "(camera.type = jetson).",
    )
    width: int | None = Field(None, ge=16, le=16384, description="Requested frame width (live cameras).")
    height: int | None = Field(None, ge=16, le=16384, description="Requested frame height (live cameras).")
    fps: float | None = Field(None, gt=0.0, le=1000.0, description="Requested frame rate (live cameras).")
    fourcc: str | None = Field(
        None, pattern=r"^[A-Za-z0-9 ]{4}$", description='V4L2 pixel format, e.g. "MJPG" or "YUYV".'
    )
    picamera2: Picamera2Settings = Field(default_factory=Picamera2Settings)
    jetson: JetsonSettings = Field(default_factory=JetsonSettings)
    bodycam: BodycamSettings = Field(default_factory=BodycamSettings)

    @model_validator(mode="after")
    def _backoff_range(self) -> CameraSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together")
        if self.type == "bodycam" and self.bodycam.folder is None:
            raise ValueError("type = bodycam needs bodycam.folder")
        if self.type == "bodycam" and (self.realtime or self.loop):
            raise ValueError("realtime and loop are for single video files, not a body-cam folder")
        return self


class TrackingSettings(Section):
    """How detections become tracks and when a track's face is embedded."""

    min_iou: float = Field(0.3, ge=0.0, lt=1.0, description="Overlap that continues a track.")
    max_centre_shift: float = Field(
        0.6,
        gt=0.0,
        le=5.0,
        description="Without overlap, a detection continues a track if its centre moved less than this "
        "many box widths (fast walkers, low frame rates).",
    )
    max_missed_s: float = Field(1.0, gt=0.0, le=60.0, description="A track unseen this long has ended.")
    embed_interval_s: float = Field(
        0.25,
        ge=0.0,
        le=60.0,
        description="Least time between two embeddings of one track unless its quality improves.",
    )
    min_quality_gain: float = Field(
        0.05, ge=0.0, le=1.0, description="Quality-score rise that earns an embedding before the interval."
    )
    max_tracks: int = Field(
        32, ge=1, le=1000, description="Most tracks followed at once (largest faces win)."
    )


class DecisionSettings(Section):
    """The temporal vote: a match needs k of a track's last n embeddings to agree."""

    k: int = Field(3, ge=1, le=100, description="Embeddings that must agree on the same subject.")
    n: int = Field(5, ge=1, le=100, description="How many of a track's latest embeddings are counted.")
    cooldown_s: float = Field(
        60.0,
        ge=0.0,
        le=86400.0,
        description="After an event for a subject, no other event for that subject from this camera for this "
        "long (a track gives at most one event per subject anyway).",
    )

    @model_validator(mode="after")
    def _k_within_n(self) -> DecisionSettings:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) must not exceed n ({self.n})")
        return self


class EventSettings(Section):
    """The durable outbox of match events and the reviewer's copy of each sent match."""

    path: Path = Field(Path("edge-agent-data/events.db"), description="Outbox and review store (SQLite).")
    outbox_max_events: int = Field(
        10000, ge=1, description="Most unsent messages kept; past it the oldest is dropped and counted."
    )
    outbox_max_age_s: float = Field(
        7 * 86400.0, gt=0.0, description="Unsent messages older than this are dropped and counted."
    )
    review_days: float = Field(
        30.0,
        ge=0.0,
        le=3650.0,
        description="How long a sent match (event + matched face's embedding, never the frame) is kept for "
        "reviewer feedback before it is deleted.",
    )
    face_crop: bool = Field(False, description="Attach a JPEG of the matched face crop for the reviewer.")
    face_crop_quality: int = Field(85, ge=10, le=100, description="JPEG quality of that crop.")
    drain_timeout_s: float = Field(
        10.0, ge=0.0, le=3600.0, description="On shutdown, how long to wait for unsent events to be acked."
    )


class MqttSettings(Section):
    host: str = Field("localhost", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    client_id: str | None = Field(None, description="MQTT client id (default: edge-agent-<device_id>).")
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password (prefer the environment).")
    tls: bool = Field(False, description="Connect with TLS (on by itself when ca_file or cert_file is set).")
    ca_file: Path | None = Field(
        None, description="CA certificate(s) (PEM) the broker's certificate must chain to."
    )
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(None, description="Client private key (PEM) for mutual TLS.")
    topic_prefix: str = Field(
        "edge-agent",
        min_length=1,
        pattern=r"^[^#+]+$",
        description="Topics are <prefix>/<device_id>/events/match, .../status, .../health.",
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive.")
    reconnect_min_s: float = Field(1.0, gt=0.0, le=60.0, description="First wait before reconnecting.")
    reconnect_max_s: float = Field(60.0, gt=0.0, le=3600.0, description="Longest wait between reconnects.")
    max_inflight: int = Field(20, ge=1, le=1000, description="Events published and not yet acknowledged.")
    health_interval_s: float = Field(30.0, ge=1.0, le=86400.0, description="Period of the health message.")
    home_assistant: bool = Field(False, description="Publish Home Assistant MQTT discovery for the sensors.")
    discovery_prefix: str = Field(
        "homeassistant", min_length=1, description="Home Assistant discovery prefix."
    )

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} is not a file")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None


class ServiceSettings(Section):
    purge_interval_s: float = Field(
        3600.0, ge=1.0, description="How often expired subjects and old review records are deleted."
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
    camera: CameraSettings = Field(default_factory=CameraSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)


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
    """The effective settings as TOML text (what `edge-agent config show` prints); secrets are masked."""
    lines: list[str] = []
    _emit_table(lines, settings.model_dump(mode="json", exclude_none=True), "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _emit_table(lines: list[str], table: dict[str, Any], name: str) -> None:
    """A table's plain keys under its header, then its sub-tables as [name.sub]."""
    if name:
        lines += ["", f"[{name}]"]
    plain = {key: value for key, value in table.items() if not isinstance(value, dict)}
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in plain.items())
    for key, value in table.items():
        if isinstance(value, dict):
            _emit_table(lines, value, f"{name}.{key}" if name else key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

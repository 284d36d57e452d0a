"""`models/manifest.toml`: which model files exist, where they came from, and how to feed them.

The manifest is the single description of every model: the code reads input sizes, normalisation and
anchor layouts from it rather than hard-coding them, so a rebuilt or replaced model is a manifest edit.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_agent.config import describe_validation_error
from edge_agent.errors import ModelError
from edge_agent.face_metric import MetricName

MANIFEST_NAME = "manifest.toml"
Precision = Literal["float32", "fp16", "dyn8", "int8"]
SpecT = TypeVar("SpecT")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Origin(_Strict):
    package: str
    version: str
    path: str = Field(description="Path inside the package, or the tool that built the file.")
    wheel_sha256: str | None = None


class AnchorSpec(_Strict):
    """MediaPipe SSD anchors with fixed size: one grid per stride, `per_cell` anchors per cell."""

    strides: tuple[int, ...]
    per_cell: tuple[int, ...]
    offset: float = 0.5

    @model_validator(mode="after")
    def _same_length(self) -> AnchorSpec:
        if len(self.strides) != len(self.per_cell) or not self.strides:
            raise ValueError("anchors.strides and anchors.per_cell need the same, non-zero length")
        return self


class DetectorSpec(_Strict):
    input_size: int = Field(gt=0)
    normalisation: Literal["minus_one_to_one"]
    anchors: AnchorSpec
    keypoints: int = Field(6, gt=0)
    default_precision: Precision = Field(
        "float32", description="The build `precision = auto` picks, and why is in the manifest."
    )
    licence: str
    description: str = ""


class EmbedderSpec(_Strict):
    """A face-descriptor network fed aligned square chips (see `edge_agent.vision.align`)."""

    input_size: int = Field(gt=0)
    chip_padding: float = Field(ge=0.0, description="dlib get_face_chip padding the network was trained on.")
    input: Literal["rgb_0_255"] = Field(description="What the model's input tensor holds.")
    dimensions: int = Field(gt=0)
    metric: MetricName  # how descriptors are compared: edge_agent.face_metric
    views: Literal["chip", "chip_and_mirror"] = Field(
        "chip",
        description="What a descriptor is: the network's output for the chip, or the mean of its outputs for "
        "the chip and its mirror image (the calibration is made for the one named here).",
    )
    default_precision: Precision = "float32"
    licence: str
    description: str = ""


class LandmarksSpec(_Strict):
    """A landmark model that refines the detector's keypoints for alignment."""

    points: int = Field(gt=0)
    licence: str
    description: str = ""


class FmrThreshold(_Strict):
    """The distance threshold that gives a target false-match rate, with the evidence behind it.

    A pair matches when its distance is < `threshold` (strictly, as in dlib's `< 0.6`).
    `fmr_upper_95` is the one-sided 95% Clopper-Pearson upper bound on the true false-match rate at
    that threshold; `resolved` says whether enough impostor pairs were seen (at least 3 / target)
    for the target to mean much.
    """

    target_fmr: float = Field(gt=0.0, lt=1.0)
    threshold: float = Field(gt=0.0)
    impostor_pairs: int = Field(gt=0)
    false_matches: int = Field(ge=0)
    fmr_upper_95: float = Field(ge=0.0, le=1.0)
    resolved: bool
    genuine_pairs: int = Field(gt=0)
    true_match_rate: float = Field(ge=0.0, le=1.0)


class Calibration(_Strict):
    dataset: str
    pipeline: str
    command: str
    thresholds: tuple[FmrThreshold, ...]

    def check_consistent(self, file_id: str) -> None:
        """Targets distinct, counts possible, and a stricter rate never with a looser threshold."""
        ordered = sorted(self.thresholds, key=lambda t: t.target_fmr)
        targets = [t.target_fmr for t in ordered]
        if len(set(targets)) != len(targets):
            raise ValueError(f"calibration of {file_id}: a target false-match rate appears twice")
        if any(t.false_matches > t.impostor_pairs for t in ordered):
            raise ValueError(f"calibration of {file_id}: more false matches than impostor pairs")
        thresholds = [t.threshold for t in ordered]
        if thresholds != sorted(thresholds):
            raise ValueError(f"calibration of {file_id}: thresholds must grow with the target rate")

    def for_target(self, target_fmr: float) -> FmrThreshold:
        for entry in self.thresholds:
            if abs(entry.target_fmr - target_fmr) <= 1e-12 * max(1.0, target_fmr):
                return entry
        known = ", ".join(f"{t.target_fmr:g}" for t in self.thresholds)
        raise ModelError(f"no calibrated threshold for false-match rate {target_fmr:g} (calibrated: {known})")


Role = Literal["detector", "embedder", "landmarks", "alignment"]


class ModelFile(_Strict):
    id: str
    detector: str | None = None
    embedder: str | None = None
    landmarks: str | None = None
    alignment: str | None = Field(None, description="The landmarks model this alignment fit serves.")
    precision: Precision = "float32"
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(gt=0)
    origin: Origin
    recipe: str = Field("", description="How the file was made from its origin, if it was.")
    built_with: dict[str, str] = Field(
        default_factory=dict,
        description="Versions of the tools that built the file (package -> version), for a byte-for-byte "
        "rebuild (tools/build_models.py --check compares them).",
    )

    @model_validator(mode="after")
    def _one_role(self) -> ModelFile:
        roles = (self.detector, self.embedder, self.landmarks, self.alignment)
        if sum(name is not None for name in roles) != 1:
            raise ValueError(
                f"file {self.file} must name exactly one of detector, embedder, landmarks, alignment"
            )
        return self

    @property
    def role(self) -> tuple[Role, str]:
        if self.detector is not None:
            return "detector", self.detector
        if self.embedder is not None:
            return "embedder", self.embedder
        if self.landmarks is not None:
            return "landmarks", self.landmarks
        assert self.alignment is not None
        return "alignment", self.alignment


class Manifest(_Strict):
    schema_version: Literal[1] = 1
    detectors: dict[str, DetectorSpec]
    embedders: dict[str, EmbedderSpec] = Field(default_factory=dict)
    landmarks: dict[str, LandmarksSpec] = Field(default_factory=dict)
    files: list[ModelFile]
    calibration: dict[str, Calibration] = Field(
        default_factory=dict, description="Match thresholds per embedder file id (tools/calibrate.py)."
    )

    @model_validator(mode="after")
    def _files_name_known_models(self) -> Manifest:
        for entry in self.files:
            role, name = entry.role
            names: dict[Role, set[str]] = {
                "detector": set(self.detectors),
                "embedder": set(self.embedders),
                "landmarks": set(self.landmarks),
                "alignment": set(self.landmarks),
            }
            if name not in names[role]:
                raise ValueError(f"file {entry.file} names unknown {role} {name!r}")
        ids = [entry.id for entry in self.files]
        if len(set(ids)) != len(ids):
            raise ValueError(f"file ids must be unique: {sorted({i for i in ids if ids.count(i) > 1})}")
        builds = [(entry.role, entry.precision) for entry in self.files]
        if len(set(builds)) != len(builds):
            raise ValueError("two files share one model and precision")
        embedders = {entry.id for entry in self.files if entry.embedder is not None}
        for file_id, calibration in self.calibration.items():
            if file_id not in ids:
                raise ValueError(f"calibration for unknown file id {file_id!r}")
            if file_id not in embedders:
                raise ValueError(f"calibration for {file_id!r}, which is not an embedder")
            calibration.check_consistent(file_id)
        return self


def bundled_models_dir() -> Path:
    """The models shipped with the package (wheel install) or the repository's `models/`."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "_models", package_dir.parent / "models"):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    raise ModelError(
        f"no bundled models found (looked for {MANIFEST_NAME} in {package_dir / '_models'} "
        f"and {package_dir.parent / 'models'}); set models_dir in the config"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelCatalog:
    """The manifest of one models folder, with lookups that fail with a clear `ModelError`."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest

    @classmethod
    def load(cls, root: Path | None = None) -> ModelCatalog:
        folder = root if root is not None else bundled_models_dir()
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise ModelError(f"model manifest not found: {path}")
        try:
            manifest = Manifest.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"model manifest {path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ModelError(f"model manifest {path} cannot be read: {exc.strerror}") from None
        except ValidationError as exc:
            raise ModelError(f"model manifest {path}: {describe_validation_error(exc)}") from None
        return cls(folder, manifest)

    def detector(self, name: str, precision: Precision | Literal["auto"]) -> tuple[DetectorSpec, ModelFile]:
        spec = self._spec("detector", self.manifest.detectors, name)
        return spec, self._build(
            "detector", name, spec.default_precision if precision == "auto" else precision
        )

    def embedder(self, name: str, precision: Precision | Literal["auto"]) -> tuple[EmbedderSpec, ModelFile]:
        spec = self._spec("embedder", self.manifest.embedders, name)
        return spec, self._build(
            "embedder", name, spec.default_precision if precision == "auto" else precision
        )

    def file_by_id(self, file_id: str) -> ModelFile:
        for entry in self.manifest.files:
            if entry.id == file_id:
                return entry
        raise ModelError(f"no file with id {file_id!r} in {self.root / MANIFEST_NAME}")

    def calibration_for(self, entry: ModelFile) -> Calibration:
        calibration = self.manifest.calibration.get(entry.id)
        if calibration is None:
            raise ModelError(f"{entry.file} has no calibration in the manifest; run tools/calibrate.py")
        return calibration

    def _spec(self, role: Role, specs: Mapping[str, SpecT], name: str) -> SpecT:
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise ModelError(f"unknown {role} {name!r}; the manifest has: {known}")
        return spec

    def _build(self, role: Role, name: str, precision: Precision) -> ModelFile:
        candidates = [e for e in self.manifest.files if e.role == (role, name)]
        for entry in candidates:
            if entry.precision == precision:
                return entry
        have = sorted(e.precision for e in candidates)
        raise ModelError(
            f"no {precision} build of {role} {name!r} in {self.root / MANIFEST_NAME} "
            f"(available: {', '.join(have) or 'none'})"
        )

    def path_of(self, entry: ModelFile) -> Path:
        return self.root / entry.file

    def verified_path(self, entry: ModelFile) -> Path:
        """The file of `entry` after checking its sha256 against the manifest: what the agent loads is
        what its events name (`Models.detector_sha256` / `embedder_sha256`)."""
        path = self.path_of(entry)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        actual = sha256_of(path)
        if actual != entry.sha256:
            raise ModelError(f"{path}: sha256 {actual} does not match the manifest ({entry.sha256})")
        return path

    def verify(self) -> list[str]:
        """Problems with the files on disk (missing, wrong hash); empty when all is well."""
        problems = []
        for entry in self.manifest.files:
            path = self.path_of(entry)
            if not path.is_file():
                problems.append(f"{entry.file}: missing")
            elif (actual := sha256_of(path)) != entry.sha256:
                problems.append(f"{entry.file}: sha256 {actual} != manifest {entry.sha256}")
        return problems

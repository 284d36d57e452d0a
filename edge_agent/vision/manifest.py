"""`models/manifest.toml`: which model files exist, where they came from, and how to feed them.

The manifest is the single description of every model: the code reads input sizes, normalisation and
anchor layouts from it rather than hard-coding them, so a rebuilt or replaced model is a manifest edit.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_agent.config import describe_validation_error
from edge_agent.errors import ModelError

MANIFEST_NAME = "manifest.toml"
Precision = Literal["float32", "fp16", "dyn8", "int8"]


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


class ModelFile(_Strict):
    id: str
    detector: str
    precision: Precision
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(gt=0)
    origin: Origin
    recipe: str = Field("", description="How the file was made from its origin, if it was.")


class Manifest(_Strict):
    schema_version: Literal[1] = 1
    detectors: dict[str, DetectorSpec]
    files: list[ModelFile]

    @model_validator(mode="after")
    def _files_name_known_detectors(self) -> Manifest:
        for entry in self.files:
            if entry.detector not in self.detectors:
                raise ValueError(f"file {entry.file} names unknown detector {entry.detector!r}")
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
        spec = self.manifest.detectors.get(name)
        if spec is None:
            known = ", ".join(sorted(self.manifest.detectors))
            raise ModelError(f"unknown detector {name!r}; the manifest has: {known}")
        if precision == "auto":
            precision = spec.default_precision
        for entry in self.manifest.files:
            if entry.detector == name and entry.precision == precision:
                return spec, entry
        have = sorted(e.precision for e in self.manifest.files if e.detector == name)
        raise ModelError(
            f"no {precision} build of detector {name!r} in {self.root / MANIFEST_NAME} "
            f"(available: {', '.join(have) or 'none'})"
        )

    def path_of(self, entry: ModelFile) -> Path:
        return self.root / entry.file

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

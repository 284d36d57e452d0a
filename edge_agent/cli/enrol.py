"""The photos of one `edge-agent watchlist enroll`: every photo is looked at before the verdict, so one run
reports every bad photo (unreadable, no face, several faces, low quality, someone else), and the caller
writes all of them or none. Repeated photos (same sha256) are skipped with a note."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edge_agent.errors import EdgeAgentError, MediaError
from edge_agent.watchlist.enrol_checks import ImpostorBound, duplicates, far_faces
from edge_agent.watchlist.records import NewTemplate

if TYPE_CHECKING:
    from edge_agent.vision.faces import FacePipeline


@dataclass
class Batch:
    """What the photos of one enrolment gave: templates to write, one line per bad photo, and notes."""

    templates: list[NewTemplate] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)  # the photo of each template
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def refusal(self, photos: int) -> str:
        """The one-line error for a refused batch (the photos are listed before it when there are many)."""
        if len(self.problems) == 1:
            return f"{self.problems[0]}; nothing enrolled"
        return f"{len(self.problems)} of {photos} photos refused (listed above); nothing enrolled"


def impostor_bound(pipeline: FacePipeline) -> ImpostorBound:
    """The embedder's threshold at its loosest calibrated false-match rate (see `enrol_checks`)."""
    calibration = pipeline.embedder.calibration
    if calibration is None or not calibration.thresholds:
        raise EdgeAgentError(f"{pipeline.embedder.model.file} has no calibration: cannot check enrolments")
    loosest = max(calibration.thresholds, key=lambda t: t.target_fmr)
    return ImpostorBound(loosest.threshold, loosest.target_fmr)


def _as_they_are(photos: Sequence[Path]) -> Iterable[Path]:
    return photos


def read_batch(
    photos: Sequence[Path],
    pipeline: FacePipeline,
    face: Literal["largest"] | None,
    force: bool,
    each: Callable[[Sequence[Path]], Iterable[Path]] = _as_they_are,
) -> Batch:
    """Describes every photo, then checks that their faces can be one person; `force` lets faces
    beyond the impostor bound through (with a note), and nothing else. The photos are gone through as
    `each` yields them (the CLI's progress bar)."""
    batch = Batch()
    digests = [_digest(photo) for photo in photos]
    repeated = duplicates([d or f"unreadable {i}" for i, d in enumerate(digests)])
    for index, photo in enumerate(each(photos)):
        if index in repeated:
            first = photos[repeated[index]]
            batch.notes.append(f"{photo}: the same photo as {first} (sha256 {digests[index]}); skipped")
            continue
        try:
            template = _template(photo, pipeline, face, digests[index])
        except MediaError as exc:
            batch.problems.append(str(exc))
            continue
        batch.templates.append(template)
        batch.paths.append(photo)
    _check_one_person(batch, pipeline, force)
    return batch


def _digest(photo: Path) -> str | None:
    """The photo's sha256, or None when it is not a regular file that can be read (`read_image` then
    says why; a FIFO or device is never opened here)."""
    import hashlib

    try:
        if not photo.is_file():
            return None
        with photo.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def _template(
    photo: Path, pipeline: FacePipeline, face: Literal["largest"] | None, digest: str | None
) -> NewTemplate:
    """The template of the photo's face, or `MediaError` saying why the photo cannot give one."""
    from edge_agent.capture.media import read_image
    from edge_agent.vision.pick import pick_detection

    image = read_image(photo)
    if digest is None:  # readable now but not a moment ago: say so rather than guess a hash
        raise MediaError(f"{photo}: changed while it was read")
    faces = pipeline.detector.detect_photo(image)
    if not faces:
        raise MediaError(f"{photo}: no face found")
    if len(faces) > 1 and face != "largest":
        raise MediaError(f"{photo}: {len(faces)} faces found; crop the photo or pass --face largest")
    # only the face enrolled is aligned and embedded
    described = pipeline.describe_face(image, pick_detection(faces, image, "largest"))
    failures = described.quality.failures(pipeline.quality)
    if failures:
        raise MediaError(f"{photo}: face quality too low ({'; '.join(failures)})")
    return NewTemplate(described.descriptor, described.quality.score, digest)


def _check_one_person(batch: Batch, pipeline: FacePipeline, force: bool) -> None:
    bound = impostor_bound(pipeline)
    for far in far_faces([t.embedding for t in batch.templates], bound, pipeline.embedder.metric):
        line = (
            f"{batch.paths[far.index]}: its face is {far.distance:.3f} from the face in "
            f"{batch.paths[far.nearest]}, not below {bound.describe()}: another person?"
        )
        if force:
            batch.notes.append(f"{line} enrolled anyway (--force)")
        else:
            batch.problems.append(f"{line} (--force to enrol anyway)")

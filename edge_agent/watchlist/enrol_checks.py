"""Checks on one enrolment batch before anything is written: the same photo twice, and faces that cannot
all be one person.

"Cannot be one person" uses the embedder's calibrated impostor bound, passed in by the caller (this
package knows no model): the distance threshold at the loosest calibrated false-match rate, which is
0.62 for dlib's ResNet at FMR 1e-2 (`models/manifest.toml`). On lfw-devtrain 99.2% of same-person pairs
are closer than it and 99% of different-person pairs are not, so a face at or beyond it from every
other face of the batch is far more likely someone else than a bad photo of the subject.

The batch's faces are grouped by single linkage: two faces closer than the bound are one group, and so
are faces joined through a chain of such pairs. One group is one person. With several groups, every
face outside the largest group is far (with a tie for the largest, no group is the subject, so every
face is far), and what is reported for it is the distance to the nearest face outside its own group,
which is at or beyond the bound by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.face_metric import FaceMetric, Vectors


@dataclass(frozen=True)
class ImpostorBound:
    """A distance at or beyond which two faces are taken to be different people."""

    threshold: float
    target_fmr: float  # the calibrated false-match rate the threshold was taken at, for the message

    def describe(self) -> str:
        return (
            f"the impostor bound {self.threshold:.3f} (the calibrated threshold at FMR {self.target_fmr:g})"
        )


@dataclass(frozen=True)
class FarFace:
    """A face of the batch too far from the batch's subject: its position and its distance."""

    index: int
    distance: float  # to the nearest face outside its own group
    nearest: int  # the index of that face


def duplicates(digests: Sequence[str]) -> dict[int, int]:
    """Each later position whose digest appeared before, mapped to the position it first appeared at."""
    first: dict[str, int] = {}
    repeated: dict[int, int] = {}
    for index, digest in enumerate(digests):
        if digest in first:
            repeated[index] = first[digest]
        else:
            first[digest] = index
    return repeated


def far_faces(descriptors: Sequence[Vectors], bound: ImpostorBound, metric: FaceMetric) -> list[FarFace]:
    """The faces of the batch that are not in its one largest group (see the module's notes), in order;
    empty when all faces can be one person."""
    count = len(descriptors)
    distances = [[metric.distance(a, b) for b in descriptors] for a in descriptors]
    groups = _groups(distances, bound.threshold)
    sizes = [groups.count(group) for group in groups]
    largest = max(sizes, default=0)
    main = {groups[i] for i in range(count) if sizes[i] == largest}
    keep = next(iter(main)) if len(main) == 1 else None
    far = []
    for index in range(count):
        if groups[index] == keep:
            continue
        outside = [j for j in range(count) if groups[j] != groups[index]]
        if not outside:
            continue  # one group only: nothing is far
        nearest = min(outside, key=lambda j: distances[index][j])
        far.append(FarFace(index, distances[index][nearest], nearest))
    return far


def _groups(distances: list[list[float]], threshold: float) -> list[int]:
    """A group label per face: faces linked by a chain of distances below `threshold` share one."""
    labels = list(range(len(distances)))

    def root(i: int) -> int:
        while labels[i] != i:
            i = labels[i]
        return i

    for i, row in enumerate(distances):
        for j in range(i + 1, len(row)):
            if row[j] < threshold:
                labels[root(j)] = root(i)
    return [root(i) for i in range(len(distances))]

"""Aggregate counts of a run, for health and transparency reports: nothing per person."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.vision.quality import REASONS, Rejection


@dataclass
class RunCounters:
    """Aggregate counts for health and transparency reports; nothing per person.

    `rejected_<reason>`: tracked faces that a live quality gate turned away, once per face and frame,
    under the first gate it failed (`edge_agent.vision.quality.REASONS` order), so the five add up to the
    faces refused. `splits`: tracks whose face turned out to be another person's (`engine.identity`)."""

    frames: int = 0
    faces_seen: int = 0
    tracks: int = 0
    embeddings: int = 0
    matches: int = 0
    splits: int = 0
    rejected_size: int = 0
    rejected_truncated: int = 0
    rejected_pose: int = 0
    rejected_blur: int = 0
    rejected_brightness: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))

    def rejected(self, rejection: Rejection) -> None:
        name = f"rejected_{rejection.reason}"
        if rejection.reason not in REASONS or not hasattr(self, name):
            raise ValueError(f"unknown gate reason {rejection.reason!r}")
        setattr(self, name, getattr(self, name) + 1)

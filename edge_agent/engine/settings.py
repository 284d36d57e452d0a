"""The engine's sections: `[tracking]` (detections into tracks) and `[decision]` (the k-of-n vote).

A base module (pydantic and `edge_agent.section` only), composed by `config.py`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from edge_agent.section import Section


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

"""The engine's sections: `[tracking]` (detections into tracks) and `[decision]` (the k-of-n vote).

A base module (pydantic, `edge_agent.section` and the vision settings only), composed by `config.py`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from edge_agent.section import Section
from edge_agent.vision.settings import TargetFmr


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
        0.1,
        ge=0.0,
        le=60.0,
        description="Least frame time between two looks (align + embed) at a track still being identified.",
    )
    recheck_interval_s: float = Field(
        0.4,
        ge=0.0,
        le=60.0,
        description="Least frame time between two looks at a settled track (decided, or n looks without a "
        "match), to catch another person taking its place.",
    )
    looks_per_frame: int = Field(
        4,
        ge=1,
        le=64,
        description="Most faces aligned and embedded per frame (tracks being identified first, then those "
        "waiting longest): the CPU budget of a frame.",
    )
    split_fmr: TargetFmr = Field(
        1e-2,
        description="A look farther than the threshold calibrated for this false-match rate from each of "
        "its track's recent looks is another person: the track is split and the face searched anew.",
    )
    split_hold_s: float = Field(
        0.5,
        ge=0.0,
        le=10.0,
        description="After a split, looks only confirm it for this long before they count in the vote (at a "
        "hand-over both faces share the box for a moment).",
    )
    max_tracks: int = Field(
        32, ge=1, le=1000, description="Most tracks followed at once (largest faces win)."
    )


class DecisionSettings(Section):
    """The temporal vote: a match needs k of a track's last n embeddings to agree."""

    k: int = Field(3, ge=1, le=100, description="Embeddings that must agree on the same subject.")
    n: int = Field(5, ge=1, le=100, description="How many of a track's latest embeddings are counted.")
    single_look_fmr: TargetFmr | None = Field(
        1e-5,
        description="One look under the threshold calibrated for this stricter false-match rate decides at "
        "once (the event then states this rate); none, or a rate not stricter than the target, needs k of n.",
    )
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

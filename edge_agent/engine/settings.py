"""The engine's sections: `[tracking]` (detections into tracks) and `[decision]` (the k-of-n vote).

A base module (pydantic, `edge_agent.section` and the vision settings only), composed by `config.py`.
"""

from __future__ import annotations

from typing import Literal

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
    """The operating point (a false-alert budget, or a fixed rate) and the temporal vote: a match needs k
    of a track's last n embeddings to agree, or one much stricter look."""

    operating_point: Literal["budget", "target_fmr"] = Field(
        "budget",
        description='"budget": the threshold follows the watchlist\'s size to keep false_alerts_per_day '
        '(engine/budget.py); "target_fmr": the fixed embedder.target_fmr, whatever the size.',
    )
    false_alerts_per_day: float = Field(
        1.0,
        gt=0.0,
        le=1e6,
        description="The budget: false alerts a day this camera may raise, at the 95 % upper bound of the "
        "calibrated false-match rate. The loosest calibrated point within it is used.",
    )
    faces_per_day: float = Field(
        1000.0,
        gt=0.0,
        le=1e9,
        description="Strangers' tracks this camera sees a day (people passing, counted once per pass); "
        "health shows the rate the device measures (tracks_per_day_measured) to compare with.",
    )
    track_factor: float = Field(
        1.0,
        gt=0.0,
        le=1000.0,
        description="False alerts per stranger's track, per template and unit of false-match rate: what the "
        "vote makes of a track's looks. Measured by `edge-agent bench false-alerts` on lfw-devtrain "
        "stranger tracks (docs/benchmarks.md); measure it on your own scene the same way.",
    )
    k: int = Field(3, ge=1, le=100, description="Embeddings that must agree on the same subject.")
    n: int = Field(5, ge=1, le=100, description="How many of a track's latest embeddings are counted.")
    single_look_fmr: TargetFmr | None = Field(
        1e-5,
        description='With operating_point = "target_fmr": one look under the threshold calibrated for this '
        "stricter false-match rate decides at once (the event then states this rate); none, or a rate not "
        "stricter than the target, needs k of n. Under a budget a single look decides at the rate ten times "
        "stricter than the operating point.",
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

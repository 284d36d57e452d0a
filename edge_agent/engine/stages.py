"""The interfaces between the live pipeline's stages, so that each can be swapped for another file.

`LivePipeline` calls a tracker (`Tracker`), the identity stage (`engine.identity`, which needs only
`SplittableTracker` and `VoteState` of the others), a decision stage (`DecisionStage`) and an event sink
(`EventSink`). The project's implementations are `engine.tracking.Tracker`, `engine.vote.TemporalVote`
and the events package's `EventStore`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from edge_agent.events.schema import MatchEvent
from edge_agent.types import Box, Candidate, Face, TrackedFace
from edge_agent.vision.manifest import FmrThreshold

T = TypeVar("T")

if TYPE_CHECKING:
    from edge_agent.engine.vote import Decision


class SplittableTracker(Protocol):
    def split(self, track_id: int) -> int:
        """End `track_id`'s identity: the live track goes on under a new id (returned), as a new person."""
        ...


class Tracker(SplittableTracker, Protocol):
    """Detections → tracks: the same face across frames keeps one track id."""

    @property
    def started(self) -> int:
        """Tracks ever started."""
        ...

    def update(self, faces: Sequence[Face], at: datetime) -> list[TrackedFace]:
        """The faces of the frame taken `at`, each with its track (faces left without one are dropped)."""
        ...

    def ended(self) -> list[int]:
        """Ids of the tracks that ended in the last `update`."""
        ...

    def boxes(self) -> dict[int, Box]:
        """Where each live track was last seen."""
        ...


class VoteState(Protocol):
    def settled(self, track_id: int) -> bool:
        """Whether the track needs no more looks to decide (it may still be re-checked)."""
        ...

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop all state of these tracks."""
        ...


class DecisionStage(VoteState, Protocol[T]):
    """Turns a track's looks (candidates from the watchlist) into at most one decision per subject."""

    def add(self, candidate: Candidate, item: T) -> Decision[T] | None:
        """Count one look; a decision when the evidence is enough."""
        ...

    def set_points(self, point: FmrThreshold, single_look: FmrThreshold | None) -> None:
        """Use new calibrated operating points from the next look on."""
        ...


class EventSink(Protocol):
    """Where a decided match goes: stored (or held while storage is failing) before it is published."""

    def depth(self) -> int:
        """Messages waiting to be sent."""
        ...

    def commit_or_hold(
        self, event: MatchEvent, topic: str, embeddings: npt.NDArray[np.float32], /
    ) -> object: ...

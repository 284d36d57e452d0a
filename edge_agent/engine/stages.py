"""The small interfaces the live pipeline is wired from, so a stage can be swapped without touching it.

Each is what `LivePipeline` calls, nothing more: a detector finds faces in a frame, a sink keeps a decided
match durable before anything is sent. The project's implementations are the vision package's
`FaceDetector` and the events package's `EventStore`; the tracker, identity stage and vote are this
package's own classes (`tracking`, `identity`, `vote`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.events.schema import MatchEvent
from edge_agent.types import Face, RGBImage


class Detector(Protocol):
    """Faces in one picture: box, keypoints and score each."""

    def detect(self, image: RGBImage, /) -> Sequence[Face]: ...


class EventSink(Protocol):
    """Where a decided match goes: stored (or held while storage is failing) before it is published."""

    def depth(self) -> int:
        """Messages waiting to be sent."""
        ...

    def commit_or_hold(
        self, event: MatchEvent, topic: str, embeddings: npt.NDArray[np.float32], /
    ) -> object: ...

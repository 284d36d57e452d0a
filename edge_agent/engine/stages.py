"""The interface of the stage the live pipeline hands decided matches to, so it can be swapped.

It is what `LivePipeline` calls, nothing more: a sink keeps a decided match durable before anything is
sent. The project's implementation is the events package's `EventStore`; the tracker, identity stage and
vote are this package's own classes (`tracking`, `identity`, `vote`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.events.schema import MatchEvent


class EventSink(Protocol):
    """Where a decided match goes: stored (or held while storage is failing) before it is published."""

    def depth(self) -> int:
        """Messages waiting to be sent."""
        ...

    def commit_or_hold(
        self, event: MatchEvent, topic: str, embeddings: npt.NDArray[np.float32], /
    ) -> object: ...

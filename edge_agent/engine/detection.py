"""Which detection windows to search in a frame: the whole frame always, the tiles around faces still
being identified always, and the rest of the tiles in turn.

The detector's plan (`FaceDetector.plan`) covers the frame with enough tiles to find a `min_face_px` face
anywhere; searching all of them in every frame costs one model run per tile (9 on 720p, 19 on 1080p at
40 px). A face that is already tracked and settled (decided, or judged nobody on the list) only has to be
seen often enough to keep its track (`tracking.max_missed_s`), and a new face has to be found soon after
it appears. So each frame searches:

- the whole frame (large faces, one run);
- for each live track not yet settled, the finest tile that holds its last box whole (widest margin
  among those);
- the tiles of this frame's turn: every `detector.sweep_frames`-th tile, so each tile is searched at least
  once in that many frames (a new face waits at most that long, a settled track is refreshed as often).

With tiles given by hand (`detector.tiles = [cols, rows]`) every window is searched in every frame: their
overlap is not planned for the faces, so a face may lie whole in one tile only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from edge_agent.types import Box
from edge_agent.vision.settings import DetectorSettings

Window = tuple[int, int, int, int]


class DetectionSchedule:
    """Chooses, frame after frame, the windows of a detector's plan to search (module docstring)."""

    def __init__(self, settings: DetectorSettings, plan: Callable[[int, int], list[Window]]) -> None:
        self.settings = settings
        self._plan = plan
        self._plans: dict[tuple[int, int], list[Window]] = {}
        self._turn = 0

    def windows(self, width: int, height: int, unsettled: Iterable[Box]) -> list[Window]:
        """The windows to search in the next frame of this size, around the `unsettled` tracks' boxes."""
        plan = self._plans.get((width, height))
        if plan is None:
            plan = self._plans[(width, height)] = self._plan(width, height)
        if self.settings.tiles != "auto":
            return plan  # tiles given by hand: their overlap may cut a face, so all of them, every frame
        region, tiles = plan[0], plan[1:]
        every = self.settings.sweep_frames
        turn, self._turn = self._turn % every, self._turn + 1
        chosen = {index for index in range(len(tiles)) if index % every == turn}
        for box in unsettled:
            best = _holding_tile(tiles, box)
            if best is not None:
                chosen.add(best)
        return [region] + [tiles[index] for index in sorted(chosen)]


def _holding_tile(tiles: list[Window], box: Box) -> int | None:
    """The finest tile that holds `box` whole (the plan's finest level zooms the most, and a level's
    tiles are planned to find faces down to its smallest), with the widest margin among those; where no
    tile holds it whole, the one with the widest margin. None: no tiles."""
    best, best_key = None, (True, 0.0, 0.0)
    for index, (x0, y0, x1, y1) in enumerate(tiles):
        margin = min(box.x0 - x0, box.y0 - y0, x1 - box.x1, y1 - box.y1)
        whole = margin >= 0
        key = (not whole, float(max(x1 - x0, y1 - y0)) if whole else 0.0, -margin)
        if best is None or key < best_key:
            best, best_key = index, key
    return best

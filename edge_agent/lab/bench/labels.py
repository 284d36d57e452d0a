"""Hand-labelled face boxes in dlib's imglab XML, and scoring detections against them.

imglab writes `<image file=...><box top= left= width= height= [ignore='1']/></image>`. A box marked
`ignore` is neither a miss when undetected nor a false alarm when detected.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.errors import MediaError
from edge_agent.types import Box


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    boxes: tuple[Box, ...]
    ignored: tuple[Box, ...] = ()


@dataclass(frozen=True)
class MatchCounts:
    true_positives: int
    false_positives: int
    false_negatives: int

    def __add__(self, other: MatchCounts) -> MatchCounts:
        return MatchCounts(
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.false_negatives + other.false_negatives,
        )

    @property
    def recall(self) -> float:
        labelled = self.true_positives + self.false_negatives
        return self.true_positives / labelled if labelled else 1.0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0


NO_MATCHES = MatchCounts(0, 0, 0)


def load_imglab(xml_path: Path) -> list[LabelledImage]:
    """The labelled images of one imglab file, paths resolved beside it."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise MediaError(f"{xml_path}: not a readable imglab XML file ({exc})") from None
    images = []
    for node in root.iter("image"):
        boxes: list[Box] = []
        ignored: list[Box] = []
        for box in node.iter("box"):
            left, top = float(box.get("left", 0)), float(box.get("top", 0))
            width, height = float(box.get("width", 0)), float(box.get("height", 0))
            target = ignored if box.get("ignore") == "1" else boxes
            target.append(Box(left, top, left + width, top + height))
        images.append(LabelledImage(xml_path.parent / node.get("file", ""), tuple(boxes), tuple(ignored)))
    return images


def match_detections(detections: Sequence[Box], labels: LabelledImage, min_iou: float = 0.3) -> MatchCounts:
    """Greedy one-to-one matching in the order given (best score first) at IoU >= `min_iou`."""
    unmatched = list(labels.boxes)
    true_positives = false_positives = 0
    for detection in detections:
        best = max(unmatched, key=detection.iou, default=None)
        if best is not None and detection.iou(best) >= min_iou:
            unmatched.remove(best)
            true_positives += 1
        elif not any(detection.iou(box) >= min_iou for box in labels.ignored):
            false_positives += 1
    return MatchCounts(true_positives, false_positives, len(unmatched))

#!/usr/bin/env python3
"""Measure how small a face BlazeFace finds, in model input pixels: where `MIN_INPUT_FACE_PX` comes from.

The detection plan (`edge_agent.vision.letterbox.plan_grid`) sizes its tiles so that the smallest face to
find (`detector.min_face_px`) fills `MIN_INPUT_FACE_PX` model pixels. This prints, for each detector model,
the share of labelled faces found against the width the face has in the model's input.

Procedure: every `EVERY`-th frame of the shared scene clips (`video/scenes/*.mp4`, real LFW photos moved
through a scene, every face labelled in `CLIP.truth.csv`); around each labelled face a square window of each
side in `SIDES` (clamped to the frame), run through the detector alone (one window: letterbox to the model
input, no tiles); a face counts as found when a detection overlaps its label at IoU >= 0.3. The face's
width in the model input is its width times input size / window side, binned by 4 px. Rerun it after a
change of detector model or build:

    .venv/bin/python tools/measure_detector_scale.py --faces ../shared/faces
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from edge_agent.lab.bench.detect_scene import truth_boxes
from edge_agent.types import Box
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.settings import DetectorSettings, RuntimeSettings

EVERY = 15
SIDES = (1280, 900, 640, 450, 320)
BIN_PX = 4


def window_around(box: Box, side: int, width: int, height: int) -> tuple[int, int, int, int]:
    """A square of `side` pixels (at most the frame) centred on `box`, moved inside the frame."""
    w, h = min(side, width), min(side, height)
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    x0 = int(max(0, min(width - w, cx - w / 2)))
    y0 = int(max(0, min(height - h, cy - h / 2)))
    return x0, y0, x0 + w, y0 + h


def measure(detector: FaceDetector, clips: list[Path]) -> dict[int, list[int]]:
    """Found and labelled counts by binned face width in model input pixels."""
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    size = detector.spec.input_size
    for clip in clips:
        truth = truth_boxes(clip)
        capture = cv2.VideoCapture(str(clip))
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % EVERY == 0:
                image = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
                height, width = image.shape[:2]
                for box in truth.get(index, []):
                    for side in SIDES:
                        window = window_around(box, side, width, height)
                        x0, y0, x1, y1 = window
                        found = detector.detect_in(image, [window])
                        input_px = box.width * size / max(x1 - x0, y1 - y0)
                        key = int(input_px // BIN_PX) * BIN_PX
                        counts[key][1] += 1
                        if any(face.box.iou(box) >= 0.3 for face in found):
                            counts[key][0] += 1
            index += 1
        capture.release()
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces"))
    args = parser.parse_args()
    clips = sorted((args.faces / "video" / "scenes").glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no scene clips under {args.faces / 'video' / 'scenes'}")
    for model in ("full_range", "short_range"):
        detector = FaceDetector.from_settings(DetectorSettings(model=model, min_face_px=8), RuntimeSettings())
        print(f"{detector.model_id} (input {detector.spec.input_size} px)")
        print("| face width in the input (px) | labelled | found | share |")
        print("|---:|---:|---:|---:|")
        for key, (found, total) in sorted(measure(detector, clips).items()):
            print(f"| {key}-{key + BIN_PX - 1} | {total} | {found} | {found / total:.2f} |")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

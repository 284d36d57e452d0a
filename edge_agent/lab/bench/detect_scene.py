"""`edge-agent bench detect --scene`: detection recall and cost on a labelled scene clip, per configuration.

A shared scene clip (`video/scenes/CLIP.mp4` of the shared faces) comes with `CLIP.mp4.truth.csv`: the box
of every face of every frame. Every `every`-th frame is decoded once and every configuration is scored on
those same pictures, in one process, at IoU >= 0.3:

- the whole frame alone (`tiles = (1, 1)`, the old default);
- the default plan (`tiles = "auto"`): every window of `FaceDetector.plan` in every frame;
- the live agent's schedule (`engine.detection.DetectionSchedule`) run over every consecutive frame of the
  clip, with the faces found in the previous frame as the unsettled tracks (the costliest case: as if no
  face were identified yet); scored on the same frames, timed over all of them;
- dlib's HOG detector (upsample 1), where dlib is installed.

Timing is one pass after one warm-up frame: a frame costs tens to hundreds of milliseconds here, and a
pass already averages over tens of frames. Decoding is never timed.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.capture.media import read_frames
from edge_agent.engine.detection import DetectionSchedule
from edge_agent.errors import EdgeAgentError, MediaError
from edge_agent.lab.bench.detect import DLIB_UPSAMPLE, MIN_IOU
from edge_agent.lab.bench.labels import NO_MATCHES, LabelledImage, MatchCounts, match_detections
from edge_agent.types import Box, Frame, RGBImage
from edge_agent.vision.detect import FaceDetector
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.settings import DetectorSettings, RuntimeSettings

SCENE_EVERY = 10
DEFAULT_SCENE = Path("video") / "scenes" / "crowd.mp4"
WHOLE_FRAME = "whole frame (tiles 1x1)"
DEFAULT_PLAN = "default (tiles auto, every window)"


@dataclass(frozen=True)
class SceneFrame:
    index: int
    image: RGBImage
    labels: LabelledImage


@dataclass(frozen=True)
class SceneClip:
    """The scored frames of one clip (every `every`-th, decoded once) with their truth boxes."""

    path: Path
    every: int
    frames: tuple[SceneFrame, ...]

    @property
    def faces(self) -> int:
        return sum(len(frame.labels.boxes) for frame in self.frames)

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.frames[0].image.shape[:2]
        return width, height


@dataclass(frozen=True)
class SceneResult:
    name: str
    ms_per_frame: float
    counts: MatchCounts
    windows_per_frame: float | None  # model runs per frame; None for dlib
    timed_frames: int


def default_scene(faces_dir: Path) -> Path | None:
    """`video/scenes/crowd.mp4` under the shared faces, where it is there."""
    clip = faces_dir / DEFAULT_SCENE
    return clip if clip.is_file() else None


def truth_boxes(clip: Path) -> dict[int, tuple[Box, ...]]:
    """Frame index -> the box of every face in it, from `CLIP.truth.csv` beside the clip."""
    truth = clip.with_name(clip.name + ".truth.csv")
    found: defaultdict[int, list[Box]] = defaultdict(list)
    try:
        with truth.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                found[int(row["frame"])].append(Box(*(float(row[k]) for k in ("x0", "y0", "x1", "y1"))))
    except OSError as exc:
        raise MediaError(f"{truth}: the truth of {clip.name} is not readable ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise MediaError(f"{truth}: not a frame,person,x0,y0,x1,y1 table ({exc!r})") from None
    return {index: tuple(boxes) for index, boxes in found.items()}


def load_scene(clip: Path, every: int = SCENE_EVERY) -> SceneClip:
    """Every `every`-th frame of `clip`, decoded, with the truth boxes of each (none: no face in it)."""
    truth = truth_boxes(clip)
    frames = tuple(
        SceneFrame(frame.index, frame.image, LabelledImage(clip, truth.get(frame.index, ())))
        for frame in read_frames(clip, every)
    )
    if not frames:
        raise EdgeAgentError(f"{clip}: no frame decoded")
    return SceneClip(clip, every, frames)


def _score(counts: MatchCounts, faces: Iterable[Box], labels: LabelledImage) -> MatchCounts:
    return counts + match_detections(list(faces), labels, MIN_IOU)


def run_planned(
    name: str, settings: DetectorSettings, threads: int, catalog: ModelCatalog, scene: SceneClip
) -> SceneResult:
    """Every window of the detector's plan in every scored frame (`FaceDetector.detect`)."""
    detector = FaceDetector.from_settings(settings, RuntimeSettings(threads=threads), catalog)
    detector.detect(scene.frames[0].image)  # warm-up: the first run allocates
    counts, elapsed = NO_MATCHES, 0.0
    for frame in scene.frames:
        start = time.perf_counter()
        faces = detector.detect(frame.image)
        elapsed += time.perf_counter() - start
        counts = _score(counts, (face.box for face in faces), frame.labels)
    windows = len(detector.plan(*scene.size))
    return SceneResult(name, elapsed * 1000.0 / len(scene.frames), counts, windows, len(scene.frames))


def live_name(settings: DetectorSettings) -> str:
    return f"live schedule (sweep {settings.sweep_frames} frames)"


def run_live_schedule(
    settings: DetectorSettings,
    threads: int,
    catalog: ModelCatalog,
    scene: SceneClip,
    frames: Iterable[Frame] | None = None,
) -> SceneResult:
    """The live agent's window schedule over every consecutive frame (`frames`, default: the whole clip
    decoded again), the previous frame's faces standing for the unsettled tracks; scored on those frames of
    `scene` that come by (all of them, for the whole clip), timed (windows chosen + detection) over all."""
    detector = FaceDetector.from_settings(settings, RuntimeSettings(threads=threads), catalog)
    detector.detect(scene.frames[0].image)  # warm-up, outside the schedule's turns
    schedule = DetectionSchedule(settings, detector.plan)
    labels = {frame.index: frame.labels for frame in scene.frames}
    counts, elapsed, windows, seen = NO_MATCHES, 0.0, 0, 0
    unsettled: list[Box] = []
    scored: set[int] = set()
    for frame in read_frames(scene.path) if frames is None else frames:
        start = time.perf_counter()
        chosen = schedule.windows(frame.image.shape[1], frame.image.shape[0], unsettled)
        faces = detector.detect_in(frame.image, chosen)
        elapsed += time.perf_counter() - start
        unsettled = [face.box for face in faces]
        windows += len(chosen)
        seen += 1
        if frame.index in labels:
            counts = _score(counts, unsettled, labels[frame.index])
            scored.add(frame.index)
    if not seen:
        raise EdgeAgentError(f"{scene.path}: no frame decoded for the live schedule")
    if frames is None and len(scored) < len(labels):
        missing = len(labels) - len(scored)
        raise EdgeAgentError(
            f"{scene.path}: {missing} scored frame(s) not decoded again for the live schedule"
        )
    return SceneResult(live_name(settings), elapsed * 1000.0 / seen, counts, windows / seen, seen)


def run_dlib_hog_scene(scene: SceneClip) -> SceneResult | None:
    """dlib's HOG + linear SVM detector on the scored frames, or None where dlib is not installed."""
    try:
        import dlib
    except ImportError:
        return None
    hog = dlib.get_frontal_face_detector()
    hog(scene.frames[0].image, DLIB_UPSAMPLE)
    counts, elapsed = NO_MATCHES, 0.0
    for frame in scene.frames:
        start = time.perf_counter()
        found = hog(frame.image, DLIB_UPSAMPLE)
        elapsed += time.perf_counter() - start
        boxes = [Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in found]
        counts = _score(counts, boxes, frame.labels)
    name = f"dlib HOG (upsample {DLIB_UPSAMPLE})"
    return SceneResult(name, elapsed * 1000.0 / len(scene.frames), counts, None, len(scene.frames))


@dataclass(frozen=True)
class SceneReport:
    scene: SceneClip
    results: tuple[SceneResult, ...]
    threads: int
    model_id: str  # the detector the default settings run
    clip_frames: int  # every frame of the clip (the live schedule's)


def _no_report(result: SceneResult) -> None:
    pass


def run_scene(
    scene: SceneClip,
    catalog: ModelCatalog,
    threads: int = 1,
    report: Callable[[SceneResult], None] = _no_report,
) -> SceneReport:
    """Every configuration of the module docstring on `scene`; `report` is called as each one ends."""
    cases = [(WHOLE_FRAME, DetectorSettings(tiles=(1, 1))), (DEFAULT_PLAN, DetectorSettings())]
    results = []
    for name, settings in cases:
        results.append(run_planned(name, settings, threads, catalog, scene))
        report(results[-1])
    live = run_live_schedule(DetectorSettings(), threads, catalog, scene)
    results.append(live)
    report(live)
    baseline = run_dlib_hog_scene(scene)
    if baseline is not None:
        results.append(baseline)
        report(baseline)
    defaults = DetectorSettings()
    model_id = catalog.detector(defaults.model, defaults.precision)[1].id
    return SceneReport(scene, tuple(results), threads, model_id, live.timed_frames)


def format_scene_table(report: SceneReport) -> str:
    """A markdown table, with the clip, the frames and labelled faces it was scored on above it."""
    scene, results, clip_frames = report.scene, report.results, report.clip_frames
    width, height = scene.size
    baseline = next((r for r in results if r.windows_per_frame is None), None)
    lines = [
        f"Scene clip: `{scene.path.name}` of the shared faces ({width}x{height}, {clip_frames} frames); "
        f"1 frame in {scene.every} scored: {len(scene.frames)} frames, {scene.faces} labelled faces "
        f"(`{scene.path.name}.truth.csv`); recall and precision at IoU >= {MIN_IOU}. Detector "
        f"`{report.model_id}`, {report.threads} thread(s). ms/frame: one pass over the scored frames "
        f"(the live schedule: over all {clip_frames} frames, each searching the windows the live agent "
        "would, with the faces of the frame before as tracks not yet identified); decoding not timed. "
        "Ratio: dlib HOG's ms/frame over the row's (above 1: faster than dlib).",
        "",
        "| configuration | ms/frame | ratio to dlib HOG | recall | precision | windows per frame |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{baseline.ms_per_frame / r.ms_per_frame:.1f}" if baseline else "n/a"
        windows = "n/a" if r.windows_per_frame is None else f"{r.windows_per_frame:.2f}"
        lines.append(
            f"| {r.name} | {r.ms_per_frame:.2f} | {ratio} | {r.counts.recall:.3f} | "
            f"{r.counts.precision:.3f} | {windows} |"
        )
    if baseline is None:
        lines.append("")
        lines.append("dlib is not installed (it comes with the `dev` extra): no baseline this run.")
    return "\n".join(lines)

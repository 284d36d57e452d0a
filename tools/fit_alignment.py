#!/usr/bin/env python3
"""Fit the bridge from BlazeFace detections to dlib's face alignment; write models/alignment.json.

    .venv/bin/python tools/fit_alignment.py                    # fit, print, write models/alignment.json
    .venv/bin/python tools/fit_alignment.py --dry-run          # fit and print only
    .venv/bin/python tools/fit_alignment.py --write-npz models/shape_predictor_5_face_landmarks.npz

Data: a fixed slice of `lfw-devtrain/img` (sorted paths, every `--step`-th from `--offset`), never
`people/`, `strangers/` or `groups/` (the test sets). A photo is used when dlib's HOG detector
(upsample 1) and BlazeFace both find the face nearest the image centre (LFW's labelled person) and
BlazeFace's box centre lies in dlib's rectangle. dlib (the `dev` extra) is the reference: its
5-point shape predictor on its HOG rectangle gives the landmarks, `get_face_chip_details` the chip.

Two things are fitted (see `edge_agent.vision.align`):

1. `landmark_rect`: least squares from BlazeFace's box and keypoints (`rect_features`) to the
   rectangle dlib's HOG detector drew (centre, width, height in box widths). The shape predictor
   was trained on HOG rectangles, so this is the rectangle to give it.
2. `keypoint_template`: where BlazeFace's eyes, nose tip and mouth centre sit in dlib's 150x150
   chip (padding 0.25). Starting from their mean position, Gauss-Newton moves the template to
   minimise how far the resulting chip lands from dlib's (an 8x8 grid of chip points, in chip px).

Residuals are reported in-sample and on the other half of the slice (two-fold: fit on even
positions, measure on odd ones, and the reverse); the written coefficients use all faces.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_agent.capture.media import read_image  # noqa: E402
from edge_agent.types import Face, RGBImage  # noqa: E402
from edge_agent.vision import align, alignment_fit  # noqa: E402
from edge_agent.vision.detect import FaceDetector  # noqa: E402
from edge_agent.vision.settings import DetectorSettings, RuntimeSettings  # noqa: E402
from edge_agent.vision.shape_predictor import ShapePredictor  # noqa: E402

FloatArray = npt.NDArray[np.float64]
GRID = np.stack(np.meshgrid(np.linspace(0, 149, 8), np.linspace(0, 149, 8)), axis=-1).reshape(-1, 2)


@dataclass(frozen=True)
class Sample:
    """One LFW face seen by both detectors, with dlib's reference alignment."""

    path: Path
    image: RGBImage
    face: Face
    dlib_rect: tuple[int, int, int, int]
    dlib_landmarks: FloatArray

    @property
    def dlib_transform(self) -> FloatArray:
        return align.chip_transform(self.dlib_landmarks)


# ---- data --------------------------------------------------------------------------------------


def lfw_slice(faces: Path, step: int, offset: int) -> list[Path]:
    paths = sorted((faces / "lfw-devtrain" / "img").glob("*/*.jpg"))
    if not paths:
        raise SystemExit(f"no photos under {faces / 'lfw-devtrain' / 'img'}")
    return paths[offset::step]


def nearest_to_centre(centres: FloatArray, image: RGBImage) -> int:
    height, width = image.shape[:2]
    return int(np.argmin(np.hypot(centres[:, 0] - width / 2, centres[:, 1] - height / 2)))


def collect(paths: Sequence[Path], detector: FaceDetector, dat: Path) -> list[Sample]:
    import dlib  # the reference: a dev dependency, never the runtime's

    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dat))
    samples = []
    for path in paths:
        image = read_image(path)
        rects = list(hog(image, 1))
        faces = detector.detect(image)
        if not rects or not faces:
            continue
        rect = rects[nearest_to_centre(np.array([[r.center().x, r.center().y] for r in rects], float), image)]
        face = faces[
            nearest_to_centre(
                np.array([[(f.box.x0 + f.box.x1) / 2, (f.box.y0 + f.box.y1) / 2] for f in faces]), image
            )
        ]
        cx, cy = (face.box.x0 + face.box.x1) / 2, (face.box.y0 + face.box.y1) / 2
        if not (rect.left() <= cx <= rect.right() and rect.top() <= cy <= rect.bottom()):
            continue
        shape = predictor(image, rect)
        landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        samples.append(Sample(path, image, face, box, landmarks))
    return samples


# ---- fitting -----------------------------------------------------------------------------------


def rect_targets(samples: Sequence[Sample]) -> FloatArray:
    """dlib's rectangles as the map's outputs: centre offset, width, height, in box widths."""
    rows = []
    for s in samples:
        box, (left, top, right, bottom) = s.face.box, s.dlib_rect
        cx, cy, width = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2, box.width
        rows.append([((left + right) / 2 - cx) / width, ((top + bottom) / 2 - cy) / width,
                     (right - left) / width, (bottom - top) / width])  # fmt: skip
    return np.array(rows)


def fit_rect(samples: Sequence[Sample]) -> FloatArray:
    features = np.array([alignment_fit.rect_features(s.face) for s in samples])
    coefficients, *_ = np.linalg.lstsq(features, rect_targets(samples), rcond=None)
    return np.asarray(coefficients)


def batch_similarity(source: FloatArray, targets: FloatArray) -> FloatArray:
    """`align.similarity_transform(source, t)` for every t in targets (N, K, 2) at once: (N, 2, 3)."""
    s = source - source.mean(axis=0)
    mean_t = targets.mean(axis=1)
    d = targets - mean_t[:, None]
    spread = np.mean(np.sum(s * s, axis=1))
    a = np.mean(s[:, 0] * d[..., 0] + s[:, 1] * d[..., 1], axis=1) / spread
    b = np.mean(s[:, 0] * d[..., 1] - s[:, 1] * d[..., 0], axis=1) / spread
    linear = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], axis=1)
    shift = mean_t - np.einsum("nij,j->ni", linear, source.mean(axis=0))
    return np.concatenate([linear, shift[..., None]], axis=2)


def chip_grid_in_image(transforms: FloatArray) -> FloatArray:
    """Where the chip grid lands in each image, (N, G, 2), for "image <- chip" transforms (N, 2, 3)."""
    return np.asarray(np.einsum("nij,gj->ngi", transforms[:, :, :2], GRID) + transforms[:, None, :, 2])


def chip_shift(ours: FloatArray, reference: FloatArray) -> FloatArray:
    """Mean distance, in the reference chip's pixels, between where two alignments put the grid."""
    scale = np.hypot(reference[:, 0, 0], reference[:, 1, 0])
    gap = np.linalg.norm(chip_grid_in_image(ours) - chip_grid_in_image(reference), axis=2)
    return np.asarray(gap.mean(axis=1) / scale)


def fit_template(samples: Sequence[Sample], iterations: int = 20) -> tuple[FloatArray, FloatArray]:
    """The keypoint template: mean chip position, then Gauss-Newton on the chip-grid shift.

    Returns (template, mean template) so the report can show what the refinement bought.
    """
    keypoints = np.array([alignment_fit.template_keypoints(s.face) for s in samples])
    reference = np.array([s.dlib_transform for s in samples])
    inverse = np.array([np.linalg.inv(np.vstack([t, [0, 0, 1]]))[:2] for t in reference])
    in_chip = np.einsum("nij,nkj->nki", inverse[:, :, :2], keypoints) + inverse[:, None, :, 2]
    start = in_chip.mean(axis=0)
    target = chip_grid_in_image(reference)
    scale = np.hypot(reference[:, 0, 0], reference[:, 1, 0])[:, None, None]

    def residuals(flat: FloatArray) -> FloatArray:
        transforms = batch_similarity(flat.reshape(-1, 2), keypoints)
        return np.asarray(((chip_grid_in_image(transforms) - target) / scale).ravel())

    x = start.ravel().copy()
    cost = float(np.sum(residuals(x) ** 2))
    for _ in range(iterations):
        r0 = residuals(x)
        jacobian = np.column_stack([(residuals(x + e * 1e-4) - r0) / 1e-4 for e in np.eye(len(x))])
        step = np.linalg.lstsq(jacobian, -r0, rcond=None)[0]
        for shrink in (1.0, 0.5, 0.25, 0.125):  # backtrack when the full step overshoots
            candidate = x + shrink * step
            new_cost = float(np.sum(residuals(candidate) ** 2))
            if new_cost < cost:
                break
        else:
            break
        converged = cost - new_cost < 1e-9 * cost
        x, cost = candidate, new_cost
        if converged:
            break
    return x.reshape(-1, 2), start


# ---- evaluation --------------------------------------------------------------------------------


def stats(values: npt.ArrayLike, digits: int = 4) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {
        "median": round(float(np.median(v)), digits),
        "mean": round(float(v.mean()), digits),
        "p95": round(float(np.percentile(v, 95)), digits),
        "max": round(float(v.max()), digits),
    }


def rect_errors(samples: Sequence[Sample], coefficients: FloatArray) -> FloatArray:
    """Error of each rectangle output (N, 4), as a fraction of dlib's rectangle width."""
    features = np.array([alignment_fit.rect_features(s.face) for s in samples])
    widths = np.array([s.face.box.width for s in samples])
    dlib_widths = np.array([s.dlib_rect[2] - s.dlib_rect[0] for s in samples], dtype=np.float64)
    return np.asarray((features @ coefficients - rect_targets(samples)) * (widths / dlib_widths)[:, None])


def measure(
    samples: Sequence[Sample], model: alignment_fit.AlignmentModel, predictor: ShapePredictor
) -> dict[str, FloatArray]:
    """Per-face errors of both routes against dlib's alignment."""
    reference = np.array([s.dlib_transform for s in samples])
    landmarks = np.array([predictor.predict(s.image, model.landmark_rect(s.face)) for s in samples])
    ert = np.array([align.chip_transform(points) for points in landmarks])
    template = np.array([model.keypoint_transform(s.face) for s in samples])
    return {
        "rect": rect_errors(samples, model.rect_coefficients),
        "landmarks": np.linalg.norm(landmarks - np.array([s.dlib_landmarks for s in samples]), axis=2),
        "ert_shift": chip_shift(ert, reference),
        "template_shift": chip_shift(template, reference),
    }


def summarise(raw: dict[str, FloatArray]) -> dict[str, Any]:
    rms = np.sqrt(np.mean(raw["rect"] ** 2, axis=0))
    return {
        "faces": len(raw["ert_shift"]),
        "rect_rms_of_dlib_width": {
            n: round(float(v), 4) for n, v in zip(alignment_fit.RECT_OUTPUTS, rms, strict=True)
        },
        "landmark_error_px": stats(raw["landmarks"].mean(axis=1), 3),
        "landmark_points_identical": round(float(np.mean(raw["landmarks"] == 0)), 4),
        "chip_shift_px_landmark_route": stats(raw["ert_shift"], 3),
        "chip_shift_px_template_route": stats(raw["template_shift"], 3),
    }


def fit(samples: Sequence[Sample]) -> tuple[alignment_fit.AlignmentModel, FloatArray]:
    """The alignment model fitted on these samples, and the template's starting (mean) position."""
    template, mean_template = fit_template(samples)
    return alignment_fit.AlignmentModel(rect_coefficients=fit_rect(samples), template=template), mean_template


def cross_validate(samples: Sequence[Sample], predictor: ShapePredictor) -> dict[str, Any]:
    """Fit on every other face, measure on the rest, both ways round; pool the measurements."""
    halves = [list(samples[0::2]), list(samples[1::2])]
    parts = [measure(test_on, fit(fit_on)[0], predictor) for fit_on, test_on in (halves, halves[::-1])]
    return summarise({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})


# ---- output ------------------------------------------------------------------------------------


def document(
    model: alignment_fit.AlignmentModel,
    samples: Sequence[Sample],
    args: argparse.Namespace,
    detector: FaceDetector,
    in_sample: dict[str, Any],
    held_out: dict[str, Any],
    mean_template: FloatArray,
) -> dict[str, Any]:
    import dlib

    return {
        "schema_version": alignment_fit.ALIGNMENT_SCHEMA_VERSION,
        "chip": {"size": model.size, "padding": model.padding},
        "landmark_rect": {
            "description": "rect = map(features): features = [1, (x - box_cx) / box_w, (y - box_cy) / box_w "
            "for each keypoint]; outputs = centre offset x, y, width (right - left), height (bottom - top), "
            "all in box widths; the rectangle follows dlib's (left, top, right, bottom) convention",
            "keypoints": list(align.TEMPLATE_KEYPOINTS),
            "outputs": list(alignment_fit.RECT_OUTPUTS),
            "coefficients": np.round(model.rect_coefficients, 6).tolist(),
        },
        "keypoint_template": {
            "description": "chip pixels (150x150, padding 0.25) of the keypoints; alignment = least-squares "
            "similarity from these points to the detected keypoints",
            "keypoints": list(align.TEMPLATE_KEYPOINTS),
            "points": np.round(model.template, 4).tolist(),
            "mean_position_before_refinement": np.round(mean_template, 4).tolist(),
        },
        "fit": {
            "command": "python tools/fit_alignment.py " + " ".join(sys.argv[1:]),
            "photos": f"lfw-devtrain/img/*/*.jpg, sorted, every {args.step}th from index {args.offset}",
            "photos_tried": len(lfw_slice(args.faces, args.step, args.offset)),
            "faces": len(samples),
            "first_and_last": [
                str(samples[0].path.relative_to(args.faces)),
                str(samples[-1].path.relative_to(args.faces)),
            ],
            "detector": detector.model_id,
            "reference": f"dlib {dlib.__version__}: get_frontal_face_detector upsample 1 (face nearest the "
            "centre), shape_predictor_5_face_landmarks.dat, get_face_chip_details(150, 0.25)",
            "in_sample": in_sample,
            "held_out": held_out,
            "units": "rect_rms: fraction of dlib's rectangle width; landmark_error_px: mean over the 5 "
            "points of the distance to dlib's landmarks (image px; both are whole pixels); chip_shift_px: "
            "mean distance (chip px) between where our chip and dlib's put an 8x8 grid of chip points",
        },
    }


def report(
    model: alignment_fit.AlignmentModel,
    mean_template: FloatArray,
    in_sample: dict[str, Any],
    held_out: dict[str, Any],
) -> None:
    inputs = ["1"] + [f"{name}.{axis}" for name in align.TEMPLATE_KEYPOINTS for axis in "xy"]
    print("landmark_rect coefficients (outputs in box widths):")
    print(f"  {'input':>14} " + " ".join(f"{name:>9}" for name in alignment_fit.RECT_OUTPUTS))
    for name, row in zip(inputs, model.rect_coefficients, strict=True):
        print(f"  {name:>14} " + " ".join(f"{v:9.4f}" for v in row))
    print("keypoint template (chip px; mean position -> refined):")
    for name, start, point in zip(align.TEMPLATE_KEYPOINTS, mean_template, model.template, strict=True):
        print(f"  {name:>14} ({start[0]:6.2f}, {start[1]:6.2f}) -> ({point[0]:6.2f}, {point[1]:6.2f})")
    for title, numbers in (("in-sample", in_sample), ("held-out (two-fold)", held_out)):
        print(f"{title}:")
        for key, value in numbers.items():
            print(f"  {key}: {json.dumps(value)}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--step", type=int, default=8, help="take every N-th sorted LFW photo (default 8)")
    parser.add_argument("--offset", type=int, default=0, help="starting index of the slice (default 0)")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "dyn8", "int8"))
    parser.add_argument("--dat", type=Path, default=None, help="dlib's shape_predictor_5_face_landmarks.dat")
    parser.add_argument("--output", type=Path, default=REPO / "models" / "alignment.json")
    parser.add_argument("--write-npz", type=Path, default=None, help="also save the predictor as npz here")
    parser.add_argument("--dry-run", action="store_true", help="print the fit, write nothing")
    return parser.parse_args(argv)


def default_dat() -> Path:
    import face_recognition_models

    return Path(face_recognition_models.pose_predictor_five_point_model_location())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    dat = args.dat or default_dat()
    started = time.perf_counter()
    detector = FaceDetector.from_settings(
        DetectorSettings(model="full_range", precision=args.precision), RuntimeSettings(threads=1)
    )
    predictor = ShapePredictor.from_dat(dat)
    paths = lfw_slice(args.faces, args.step, args.offset)
    samples = collect(paths, detector, dat)
    print(f"{len(samples)} faces from {len(paths)} photos ({time.perf_counter() - started:.0f} s)")
    if len(samples) < 50:
        raise SystemExit("too few faces to fit: check --faces, --step")
    model, mean_template = fit(samples)
    in_sample = summarise(measure(samples, model, predictor))
    held_out = cross_validate(samples, predictor)
    result = document(model, samples, args, detector, in_sample, held_out, mean_template)
    report(model, mean_template, in_sample, held_out)
    if args.dry_run:
        return 0
    if args.write_npz:
        predictor.save_npz(args.write_npz)
        print(f"wrote {args.write_npz}")
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

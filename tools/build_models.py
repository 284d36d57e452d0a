#!/usr/bin/env python3
"""Rebuild dlib's face-recognition ResNet as TFLite: float32, fp16, dynamic-range int8 and full int8.

Route (why): dlib's own `net_to_xml` dumps the network with every parameter, so the layer semantics
(padding, tags, the `add_prev` zero-padding) come from dlib itself rather than from a re-implementation
of its binary serialisation of 30-odd layer types. The dumper is a 40-line C++ program
(`tools/dlib_dump/net_to_xml.cpp`) built against Debian's `libdlib-dev` (`apt-get install libdlib-dev`);
it compiles in about 30 s and is cached under `build/dlib/`.

Steps:
1. `face_recognition_models`' `dlib_face_recognition_resnet_model_v1.dat` → XML (`net_to_xml`).
2. XML → folded operations (`tools/dlib_resnet.py`) → a TensorFlow function (`tools/dlib_resnet_tf.py`).
   Input: (1, 150, 150, 3) float32 RGB pixel values 0..255 (the mean/256 normalisation is folded into
   the stem convolution). Output: the 128-d descriptor, not normalised, like dlib's.
3. TFLite conversion: float32; fp16 weights; dynamic-range int8 (weights int8, activations float);
   full-integer int8 (weights and activations int8, float32 input and output) calibrated on dlib's own
   150x150 chips of a fixed slice of `lfw-devtrain` photos (never `people/`, `strangers/`, `groups/`).
4. Each build is measured against dlib's `compute_face_descriptor` on dlib's chips of every `people/` and
   `strangers/` photo and of a held-out `lfw-devtrain` slice: max/median distance and whether the
   same/different decision at 0.6 (dlib's rule) agrees on every pair. A JSON report goes to
   `build/embedder_report.json`; the files go to `--out` (default `models/`).

Run from the repository root with the tools virtualenv (`pip install -e '.[tools]'`):

    .venv-tools/bin/python tools/build_models.py --faces ../shared/faces --out models
    .venv-tools/bin/python tools/build_models.py --faces ../shared/faces --check   # rebuild, compare
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dlib_resnet import census, read_dlib_net
from manifest_blocks import file_entry, replace_block

from edge_agent.files import atomic_write_bytes
from edge_agent.lab.evaluation.datasets import people_and_strangers, photos_in
from edge_agent.lab.evaluation.dlib_reference import DlibPipeline
from edge_agent.vision.manifest import sha256_of

ROOT = Path(__file__).resolve().parent.parent
DUMP_SOURCE = ROOT / "tools" / "dlib_dump" / "net_to_xml.cpp"
CHIP_SIZE = 150
CHIP_PADDING = 0.25
DLIB_THRESHOLD = 0.6
CALIBRATION_STRIDE = 12  # every 12th lfw-devtrain photo (sorted) calibrates int8 ...
HOLDOUT_OFFSET = 6  # ... and those 6 places further on are held out for measuring
BUILDS = ("float32", "fp16", "dyn8", "int8")
SHIPPED = ("float32", "dyn8", "int8")  # fp16 measured 0.001 from float at the same speed: not shipped

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


RECIPES = {
    "float32": "dlib net_to_xml dump -> folded float64 (input mean/256 into the stem conv, affine into "
    "each conv) -> TF function -> TFLite float32; input (1,150,150,3) float32 RGB 0..255",
    "fp16": "as float32, weights stored as float16",
    "dyn8": "as float32, then TFLite dynamic-range quantization: int8 per-channel weights, float activations",
    "int8": "as float32, then TFLite full-integer quantization: int8 per-channel weights, int8 activations, "
    "float32 input and output; calibrated on dlib's own 150x150 chips of {calibration}",
}
LANDMARKS_FILE = "dlib_shape_predictor_5.npz"
# What the bytes of a build depend on: the converter, the numpy that folds the weights, dlib (the
# calibration chips of int8) and its model package, and Debian's libdlib-dev (the net_to_xml dump).
# The shipped files were built, and are reproduced byte for byte, with the versions pinned in the
# `tools` extra (pyproject.toml); the manifest records them per file as `built_with`.
BUILD_PACKAGES = ("tensorflow", "numpy", "dlib-bin", "face_recognition_models")
ALIGNMENT_FILE = "alignment.json"


def model_file_name(precision: str) -> str:
    return "dlib_resnet_v1.tflite" if precision == "float32" else f"dlib_resnet_v1_{precision}.tflite"


def tool_versions() -> dict[str, str]:
    """The installed versions of `BUILD_PACKAGES` (tensorflow under whichever distribution installed it)
    and of Debian's libdlib-dev, or "missing"."""
    found = {}
    for package in BUILD_PACKAGES:
        candidates = ("tensorflow-cpu", "tensorflow") if package == "tensorflow" else (package,)
        found[package] = "missing"
        for name in candidates:
            try:
                found[package] = version(name)
                break
            except PackageNotFoundError:
                continue
    dpkg = shutil.which("dpkg-query")
    if dpkg is not None:
        result = subprocess.run(
            [dpkg, "-W", "-f=${Version}", "libdlib-dev"], capture_output=True, text=True, check=False
        )
        found["libdlib-dev"] = result.stdout.strip() if result.returncode == 0 else "missing"
    return found


def recorded_versions(manifest: Path) -> dict[str, dict[str, str]]:
    """`built_with` of each embedder file in the manifest, by file name."""
    data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    return {
        entry["file"]: dict(entry.get("built_with", {}))
        for entry in data.get("files", [])
        if entry.get("embedder") is not None
    }


def version_differences(recorded: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per tool whose installed version is not the one that built the shipped file."""
    return [
        f"{package}: the shipped file was built with {want}, this environment has "
        f"{installed.get(package, 'missing')}"
        for package, want in recorded.items()
        if installed.get(package) != want
    ]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dump_xml(dat: Path, build_dir: Path) -> Path:
    """Compiles the dumper if needed and writes the network's XML, cached by the .dat's hash."""
    build_dir.mkdir(parents=True, exist_ok=True)
    xml = build_dir / f"resnet-{sha256_bytes(dat.read_bytes())[:16]}.xml"
    if xml.is_file():
        return xml
    binary = build_dir / "net_to_xml"
    if not binary.is_file() or binary.stat().st_mtime < DUMP_SOURCE.stat().st_mtime:
        if shutil.which("g++") is None:
            raise SystemExit("build_models: g++ not found (apt-get install g++ libdlib-dev)")
        command = ["g++", "-O2", "-std=c++14", str(DUMP_SOURCE), "-o", str(binary), "-ldlib", "-lpthread"]
        print("compiling", DUMP_SOURCE.name, "(about 30 s)", flush=True)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(
                f"build_models: compiling the dumper failed (is libdlib-dev installed?)\n{result.stderr}"
            )
    partial = xml.with_suffix(".partial")
    subprocess.run([str(binary), str(dat), str(partial)], check=True, capture_output=True)
    partial.replace(xml)
    return xml


@dataclass(frozen=True)
class ChipSet:
    names: list[str]
    chips: U8


class DlibChips:
    """dlib's own chips and descriptors (HOG → 5-point → get_face_chip → ResNet), photos decoded by dlib."""

    def __init__(self) -> None:
        import dlib

        self._load = dlib.load_rgb_image
        self.pipeline = DlibPipeline()

    def chip(self, path: Path) -> U8 | None:
        face = self.pipeline.face(self._load(str(path)), "centre")  # LFW: the face nearest the centre
        return None if face is None else face.chip

    def descriptors(self, chips: U8) -> F32:
        return np.stack([self.pipeline.describe_chip(chip) for chip in chips])


def chip_set(reference: DlibChips, paths: Sequence[Path], root: Path) -> ChipSet:
    names, chips = [], []
    for path in paths:
        chip = reference.chip(path)
        if chip is not None:
            names.append(str(path.relative_to(root)))
            chips.append(chip)
    return ChipSet(names, np.stack(chips))


def converter_for(net_function: Any, saved: str) -> Any:
    """A converter from a SavedModel in `saved`, so the .tflite carries a `serving_default` signature."""
    import tensorflow as tf

    module = tf.Module()
    module.descriptor = net_function
    tf.saved_model.save(module, saved, signatures={"serving_default": net_function})
    return tf.lite.TFLiteConverter.from_saved_model(saved)


def convert(net_function: Any, precision: str, calibration: U8) -> bytes:
    with tempfile.TemporaryDirectory(prefix="dlib-resnet-savedmodel-") as saved:
        return _convert(converter_for(net_function, saved), precision, calibration)


def _convert(converter: Any, precision: str, calibration: U8) -> bytes:
    import tensorflow as tf

    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dyn8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":

        def representative() -> Iterator[list[F32]]:
            for chip in calibration:
                yield [chip[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    content: bytes = converter.convert()
    return content


def tflite_descriptors(model: bytes, chips: U8, threads: int = 2) -> F32:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=threads)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    result = np.empty((len(chips), out["shape"][-1]), dtype=np.float32)
    for i, chip in enumerate(chips):
        interpreter.set_tensor(inp["index"], chip[None].astype(np.float32))
        interpreter.invoke()
        result[i] = interpreter.get_tensor(out["index"])[0]
    return result


def _pair_distances(descriptors: F32) -> F32:
    rows, cols = np.triu_indices(len(descriptors), k=1)
    distances: F32 = np.linalg.norm(descriptors[rows] - descriptors[cols], axis=1)
    return distances


@dataclass(frozen=True)
class Fidelity:
    chips: int
    max_distance: float
    median_distance: float
    pairs: int
    decision_flips: int
    min_margin_of_flips: float | None


def fidelity(reference: F32, candidate: F32) -> Fidelity:
    distances = np.linalg.norm(reference - candidate, axis=1)
    ref_pairs, cand_pairs = _pair_distances(reference), _pair_distances(candidate)
    flips = (ref_pairs < DLIB_THRESHOLD) != (cand_pairs < DLIB_THRESHOLD)
    margins = np.abs(ref_pairs[flips] - DLIB_THRESHOLD)
    return Fidelity(
        chips=len(reference),
        max_distance=float(distances.max()),
        median_distance=float(np.median(distances)),
        pairs=len(ref_pairs),
        decision_flips=int(flips.sum()),
        min_margin_of_flips=float(margins.min()) if margins.size else None,
    )


def ms_per_chip(model: bytes, chip: U8, threads: int, runs: int = 30) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=threads)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    interpreter.set_tensor(inp["index"], chip[None].astype(np.float32))
    for _ in range(3):
        interpreter.invoke()
    start = time.perf_counter()
    for _ in range(runs):
        interpreter.invoke()
    return (time.perf_counter() - start) / runs * 1000


def convert_landmarks(out_dir: Path) -> Path:
    """dlib's 5-point shape predictor, parsed from its .dat by the agent's own reader, as a compact npz."""
    import face_recognition_models as frm

    from edge_agent.vision.shape_predictor import ShapePredictor

    predictor = ShapePredictor.from_dat(Path(frm.pose_predictor_five_point_model_location()))
    target = out_dir / LANDMARKS_FILE
    predictor.save_npz(target)
    return target


def write_manifest_block(
    out_dir: Path, report: dict[str, Any], landmarks: Path, calibration_chips: int
) -> None:
    import face_recognition_models as frm

    version = "0.3.0"
    dat_origin = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
    entries = []
    for precision, build in report["builds"].items():
        recipe = RECIPES[precision].format(
            calibration=f"{calibration_chips} lfw-devtrain photos (every {CALIBRATION_STRIDE}th, sorted)"
        )
        entries.append(
            file_entry(
                {
                    "id": f"dlib-resnet-v1-{precision}",
                    "embedder": "dlib_resnet_v1",
                    "precision": precision,
                    "file": build["file"],
                    "sha256": build["sha256"],
                    "bytes": build["bytes"],
                    "origin": {
                        "package": "face_recognition_models",
                        "version": version,
                        "path": f"{dat_origin} (sha256 {report['source']['sha256'][:16]}...)",
                    },
                    "recipe": recipe,
                    "built_with": report["built_with"],
                }
            )
        )
    sp_path = Path(frm.pose_predictor_five_point_model_location())
    entries.append(
        file_entry(
            {
                "id": "dlib-5pt-landmarks",
                "landmarks": "dlib_5pt",
                "file": landmarks.name,
                "sha256": sha256_of(landmarks),
                "bytes": landmarks.stat().st_size,
                "origin": {
                    "package": "face_recognition_models",
                    "version": version,
                    "path": f"face_recognition_models/models/{sp_path.name} ({sha256_of(sp_path)[:16]}...)",
                },
                "recipe": "parsed by edge_agent.vision.shape_predictor, saved as npz arrays",
            }
        )
    )
    alignment = out_dir / ALIGNMENT_FILE
    if alignment.is_file():
        entries.append(
            file_entry(
                {
                    "id": "blazeface-to-dlib-alignment",
                    "alignment": "dlib_5pt",
                    "file": alignment.name,
                    "sha256": sha256_of(alignment),
                    "bytes": alignment.stat().st_size,
                    "origin": {"package": "edge-agent", "version": "0.1.0", "path": "tools/fit_alignment.py"},
                    "recipe": "BlazeFace box/keypoints -> dlib HOG rectangle map and keypoint template, "
                    "fitted on lfw-devtrain photos (see the file's own notes)",
                }
            )
        )
    replace_block(out_dir / "manifest.toml", "tools/build_models.py", "\n".join(entries))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "faces")
    parser.add_argument("--out", type=Path, default=ROOT / "models")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "dlib")
    parser.add_argument(
        "--check", action="store_true", help="rebuild into a temporary folder and compare with --out"
    )
    parser.add_argument("--only", choices=BUILDS, nargs="*", default=list(SHIPPED))
    args = parser.parse_args(argv)
    if set(args.only) != set(SHIPPED) and not args.check:
        parser.error("--only would rewrite part of the manifest's generated block: use it with --check")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    import face_recognition_models as frm
    from dlib_resnet_tf import descriptor_function

    dat = Path(frm.face_recognition_model_location())
    xml = dump_xml(dat, args.build_dir)
    net = read_dlib_net(xml)
    print("dlib network:", census(net), "threshold", net.distance_threshold)
    function = descriptor_function(net)

    reference = DlibChips()
    lfw = photos_in(args.faces / "lfw-devtrain" / "img")
    calibration = chip_set(reference, lfw[::CALIBRATION_STRIDE], args.faces)
    holdout = chip_set(reference, lfw[HOLDOUT_OFFSET :: CALIBRATION_STRIDE * 4], args.faces)
    parity_paths = people_and_strangers(args.faces)
    parity = chip_set(reference, parity_paths, args.faces)
    print(
        f"chips: {len(calibration.names)} calibration, {len(holdout.names)} held-out lfw, "
        f"{len(parity.names)} people+strangers",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="edge-agent-models-") as scratch:
        out_dir = Path(scratch) if args.check else args.out
        out_dir.mkdir(parents=True, exist_ok=True)
        return build_all(args, function, reference, (calibration, holdout, parity), dat, out_dir)


def build_all(
    args: argparse.Namespace,
    function: Any,
    reference: DlibChips,
    sets: tuple[ChipSet, ChipSet, ChipSet],
    dat: Path,
    out_dir: Path,
) -> int:
    """Converts, measures and writes every requested build; returns the exit status."""
    calibration, holdout, parity = sets
    installed = tool_versions()
    recorded = recorded_versions(args.out / "manifest.toml") if args.check else {}
    print("build tools:", ", ".join(f"{k} {v}" for k, v in installed.items()), flush=True)
    parity_ref = reference.descriptors(parity.chips)
    holdout_ref = reference.descriptors(holdout.chips)
    report: dict[str, Any] = {
        "source": {"file": dat.name, "sha256": sha256_bytes(dat.read_bytes())},
        "calibration_photos": calibration.names,
        "holdout_photos": len(holdout.names),
        "parity_photos": parity.names,
        "built_with": installed,
        "builds": {},
    }
    mismatched = []
    for precision in args.only:
        content = convert(function, precision, calibration.chips)
        name = model_file_name(precision)
        atomic_write_bytes(out_dir / name, content)
        entry = {
            "file": name,
            "sha256": sha256_bytes(content),
            "bytes": len(content),
            "parity": asdict(fidelity(parity_ref, tflite_descriptors(content, parity.chips))),
            "holdout": asdict(fidelity(holdout_ref, tflite_descriptors(content, holdout.chips))),
            "ms_per_chip": {t: ms_per_chip(content, parity.chips[0], t) for t in (1, 2)},
        }
        report["builds"][precision] = entry
        print(json.dumps({precision: entry}, indent=1), flush=True)
        if args.check:
            shipped = args.out / name
            same = shipped.is_file() and shipped.read_bytes() == content
            print(f"{name}: {'identical to' if same else 'DIFFERS from'} {shipped}")
            differences = version_differences(recorded.get(name, {}), installed)
            if name not in recorded or not recorded[name]:
                print(f"  the manifest records no build tool versions for {name}")
            for line in differences:
                print(f"  {line}")
            if not same:
                mismatched.append(name)
    landmarks = convert_landmarks(out_dir)
    if args.check:
        same = (args.out / landmarks.name).read_bytes() == landmarks.read_bytes()
        print(f"{landmarks.name}: {'identical to' if same else 'DIFFERS from'} {args.out / landmarks.name}")
        if not same:
            mismatched.append(landmarks.name)
    else:
        write_manifest_block(args.out, report, landmarks, len(calibration.names))
    report_path = args.build_dir / "embedder_report.json"
    atomic_write_bytes(report_path, json.dumps(report, indent=1).encode())
    print("report:", report_path)
    return 1 if mismatched else 0


if __name__ == "__main__":
    raise SystemExit(main())

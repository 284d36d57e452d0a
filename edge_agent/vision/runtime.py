"""The one place that finds a TFLite interpreter and loads a model file with it.

Order for `backend = "auto"`: `ai_edge_litert` (LiteRT; numpy 2), `tflite_runtime` (Pi OS / JetPack
images pinned to numpy < 2), `tensorflow.lite` (only where TensorFlow is installed anyway).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.errors import ModelError
from edge_agent.quiet import quiet_stderr

BACKEND_MODULES = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite",
}
TFLITE_IDENTIFIER = b"TFL3"


class Interpreter(Protocol):
    """The part of the TFLite `Interpreter` API that the agent uses (same in all three backends)."""

    def allocate_tensors(self) -> None: ...
    def get_input_details(self) -> list[dict[str, Any]]: ...
    def get_output_details(self) -> list[dict[str, Any]]: ...
    def set_tensor(self, index: int, value: npt.NDArray[Any]) -> None: ...
    def invoke(self) -> None: ...
    def get_tensor(self, index: int) -> npt.NDArray[Any]: ...


def find_interpreter_class(backend: str = "auto") -> tuple[str, Any]:
    """Return (backend name, Interpreter class) for the first importable backend."""
    names = list(BACKEND_MODULES) if backend == "auto" else [backend]
    failures = []
    for name in names:
        if name not in BACKEND_MODULES:
            raise ModelError(f"unknown TFLite backend {name!r}; use one of {list(BACKEND_MODULES)}")
        try:
            module = importlib.import_module(BACKEND_MODULES[name])
        except Exception as exc:  # an ImportError, or numpy-ABI errors raised while importing
            failures.append(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        return name, module.Interpreter
    raise ModelError(
        "no TFLite runtime could be imported ("
        + "; ".join(failures)
        + "); install ai-edge-litert, or tflite-runtime on numpy<2 images"
    )


def check_tflite_file(path: Path) -> None:
    """Fail clearly for a missing, empty or non-TFLite file before the runtime sees it."""
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    with path.open("rb") as handle:
        head = handle.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{path} is not a TFLite model (no TFL3 identifier)")


def load_interpreter(path: Path, threads: int = 1, backend: str = "auto") -> Interpreter:
    """Load `path` with `threads` threads and allocate its tensors."""
    if threads < 1:
        raise ModelError(f"threads must be at least 1, got {threads}")
    check_tflite_file(path)
    _, interpreter_class = find_interpreter_class(backend)
    try:
        with quiet_stderr():  # the runtime's "INFO: Created TensorFlow Lite XNNPACK delegate" line
            interpreter: Interpreter = interpreter_class(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{path} could not be loaded: {exc}".splitlines()[0]) from None
    return interpreter


def quantize_input(values: npt.NDArray[np.float32], detail: dict[str, Any]) -> npt.NDArray[Any]:
    """Convert float input to the tensor's dtype, using its scale and zero point if quantized."""
    dtype = detail["dtype"]
    if dtype == np.float32:
        return np.asarray(values, dtype=np.float32)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise ModelError(f"input tensor {detail['name']} is {dtype} without quantization scale")
    info = np.iinfo(dtype)
    quantized: npt.NDArray[Any] = np.clip(np.round(values / scale + zero_point), info.min, info.max)
    return quantized.astype(dtype)


def dequantize_output(values: npt.NDArray[Any], detail: dict[str, Any]) -> npt.NDArray[np.float32]:
    """Float values of an output tensor, whatever its storage type."""
    if values.dtype == np.float32:
        return np.asarray(values, dtype=np.float32)
    scale, zero_point = detail["quantization"]
    if not scale:
        return values.astype(np.float32)
    return np.asarray((values.astype(np.float32) - zero_point) * scale, dtype=np.float32)

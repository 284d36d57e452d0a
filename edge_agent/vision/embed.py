"""Face descriptors: an aligned 150x150 RGB chip → dlib's 128-d ResNet descriptor, run with LiteRT.

The TFLite files are dlib's network rebuilt by `tools/build_models.py` (parity with dlib is tested), so
distances mean what they mean for dlib: the manifest's `metric` (Euclidean, `edge_agent.face_metric`),
and the thresholds come from the manifest's calibration for the build in use, never from a hard-coded 0.6.

One `FaceEmbedder` per thread: a TFLite interpreter is not safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from edge_agent.errors import EdgeAgentError, ModelError
from edge_agent.face_metric import face_metric
from edge_agent.vision.manifest import Calibration, EmbedderSpec, FmrThreshold, ModelCatalog, ModelFile
from edge_agent.vision.runtime import Interpreter, load_interpreter
from edge_agent.vision.settings import EmbedderSettings, RuntimeSettings

Descriptor = npt.NDArray[np.float32]


def mean_of_chip_and_mirror(
    describe: Callable[[npt.NDArray[np.uint8]], Descriptor], chip: npt.NDArray[np.uint8]
) -> Descriptor:
    """The `chip_and_mirror` views rule: the mean of `describe`'s descriptors of the chip and of the chip
    mirrored left to right (the agent's network, or dlib's for a like-with-like comparison)."""
    direct = describe(chip)
    mirrored = describe(np.ascontiguousarray(chip[:, ::-1]))
    return ((direct + mirrored) / np.float32(2.0)).astype(np.float32)


class FaceEmbedder:
    """Turns aligned chips into descriptors and answers same/different at a calibrated FMR."""

    def __init__(
        self,
        spec: EmbedderSpec,
        model: ModelFile,
        interpreter: Interpreter,
        operating_point: FmrThreshold | None,
        calibration: Calibration | None = None,
    ) -> None:
        self.spec = spec
        self.model = model
        self.metric = face_metric(spec.metric)
        self._interpreter = interpreter
        self._operating_point = operating_point
        self.calibration = calibration  # every calibrated rate of this build, for reporting
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{model.file}: expected one input and one output tensor")
        self._input, self._output = inputs[0], outputs[0]
        expected_in = [1, spec.input_size, spec.input_size, 3]
        if list(self._input["shape"]) != expected_in or list(self._output["shape"]) != [1, spec.dimensions]:
            raise ModelError(
                f"{model.file}: tensors {list(self._input['shape'])} → {list(self._output['shape'])} do not "
                f"match the manifest ({expected_in} → [1, {spec.dimensions}])"
            )

    @classmethod
    def from_settings(
        cls,
        settings: EmbedderSettings,
        runtime: RuntimeSettings,
        catalog: ModelCatalog,
        calibrated: bool = True,
    ) -> FaceEmbedder:
        """The configured build; `calibrated=False` only for the calibration tool (no threshold yet)."""
        _, model = catalog.embedder(settings.model, settings.precision)
        return cls.for_file(catalog, model, runtime, settings.target_fmr if calibrated else None)

    @classmethod
    def for_file(
        cls, catalog: ModelCatalog, model: ModelFile, runtime: RuntimeSettings, target_fmr: float | None
    ) -> FaceEmbedder:
        if model.embedder is None:
            raise ModelError(f"{model.file} is not an embedder")
        spec = catalog.manifest.embedders[model.embedder]
        calibration = None if target_fmr is None else catalog.calibration_for(model)
        point = None if calibration is None or target_fmr is None else calibration.for_target(target_fmr)
        interpreter = load_interpreter(catalog.verified_path(model), runtime.threads, runtime.backend)
        return cls(spec, model, interpreter, point, calibration)

    @property
    def model_id(self) -> str:
        return self.model.id

    @property
    def operating_point(self) -> FmrThreshold:
        if self._operating_point is None:
            raise ModelError(f"{self.model.file} was loaded without a calibrated threshold")
        return self._operating_point

    def use_target(self, target_fmr: float) -> FmrThreshold:
        """Switch to another calibrated false-match rate (a fleet command); returns its operating point."""
        if self.calibration is None:
            raise ModelError(f"{self.model.file} was loaded without its calibration")
        self._operating_point = self.calibration.for_target(target_fmr)
        return self._operating_point

    @property
    def threshold(self) -> float:
        """Distances below this are a match at the configured false-match rate."""
        return self.operating_point.threshold

    def embed(self, chip: npt.NDArray[np.uint8]) -> Descriptor:
        """The descriptor of a face chip as the manifest's `views` defines it, which is what the thresholds
        are calibrated for: the network's output for the chip, or (`chip_and_mirror`) the mean of its
        outputs for the chip and for the chip mirrored left to right."""
        if self.spec.views == "chip_and_mirror":
            return mean_of_chip_and_mirror(self.network, chip)
        return self.network(chip)

    def network(self, chip: npt.NDArray[np.uint8]) -> Descriptor:
        """The network's output for one chip: dlib's `compute_face_descriptor` of that chip (what the parity
        tests compare with dlib)."""
        size = self.spec.input_size
        if chip.shape != (size, size, 3) or chip.dtype != np.uint8:
            raise EdgeAgentError(
                f"a face chip must be {size}x{size}x3 uint8 RGB, got {chip.shape} {chip.dtype}"
            )
        self._interpreter.set_tensor(self._input["index"], chip[None].astype(np.float32))
        self._interpreter.invoke()
        descriptor: Descriptor = self._interpreter.get_tensor(self._output["index"])[0].copy()
        return descriptor

    def distance(self, a: Descriptor, b: Descriptor) -> float:
        """The distance between two descriptors in this embedder's metric (what `threshold` is in)."""
        return self.metric.distance(a, b)

    def is_match(self, distance: float) -> bool:
        return distance < self.threshold

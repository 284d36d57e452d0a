"""Parity of the TFLite embedder builds with dlib's own `compute_face_descriptor` on dlib's own chips.

dlib is the reference: every expected number here is computed by dlib in the test, never typed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.capture.media import read_image
from edge_agent.errors import EdgeAgentError
from edge_agent.face_metric import EUCLIDEAN
from edge_agent.vision.embed import FaceEmbedder
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.vision.settings import EmbedderSettings, RuntimeSettings
from tests.conftest import DlibReferenceFace

PARITY_BOUND = {"float32": 0.01, "dyn8": 0.05}
# Full-integer int8 is opt-in: tools/build_models.py measured it up to ~0.06 from dlib on held-out LFW
# chips, so it is held to a looser bound here, but to the same decisions at its operating threshold.
# dyn8 (int8 weights) is the quantized build that meets the 0.05 bar and the default.
INT8_BOUND = 0.08


@dataclass(frozen=True)
class Reference:
    names: list[str]
    chips: npt.NDArray[np.uint8]
    descriptors: npt.NDArray[np.float32]


@pytest.fixture(scope="session")
def reference(dlib_reference: dict[Path, DlibReferenceFace]) -> Reference:
    names = [f"{path.parent.name}/{path.name}" for path in dlib_reference]
    chips = np.stack([face.chip for face in dlib_reference.values()])
    descriptors = np.stack([face.descriptor for face in dlib_reference.values()])
    return Reference(names, chips, descriptors)


def _embedder(catalog: ModelCatalog, precision: str) -> FaceEmbedder:
    settings = EmbedderSettings.model_validate({"precision": precision})
    return FaceEmbedder.from_settings(settings, RuntimeSettings(threads=2), catalog)


def _pair_distances(descriptors: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    rows, cols = np.triu_indices(len(descriptors), k=1)
    distances: npt.NDArray[np.float64] = np.linalg.norm(
        descriptors[rows].astype(np.float64) - descriptors[cols], axis=1
    )
    return distances


@pytest.mark.parametrize("precision", ["float32", "dyn8", "int8"])
def test_tflite_descriptors_match_dlib_on_dlib_chips(
    precision: str, reference: Reference, catalog: ModelCatalog
) -> None:
    embedder = _embedder(catalog, precision)
    ours = np.stack([embedder.network(chip) for chip in reference.chips])
    errors = np.linalg.norm(ours.astype(np.float64) - reference.descriptors, axis=1)
    worst = int(np.argmax(errors))
    print(
        f"\n{embedder.model_id}: {len(errors)} chips, distance to dlib max {errors.max():.5f} "
        f"({reference.names[worst]}), median {np.median(errors):.5f}"
    )
    assert errors.max() <= PARITY_BOUND.get(precision, INT8_BOUND)

    threshold = embedder.threshold
    ref_same = _pair_distances(reference.descriptors) < threshold
    our_same = _pair_distances(ours) < threshold
    print(f"{len(ref_same)} pairs, {int(ref_same.sum())} same at threshold {threshold:.4f}")
    assert np.array_equal(ref_same, our_same), "a same/different decision differs from dlib's"


def test_descriptor_distance_is_dlibs_metric(reference: Reference) -> None:
    a, b = reference.descriptors[0], reference.descriptors[1]
    assert EUCLIDEAN.distance(a, b) == pytest.approx(
        float(np.linalg.norm(a.astype(np.float64) - b)), abs=1e-9
    )
    with pytest.raises(EdgeAgentError, match="same length"):
        EUCLIDEAN.distance(a, b[:64])


def test_embedder_refuses_a_chip_of_the_wrong_shape(catalog: ModelCatalog, faces_dir: Path) -> None:
    embedder = _embedder(catalog, "float32")
    photo = read_image(faces_dir / "people" / "joe_biden" / "biden.jpg")
    with pytest.raises(EdgeAgentError, match="150x150x3 uint8"):
        embedder.embed(photo)
    with pytest.raises(EdgeAgentError, match="150x150x3 uint8"):
        embedder.embed(np.zeros((150, 150, 3), dtype=np.float32))

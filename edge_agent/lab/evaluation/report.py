"""An accuracy report in Markdown: one block per pipeline, written between markers in `docs/accuracy.md`.

Every number follows the decision rule and definitions of `edge_agent.lab.evaluation.verification`
(same person when distance < threshold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.files import atomic_write_bytes
from edge_agent.lab.evaluation.identification import FnirAtFpir, fnir_at_fpir, rank1_identification
from edge_agent.lab.evaluation.rates import trials_needed
from edge_agent.lab.evaluation.verification import (
    BestAccuracy,
    FmrCalibration,
    TarAtFar,
    best_accuracy,
    pair_accuracy,
    tar_at_fars,
    threshold_for_fmr,
)
from edge_agent.lab.markdown import section_header, write_section

DEFAULT_FARS = (1e-1, 1e-2, 1e-3)
DEFAULT_FPIRS = (1e-1, 1e-2)
DEFAULT_ROC_FMRS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
DEFAULT_CALIBRATION_FMRS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
ACCURACY_DOC_TITLE = "# Accuracy"


@dataclass(frozen=True)
class IdentificationAccuracy:
    """Open-set identification of one pipeline (see `identification` for rank-1, FPIR and FNIR)."""

    rank1: float
    fnir_at_fpir: tuple[FnirAtFpir, ...]
    gallery_identities: int


@dataclass(frozen=True)
class PipelineAccuracy:
    """Everything the report shows for one pipeline (detector + aligner + embedder).

    Pair accuracy comes from the listed pairs (`pair_genuine`/`pair_impostor` of them, e.g. a pairs
    CSV); TAR, the ROC and the calibration come from the full sets of `genuine_pairs` and
    `impostor_pairs` (e.g. every cross-person pair of the same photos).
    """

    name: str
    threshold: float
    images: int
    faces_not_detected: int
    pair_genuine: int
    pair_impostor: int
    accuracy_at_threshold: float
    best: BestAccuracy
    genuine_pairs: int
    impostor_pairs: int
    tar_at_far: tuple[TarAtFar, ...]
    roc: tuple[TarAtFar, ...]
    calibration: tuple[FmrCalibration, ...]
    identification: IdentificationAccuracy | None = None


def identification_accuracy(
    gallery: npt.ArrayLike,
    gallery_labels: Sequence[str],
    mated: npt.ArrayLike,
    mated_labels: Sequence[str],
    non_mated: npt.ArrayLike,
    fpirs: Sequence[float] = DEFAULT_FPIRS,
) -> IdentificationAccuracy:
    """Rank-1 rate of the mated probes and FNIR at each FPIR in `fpirs`."""
    return IdentificationAccuracy(
        rank1=rank1_identification(gallery, gallery_labels, mated, mated_labels),
        fnir_at_fpir=fnir_at_fpir(gallery, gallery_labels, mated, mated_labels, non_mated, fpirs),
        gallery_identities=len(set(gallery_labels)),
    )


def evaluate_pipeline(
    name: str,
    threshold: float,
    *,
    pair_genuine: npt.ArrayLike,
    pair_impostor: npt.ArrayLike,
    genuine: npt.ArrayLike,
    impostor: npt.ArrayLike,
    images: int,
    faces_not_detected: int,
    identification: IdentificationAccuracy | None = None,
    fars: Sequence[float] = DEFAULT_FARS,
    roc_fmrs: Sequence[float] = DEFAULT_ROC_FMRS,
    calibration_fmrs: Sequence[float] = DEFAULT_CALIBRATION_FMRS,
) -> PipelineAccuracy:
    """All verification numbers of one pipeline from its distances (see `PipelineAccuracy`)."""
    pair_genuine, pair_impostor = np.asarray(pair_genuine), np.asarray(pair_impostor)
    genuine, impostor = np.asarray(genuine), np.asarray(impostor)
    return PipelineAccuracy(
        name=name,
        threshold=threshold,
        images=images,
        faces_not_detected=faces_not_detected,
        pair_genuine=pair_genuine.size,
        pair_impostor=pair_impostor.size,
        accuracy_at_threshold=pair_accuracy(pair_genuine, pair_impostor, threshold),
        best=best_accuracy(pair_genuine, pair_impostor),
        genuine_pairs=genuine.size,
        impostor_pairs=impostor.size,
        tar_at_far=tar_at_fars(genuine, impostor, fars),
        roc=tar_at_fars(genuine, impostor, roc_fmrs),
        calibration=tuple(threshold_for_fmr(impostor, target) for target in calibration_fmrs),
        identification=identification,
    )


def format_report(
    title: str, command: str, versions: str, pipelines: Sequence[PipelineAccuracy], notes: Sequence[str] = ()
) -> str:
    """A whole report section: header (date, machine, command, versions), notes, then each pipeline."""
    lines = section_header(title, command, versions)
    if notes:
        lines += [*notes, ""]
    lines.append(
        "Decision rule: same person when distance < threshold. FMR = share of impostor pairs below the "
        "threshold; TAR = share of genuine pairs below it; FPIR / FNIR as in NIST FRVT 1:N (rank 1)."
    )
    lines.append("")
    body = "\n".join(lines)
    return body + "\n" + "\n\n".join(format_pipeline(pipeline) for pipeline in pipelines) + "\n"


def format_pipeline(result: PipelineAccuracy) -> str:
    """The summary, ROC and calibration tables of one pipeline."""
    return "\n\n".join(
        [
            f"### {_cell(result.name)}",
            _summary_table(result),
            "ROC (all pairs):\n\n" + _roc_table(result.roc),
            "Threshold calibration (all impostor pairs):\n\n" + _calibration_table(result.calibration),
        ]
    )


def write_accuracy_report(doc: Path, key: str, body: str) -> None:
    """Put `body` between the `key` markers of `doc` (creating it, titled "Accuracy", if absent)."""
    if not doc.exists():
        atomic_write_bytes(doc, f"{ACCURACY_DOC_TITLE}\n".encode())
    write_section(doc, key, body)


def _summary_table(result: PipelineAccuracy) -> str:
    rows = [
        (
            f"pair accuracy at threshold {_threshold(result.threshold)}",
            f"{_percent(result.accuracy_at_threshold)} "
            f"({result.pair_genuine:,} genuine + {result.pair_impostor:,} impostor pairs)",
        ),
        (
            "best pair accuracy (threshold chosen on the same pairs)",
            f"{_percent(result.best.accuracy)} at threshold {_threshold(result.best.threshold)}",
        ),
    ]
    rows += [(f"TAR at FAR {_rate(point.far)}", _tar_value(point)) for point in result.tar_at_far]
    if result.identification is not None:
        found = result.identification
        searches = found.fnir_at_fpir[0].mated_searches if found.fnir_at_fpir else None
        detail = f" ({searches:,} mated searches)" if searches is not None else ""
        rows.append(
            (
                f"rank-1 identification ({found.gallery_identities:,} enrolled identities)",
                f"{_percent(found.rank1)}{detail}",
            )
        )
        rows += [
            (f"FNIR at FPIR {_rate(point.fpir_target)}", _fnir_value(point)) for point in found.fnir_at_fpir
        ]
    rows += [
        ("faces not detected", f"{result.faces_not_detected:,} of {result.images:,} images"),
        (
            "pairs for TAR, ROC, calibration",
            f"{result.genuine_pairs:,} genuine, {result.impostor_pairs:,} impostor",
        ),
    ]
    return _table(("metric", "value"), rows)


def _roc_table(points: Sequence[TarAtFar]) -> str:
    rows = [
        (
            (_rate(point.far), _sci(point.fmr), _percent(point.tar), _threshold(point.threshold))
            if point.resolved
            else (_rate(point.far), "-", _unresolved(point.far, point.impostor_pairs), "-")
        )
        for point in points
    ]
    return _table(("FMR target", "FMR observed", "TAR", "threshold"), rows)


def _calibration_table(points: Sequence[FmrCalibration]) -> str:
    rows = [
        (
            _rate(point.target_fmr),
            _threshold(point.threshold),
            f"{point.impostor_pairs:,}",
            f"{point.false_matches:,}",
            _sci(point.upper_bound),
            "yes" if point.resolved else f"no (needs {trials_needed(point.target_fmr, 3.0):,} pairs)",
        )
        for point in points
    ]
    confidence = {f"{point.confidence:.0%}" for point in points}
    bound = f"{confidence.pop()} upper bound on FMR" if len(confidence) == 1 else "upper bound on FMR"
    return _table(("target FMR", "threshold", "impostor pairs", "false matches", bound, "resolved"), rows)


def _tar_value(point: TarAtFar) -> str:
    if not point.resolved:
        return _unresolved(point.far, point.impostor_pairs)
    return f"{_percent(point.tar)} (threshold {_threshold(point.threshold)}, FMR {_sci(point.fmr)})"


def _fnir_value(point: FnirAtFpir) -> str:
    if not point.resolved:
        return (
            f"not resolved: needs {trials_needed(point.fpir_target):,} non-mated searches, "
            f"has {point.non_mated_searches:,}"
        )
    return (
        f"{_percent(point.fnir)} (threshold {_threshold(point.threshold)}, FPIR {_sci(point.fpir)}, "
        f"{point.non_mated_searches:,} non-mated searches)"
    )


def _unresolved(rate: float, pairs: int) -> str:
    return f"not resolved: needs {trials_needed(rate):,} impostor pairs, has {pairs:,}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}%"


def _threshold(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.4f}"


def _rate(value: float) -> str:
    """A target rate as written by hand: 1e-3, 2.5e-4."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _sci(value: float) -> str:
    """A measured rate, 3 significant digits: 9.99e-4; 0 as 0."""
    if math.isnan(value):
        return "-"
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"

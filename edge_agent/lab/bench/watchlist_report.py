"""The watchlist benchmark's tables and notes for docs/benchmarks.md, written from one run's numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.lab.bench.watchlist import SECTION_KEY, SECTION_TITLE, WatchlistBench
from edge_agent.lab.bench.watchlist_vectors import DIMENSIONS, ROW_CHUNK
from edge_agent.watchlist.index import EXACT_UP_TO, search_breadth
from edge_agent.watchlist.search import CANDIDATES


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def _share(value: float) -> str:
    return f"{value:.3f}"


def _distance(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.3f}"


def format_table(result: WatchlistBench) -> str:
    """The section body under `section_header`: data and settings, cost and accuracy tables (speed ratio =
    numpy exact p50 / this row's p50, same run), the distractor-distribution check and the open-set load."""
    lines = [
        *_settings(result),
        *_cost_table(result),
        *_per_100k(result),
        *_accuracy_table(result),
        *_distribution_table(result),
        *_load_table(result),
    ]
    return "\n".join([*lines, "", *notes(result)])


def _settings(result: WatchlistBench) -> list[str]:
    """What was indexed and searched, and how each searcher was run."""
    base = result.baseline
    real = result.real
    hnsw = result.hnsw
    threads = "every core" if result.build_threads == 0 else f"{result.build_threads} thread(s)"
    blas = "pinned to 1 thread" if result.blas_single_thread else "threads NOT pinned"
    return [
        f"Index: {result.size:,} synthetic distractors + {real.enrolled:,} real enrolled templates "
        f"= {result.size + real.enrolled:,} vectors x {DIMENSIONS} float32 (seed {result.seed}). Real faces: "
        f"`{result.model_id}` descriptors (project pipeline, face nearest the centre) of {real.photos:,} "
        f"photos of `lfw-devtrain/` and `people/` ({real.no_face} without a face), {real.identities:,} "
        "people; of each person with 2+ photos the first is enrolled and the others are the "
        f"{real.probes:,} real probes. Distractors and the {result.queries:,} random queries: a "
        f"{result.components}-component Gaussian mixture fitted to the real descriptors (k-means, full "
        f"covariance per cluster shrunk towards the pooled one by {result.mixture.shrinkage:g} "
        "pseudo-samples; the check below shows why not one Gaussian).",
        "",
        f"usearch: metric l2sq (squared L2, shown as Euclidean), connectivity {hnsw.connectivity}, "
        f"expansion_add {hnsw.expansion_add}, built on {threads}; every search is one query, k=1, "
        "`threads=1`, `exact=False`, at each expansion_search (ef) listed (same graph). numpy exact: the "
        f"same float32 matrix in {ROW_CHUNK:,}-row chunks, ||x||^2 - 2x.q, OpenBLAS {blas} "
        f"(CPU/wall {base.cpu_per_wall:.2f}), timed on {base.timed_queries} random queries; usearch latency "
        f"is over all {result.queries:,} random queries and {real.probes:,} probes.",
        "",
    ]


def _cost_table(result: WatchlistBench) -> list[str]:
    base = result.baseline
    agent_ef = search_breadth(result.size + result.real.enrolled)
    lines = [
        f"The agent's own setting at this size: ef {agent_ef} (`edge_agent/watchlist/index.py`; an exact "
        f"scan up to {EXACT_UP_TO:,} templates); its rows are marked *.",
        "",
        "| search | ef | build s | disk MiB | memory MiB | p50 ms | p99 ms "
        "| speed-up vs numpy exact (ratio) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result.runs:
        build = "-" if run.build_seconds is None else f"{run.build_seconds:.1f}"
        ratio = base.p50_ms / run.p50_ms
        lines.append(
            f"| {run.name} | {_ef(run.expansion_search, agent_ef)} | {build} | {_mib(run.disk_bytes)} | "
            f"{_mib(run.memory_bytes)} | {run.p50_ms:.3f} | {run.p99_ms:.3f} | {ratio:.1f} |"
        )
    return lines


def _per_100k(result: WatchlistBench) -> list[str]:
    """Memory and disk per 100,000 templates of each index built, so a small board's limit can be read."""
    vectors = result.size + result.real.enrolled
    lines = []
    for run in result.runs:
        if run.disk_bytes is None or run.expansion_search != result.runs[-1].expansion_search:
            continue
        lines.append(
            f"- {run.name}: {run.memory_bytes / vectors * 1e5 / 2**20:,.1f} MiB of memory and "
            f"{run.disk_bytes / vectors * 1e5 / 2**20:,.1f} MiB on disk per 100,000 templates (connectivity "
            f"{result.hnsw.connectivity}); the templates in SQLite add 100,000 x 512 bytes (49 MiB) of "
            "float32 vectors plus their rows."
        )
    return ["", *lines] if lines else []


def _ef(expansion: int | None, agent_ef: int) -> str:
    if expansion is None:
        return "-"
    return f"{expansion}*" if expansion == agent_ef else str(expansion)


def _accuracy_table(result: WatchlistBench) -> list[str]:
    base = result.baseline
    agent_ef = search_breadth(result.size + result.real.enrolled)
    lines = [
        "",
        "Recall@1: share of queries whose answer is the exact nearest vector (ground truth: float32 GEMM "
        "candidates re-ranked in float64). Identification of the real probes among all vectors: rank-1 = "
        "the answer is the probe's own enrolled template; matched = rank-1 and closer than "
        f"{result.threshold:.4f} (the FMR {result.target_fmr:g} threshold), a correct match event; false "
        "alarm = the answer is anyone else and closer than that (threshold applied to the float64 "
        "distance of the returned vector). Distance error: largest |reported distance - true Euclidean "
        "distance| of a returned vector. Own-template probes: those whose exact answer is their own "
        "template (the searches that can produce a correct match at all).",
        "",
        "| search | ef | recall@1 random | recall@1 real probes | recall@1 own-template probes | "
        f"own template among the {CANDIDATES} candidates the agent re-scores | rank-1 "
        "| matched | false alarm | distance error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result.runs:
        ident = run.identification
        exact = run is base
        lines.append(
            f"| {run.name} | {_ef(run.expansion_search, agent_ef)} | "
            f"{'exact' if exact else _share(run.random_recall)} | "
            f"{'exact' if exact else _share(run.probe_recall)} | "
            f"{'exact' if exact else _share(run.own_recall)} | "
            f"{'exact' if exact else _share(run.own_in_candidates)} | {_share(ident.rank1)} | "
            f"{_share(ident.matched)} | {_share(ident.false_alarm)} | {run.max_distance_error:.2g} |"
        )
    g = result.gallery_only
    lines += [
        "| enrolled templates only, no distractors (numpy exact) | - | - | - | - | - | "
        f"{_share(g.rank1)} | {_share(g.matched)} | {_share(g.false_alarm)} | - |",
    ]
    return lines


def _distribution_table(result: WatchlistBench) -> list[str]:
    c = result.check
    lines = [
        "",
        f"Do the distractors look like faces? Euclidean distances in pools of {c.pool:,} real descriptors "
        f"and {c.pool:,} distractors (same size, so nearest-neighbour distances compare); the quantile "
        "columns are the distance at which that share of the pairs would match; last column: share of "
        f"pairs closer than {result.threshold:.4f}.",
        "",
        "| pairs | count | median | 1e-2 quantile | 1e-3 quantile | 1e-4 quantile | below threshold |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, summary in (
        ("real, same person", c.real_genuine),
        ("real, different people (impostors)", c.real_impostor),
        ("distractor, distractor (the mixture used)", c.distractor_pairs),
        ("one plain Gaussian (real mean and covariance), for contrast", c.gaussian_pairs),
        ("real probe, distractor", c.probe_distractor),
        ("real: nearest other person in the pool", c.real_nearest_impostor),
        ("distractor: nearest other distractor in the pool", c.distractor_nearest),
    ):
        lines.append(
            f"| {name} | {summary.pairs:,} | {_distance(summary.median)} | {_distance(summary.q1e2)} | "
            f"{_distance(summary.q1e3)} | {_distance(summary.q1e4)} | {summary.below_threshold:.1e} |"
        )
    return lines


def _load_table(result: WatchlistBench) -> list[str]:
    real = result.real
    lines = [
        "",
        f"Open-set load: distractors closer than each calibrated threshold to a real probe "
        f"({real.probes:,} probes x {result.size:,} distractors, exact).",
        "",
        "| target FMR (LFW calibration) | threshold | true-match rate (LFW calibration) "
        "| distractor FMR measured | distractors within, per probe | probes with any |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for load in result.loads:
        lines.append(
            f"| {load.target_fmr:g} | {load.threshold:.4f} | {load.true_match_rate:.3f} | "
            f"{load.distractor_fmr:.1e} | {load.per_probe:,.1f} | {_share(load.probes_hit)} |"
        )
    return lines


def notes(result: WatchlistBench) -> list[str]:
    """What the numbers say, written from the numbers of this run."""
    base = result.baseline
    exact = base.identification
    g = result.gallery_only
    default = next((load for load in result.loads if load.threshold == result.threshold), None)
    strictest = min(result.loads, key=lambda load: load.threshold, default=None)
    lines = ["Notes:", ""]
    if default is not None:
        lines.append(
            f"- Open set at {result.size:,} distractors: the FMR {result.target_fmr:g} threshold "
            f"({result.threshold:.4f}) lets through {default.per_probe:,.1f} distractors per real probe "
            f"(measured FMR {default.distractor_fmr:.1e}), so exact rank-1 identification falls from "
            f"{_share(g.rank1)} (enrolled templates alone) to {_share(exact.rank1)}, and "
            f"{_share(exact.false_alarm)} of the probes would raise an alert for someone else."
        )
    if strictest is not None:
        lines.append(
            f"- Even the strictest calibrated threshold (FMR {strictest.target_fmr:g}, "
            f"{strictest.threshold:.4f}, true-match rate {strictest.true_match_rate:.3f} on LFW) leaves "
            f"{strictest.per_probe:,.1f} distractors per probe. Expected false matches per search = FMR x "
            f"watchlist size, so fewer than one per search needs an FMR below 1/{result.size:,} "
            f"({1 / result.size:.0e}): stricter than any calibrated point, at a lower true-match rate still."
        )
    for run in result.runs:
        if run.dtype == "i8" and run.max_distance_error > 0.1:
            lines.append(
                "- i8: usearch stores i8 vectors normalised to unit length (x127), so an i8 l2sq index ranks "
                "by angle, not Euclidean distance, and its distances are on another scale (distance error "
                f"{run.max_distance_error:.0f}): never compare them with the calibrated threshold; re-score "
                "the returned keys with the float32 templates, or use f16."
            )
            break
    lines += [
        "- Memory is usearch's `memory_usage` (its allocator's reservation, which is why i8 can show the "
        "same as f16); disk is the saved file.",
        "- Random queries stand for the passers-by a camera mostly sees (not enrolled): their nearest "
        "vector is only marginally nearer than many others, which is why recall@1 needs a large ef. "
        "For a watchlist the own-template column matters: the share of correct matches the graph keeps.",
    ]
    return lines


def versions() -> str:
    from edge_agent.lab.markdown import package_versions

    return package_versions("usearch", "numpy", "ai-edge-litert")


def section_body(result: WatchlistBench, command: str) -> str:
    """The whole `watchlist` section: `section_header` then `format_table`."""
    from edge_agent.lab.markdown import section_header

    return "\n".join(section_header(SECTION_TITLE, command, versions())) + format_table(result)


def write_report(result: WatchlistBench, doc: Path, command: str) -> None:
    from edge_agent.lab.markdown import write_section

    key = SECTION_KEY if result.size == 1_000_000 else f"{SECTION_KEY}-{result.size}"
    write_section(doc, key, section_body(result, command))

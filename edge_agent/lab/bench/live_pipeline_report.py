"""The `bench pipeline` report: a console summary and the `docs/benchmarks.md` section."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.lab.bench.agent_run import AgentRun
from edge_agent.lab.bench.live_pipeline import EventTiming, PipelineBench
from edge_agent.lab.bench.reference import FrameHit
from edge_agent.lab.bench.usage import UsageSummary
from edge_agent.lab.markdown import package_versions, section_header, write_section

SECTION_KEY = "pipeline"
SECTION_TITLE = "Live agent end to end"
STAGES = ("detect", "track", "align", "embed", "search", "frame_to_commit")
STAGE_NOTES = {
    "detect": "every frame",
    "track": "every frame",
    "align": "faces due for a look (within the frame's budget) that pass the size, edge and pose gates",
    "embed": "aligned chips that pass the blur and brightness gates (network on the chip and its mirror)",
    "search": "one per embedding",
    "frame_to_commit": "frame read -> event committed to the outbox (per event)",
}
VERSIONED = ("ai-edge-litert", "tflite-runtime", "numpy", "opencv-python-headless", "usearch", "paho-mqtt")


def percentiles(values: Sequence[float]) -> tuple[float, float] | None:
    if not values:
        return None
    p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
    return float(p50), float(p95)


def _p(values: Sequence[float], unit: str, digits: int) -> str:
    found = percentiles(values)
    if found is None:
        return "none measured"
    return f"p50 {found[0]:.{digits}f} {unit}, p95 {found[1]:.{digits}f} {unit} (n = {len(values)})"


def _arrived(events: Sequence[EventTiming]) -> int:
    return sum(e.delivery_s is not None for e in events)


def _found(result: PipelineBench, run: AgentRun) -> str:
    names = [result.subjects[s] for s in sorted({e.subject_id for e in run.events})]
    return ", ".join(names) if names else "nobody"


def _baseline_found(result: PipelineBench) -> str:
    baseline = result.baseline
    if baseline is None:
        return "-"
    parts = []
    for s in baseline.subjects:
        name = result.subjects[s.subject_id]
        if not s.enrolled:
            parts.append(f"{name}: dlib found no face in the photo")
        elif s.frames_matched:
            within = f"{s.frames_within_threshold} within {result.models.threshold:.4f}"
            if s.first_within_threshold is not None:
                within += f" (first: frame {s.first_within_threshold})"
            parts.append(
                f"{name}: yes, {s.frames_matched} of {baseline.frames} frames within {baseline.tolerance:g} "
                f"(first: frame {s.first_frame}); {within}"
            )
        else:
            best = "-" if s.best_distance is None else f"{s.best_distance:.3f}"
            parts.append(f"{name}: no (best distance {best})")
    return "; ".join(parts)


# ---- console ------------------------------------------------------------------------------------------


def format_summary(result: PipelineBench) -> str:
    t = result.throughput
    lines = [
        f"throughput {i}: {r.run.frames_processed} frames in {r.run.busy_s:.2f} s = {r.run.fps:.1f} fps "
        f"({len(r.run.events)} event(s), {_arrived(r.events)} arrived: {_found(result, r.run)})"
        for i, r in enumerate(result.throughput_runs, 1)
    ]
    lines.append(f"median run ({t.fps:.1f} fps), per stage:")
    for stage in STAGES:
        if (lat := t.latencies.get(stage)) is not None:
            lines.append(f"  {stage:16s} p50 {lat.p50_ms:8.2f} ms  p95 {lat.p95_ms:8.2f} ms  n {lat.count}")
    for i, repeat in enumerate(result.camera, 1):
        r = repeat.run
        waits = ", ".join(
            f"{result.subjects[s]} {_seconds(w)} / {_seconds(repeat.from_steady_s[s])}"
            for s, w in repeat.from_first_s.items()
        )
        lines.append(
            f"camera-like {i}: read {r.frames_read}, processed {r.frames_processed}, "
            f"dropped {r.frames_dropped}, {len(r.events)} event(s), {_arrived(repeat.events)} arrived; "
            f"first / steadily recognisable frame -> event: {waits}"
        )
    lines.append(f"frame -> MQTT delivery: {_p(result.delivery_ms, 'ms', 1)}")
    lines.append(f"first recognisable frame -> event at subscriber: {_p(result.from_first_s, 's', 2)}")
    lines.append(f"first steadily recognisable -> event at subscriber: {_p(result.from_steady_s, 's', 2)}")
    for u in result.usage:
        lines.append(
            f"{u.phase}: CPU {u.cpu_mean:.0f}% mean, {u.cpu_max:.0f}% max (of one core); "
            f"RSS {u.rss_start:.0f} -> max {u.rss_max:.0f} -> {u.rss_end:.0f} MiB"
        )
    if result.baseline is not None:
        ratio = result.fps_ratio
        lines.append(
            f"dlib baseline: {result.baseline.frames} frames, {result.baseline.fps:.2f} fps; "
            f"edge-agent / dlib = {ratio:.1f}x; {_baseline_found(result)}"
            if ratio is not None
            else f"dlib baseline: {result.baseline.frames} frames, no time measured"
        )
    else:
        lines.append(f"dlib baseline skipped: {result.baseline_skipped}")
    return "\n".join(lines)


# ---- docs/benchmarks.md -------------------------------------------------------------------------------


def _setup(result: PipelineBench) -> list[str]:
    clip, m = result.clip, result.models
    seconds = f" ({clip.seconds:.1f} s)" if clip.seconds else ""
    rate = f"{clip.fps:.2f} fps" if clip.fps else "unknown rate"
    photos = ", ".join(f"`{name}`" for name in result.subjects.values())
    return [
        f"Clip: `{result.options.source.name}`, {clip.width}x{clip.height}, {rate}, {clip.frames} frames"
        f"{seconds}. Enrolled in a temporary watchlist: {photos}. Models: detector `{m.detector}`, embedder "
        f"`{m.embedder}`, threshold {m.threshold:.4f} (target false-match rate {m.target_fmr:g}). "
        f"Decision: {result.decision}. Broker: {result.broker}; the subscriber (QoS 1) runs in the bench's "
        "own process, so arrival and frame read times are on one clock (`time.monotonic()`).",
        "",
    ]


def _throughput(result: PipelineBench) -> list[str]:
    t = result.throughput
    runs = result.throughput_runs
    clip_rate = result.clip.fps
    rates = sorted(r.run.fps for r in runs)
    lines = [
        f"### 1. Throughput: every frame, as fast as it goes (`camera.realtime = false`), {len(runs)} run(s)",
        "",
        "| run | frames | worker busy s | end-to-end fps | x the clip's rate | events "
        "| arrived at subscriber | found |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(runs, 1):
        speed = f"{r.run.fps / clip_rate:.2f}" if clip_rate else "-"
        lines.append(
            f"| {i} | {r.run.frames_processed} | {r.run.busy_s:.2f} | {r.run.fps:.1f} | {speed} | "
            f"{len(r.run.events)} | {_arrived(r.events)} | {_found(result, r.run)} |"
        )
    lines += [
        "",
        f"Median {t.fps:.1f} fps (range {rates[0]:.1f} to {rates[-1]:.1f}). End-to-end fps: frames "
        "processed / time from the worker taking the first frame to it asking for the next one after the "
        "last (decoding runs in the capture thread beside it; model loading, broker connection and shutdown "
        f"are outside it; the median run's whole `Agent.run()` took {t.run_s:.2f} s). Per-stage latency "
        "from the pipeline's `StageClock`, of the median run:",
        "",
        "| stage | samples | p50 ms | p95 ms | what is timed |",
        "|---|---:|---:|---:|---|",
    ]
    for stage in STAGES:
        if (lat := t.latencies.get(stage)) is not None:
            lines.append(
                f"| {stage} | {lat.count} | {lat.p50_ms:.2f} | {lat.p95_ms:.2f} | {STAGE_NOTES[stage]} |"
            )
    return [*lines, ""]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _hit(hit: FrameHit | None) -> str:
    if hit is None:
        return "never"
    return f"frame {hit.frame_index} ({hit.offset_s:.2f} s into the clip, distance {hit.distance:.3f})"


def _camera(result: PipelineBench) -> list[str]:
    lines = [
        f"### 2. Camera-like: frames at the clip's own rate (`camera.realtime = true`), "
        f"{len(result.camera)} repetition(s)",
        "",
        "| run | frames read | processed | dropped | events | arrived | frame -> MQTT ms | "
        "first recognisable frame -> event at subscriber s | first steadily recognisable frame -> event s "
        "| event decided at frame |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, repeat in enumerate(result.camera, 1):
        r = repeat.run
        delivery = ", ".join(f"{e.delivery_s * 1000:.1f}" for e in repeat.events if e.delivery_s is not None)
        first = ", ".join("-" if w is None else f"{w:.2f}" for w in repeat.from_first_s.values())
        steady = ", ".join("-" if w is None else f"{w:.2f}" for w in repeat.from_steady_s.values())
        frames = ", ".join("-" if f is None else str(f) for f in repeat.decided_at_frame.values())
        lines.append(
            f"| {i} | {r.frames_read} | {r.frames_processed} | {r.frames_dropped} | {len(r.events)} | "
            f"{_arrived(repeat.events)} | {delivery or '-'} | {first or '-'} | {steady or '-'} | "
            f"{frames or '-'} |"
        )
    return lines + _camera_notes(result)


def _camera_notes(result: PipelineBench) -> list[str]:
    """Latency percentiles over every camera-like run, misses, and what the reference-pass frames mean."""
    lines = [
        "",
        f"- Frame -> MQTT delivery (subscriber arrival - read time of the frame whose embedding decided the "
        f"event): {_p(result.delivery_ms, 'ms', 1)}.",
        f"- First recognisable frame -> event at the subscriber: {_p(result.from_first_s, 's', 2)}.",
        "- First steadily recognisable frame -> event at the subscriber: "
        f"{_p(result.from_steady_s, 's', 2)}.",
    ]
    missed = sum(
        wait is None and result.first[sid].first is not None
        for r in result.camera
        for sid, wait in r.from_first_s.items()
    )
    if missed:
        lines.append(
            f"- In {missed} (subject, run) pair(s) no event arrived for a subject the reference pass "
            "recognised."
        )
    run = next(iter(result.first.values())).run if result.first else 0
    for subject_id, seen in result.first.items():
        lines.append(
            f"- `{result.subjects[subject_id]}`: first recognisable in {_hit(seen.first)}; first steadily "
            f"recognisable in {_hit(seen.steady)}."
        )
    lines += [
        "- Definitions (a reference pass before the runs: the agent's own detector on every frame, every "
        "face it finds described by the agent's aligner and embedder from that frame alone, with no quality "
        "gates, tracking or vote): the *first recognisable frame* is the first frame with a face within the "
        "calibrated threshold of the enrolled template, the earliest any per-frame recogniser on these "
        "models could name the person; the *first steadily recognisable frame* is the first frame of the "
        f"first run of {run} consecutive such frames ({run} = the vote's k: no k-of-n vote decides on one "
        "lucky frame). The clock starts when the camera-like source delivers that frame (its `read_at`, "
        "also when the agent dropped it) and stops when the subject's first event reaches the subscriber. "
        "What lies between is the quality gates and the vote (k agreeing embeddings of one track, at most "
        "one per embedding interval), plus processing and delivery.",
        "- Context only, not measured here: users of other systems describe waiting 2-8 s for a name to "
        "appear.",
        "",
    ]
    return lines


def _usage(result: PipelineBench) -> list[str]:
    lines = [
        f"### 3. CPU and memory of this process, sampled every {result.options.usage_period_s:g} s",
        "",
        "| phase | seconds | CPU % of one core, mean | CPU % max | RSS MiB at start | RSS max | RSS at end |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows: list[UsageSummary] = list(result.usage)
    for u in rows:
        lines.append(
            f"| {u.phase} | {u.seconds:.1f} | {u.cpu_mean:.0f} | {u.cpu_max:.0f} | {u.rss_start:.0f} | "
            f"{u.rss_max:.0f} | {u.rss_end:.0f} |"
        )
    lines += [
        "",
        "CPU: user + system time of every thread of the bench process (capture, inference worker, MQTT "
        "threads, the subscriber) per wall second, `os.times()`; 100% = one core busy. The broker is a "
        "separate process and is not counted. RSS: VmRSS of /proc/self/status. Each agent run loads its "
        "own models; one process holds every run.",
        "",
    ]
    return lines


def _baseline(result: PipelineBench) -> list[str]:
    lines = ["### 4. Baseline: the face_recognition library's approach (dlib), same frames", ""]
    baseline = result.baseline
    if baseline is None:
        return [*lines, f"Skipped: {result.baseline_skipped}.", ""]
    t = result.throughput
    ratio = result.fps_ratio
    frames_note = "" if baseline.frames == result.clip.frames else f" (the first {baseline.frames} frames)"
    found_agent = _found(result, t)
    lines += [
        "| pipeline | frames | fps | edge-agent fps / this fps | found the enrolled person |",
        "|---|---:|---:|---:|---|",
        f"| edge-agent live pipeline (median throughput run above) | {t.frames_processed} | "
        f"{t.fps:.1f} | 1.0 | "
        f"{'yes: ' + found_agent if t.events else 'no'} (decided event) |",
        f"| {baseline.name}, dlib {baseline.dlib_version}{frames_note} | {baseline.frames} | "
        f"{baseline.fps:.2f} | {'-' if ratio is None else f'{ratio:.1f}'} | {_baseline_found(result)} |",
        "",
        f"The baseline does what face_recognition's examples do on video: `face_locations` (HOG, upsample "
        f"1), `face_encodings` (5-point landmarks, ResNet, 1 jitter) for every face of every frame, "
        f"`compare_faces` at tolerance {baseline.tolerance:g}; decoding is included in its time. It compares "
        "approaches, not networks (`bench embed` compares the networks): the agent detects with BlazeFace "
        "and looks at (aligns and embeds) a tracked face only when it is due (often while its track is being "
        "identified, now and then once it is settled) and passes the quality gates, and it runs its models "
        "on XNNPACK with 2 threads, while dlib's HOG and ResNet run on one "
        "core here (see the CPU table).",
        "",
    ]
    return lines


def section_body(result: PipelineBench, command: str, broker_version: str, clip: str | None = None) -> str:
    versions = ", ".join(v for v in (package_versions(*VERSIONED, "dlib-bin"), broker_version) if v)
    title = SECTION_TITLE if clip is None else f"{SECTION_TITLE}: {clip}"
    parts = [
        *section_header(title, command, versions)[:-1],
        *_setup(result),
        *_throughput(result),
        *_camera(result),
        *_usage(result),
        *_baseline(result),
    ]
    return "\n".join(parts)


def write_report(
    result: PipelineBench, doc: Path, command: str, broker_version: str, clip: str | None = None
) -> None:
    """The section of the default (demo) clip, or of another clip (`clip`: its file name) beside it."""
    key = SECTION_KEY if clip is None else f"{SECTION_KEY}:{clip}"
    write_section(doc, key, section_body(result, command, broker_version, clip))


def as_json(result: PipelineBench) -> dict[str, Any]:
    """The headline numbers as plain JSON values (for scripts and tests)."""
    t, baseline = result.throughput, result.baseline
    return {
        "source": str(result.options.source),
        "subjects": result.subjects,
        "clip": asdict(result.clip),
        "models": asdict(result.models),
        "throughput": {
            "runs_fps": [r.run.fps for r in result.throughput_runs],
            "frames": t.frames_processed,
            "seconds": t.busy_s,
            "fps": t.fps,
            "events": [asdict(e) for e in result.throughput_events],
            "latencies": {stage: asdict(lat) for stage, lat in t.latencies.items()},
        },
        "first_recognisable": {s: asdict(seen) for s, seen in result.first.items()},
        "camera": [
            {
                "frames_read": r.run.frames_read,
                "frames_processed": r.run.frames_processed,
                "frames_dropped": r.run.frames_dropped,
                "events": [asdict(e) for e in r.events],
                "from_first_s": r.from_first_s,
                "from_steady_s": r.from_steady_s,
                "decided_at_frame": r.decided_at_frame,
            }
            for r in result.camera
        ],
        "delivery_ms": result.delivery_ms,
        "from_first_s": result.from_first_s,
        "from_steady_s": result.from_steady_s,
        "usage": [asdict(u) for u in result.usage],
        "baseline": None
        if baseline is None
        else {
            "frames": baseline.frames,
            "seconds": baseline.seconds,
            "fps": baseline.fps,
            "subjects": [asdict(s) for s in baseline.subjects],
        },
        "baseline_skipped": result.baseline_skipped,
        "fps_ratio": result.fps_ratio,
    }

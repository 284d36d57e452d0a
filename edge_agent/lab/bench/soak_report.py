"""The `bench soak` report: a console summary and the `docs/benchmarks.md` section."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge_agent.lab.bench.soak import WINDOW, SoakResult
from edge_agent.lab.markdown import package_versions, section_header, write_section

SECTION_KEY = "soak"
SECTION_TITLE = "Memory over a long run"
VERSIONED = ("ai-edge-litert", "tflite-runtime", "numpy", "opencv-python-headless", "usearch", "paho-mqtt")


def _verdict(result: SoakResult) -> str:
    word = "pass" if result.passed else "FAIL"
    return f"{word} (growth {'<' if result.passed else '>='} {result.options.max_growth_pct:g}%)"


def _slope(result: SoakResult) -> str:
    slope = result.growth.slope_mib_per_hour
    return "-" if slope is None else f"{slope:+.1f}"


def format_summary(result: SoakResult) -> str:
    run, g = result.run, result.growth
    return "\n".join(
        [
            f"soak: {result.options.minutes:g} min, {run.frames_processed} frames ({run.fps:.1f} fps), "
            f"{run.frames_dropped} dropped, {len(run.events)} event(s), {result.arrived} arrived",
            f"RSS: start {result.rss_start:.1f} MiB, after {result.warmup_s:g} s warm-up "
            f"{g.after_warmup:.1f} MiB, end {g.end:.1f} MiB, max {result.rss_max:.1f} MiB; "
            f"growth {g.growth_pct:+.2f}% "
            f"(slope {_slope(result)} MiB/h); CPU {result.cpu_mean:.0f}% of one core",
            _verdict(result),
        ]
    )


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _timeline(result: SoakResult) -> str:
    """RSS about every minute (every tenth of a run shorter than two minutes), as m:ss value."""
    minutes = result.options.minutes
    step = 60.0 if minutes >= 2 else max(result.options.sample_s, minutes * 6)
    marks, next_mark = [], 0.0
    for point in result.points[:-1]:
        if point.t_s >= next_mark:
            marks.append(f"{_clock(point.t_s)} {point.rss_mib:.1f}")
            next_mark = point.t_s - point.t_s % step + step
    last = result.points[-1]
    marks.append(f"{_clock(last.t_s)} (end) {last.rss_mib:.1f}")
    return ", ".join(marks)


def section_body(result: SoakResult, command: str, broker_version: str) -> str:
    o, run, g = result.options, result.run, result.growth
    versions = ", ".join(v for v in (package_versions(*VERSIONED), broker_version) if v)
    pacing = (
        "`camera.realtime = true`: frames at the clip's own rate, the newest frame wins and what the "
        "worker cannot keep up with is dropped, as with a camera"
        if o.realtime
        else "`camera.realtime = false`: every frame through every stage as fast as the agent goes, several "
        "times more frames per minute than a camera's rate, so a leak per frame or per track shows sooner "
        "(a file source drops nothing at this pacing, by construction)"
    )
    photos = ", ".join(f"`{p.name}`" for p in o.photos)
    lines = [
        *section_header(SECTION_TITLE, command, versions)[:-1],
        f"Clip `{o.source.name}` played in a loop (`camera.loop = true`) for {o.minutes:g} min with "
        f"{pacing}. Enrolled in a temporary watchlist: {photos}; match events go through the SQLite "
        f"outbox to {result.broker}, where a subscriber counts them.",
        "",
        "| minutes | frames processed | fps | dropped | events | arrived | CPU % of one core "
        "| RSS MiB start | after warm-up | end | max | growth after warm-up | slope after warm-up MiB/h "
        "| gate |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {o.minutes:g} | {run.frames_processed} | {run.fps:.1f} | {run.frames_dropped} | "
        f"{len(run.events)} | {result.arrived} | {result.cpu_mean:.0f} | {result.rss_start:.1f} | "
        f"{g.after_warmup:.1f} | {g.end:.1f} | {result.rss_max:.1f} | {g.growth_pct:+.2f}% | "
        f"{_slope(result)} | {_verdict(result)} |",
        "",
        f"RSS (VmRSS of the process running the agent) sampled every {o.sample_s:g} s, "
        f"{len(result.points)} samples. Warm-up: the first {result.warmup_s:g} s (the first minute, or a "
        f"quarter of a shorter run). After warm-up: median of the {WINDOW} samples from its end; end: median "
        f"of the last {WINDOW}; growth = (end - after warm-up) / after warm-up. Slope: least-squares fit "
        f"over the {g.samples_after_warmup} samples after warm-up. `edge-agent bench soak` exits with "
        f"status 1 when the growth is {o.max_growth_pct:g}% or more, so it can gate a release.",
        "",
        f"RSS MiB over the run (m:ss RSS): {_timeline(result)}.",
        "",
    ]
    return "\n".join(lines)


def write_report(result: SoakResult, doc: Path, command: str, broker_version: str) -> None:
    write_section(doc, SECTION_KEY, section_body(result, command, broker_version))


def as_json(result: SoakResult) -> dict[str, Any]:
    """The headline numbers as plain JSON values (for scripts and tests)."""
    run = result.run
    return {
        "source": str(result.options.source),
        "minutes": result.options.minutes,
        "realtime": result.options.realtime,
        "warmup_s": result.warmup_s,
        "frames_processed": run.frames_processed,
        "frames_dropped": run.frames_dropped,
        "fps": run.fps,
        "events": len(run.events),
        "arrived": result.arrived,
        "cpu_mean": result.cpu_mean,
        "rss_start": result.rss_start,
        "rss_max": result.rss_max,
        "growth": asdict(result.growth),
        "passed": result.passed,
        "points": [[p.t_s, p.rss_mib] for p in result.points],
    }

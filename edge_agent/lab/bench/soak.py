"""`edge-agent bench soak`: does the live agent's memory stay flat over a long run?

The agent plays a clip in a loop (`camera.loop = true`) for `minutes`, with the given photos enrolled in a
temporary watchlist and a real broker, so every path runs: detection, tracks starting and ending, quality
gates, embeddings, the vote, events through the SQLite outbox, MQTT publishing. RSS is sampled every
`sample_s`; growth is measured from the end of a warm-up (allocator pools, model arenas, caches fill) to
the end of the run. The default pacing is `realtime = false`: every frame as fast as the agent goes, so a
leak per frame or per track shows several times sooner than at a camera's rate (on a file source
nothing is dropped then; `realtime = true` exercises the dropping hand-over instead).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.config import Settings
from edge_agent.errors import EdgeAgentError
from edge_agent.lab.bench.agent_run import AgentRun, run_agent
from edge_agent.lab.bench.agent_setup import (
    BrokerChoice,
    bench_broker,
    bench_settings,
    enrol_photos,
    new_device_id,
    start_recorder,
)
from edge_agent.lab.bench.usage import UsageSample, UsageSampler
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog

WINDOW = 5  # samples whose median is "RSS after warm-up" and "RSS at the end"
PROGRESS_EVERY_S = 60.0
ARRIVAL_WAIT_S = 5.0

Progress = Callable[[str], None]
Elapsed = Callable[[float], None]  # seconds of the run so far, at every RSS sample (the CLI's progress bar)


def _quiet(_line: str) -> None:
    pass


def _not_watched(_elapsed_s: float) -> None:
    pass


def default_warmup_s(duration_s: float) -> float:
    """The first minute, or the first quarter of a run shorter than four minutes."""
    return min(60.0, duration_s / 4.0)


@dataclass(frozen=True)
class SoakOptions:
    source: Path
    photos: tuple[Path, ...]
    minutes: float = 10.0
    realtime: bool = False
    sample_s: float = 2.0
    warmup_s: float | None = None  # None: default_warmup_s
    max_growth_pct: float = 5.0
    broker: BrokerChoice = "local"


@dataclass(frozen=True)
class RssPoint:
    t_s: float  # since the agent was started
    rss_mib: float


@dataclass(frozen=True)
class Growth:
    after_warmup: float
    end: float
    growth_pct: float
    slope_mib_per_hour: float | None  # least-squares slope of the samples after warm-up
    samples_after_warmup: int


@dataclass(frozen=True)
class SoakResult:
    options: SoakOptions
    warmup_s: float
    broker: str
    run: AgentRun
    arrived: int
    points: tuple[RssPoint, ...]
    cpu_mean: float
    growth: Growth

    @property
    def rss_start(self) -> float:
        return self.points[0].rss_mib

    @property
    def rss_max(self) -> float:
        return max(p.rss_mib for p in self.points)

    @property
    def passed(self) -> bool:
        return self.growth.growth_pct < self.options.max_growth_pct


def rss_growth(points: tuple[RssPoint, ...], warmup_s: float) -> Growth:
    """RSS after warm-up (median of the first `WINDOW` samples from its end) against RSS at the end
    (median of the last `WINDOW`), fewer each when the run is short."""
    after = [p for p in points if p.t_s >= warmup_s]
    if len(after) < 2:
        raise EdgeAgentError(
            f"the soak run is too short: {len(after)} RSS sample(s) after the {warmup_s:g} s warm-up "
            "(run longer, or sample more often)"
        )
    window = max(1, min(WINDOW, len(after) // 2))
    start = float(np.median([p.rss_mib for p in after[:window]]))
    end = float(np.median([p.rss_mib for p in after[-window:]]))
    slope = None
    if len(after) >= 3:
        t = np.array([p.t_s for p in after]) / 3600.0
        slope = float(np.polyfit(t, np.array([p.rss_mib for p in after]), 1)[0])
    return Growth(start, end, 100.0 * (end - start) / start, slope, len(after))


def run_soak(
    base: Settings, options: SoakOptions, progress: Progress = _quiet, elapsed: Elapsed = _not_watched
) -> SoakResult:
    """The soak run; `progress` gets a line a minute, `elapsed` the time so far at every RSS sample (from
    the sampler's own thread: no timer thread of the caller's)."""
    if options.minutes <= 0:
        raise EdgeAgentError(f"--minutes must be positive, got {options.minutes:g}")
    duration_s = options.minutes * 60.0
    warmup_s = options.warmup_s if options.warmup_s is not None else default_warmup_s(duration_s)
    catalog = ModelCatalog.load(base.models_dir)
    with (
        tempfile.TemporaryDirectory(prefix="edge-agent-soak-") as scratch,
        bench_broker(options.broker, base.mqtt, Path(scratch)) as broker,
    ):
        settings = bench_settings(
            base,
            Path(scratch),
            options.source,
            broker.mqtt,
            device_id=new_device_id(),
            run_name="soak",
            realtime=options.realtime,
            loop=True,
        )
        enrol_photos(FacePipeline.from_settings(settings, catalog), settings, options.photos)
        recorder = start_recorder(settings)
        started = time.monotonic()
        last_report = [started]

        def on_sample(sample: UsageSample) -> None:
            elapsed(sample.at - started)
            if sample.at - last_report[0] >= PROGRESS_EVERY_S:
                last_report[0] = sample.at
                minutes = (sample.at - started) / 60.0
                progress(f"soak: {minutes:.1f} of {options.minutes:g} min, RSS {sample.rss_mib:.1f} MiB")

        sampler = UsageSampler(options.sample_s, on_sample).start()
        try:
            with sampler.phase("soak"):
                run = run_agent(settings, catalog, stop_after_s=duration_s)
            recorder.wait_for([e.event_id for e in run.events], ARRIVAL_WAIT_S)
            arrived = sum(recorder.arrival(e.event_id) is not None for e in run.events)
        finally:
            sampler.stop()
            recorder.close()
    summary, series = sampler.summary("soak"), sampler.series("soak")
    assert summary is not None and series
    points = tuple(RssPoint(s.at - series[0].at, s.rss_mib) for s in series)
    return SoakResult(
        options=options,
        warmup_s=warmup_s,
        broker=broker.description,
        run=run,
        arrived=arrived,
        points=points,
        cpu_mean=summary.cpu_mean,
        growth=rss_growth(points, warmup_s),
    )

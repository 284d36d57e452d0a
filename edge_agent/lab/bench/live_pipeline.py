"""`edge-agent bench pipeline`: the live agent end to end on a clip, with a real MQTT broker.

In one run, on one clip, with the given photos enrolled in a temporary watchlist:

1. throughput (`repeat` times): the agent on every frame as fast as it goes (`camera.realtime =
   false`): frames per second of the inference worker and the per-stage latencies of its `StageClock`
   (of the run with the median rate);
2. camera-like (`camera.realtime = true`, `repeat` times): frames arrive at the clip's rate and what the
   worker cannot keep up with is dropped; frame -> MQTT delivery (subscriber arrival - `read_at` of the
   frame whose embedding decided the event), and the time from the first (and the first steadily)
   recognisable frame being read to the event's arrival at the subscriber (both defined in
   `edge_agent.lab.bench.reference`);
3. CPU and RSS of this process, sampled every `usage_period_s`, per phase;
4. the face_recognition library's approach (dlib) on the same frames, every face of every frame.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config import Settings
from edge_agent.engine.budget import configured_point
from edge_agent.events.settings import MqttSettings
from edge_agent.lab.bench.agent_run import AgentRun, run_agent
from edge_agent.lab.bench.agent_setup import (
    BrokerChoice,
    Enrolled,
    bench_broker,
    bench_settings,
    enrol_photos,
    new_device_id,
    start_recorder,
)
from edge_agent.lab.bench.arrivals import ArrivalRecorder
from edge_agent.lab.bench.dlib_baseline import BaselineRun, load_approach, run_baseline
from edge_agent.lab.bench.reference import ClipInfo, FirstRecognisable, clip_info, first_recognisable
from edge_agent.lab.bench.usage import UsageSampler, UsageSummary
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog

ARRIVAL_WAIT_S = 5.0  # after a run (whose outbox was drained): how long to wait for the subscriber
PHASES = ("throughput", "camera-like", "dlib baseline")

Progress = Callable[[str], None]


def _quiet(_line: str) -> None:
    pass


@dataclass(frozen=True)
class PipelineBenchOptions:
    source: Path
    photos: tuple[Path, ...]
    repeat: int = 5
    baseline: bool = True
    baseline_frames: int | None = None  # None: every frame of the clip
    broker: BrokerChoice = "local"
    usage_period_s: float = 0.5


@dataclass(frozen=True)
class EventTiming:
    event_id: str
    subject_id: str
    frame_index: int
    delivery_s: float | None  # subscriber arrival - read_at of the deciding frame; None: never arrived


@dataclass(frozen=True)
class CameraRepeat:
    run: AgentRun
    events: tuple[EventTiming, ...]
    # per subject: the first (steadily) recognisable frame read -> the subject's first event at the subscriber
    from_first_s: dict[str, float | None]
    from_steady_s: dict[str, float | None]
    decided_at_frame: dict[str, int | None]  # per subject: the frame that decided its first event


@dataclass(frozen=True)
class ThroughputRun:
    run: AgentRun
    events: tuple[EventTiming, ...]


@dataclass(frozen=True)
class Models:
    detector: str
    embedder: str
    threshold: float
    target_fmr: float


@dataclass(frozen=True)
class PipelineBench:
    options: PipelineBenchOptions
    clip: ClipInfo
    subjects: dict[str, str]  # subject id -> enrolment photo file name
    models: Models
    decision: str
    broker: str
    throughput_runs: tuple[ThroughputRun, ...]
    first: dict[str, FirstRecognisable]
    camera: tuple[CameraRepeat, ...]
    usage: tuple[UsageSummary, ...]
    baseline: BaselineRun | None
    baseline_skipped: str | None

    @property
    def delivery_ms(self) -> list[float]:
        return [e.delivery_s * 1000.0 for r in self.camera for e in r.events if e.delivery_s is not None]

    @property
    def median_throughput(self) -> ThroughputRun:
        """The throughput run with the median rate (the lower middle one of an even count)."""
        ranked = sorted(self.throughput_runs, key=lambda t: t.run.fps)
        return ranked[(len(ranked) - 1) // 2]

    @property
    def throughput(self) -> AgentRun:
        return self.median_throughput.run

    @property
    def throughput_events(self) -> tuple[EventTiming, ...]:
        return self.median_throughput.events

    @property
    def from_first_s(self) -> list[float]:
        return [t for r in self.camera for t in r.from_first_s.values() if t is not None]

    @property
    def from_steady_s(self) -> list[float]:
        return [t for r in self.camera for t in r.from_steady_s.values() if t is not None]

    @property
    def fps_ratio(self) -> float | None:
        if self.baseline is None or self.baseline.fps <= 0:
            return None
        return self.throughput.fps / self.baseline.fps


def _timings(run: AgentRun, recorder: ArrivalRecorder) -> tuple[EventTiming, ...]:
    recorder.wait_for([e.event_id for e in run.events], ARRIVAL_WAIT_S)
    timings = []
    for event in run.events:
        arrival = recorder.arrival(event.event_id)
        delivery = None if arrival is None else arrival.at - event.read_at
        timings.append(EventTiming(event.event_id, event.subject_id, event.frame_index, delivery))
    return tuple(timings)


def _camera_repeat(
    run: AgentRun, recorder: ArrivalRecorder, first: dict[str, FirstRecognisable]
) -> CameraRepeat:
    timings = _timings(run, recorder)
    from_first: dict[str, float | None] = {}
    from_steady: dict[str, float | None] = {}
    decided: dict[str, int | None] = {}
    for subject_id, seen in first.items():
        arrivals = [
            (arrival.at, event.frame_index)
            for event in run.events
            if event.subject_id == subject_id and (arrival := recorder.arrival(event.event_id)) is not None
        ]
        at, frame_index = min(arrivals) if arrivals else (None, None)
        decided[subject_id] = frame_index
        for hit, waits in ((seen.first, from_first), (seen.steady, from_steady)):
            start = run.watched_read_at.get(hit.frame_index) if hit is not None else None
            waits[subject_id] = None if at is None or start is None else at - start
    return CameraRepeat(run, timings, from_first, from_steady, decided)


def decision_summary(settings: Settings) -> str:
    d, t, q = settings.decision, settings.tracking, settings.quality
    single = (
        "a false-match rate ten times stricter"
        if d.operating_point == "budget"
        else f"false-match rate {d.single_look_fmr:g}"
    )
    return (
        f"k-of-n vote {d.k} of {d.n} looks of a track (or one look at {single}), a look per track being "
        f"identified every {t.embed_interval_s:g} s and per "
        f"settled track every {t.recheck_interval_s:g} s, at most {t.looks_per_frame} a frame, "
        f"quality gates: face >= {q.min_face_px} px wide, "
        f"yaw <= {q.max_yaw_deg:g} deg, roll <= {q.max_roll_deg:g} deg"
    )


@dataclass(frozen=True)
class _AgentRuns:
    """How one bench starts its agent runs: each with the same temporary folder, broker and device id,
    and an outbox of its own (`name`)."""

    base: Settings
    options: PipelineBenchOptions
    folder: Path
    mqtt: MqttSettings
    device_id: str
    catalog: ModelCatalog

    def settings(self, name: str, realtime: bool) -> Settings:
        return bench_settings(
            self.base,
            self.folder,
            self.options.source,
            self.mqtt,
            device_id=self.device_id,
            run_name=name,
            realtime=realtime,
        )

    def run(self, name: str, realtime: bool, watch: Collection[int] = ()) -> AgentRun:
        return run_agent(self.settings(name, realtime), self.catalog, watch=watch)


def run_pipeline_bench(
    base: Settings, options: PipelineBenchOptions, progress: Progress = _quiet
) -> PipelineBench:
    catalog = ModelCatalog.load(base.models_dir)
    clip = clip_info(options.source)
    progress(f"clip {options.source.name}: {clip.frames} frames, {clip.width}x{clip.height}, {clip.fps} fps")
    with (
        tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as scratch,
        bench_broker(options.broker, base.mqtt, Path(scratch)) as broker,
    ):
        runs = _AgentRuns(base, options, Path(scratch), broker.mqtt, new_device_id(), catalog)
        settings = runs.settings("throughput-1", realtime=False)
        models, enrolled, first = _reference_pass(settings, catalog, options, progress)
        recorder = start_recorder(settings)
        sampler = UsageSampler(options.usage_period_s).start()
        try:
            throughput = _throughput_runs(runs, recorder, sampler, progress)
            camera = _camera_runs(runs, recorder, sampler, first, progress)
            baseline, skipped = _baseline_run(options, enrolled, models.threshold, sampler, progress)
        finally:
            sampler.stop()
            recorder.close()
    usage = tuple(summary for phase in PHASES if (summary := sampler.summary(phase)) is not None)
    return PipelineBench(
        options=options,
        clip=clip,
        subjects={s.subject_id: s.photo.name for s in enrolled},
        models=models,
        decision=decision_summary(base),
        broker=broker.description,
        throughput_runs=tuple(throughput),
        first=first,
        camera=tuple(camera),
        usage=usage,
        baseline=baseline,
        baseline_skipped=skipped,
    )


def _reference_pass(
    settings: Settings, catalog: ModelCatalog, options: PipelineBenchOptions, progress: Progress
) -> tuple[Models, list[Enrolled], dict[str, FirstRecognisable]]:
    """The photos enrolled, and per subject the first frame in which its face is recognisable; the face
    pipeline used for that is dropped on return, so the agent runs do not share its memory."""
    faces = FacePipeline.from_settings(settings, catalog)
    enrolled = enrol_photos(faces, settings, options.photos)
    calibration = faces.embedder.calibration
    assert calibration is not None  # from_settings loads it
    # the agent's own point for this many templates (the budget's), for the reference pass and the report
    point = configured_point(calibration, len(enrolled), settings.decision, settings.embedder.target_fmr)
    faces.embedder.use_target(point.chosen.point.target_fmr)
    models = Models(
        faces.detector.model_id,
        faces.embedder.model_id,
        faces.embedder.threshold,
        faces.embedder.operating_point.target_fmr,
    )
    progress("reference pass: the first frame in which each enrolled face is recognisable")
    first = first_recognisable(faces, options.source, enrolled, settings.decision.k)
    return models, enrolled, first


def _throughput_runs(
    runs: _AgentRuns, recorder: ArrivalRecorder, sampler: UsageSampler, progress: Progress
) -> list[ThroughputRun]:
    repeat = runs.options.repeat
    throughput = []
    for i in range(repeat):
        progress(f"throughput run {i + 1}/{repeat}: every frame, as fast as it goes")
        with sampler.phase("throughput"):
            run = runs.run(f"throughput-{i + 1}", realtime=False)
        throughput.append(ThroughputRun(run, _timings(run, recorder)))
    return throughput


def _camera_runs(
    runs: _AgentRuns,
    recorder: ArrivalRecorder,
    sampler: UsageSampler,
    first: dict[str, FirstRecognisable],
    progress: Progress,
) -> list[CameraRepeat]:
    """Frames at the clip's rate; the read time of each subject's first recognisable frames is kept."""
    watch = {index for seen in first.values() for index in seen.frames}
    repeat = runs.options.repeat
    camera = []
    for i in range(repeat):
        progress(f"camera-like run {i + 1}/{repeat}: frames at the clip's rate")
        with sampler.phase("camera-like"):
            run = runs.run(f"camera-{i + 1}", realtime=True, watch=watch)
        camera.append(_camera_repeat(run, recorder, first))
    return camera


def _baseline_run(
    options: PipelineBenchOptions,
    enrolled: list[Enrolled],
    threshold: float,
    sampler: UsageSampler,
    progress: Progress,
) -> tuple[BaselineRun | None, str | None]:
    """face_recognition's approach on the same clip, or None and why it was not run."""
    if not options.baseline:
        return None, "not run (--no-baseline)"
    approach, skipped = load_approach()
    if approach is None:
        return None, skipped
    progress("baseline: face_recognition's approach (dlib) on every frame")
    with sampler.phase("dlib baseline"):
        baseline = run_baseline(
            approach,
            options.source,
            [(s.subject_id, s.photo) for s in enrolled],
            threshold,
            options.baseline_frames,
        )
    return baseline, skipped

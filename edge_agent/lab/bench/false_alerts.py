"""`edge-agent bench false-alerts`: the "Congress test" at this device's operating points.

In the ACLU's 2018 test a cloud service at its default 80 % similarity matched 28 of 535 members of
Congress to a 25,000-photo mugshot set. Here: a watchlist of real people (lfw-devtrain, one enrolment
photo each; padded with the watchlist bench's mixture distractors to larger sizes), and the people who are
not on it, who must never raise an alert:

- (a) **photos**: every stranger's photo searched against the watchlist (the nearest template under the
  threshold is a false alert), beside the true-match rate of the enrolled people's other photos;
- (b) **tracks**: each photo walked through a short clip of the agent's own frames (the photo growing
  and sliding across a 320x240 frame at 15 fps, as a passer-by does), through the whole live pipeline:
  detector, tracker, gates, look schedule, embedder, watchlist search and the vote. Every look's
  descriptor is kept, and the vote (the live `TemporalVote`) is replayed for every calibrated point and
  for the padded sizes: false alerts per stranger-track, the true-match rate per enrolled person's track,
  and the track factor the alert budget uses (engine/budget.py): false alerts per stranger-track divided
  by templates x false-match rate.

Distances for (a) and the replays are exact (numpy, float64 re-ranked), so the index plays no part;
the live run of (b) uses the agent's own watchlist search. Looks of a replay are those the live run took
at its own operating point: at another point a settled track would be re-checked at other moments, a
small difference stated in the report.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge_agent.capture.media import read_image
from edge_agent.capture.runner import Captured
from edge_agent.config import Settings
from edge_agent.engine.budget import SINGLE_LOOK_STRICTER, OperatingPoint, choose_operating_point
from edge_agent.engine.live import LivePipeline, Matcher
from edge_agent.engine.vote import TemporalVote
from edge_agent.errors import EdgeAgentError
from edge_agent.events.schema import MatchEvent
from edge_agent.lab.bench.watchlist_vectors import (
    DIMENSIONS,
    ROW_CHUNK,
    MixtureSettings,
    RealFaces,
    fit_mixture,
)
from edge_agent.types import Candidate, Frame
from edge_agent.vision.embed import Descriptor
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import FmrThreshold
from edge_agent.watchlist.records import Enrolment, NewSubject, NewTemplate
from edge_agent.watchlist.store import Watchlist

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

ACLU_FIGURE = (
    "ACLU, 2018 (published figure, not a run of theirs): a cloud face search at its default 80 % "
    "similarity matched 28 of 535 members of Congress (5.2 %) to people in a 25,000-photo mugshot set"
)
FRAME_SIZE = (320, 240)
FPS = 15.0
CUT = (45, 205)  # the middle of a 250x250 LFW photo: the labelled face with some hair and chin
WIDTHS = (100, 140)  # the cut-out's width in the first and the last frame of a track (a person nearing)


@dataclass(frozen=True)
class Split:
    """Rows of `RealFaces`: one enrolment photo per watchlist person, their other photos, and every photo
    of the people who are not on the list."""

    enrolled: tuple[int, ...]
    mated: tuple[int, ...]
    strangers: tuple[int, ...]

    @property
    def people(self) -> int:
        return len(self.enrolled)


def congress_split(real: RealFaces, people: int, seed: int) -> Split:
    """`people` lfw-devtrain people on the watchlist: those with two or more photos first (a random
    `people` of them if there are more), their first photo enrolled and the rest probes of a true match,
    then people with one photo at random; everyone else is a stranger."""
    by_person: dict[str, list[int]] = {}
    for row, identity in enumerate(real.identities):
        if identity.startswith("lfw:"):
            by_person.setdefault(identity, []).append(row)
    rng = random.Random(seed)
    several = sorted(p for p, rows in by_person.items() if len(rows) >= 2)
    single = sorted(p for p, rows in by_person.items() if len(rows) == 1)
    rng.shuffle(several)
    rng.shuffle(single)
    if people >= len(by_person):
        raise EdgeAgentError(f"--people must be below the {len(by_person)} people of lfw-devtrain")
    chosen = (several + single)[:people]
    listed = set(chosen)
    return Split(
        enrolled=tuple(by_person[p][0] for p in chosen),
        mated=tuple(row for p in chosen for row in by_person[p][1:]),
        strangers=tuple(row for p, rows in by_person.items() if p not in listed for row in rows),
    )


# --- the watchlists: real people, padded with distractors -------------------------------------------


@dataclass(frozen=True, eq=False)
class Gallery:
    """Every template of one watchlist size: the enrolled people's first, then distractors."""

    matrix: F32
    people: int  # rows [0, people) are real people; the rest distractors, each its own pseudo-subject

    @property
    def size(self) -> int:
        return len(self.matrix)


def galleries(real: RealFaces, split: Split, sizes: Sequence[int], seed: int) -> Iterator[Gallery]:
    """The real watchlist padded with mixture distractors to each size (the smallest size is the real
    watchlist alone when it equals the number of people)."""
    enrolled = real.vectors[list(split.enrolled)]
    model = fit_mixture(real.vectors, MixtureSettings(), np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    padding = np.zeros((0, DIMENSIONS), dtype=np.float32)
    for size in sorted(sizes):
        if size < split.people:
            raise EdgeAgentError(f"a watchlist size ({size:,}) below the {split.people} people enrolled")
        while len(padding) < size - split.people:
            padding = np.concatenate(
                [padding, model.draw(rng, min(ROW_CHUNK, size - split.people - len(padding)))]
            )
        yield Gallery(
            np.ascontiguousarray(np.concatenate([enrolled, padding[: size - split.people]])), split.people
        )


def nearest(gallery: Gallery, queries: F32) -> tuple[I64, F64]:
    """Each query's nearest template (row) and its Euclidean distance: float32 GEMM over row chunks, the
    best few of each chunk re-scored in float64 (so a near tie is decided exactly)."""
    queries64 = queries.astype(np.float64)
    best_rows = np.zeros(len(queries), dtype=np.int64)
    best = np.full(len(queries), np.inf)
    q_norms = np.einsum("ij,ij->i", queries, queries)
    for start in range(0, gallery.size, ROW_CHUNK):
        block = gallery.matrix[start : start + ROW_CHUNK]
        d2 = q_norms[:, None] - 2.0 * queries @ block.T + np.einsum("ij,ij->i", block, block)[None, :]
        few = min(8, block.shape[0])
        candidates = np.argpartition(d2, few - 1, axis=1)[:, :few]
        exact = np.linalg.norm(block[candidates].astype(np.float64) - queries64[:, None, :], axis=2)
        pick = exact.argmin(axis=1)
        distance = exact[np.arange(len(queries)), pick]
        better = distance < best
        best[better] = distance[better]
        best_rows[better] = candidates[np.arange(len(queries)), pick][better] + start
    return best_rows, best


# --- (a) photo by photo --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoRow:
    size: int
    point: FmrThreshold
    stranger_alerts: int
    strangers: int
    true_matches: int
    mated: int


def photo_rows(
    real: RealFaces, split: Split, gallery: Gallery, points: Sequence[FmrThreshold]
) -> list[PhotoRow]:
    owner = {row: i for i, row in enumerate(split.enrolled)}  # enrolled row -> its gallery row
    identity_row = {real.identities[row]: i for row, i in owner.items()}
    strangers = real.vectors[list(split.strangers)]
    mated = real.vectors[list(split.mated)]
    _, s_dist = nearest(gallery, strangers)
    m_rows, m_dist = nearest(gallery, mated)
    own = np.array([identity_row[real.identities[row]] for row in split.mated], dtype=np.int64)
    rows = []
    for point in points:
        rows.append(
            PhotoRow(
                size=gallery.size,
                point=point,
                stranger_alerts=int((s_dist < point.threshold).sum()),
                strangers=len(strangers),
                true_matches=int(((m_dist < point.threshold) & (m_rows == own)).sum()),
                mated=len(mated),
            )
        )
    return rows


# --- (b) tracks through the live pipeline --------------------------------------------------------------


@dataclass
class Look:
    track: int  # the live tracker's id within the clip
    at: datetime
    descriptor: Descriptor


@dataclass
class WalkedTrack:
    """The looks the live pipeline took at one photo's clip, and the events it raised."""

    row: int  # the photo's row in RealFaces
    looks: list[Look] = field(default_factory=list)
    live_events: list[str] = field(default_factory=list)  # who the live run's events named (identities)


class _LookRecorder(Matcher):
    """The live matcher, keeping each look's descriptor for the replays."""

    def __init__(self, matcher: Matcher) -> None:
        super().__init__(matcher.watchlist)
        self.current: WalkedTrack | None = None

    def candidate(self, track_id: int, captured_at: datetime, descriptor: Descriptor) -> Candidate:
        if self.current is not None:
            self.current.looks.append(Look(track_id, captured_at, descriptor.copy()))
        return super().candidate(track_id, captured_at, descriptor)


class _KeptEvents:
    """The live run's event sink: decided events kept in memory (the bench publishes nothing)."""

    def __init__(self) -> None:
        self.events: list[MatchEvent] = []

    def depth(self) -> int:
        return 0

    def commit_or_hold(self, event: MatchEvent, topic: str, embeddings: F32, /) -> object:
        self.events.append(event)
        return None


def track_frames(photo: Path, seconds: float, clip: int, start: datetime) -> Iterator[Frame]:
    """The photo's middle cut out and walked across a grey frame, growing from 100 to 140 px wide."""
    image = read_image(photo)
    cut = image[CUT[0] : CUT[1], CUT[0] : CUT[1]]
    width, height = FRAME_SIZE
    count = max(2, round(seconds * FPS))
    for i in range(count):
        share = i / (count - 1)
        side = round(WIDTHS[0] + (WIDTHS[1] - WIDTHS[0]) * share)
        sprite = cv2.resize(cut, (side, side), interpolation=cv2.INTER_AREA)
        canvas = np.full((height, width, 3), 128, dtype=np.uint8)
        x0 = round(10 + (width - side - 20) * share)
        y0 = (height - side) // 2
        canvas[y0 : y0 + side, x0 : x0 + side] = sprite
        yield Frame(
            canvas,
            "false-alerts",
            i,
            start + timedelta(seconds=i / FPS),
            meta={"clip_id": f"track-{clip}"},
        )


def walk_tracks(
    settings: Settings,
    faces: FacePipeline,
    watchlist: Watchlist,
    real: RealFaces,
    rows: Sequence[int],
    seconds: float,
    say: Callable[[str], None],
) -> tuple[list[WalkedTrack], OperatingPoint]:
    """Each photo's clip through one live pipeline (a new clip starts fresh tracks and votes)."""
    sink = _KeptEvents()
    pipeline = LivePipeline(settings, faces, watchlist, sink, "bench/false-alerts")
    recorder = _LookRecorder(pipeline.matcher)
    pipeline.matcher = recorder
    walked = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    began = time.perf_counter()
    for n, row in enumerate(rows):
        track = WalkedTrack(row)
        recorder.current = track
        before = len(sink.events)
        clip_start = start + timedelta(seconds=n * (seconds + 5.0))
        for frame in track_frames(real.paths[row], seconds, n, clip_start):
            pipeline.process(Captured(frame, time.monotonic()))
        track.live_events = [_name(watchlist, event.subject_id) for event in sink.events[before:]]
        walked.append(track)
        if (n + 1) % 250 == 0:
            say(f"walked {n + 1}/{len(rows)} tracks ({time.perf_counter() - began:.0f} s)")
    return walked, pipeline.operating


def _name(watchlist: Watchlist, subject_id: str) -> str:
    """The identity a subject was enrolled under (its display name, see `enrol_split`)."""
    return watchlist.subject(subject_id).display_name


@dataclass(frozen=True)
class TrackRow:
    size: int
    point: FmrThreshold
    single_look: FmrThreshold | None
    stranger_alerts: int  # stranger tracks with any alert
    strangers: int
    true_matches: int  # enrolled people's tracks with an event naming them
    wrong_names: int  # enrolled people's tracks with an event naming someone else
    mated: int

    @property
    def per_track(self) -> float:
        return self.stranger_alerts / self.strangers if self.strangers else 0.0

    @property
    def factor(self) -> float | None:
        """False alerts per stranger-track / (templates x FMR): the budget's track factor at this point."""
        expected = self.size * self.point.target_fmr
        return None if expected <= 0 else self.per_track / expected


def replay_rows(
    settings: Settings,
    real: RealFaces,
    split: Split,
    gallery: Gallery,
    walked: Sequence[WalkedTrack],
    points: Sequence[FmrThreshold],
) -> list[TrackRow]:
    """The live vote replayed over every walked track's looks at each point (with its single-look point
    ten times stricter, as under the budget), against `gallery`."""
    looks = [look for track in walked for look in track.looks]
    if not looks:
        raise EdgeAgentError("the live pipeline took no look at any track: nothing to replay")
    rows_, dist = nearest(gallery, np.stack([look.descriptor for look in looks]).astype(np.float32))
    names = [real.identities[row] for row in split.enrolled]
    stranger_rows = set(split.strangers)
    rows = []
    by_rate = {round(p.target_fmr, 12): p for p in points}
    for point in points:
        single = by_rate.get(round(point.target_fmr / SINGLE_LOOK_STRICTER, 12))
        counts = {"stranger": 0, "true": 0, "wrong": 0}
        cursor = 0
        for track in walked:
            vote: TemporalVote[None] = TemporalVote(settings.decision, point, single)
            decided: set[str] = set()
            for look in track.looks:
                row, distance = int(rows_[cursor]), float(dist[cursor])
                cursor += 1
                subject = names[row] if row < gallery.people else f"distractor:{row}"
                decision = vote.add(Candidate(look.track, look.at, subject, "bench", distance, row), None)
                if decision is not None:
                    decided.add(decision.subject_id)
            identity = real.identities[track.row]
            if track.row in stranger_rows:
                counts["stranger"] += bool(decided)
            else:
                counts["true"] += identity in decided
                counts["wrong"] += bool(decided - {identity})
        rows.append(
            TrackRow(
                size=gallery.size,
                point=point,
                single_look=single if single is not None and single.threshold < point.threshold else None,
                stranger_alerts=counts["stranger"],
                strangers=sum(track.row in stranger_rows for track in walked),
                true_matches=counts["true"],
                wrong_names=counts["wrong"],
                mated=sum(track.row not in stranger_rows for track in walked),
            )
        )
    return rows


def enrol_split(watchlist: Watchlist, real: RealFaces, split: Split) -> None:
    """The watchlist people, one template each (their first photo's descriptor), in one transaction."""
    expires = datetime.now(UTC) + timedelta(days=30)
    enrolments = [
        Enrolment(
            NewSubject(real.identities[row], "bench", "false-alert bench", "lfw-devtrain", "bench", expires),
            (NewTemplate(real.vectors[row], 1.0, "0" * 64),),
        )
        for row in split.enrolled
    ]
    watchlist.enroll_many(enrolments)


@dataclass(frozen=True)
class FalseAlertBench:
    people: int
    seed: int
    seconds: float  # each track's length
    photos: list[PhotoRow]
    tracks: list[TrackRow]
    live: OperatingPoint  # the operating point the live run chose for the real watchlist
    live_stranger_alerts: int
    live_strangers: int
    live_true: int
    live_mated: int
    budgets: list[OperatingPoint]  # the budget's choice at each size, with the measured track factor
    track_factor: float | None
    looks: int
    elapsed_s: float


def measured_track_factor(rows: Sequence[TrackRow], least_alerts: int = 10) -> float | None:
    """The largest factor among points with at least `least_alerts` stranger alerts (fewer are too few
    to divide by), rounded up to two significant digits; None when no point has that many."""
    factors = [r.factor for r in rows if r.stranger_alerts >= least_alerts and r.factor is not None]
    if not factors:
        return None
    top = max(factors)
    scale = 10 ** (np.floor(np.log10(top)) - 1)
    return float(np.ceil(top / scale) * scale)


def budget_choices(
    settings: Settings, points: Sequence[FmrThreshold], sizes: Sequence[int], factor: float | None
) -> list[OperatingPoint]:
    from edge_agent.vision.manifest import Calibration

    calibration = Calibration(dataset="", pipeline="", command="", thresholds=tuple(points))
    decision = (
        settings.decision if factor is None else settings.decision.model_copy(update={"track_factor": factor})
    )
    return [choose_operating_point(calibration, size, decision, None) for size in sizes]

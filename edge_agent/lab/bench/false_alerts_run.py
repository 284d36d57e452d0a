"""The whole false-alert bench (edge_agent/lab/bench/false_alerts.py): describe, split, walk, replay."""

from __future__ import annotations

import io
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from edge_agent.config import Settings
from edge_agent.files import atomic_write_bytes
from edge_agent.lab.bench.false_alerts import (
    FalseAlertBench,
    Look,
    WalkedTrack,
    budget_choices,
    congress_split,
    enrol_split,
    galleries,
    measured_track_factor,
    photo_rows,
    replay_rows,
    walk_tracks,
)
from edge_agent.lab.bench.watchlist_vectors import DEFAULT_CACHE, describe_real_faces
from edge_agent.lab.fingerprint import pipeline_fingerprint
from edge_agent.vision.faces import FacePipeline
from edge_agent.watchlist.store import Watchlist

WALK_CACHE = Path("build") / "bench-cache" / "false-alert-walks.npz"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def run_false_alert_bench(
    settings: Settings,
    faces: FacePipeline,
    faces_dir: Path,
    *,
    people: int,
    sizes: Sequence[int],
    track_sizes: Sequence[int],
    mated_tracks: int,
    stranger_tracks: int | None = None,
    max_photos: int | None = None,
    seconds: float,
    seed: int,
    cache: Path | None = WALK_CACHE,
    descriptor_cache: Path | None = DEFAULT_CACHE,
    say: Callable[[str], None] = lambda _: None,
) -> FalseAlertBench:
    began = time.perf_counter()
    calibration = faces.embedder.calibration
    assert calibration is not None
    points = sorted(calibration.thresholds, key=lambda t: -t.target_fmr)
    real = describe_real_faces(faces_dir, max_photos, descriptor_cache, pipeline=faces, progress=say)
    split = congress_split(real, people, seed)
    say(
        f"{split.people} people on the watchlist, {len(split.mated)} other photos of them, "
        f"{len(split.strangers)} photos of strangers"
    )
    photos = []
    for gallery in galleries(real, split, sorted({people, *sizes}), seed):
        photos += photo_rows(real, split, gallery, points)
        say(f"photos searched at {gallery.size:,} templates")
    rng = random.Random(seed)
    mated = sorted(rng.sample(split.mated, min(mated_tracks, len(split.mated))))
    strangers_walked = sorted(
        rng.sample(split.strangers, min(stranger_tracks or len(split.strangers), len(split.strangers)))
    )
    walk_rows = strangers_walked + mated
    decision = settings.decision.model_dump_json()
    key = f"{pipeline_fingerprint(faces)}|{decision}|{people}|{seed}|{seconds}|{walk_rows}"
    walked = _cached_walks(cache, key) if cache is not None else None
    if walked is None:
        with (
            tempfile.TemporaryDirectory(prefix="edge-agent-false-alerts-") as scratch,
            Watchlist.for_settings(
                settings,
                faces.embedder.spec.dimensions,
                Path(scratch) / "watchlist.db",
                faces.embedder.metric,
            ) as watchlist,
        ):
            enrol_split(watchlist, real, split)
            walked, _ = walk_tracks(settings, faces, watchlist, real, walk_rows, seconds, say)
        if cache is not None:
            _store_walks(cache, key, walked)
    strangers = set(split.strangers)
    live_alerts = sum(bool(t.live_events) for t in walked if t.row in strangers)
    live_true = sum(real.identities[t.row] in t.live_events for t in walked if t.row not in strangers)
    tracks = []
    for gallery in galleries(real, split, sorted({people, *track_sizes}), seed):
        tracks += replay_rows(settings, real, split, gallery, walked, points)
        say(f"tracks replayed at {gallery.size:,} templates")
    factor = measured_track_factor(tracks)
    return FalseAlertBench(
        people=people,
        seed=seed,
        seconds=seconds,
        photos=photos,
        tracks=tracks,
        live=budget_choices(settings, points, [people], None)[0],
        live_stranger_alerts=live_alerts,
        live_strangers=sum(t.row in strangers for t in walked),
        live_true=live_true,
        live_mated=sum(t.row not in strangers for t in walked),
        budgets=budget_choices(settings, points, sorted({people, *sizes}), None),
        track_factor=factor,
        looks=sum(len(t.looks) for t in walked),
        elapsed_s=time.perf_counter() - began,
    )


def _store_walks(cache: Path, key: str, walked: Sequence[WalkedTrack]) -> None:
    looks = [(i, look) for i, track in enumerate(walked) for look in track.looks]
    buffer = io.BytesIO()
    np.savez(
        buffer,
        key=np.array(key),
        rows=np.array([t.row for t in walked], dtype=np.int64),
        events=np.array(["\t".join(t.live_events) for t in walked]),
        look_walk=np.array([i for i, _ in looks], dtype=np.int64),
        look_track=np.array([look.track for _, look in looks], dtype=np.int64),
        look_s=np.array([(look.at - EPOCH).total_seconds() for _, look in looks]),
        look_descriptor=np.stack([look.descriptor for _, look in looks]).astype(np.float32),
    )
    atomic_write_bytes(cache, buffer.getvalue())


def _cached_walks(cache: Path, key: str) -> list[WalkedTrack] | None:
    if not cache.is_file():
        return None
    try:
        with np.load(cache) as stored:
            if str(stored["key"]) != key:
                return None
            walked = [
                WalkedTrack(int(row), [], [s for s in str(events).split("\t") if s])
                for row, events in zip(stored["rows"], stored["events"], strict=True)
            ]
            for i, track, seconds, descriptor in zip(
                stored["look_walk"],
                stored["look_track"],
                stored["look_s"],
                stored["look_descriptor"],
                strict=True,
            ):
                walked[int(i)].looks.append(
                    Look(int(track), EPOCH + timedelta(seconds=float(seconds)), descriptor)
                )
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return walked

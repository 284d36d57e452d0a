"""Helpers for the live-agent tests: settings on a test broker, real enrolments, database snapshots."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from edge_agent.capture.media import read_image
from edge_agent.config import Settings, load_settings
from edge_agent.lab.demo.kit import default_kit, enrol_kit_photos
from edge_agent.service import Agent
from edge_agent.vision.faces import FacePipeline
from edge_agent.watchlist.records import NewSubject, NewTemplate
from edge_agent.watchlist.store import Watchlist
from tests.kits.broker import Broker, Received

REPO = Path(__file__).resolve().parents[2]
DEMO_KIT = default_kit()
DEMO_CLIP = DEMO_KIT / "short_hamilton_clip.mp4"
DEVICE = "test-cam"
PREFIX = "edge-agent"
MATCH_TOPIC = f"{PREFIX}/{DEVICE}/events/match"


def agent_settings(folder: Path, broker: Broker | None, port: int | None = None, **sections: Any) -> Settings:
    """Settings for an agent writing under `folder`, talking to `broker` (or to a closed `port`)."""
    mqtt: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": broker.port if broker is not None else port,
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0,
        "health_interval_s": 1.0,
        **sections.pop("mqtt", {}),
    }
    camera = {"source": str(DEMO_CLIP), **sections.pop("camera", {})}
    return load_settings(
        None,
        use_environment=False,
        device_id=DEVICE,
        watchlist={"path": folder / "watchlist.db"},
        events={"path": folder / "events.db", "drain_timeout_s": 10.0, **sections.pop("events", {})},
        camera=camera,
        mqtt=mqtt,
        **sections,
    )


def decided_at_rate(agent: Agent, event: dict[str, Any]) -> float:
    """The false-match rate an event must state: the operating point's for k of n, its stricter single-look
    point's for one look (engine/vote.py), as the agent's budget chose them (engine/budget.py)."""
    assert agent.pipeline is not None
    load = agent.pipeline.operating.chosen
    if event["frames_agreeing"] == 1 and load.single_look is not None:
        return load.single_look.target_fmr
    return load.point.target_fmr


def open_watchlist(settings: Settings, faces: FacePipeline) -> Watchlist:
    return Watchlist.for_settings(settings, faces.embedder.spec.dimensions)


def enrol_demo_people(settings: Settings, faces: FacePipeline) -> dict[str, str]:
    """Lin-Manuel Miranda and Alex Lacamoire from the demo kit photos: name (file stem) -> subject id."""
    with open_watchlist(settings, faces) as watchlist:
        enrolled = enrol_kit_photos(faces, watchlist, DEMO_KIT)
    return {path.stem: subject_id for subject_id, path in enrolled.items()}


def enrol_photos(settings: Settings, faces: FacePipeline, photos: list[Path]) -> list[str]:
    """Each photo's largest face as its own subject (people who are not in the test clip)."""
    ids = []
    with open_watchlist(settings, faces) as watchlist:
        for photo in photos:
            described, _ = faces.describe_one(read_image(photo), "largest")
            assert described is not None, f"no face in {photo}"
            subject = NewSubject(
                photo.parent.name,
                "test",
                "unrelated person",
                f"test photo {photo.name}",
                "test",
                watchlist.clock().replace(year=watchlist.clock().year + 1),
            )
            template = NewTemplate(
                described.descriptor, described.quality.score, hashlib.sha256(photo.read_bytes()).hexdigest()
            )
            ids.append(watchlist.enroll(subject, [template]).id)
    return ids


def table_rows(db: Path) -> dict[str, int]:
    """Row count of every table (read-only connection, so looking changes nothing)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]) for table in tables}
    finally:
        conn.close()


def files_under(folder: Path) -> set[Path]:
    return {path.relative_to(folder) for path in folder.rglob("*") if path.is_file()}


def payloads(messages: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(message.payload) for message in messages]

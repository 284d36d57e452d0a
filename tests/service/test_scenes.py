"""The live agent on the shared labelled scene clips (real LFW photos moving through a scene, every face of
every frame in `CLIP.truth.csv`), with a real mosquitto: a hard cut at one spot, and people crossing.

The people of `CLIP.enroll.csv` are enrolled from photos kept out of the clip; every match event that
reaches the broker is checked against the truth of the frame it was decided on.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2

from edge_agent.service import Agent
from edge_agent.types import Box
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from tests.kits.agent_kit import (
    DEVICE,
    MATCH_TOPIC,
    PREFIX,
    agent_settings,
    enrol_photos,
    open_watchlist,
    payloads,
)
from tests.kits.broker import Broker, Subscriber


@dataclass(frozen=True)
class Scene:
    clip: Path
    faces_at: dict[int, list[tuple[str, Box]]]  # frame -> (person, face box) of every face on screen
    enrol_photos: dict[str, Path]  # person -> the photo to enrol (kept out of the clip)

    @classmethod
    def load(cls, faces_dir: Path, name: str) -> Scene:
        clip = faces_dir / "video" / "scenes" / f"{name}.mp4"
        faces_at: dict[int, list[tuple[str, Box]]] = defaultdict(list)
        with Path(f"{clip}.truth.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                box = Box(*(float(row[k]) for k in ("x0", "y0", "x1", "y1")))
                faces_at[int(row["frame"])].append((row["person"], box))
        photos = faces_dir / "lfw-devtrain"
        with Path(f"{clip}.enroll.csv").open(newline="") as fh:
            enrol = {row["person"]: photos / row["photo"].strip() for row in csv.DictReader(fh)}
        return cls(clip, dict(faces_at), enrol)

    def frame_of(self, captured_at: str) -> int:
        """The clip frame an event was decided on: a file source stamps frame k with the file's
        modification time + k / fps."""
        capture = cv2.VideoCapture(str(self.clip))
        fps = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        start = datetime.fromtimestamp(self.clip.stat().st_mtime, tz=UTC)
        return round((datetime.fromisoformat(captured_at) - start).total_seconds() * fps)

    def face_under(self, frame: int, box: tuple[float, float, float, float]) -> str | None:
        """Whose labelled face the event's box covers best in that frame (IoU >= 0.3), if anyone's."""
        event_box = Box(*box)
        best = max(self.faces_at.get(frame, []), key=lambda face: face[1].iou(event_box), default=None)
        return best[0] if best is not None and best[1].iou(event_box) >= 0.3 else None


def run_scene(
    scene: Scene, tmp_path: Path, broker: Broker, catalog: ModelCatalog, faces: FacePipeline
) -> list[tuple[str, int, dict[str, Any]]]:
    """Enrol the scene's people, run the agent over the clip; (person named, frame, event) per event."""
    settings = agent_settings(tmp_path, broker, camera={"source": str(scene.clip), "kind": "file"})
    people = sorted(scene.enrol_photos)
    ids = enrol_photos(settings, faces, [scene.enrol_photos[person] for person in people])
    with open_watchlist(settings, faces) as watchlist:
        name_of = {subject_id: watchlist.subject(subject_id).display_name for subject_id in ids}
    subscriber = Subscriber(broker, f"{PREFIX}/{DEVICE}/#").start()
    assert Agent(settings, catalog=catalog).run() == 0
    subscriber.wait_for(2, f"{PREFIX}/{DEVICE}/status")  # online, then offline at the clean stop
    time.sleep(0.3)
    events = payloads(subscriber.messages(MATCH_TOPIC))
    return [(name_of[e["subject_id"]], scene.frame_of(e["captured_at"]), e) for e in events]


def test_a_hard_cut_at_one_spot_gives_each_person_their_own_event(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog, faces: FacePipeline, faces_dir: Path
) -> None:
    """`cuts.mp4` cuts from one person to the next every 2 s at the same spot, boxes overlapping across
    the cut, so the tracker carries one track through all of them; the identity stage must split it.
    Natasha McElhone (frames 90-119) is followed by Jose Serra (120-149) with a hard cut."""
    scene = Scene.load(faces_dir, "cuts")
    named = run_scene(scene, tmp_path, broker, catalog, faces)

    for person, frame, event in named:
        assert scene.face_under(frame, event["box"]) == person, (person, frame, event["box"])
    people = [person for person, _, _ in named]
    assert len(people) == len(set(people)), people  # one event per person
    assert {"Natasha_McElhone", "Jose_Serra"} <= set(people), people
    assert len({event["track_id"] for _, _, event in named}) == len(named)  # each on a track of its own


def test_people_crossing_keep_their_own_names(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog, faces: FacePipeline, faces_dir: Path
) -> None:
    """`cross.mp4`: pairs walk across the frame at one height in opposite directions and pass each other,
    one in front of the other. Every event must name the person whose face its box covers, on the frame it
    was decided on; the first pair (Larry Brown and Sebastien Grosjean, both enrolled) both get named."""
    scene = Scene.load(faces_dir, "cross")
    named = run_scene(scene, tmp_path, broker, catalog, faces)

    for person, frame, event in named:
        assert scene.face_under(frame, event["box"]) == person, (person, frame, event["box"])
    people = [person for person, _, _ in named]
    assert len(people) == len(set(people)), people
    assert {"Larry_Brown", "Sebastien_Grosjean"} <= set(people), people

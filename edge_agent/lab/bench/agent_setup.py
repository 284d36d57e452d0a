"""What the live-agent benchmarks share: their broker, their settings, and a temporary watchlist.

A benchmark never touches the configured watchlist or outbox: both live in a temporary folder. Its device
id is fresh (`bench-<random>`), so on a shared broker its topics and client id collide with nobody's.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from edge_agent.capture.media import read_image
from edge_agent.config import Settings
from edge_agent.errors import EdgeAgentError
from edge_agent.events.settings import MqttSettings
from edge_agent.events.topics import Topics
from edge_agent.lab.bench.arrivals import ArrivalRecorder
from edge_agent.lab.mosquitto import LocalMosquitto, mosquitto_version
from edge_agent.vision.embed import Descriptor
from edge_agent.vision.faces import FacePipeline
from edge_agent.watchlist.records import NewSubject, NewTemplate
from edge_agent.watchlist.store import Watchlist

BrokerChoice = Literal["local", "config"]
BENCH_WATCHLIST = "bench"


@dataclass(frozen=True)
class BenchBroker:
    mqtt: MqttSettings
    description: str


@contextmanager
def bench_broker(choice: BrokerChoice, configured: MqttSettings, folder: Path) -> Iterator[BenchBroker]:
    """`local`: a mosquitto started here on a free loopback port (stopped afterwards); `config`: the
    broker of the configuration's [mqtt] section, as it is (TLS and login included)."""
    if choice == "config":
        security = "TLS" if configured.uses_tls else "no TLS"
        yield BenchBroker(
            configured.model_copy(update={"client_id": None}),
            f"configured broker {configured.host}:{configured.port} ({security})",
        )
        return
    with LocalMosquitto(folder / "mosquitto") as broker:
        mqtt = configured.model_copy(
            update={
                "host": broker.host,
                "port": broker.port,
                "client_id": None,
                "username": None,
                "password": None,
                "tls": False,
                "ca_file": None,
                "cert_file": None,
                "key_file": None,
                "home_assistant": False,
            }
        )
        yield BenchBroker(mqtt, f"{mosquitto_version()} on {broker.host} (loopback), started by the bench")


def bench_settings(
    base: Settings,
    folder: Path,
    source: Path,
    mqtt: MqttSettings,
    *,
    device_id: str,
    run_name: str,
    realtime: bool,
    loop: bool = False,
) -> Settings:
    """`base` with the clip as camera, the temporary watchlist, a fresh outbox for this run, and `mqtt`."""
    camera = base.camera.model_copy(
        update={"source": str(source), "kind": "file", "realtime": realtime, "loop": loop}
    )
    watchlist = base.watchlist.model_copy(update={"path": folder / "watchlist.db"})
    events = base.events.model_copy(update={"path": folder / f"events-{run_name}.db"})
    return base.model_copy(
        update={
            "device_id": device_id,
            "camera": camera,
            "watchlist": watchlist,
            "events": events,
            "mqtt": mqtt,
        }
    )


def new_device_id() -> str:
    return f"bench-{uuid.uuid4().hex[:8]}"


def match_topic(settings: Settings) -> str:
    return Topics(settings.mqtt.topic_prefix, settings.device_id).match


def start_recorder(settings: Settings) -> ArrivalRecorder:
    return ArrivalRecorder(settings.mqtt, match_topic(settings)).start()


@dataclass(frozen=True)
class Enrolled:
    subject_id: str
    photo: Path
    descriptor: Descriptor


def enrol_photos(faces: FacePipeline, settings: Settings, photos: Sequence[Path]) -> list[Enrolled]:
    """Each photo's largest face enrolled as one subject of the temporary watchlist (expires in a day)."""
    enrolled = []
    embedder = faces.embedder
    with Watchlist.for_settings(settings, embedder.spec.dimensions, metric=embedder.metric) as watchlist:
        expires = watchlist.clock() + timedelta(days=1)
        for photo in photos:
            described, _ = faces.describe_one(read_image(photo), "largest")
            if described is None:
                raise EdgeAgentError(f"no face found in {photo}: nothing to enrol")
            subject = NewSubject(
                photo.stem,
                BENCH_WATCHLIST,
                "benchmark enrolment",
                f"bench: {photo.name}",
                "edge-agent bench",
                expires,
            )
            template = NewTemplate(
                described.descriptor, described.quality.score, hashlib.sha256(photo.read_bytes()).hexdigest()
            )
            enrolled.append(Enrolled(watchlist.enroll(subject, [template]).id, photo, described.descriptor))
    return enrolled

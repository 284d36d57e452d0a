"""The demo's main part: the live agent on the demo clip, with the kit photos as a throw-away watchlist,
publishing to a local mosquitto it starts on a free port, and a checking subscriber listening.

Everything lives in a temporary folder that is deleted afterwards. Without a mosquitto binary the agent
still runs; its events then wait in the (temporary) outbox, which the summary says.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.capture.media import VIDEO_SUFFIXES
from edge_agent.config import Settings
from edge_agent.engine.budget import OperatingPoint
from edge_agent.errors import EdgeAgentError
from edge_agent.events.listen import Listener, Received
from edge_agent.lab.demo.kit import enrol_kit_photos, kit_files
from edge_agent.lab.mosquitto import LocalMosquitto, free_port
from edge_agent.service import Agent
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist.store import Watchlist

LISTEN_GRACE_S = 1.0  # after the agent stops: time for the last messages to reach the listener


@dataclass
class LiveDemoResult:
    clip: Path
    enrolled: dict[str, str]  # subject id -> display name (the photo's name)
    broker: str | None  # host:port, None when no mosquitto could be started
    frames: int = 0
    tracks: int = 0
    events: list[dict[str, object]] = field(default_factory=list)  # received match payloads
    topics: Counter[str] = field(default_factory=Counter)  # messages per topic kind
    invalid: list[str] = field(default_factory=list)
    left_in_outbox: int = 0
    operating: OperatingPoint | None = None  # the point the agent ran at (the budget's, for the kit's size)


def demo_clip(kit: Path) -> Path:
    clips = [p for p in kit_files(kit) if p.suffix.lower() in VIDEO_SUFFIXES]
    if not clips:
        raise EdgeAgentError(f"demo kit {kit} holds no clip")
    return clips[0]


def run_live_demo(settings: Settings, faces: FacePipeline, kit: Path, scratch: Path) -> LiveDemoResult:
    clip = demo_clip(kit)
    watchlist_path = scratch / "watchlist.db"
    embedder = faces.embedder
    with Watchlist.for_settings(
        settings, embedder.spec.dimensions, watchlist_path, embedder.metric
    ) as watchlist:
        enrolled = {sid: path.stem for sid, path in enrol_kit_photos(faces, watchlist, kit).items()}
    with _local_broker(scratch / "mosquitto") as broker:
        port = broker.port if broker is not None else free_port()
        live = _demo_settings(settings, scratch, clip, port, broker is not None)
        result = LiveDemoResult(clip, enrolled, f"127.0.0.1:{port}" if broker else None)
        received: list[Received] = []
        stop_listening = threading.Event()
        listener_thread = None
        if broker is not None:
            listener = Listener(live.mqtt, live.device_id)
            listener_thread = threading.Thread(
                target=_collect, args=(listener, received, stop_listening), daemon=True
            )
            listener_thread.start()
            listener.subscribed.wait(5.0)
        agent = Agent(live, catalog=ModelCatalog.load(settings.models_dir))
        agent.run()
        if listener_thread is not None:
            stop_listening.wait(LISTEN_GRACE_S)
            stop_listening.set()
            listener_thread.join(5.0)
    _summarise(result, agent, received, broker_up=broker is not None)
    return result


def _demo_settings(settings: Settings, scratch: Path, clip: Path, port: int, broker_up: bool) -> Settings:
    """`settings` with the throw-away watchlist and outbox in `scratch`, the clip played once as fast as it
    goes, and plain MQTT to the local broker on `port` (no outbox drain when there is no broker)."""
    return settings.model_copy(
        update={
            "device_id": "demo",
            "watchlist": settings.watchlist.model_copy(update={"path": scratch / "watchlist.db"}),
            "events": settings.events.model_copy(
                update={"path": scratch / "events.db", "drain_timeout_s": 5.0 if broker_up else 0.0}
            ),
            "camera": settings.camera.model_copy(
                update={"source": str(clip), "kind": "file", "loop": False, "realtime": False}
            ),
            "mqtt": settings.mqtt.model_copy(
                update={
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": False,
                    "ca_file": None,
                    "cert_file": None,
                    "key_file": None,
                    "username": None,
                    "password": None,
                    "health_interval_s": 1.0,
                    "reconnect_min_s": 0.2,
                    "reconnect_max_s": 1.0,
                }
            ),
        }
    )


def _summarise(result: LiveDemoResult, agent: Agent, received: list[Received], broker_up: bool) -> None:
    """The agent's counters and what the listener received, into `result`."""
    assert agent.pipeline is not None and agent.store is not None
    result.frames = agent.pipeline.counters.frames
    result.tracks = agent.pipeline.counters.tracks
    result.operating = agent.pipeline.operating
    for message in received:
        result.topics[message.kind or "unknown"] += 1
        if message.error is not None:
            result.invalid.append(f"{message.topic}: {message.error}")
        elif message.kind == "match" and not message.duplicate and message.payload is not None:
            result.events.append(message.payload)
    if not broker_up:
        result.left_in_outbox = agent.pipeline.counters.matches


def _collect(listener: Listener, received: list[Received], stop: threading.Event) -> None:
    for message in listener.messages(None, stop):
        received.append(message)


@contextlib.contextmanager
def _local_broker(folder: Path) -> Iterator[LocalMosquitto | None]:
    try:
        broker = LocalMosquitto(folder)
        broker.start()
    except EdgeAgentError:
        yield None
        return
    try:
        yield broker
    finally:
        broker.stop()

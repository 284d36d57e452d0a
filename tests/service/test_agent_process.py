"""`edge-agent run` as a process: kill -9 between commit and PUBACK, SIGTERM, SIGHUP, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.config import Settings, settings_as_toml
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from tests.kits.agent_kit import (
    DEMO_KIT,
    DEVICE,
    MATCH_TOPIC,
    PREFIX,
    agent_settings,
    enrol_demo_people,
    open_watchlist,
    payloads,
    table_rows,
)
from tests.kits.broker import Broker, Subscriber
from tests.kits.waiting import wait_until

STATUS_TOPIC = f"{PREFIX}/{DEVICE}/status"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def start_agent(
    settings: Settings, folder: Path, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    config = folder / "agent.toml"
    config.write_text(settings_as_toml(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=folder,
    )
    started.append(process)
    return process


def outbox_ids(events_db: Path) -> list[str]:
    import sqlite3

    if not events_db.exists():
        return []
    conn = sqlite3.connect(f"file:{events_db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT message_id FROM outbox ORDER BY seq")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


def test_kill_9_between_commit_and_puback_delivers_the_same_event_after_restart(
    tmp_path: Path,
    broker_factory: Callable[..., Broker],
    catalog: ModelCatalog,
    faces: FacePipeline,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    broker = broker_factory()  # not started: the broker is unreachable, so no PUBACK can come
    settings = agent_settings(tmp_path, broker, camera={"loop": True})
    enrol_demo_people(settings, faces)
    first = start_agent(settings, tmp_path, processes)
    wait_until(lambda: outbox_ids(settings.events.path), "an event committed to the outbox", timeout_s=60.0)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    stranded = outbox_ids(settings.events.path)
    assert stranded

    broker.start()
    subscriber = Subscriber(broker, MATCH_TOPIC).start()
    second = start_agent(
        settings.model_copy(update={"camera": settings.camera.model_copy(update={"loop": False})}),
        tmp_path,
        processes,
    )
    assert second.wait(60) == 0, second.stderr.read().decode() if second.stderr else ""
    received = [event["event_id"] for event in payloads(subscriber.wait_for(len(stranded), MATCH_TOPIC))]
    assert set(stranded) <= set(received)
    assert received[: len(stranded)] == stranded  # the stranded ones first, in their order
    assert table_rows(settings.events.path)["outbox"] == 0


def test_sigterm_stops_cleanly_and_sighup_reloads_the_watchlist(
    tmp_path: Path,
    broker: Broker,
    catalog: ModelCatalog,
    faces: FacePipeline,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Started with an empty watchlist: nothing matches. The performer is enrolled by another process
    and SIGHUP makes the running agent see him; SIGTERM then ends it with exit 0 and status offline."""
    settings = agent_settings(tmp_path, broker, camera={"loop": True}, decision={"cooldown_s": 0.0})
    open_watchlist(settings, faces).close()
    subscriber = Subscriber(broker, f"{PREFIX}/{DEVICE}/#").start()
    agent = start_agent(settings, tmp_path, processes)
    subscriber.wait_for(1, f"{PREFIX}/{DEVICE}/health", timeout_s=30)
    time.sleep(2.0)  # more than one pass of the clip
    assert subscriber.messages(MATCH_TOPIC) == []

    enrol_demo_people(settings, faces)
    agent.send_signal(signal.SIGHUP)
    subscriber.wait_for(1, MATCH_TOPIC, timeout_s=30)

    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0
    stderr = agent.stderr.read().decode() if agent.stderr else ""
    assert "watchlist reloaded: 2 live subjects" in stderr
    assert "Traceback" not in stderr
    assert payloads(subscriber.messages(STATUS_TOPIC))[-1]["state"] == "offline"


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[decision]\nk = 7\nn = 5\n[mqtt]\nport = 70000\n")
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "decision" in lines[0] and "mqtt.port" in lines[0]


def test_a_missing_clip_is_one_line_and_exit_1(tmp_path: Path, broker: Broker) -> None:
    settings = agent_settings(tmp_path, broker, camera={"source": str(tmp_path / "gone.mp4"), "kind": "file"})
    config = tmp_path / "agent.toml"
    config.write_text(settings_as_toml(settings))
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "gone.mp4" in result.stderr and "Traceback" not in result.stderr
    assert DEMO_KIT.is_dir()

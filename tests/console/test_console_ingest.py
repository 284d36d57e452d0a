"""The console's ingest against a real mosquitto: each event once, nothing lost while the console is
down, nothing stored that a device did not send in its own name, and a verdict that waits out a broker
that is down."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.publish as publish
import pytest

from edge_agent.console.reviews import review
from edge_agent.console.service import Console
from edge_agent.events.schema import MatchEvent
from edge_agent.fleet.central import read_envelope
from edge_agent.fleet.command import COMMAND
from edge_agent.signed import load_private_key, open_envelope, public_key_hex
from tests.kits.agent_kit import PREFIX
from tests.kits.broker import Broker, Subscriber
from tests.kits.console_kit import console_settings
from tests.kits.waiting import wait_until


def _publish(broker: Broker, topic: str, payload: bytes, retain: bool = False) -> None:
    publish.single(topic, payload, qos=1, retain=retain, hostname="127.0.0.1", port=broker.port)


def _events(console: Console) -> list[str]:
    return [
        str(row["event_id"]) for row in console.db.rows("SELECT event_id FROM events ORDER BY received_at")
    ]


@pytest.fixture
def open_console(tmp_path: Path, broker: Broker, central_key_file: Path) -> Iterator[Callable[[], Console]]:
    opened: list[Console] = []

    def make() -> Console:
        console = Console.open(console_settings(tmp_path, broker, command_key=central_key_file))
        assert console.ingest is not None
        console.ingest.start()
        assert console.ingest.subscription.subscribed.wait(10)
        opened.append(console)
        return console

    yield make
    for console in opened:
        console.close()


def test_each_event_is_stored_once_and_a_device_cannot_speak_for_another(
    broker: Broker, open_console: Callable[[], Console], make_match_event: Callable[..., MatchEvent]
) -> None:
    console = open_console()
    event = make_match_event(
        device_id="cam-a", face_jpeg=base64.b64encode(b"\xff\xd8\xff\xe0 a jpeg").decode()
    )
    topic = f"{PREFIX}/cam-a/events/match"
    for _ in range(2):  # the outbox re-sends until acknowledged: the same event twice
        _publish(broker, topic, event.to_json())
    _publish(broker, f"{PREFIX}/cam-b/events/match", make_match_event(device_id="cam-a").to_json())  # spoofed
    _publish(broker, topic, b"{not json")
    assert console.ingest is not None
    wait_until(lambda: console.ingest is not None and sum(console.ingest.counts.values()) >= 4)
    assert _events(console) == [str(event.event_id)]
    assert console.ingest.counts["duplicate"] == 1
    assert console.ingest.counts["refused"] == 2
    row = console.db.row("SELECT face_jpeg, payload FROM events")
    assert row is not None and bytes(row["face_jpeg"]).startswith(b"\xff\xd8\xff")
    assert "face_jpeg" not in json.loads(row["payload"])  # the chip is kept once, apart from the JSON


def test_events_sent_while_the_console_is_down_arrive_when_it_is_back(
    broker: Broker, open_console: Callable[[], Console], make_match_event: Callable[..., MatchEvent]
) -> None:
    first = open_console()
    before = make_match_event(device_id="cam-a")
    _publish(broker, f"{PREFIX}/cam-a/events/match", before.to_json())
    wait_until(lambda: len(_events(first)) == 1)
    first.close()  # the console stops; its persistent session stays with the broker
    missed = [make_match_event(device_id="cam-a") for _ in range(3)]
    for event in missed:
        _publish(broker, f"{PREFIX}/cam-a/events/match", event.to_json())
    again = open_console()
    wait_until(lambda: len(_events(again)) == 4)
    assert set(_events(again)) == {str(e.event_id) for e in [before, *missed]}


def test_status_and_health_reach_the_fleet_table(broker: Broker, open_console: Callable[[], Console]) -> None:
    console = open_console()
    status = {
        "schema": "edge-agent.status/1",
        "device_id": "cam-a",
        "state": "online",
        "agent_version": "0.1.0",
    }
    _publish(broker, f"{PREFIX}/cam-a/status", json.dumps(status).encode(), retain=True)
    wait_until(lambda: console.db.row("SELECT status FROM devices WHERE device_id = 'cam-a'") is not None)
    row = console.db.row("SELECT status FROM devices WHERE device_id = 'cam-a'")
    assert row is not None and json.loads(row["status"])["state"] == "online"


def test_a_verdict_given_while_the_broker_is_down_is_sent_when_it_is_back(
    broker: Broker,
    open_console: Callable[[], Console],
    make_match_event: Callable[..., MatchEvent],
    central_key_file: Path,
) -> None:
    console = open_console()
    event = make_match_event(device_id="cam-a")
    _publish(broker, f"{PREFIX}/cam-a/events/match", event.to_json())
    wait_until(lambda: len(_events(console)) == 1)
    commands = Subscriber(broker, f"{PREFIX}/cam-a/cmd/#").start()
    broker.stop()
    verdict = review(
        console.db, console.signer, str(event.event_id), "false_match", "rey", "not him", console.clock()
    )
    assert console.ingest is not None
    console.ingest.wake()
    time.sleep(1.0)
    stored = console.db.row("SELECT command_sent_at, command_envelope FROM events")
    assert stored is not None and stored["command_sent_at"] is None and stored["command_envelope"]
    broker.start()
    [sent] = commands.wait_for(1, timeout_s=30)
    assert sent.topic == f"{PREFIX}/cam-a/cmd/review"
    envelope = read_envelope(sent.payload)
    assert envelope.nonce == verdict.nonce and envelope.target == "cam-a"
    _, signer, _ = open_envelope(COMMAND, sent.payload)
    assert signer == public_key_hex(load_private_key(central_key_file))
    wait_until(
        lambda: (row := console.db.row("SELECT command_sent_at FROM events")) is not None and bool(row[0])
    )
    answer = {
        "schema": "edge-agent.cmd-result/1",
        "device_id": "cam-a",
        "at": "2026-12-04T10:00:00+00:00",
        "accepted": True,
        "reason": "ok",
        "message": "review done",
        "command": "review",
        "nonce": verdict.nonce,
        "details": {"embeddings_excluded": 3},
    }
    _publish(broker, f"{PREFIX}/cam-a/cmd/result", json.dumps(answer).encode())
    wait_until(lambda: (row := console.db.row("SELECT answer FROM events")) is not None and bool(row[0]))
    commands.close()

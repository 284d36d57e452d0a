"""The MQTT publisher against a real mosquitto (tests/kits/broker.py): QoS 1 delivery from the outbox, in
order, nothing lost across broker outages and restarts; status and last will; credentials; TLS;
HA discovery."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.errors import ConfigError
from edge_agent.events.publisher import Publisher
from edge_agent.events.schema import (
    CameraHealth,
    Counters,
    HealthMessage,
    MatchEvent,
    Models,
    OutboxHealth,
    StatusMessage,
)
from edge_agent.events.settings import MqttSettings
from edge_agent.events.store import EventStore
from edge_agent.events.topics import Topics
from tests.conftest import REPO
from tests.kits.broker import Broker, Pki, Received, Subscriber
from tests.kits.waiting import wait_until

MakeEvent = Callable[..., MatchEvent]
MakeBroker = Callable[..., Broker]
TOPICS = Topics("edge-agent", "edge-1")
MODELS = Models(detector="blazeface_full_range_float32", embedder="dlib_resnet_v1_dyn8")
ONLINE = StatusMessage(
    device_id="edge-1",
    state="online",
    at=datetime.now(UTC),
    agent_version="0.1.0",
    camera_id="cam-1",
    models=MODELS,
)
OFFLINE = StatusMessage(device_id="edge-1", state="offline", agent_version="0.1.0")
EMBEDDING = np.full(128, 1 / np.sqrt(128), dtype=np.float32)


def settings_for(broker: Broker, **overrides: Any) -> MqttSettings:
    """Fast test settings: sub-second reconnect backoff."""
    options: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.4,
        "keepalive_s": 5,
        **overrides,
    }
    return MqttSettings(**options)


class Harness:
    """An outbox and the publishers over it; everything is stopped and closed at the end of the test."""

    def __init__(self, folder: Path) -> None:
        self.store = EventStore.open(folder / "events.db", max_events=1000, max_age_s=3600.0, review_days=1.0)
        self.publishers: list[Publisher] = []
        self.subscribers: list[Subscriber] = []
        self.lines: list[str] = []

    def publisher(self, settings: MqttSettings) -> Publisher:
        publisher = Publisher(settings, "edge-1", self.store, ONLINE, OFFLINE, log=self.lines.append)
        self.publishers.append(publisher)
        return publisher

    def subscriber(self, broker: Broker, topic: str = "edge-agent/#") -> Subscriber:
        subscriber = Subscriber(broker, topic)
        self.subscribers.append(subscriber)
        return subscriber.start()

    def commit(self, events: list[MatchEvent]) -> None:
        for event in events:
            self.store.commit_match(event, TOPICS.match, EMBEDDING)

    def close(self) -> None:
        for publisher in self.publishers:
            publisher.stop()
        for subscriber in self.subscribers:
            subscriber.close()
        self.store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = Harness(tmp_path)
    yield made
    made.close()


def event_ids(messages: list[Received]) -> list[str]:
    return [json.loads(m.payload)["event_id"] for m in messages if m.topic == TOPICS.match]


def first_arrivals(messages: list[Received]) -> list[str]:
    return list(dict.fromkeys(event_ids(messages)))


def status_states(messages: list[Received]) -> list[str]:
    return [json.loads(m.payload)["state"] for m in messages if m.topic == TOPICS.status]


# ---- delivery ----------------------------------------------------------------------------------------


def test_events_arrive_in_order_and_leave_the_outbox_on_puback(
    broker: Broker, harness: Harness, make_match_event: MakeEvent
) -> None:
    subscriber = harness.subscriber(broker)
    publisher = harness.publisher(settings_for(broker, max_inflight=5))
    publisher.start()
    wait_until(lambda: publisher.connected, what="connected")
    events = [make_match_event() for _ in range(50)]
    harness.commit(events)
    publisher.wake()
    received = subscriber.wait_for(50, topic=TOPICS.match)
    assert event_ids(received) == [str(e.event_id) for e in events]
    assert [m.payload for m in received] == [e.to_json() for e in events]
    assert publisher.drain(5.0)
    assert harness.store.depth() == 0
    assert status_states(subscriber.messages()) == ["online"]
    assert publisher.last_error is None
    assert harness.lines == [f"mqtt: connected to {broker.host}:{broker.port}"]


def test_no_more_than_max_inflight_wait_for_their_puback(
    broker: Broker, harness: Harness, make_match_event: MakeEvent
) -> None:
    subscriber = harness.subscriber(broker)
    publisher = harness.publisher(settings_for(broker, max_inflight=3))
    publisher.start()
    wait_until(lambda: publisher.connected, what="connected")
    broker.pause()  # PUBACKs stop coming
    events = [make_match_event() for _ in range(10)]
    harness.commit(events)
    publisher.wake()
    wait_until(lambda: publisher.inflight == 3, what="3 in flight")
    time.sleep(0.3)
    assert publisher.inflight == 3
    assert harness.store.depth() == 10  # nothing leaves the outbox without its PUBACK
    broker.resume()
    assert publisher.drain(5.0)
    assert event_ids(subscriber.wait_for(10, topic=TOPICS.match)) == [str(e.event_id) for e in events]


def test_events_wait_while_the_broker_is_down_then_all_arrive_in_order(
    broker_factory: MakeBroker, harness: Harness, make_match_event: MakeEvent
) -> None:
    broker = broker_factory()
    broker.start()
    subscriber = harness.subscriber(broker)  # its persistent session outlives the broker's stop
    broker.stop()
    publisher = harness.publisher(settings_for(broker))
    publisher.start()  # does not raise
    events = [make_match_event() for _ in range(20)]
    harness.commit(events)
    publisher.wake()
    refused = f"cannot reach broker {broker.host}:{broker.port}: Connection refused"
    wait_until(lambda: publisher.last_error == refused, what="the connection error")
    time.sleep(0.8)  # several retries
    assert not publisher.connected
    assert harness.store.depth() == 20
    assert harness.lines == [f"mqtt: {refused}"]  # one line, not one per retry

    broker.start()
    assert publisher.drain(10.0)
    received = subscriber.wait_until(lambda got: len(set(event_ids(got))) >= 20)
    assert first_arrivals(received) == [str(e.event_id) for e in events]
    assert publisher.last_error is None
    assert harness.lines[-1] == f"mqtt: connected to {broker.host}:{broker.port}"


def test_a_broker_restart_mid_stream_loses_nothing(
    broker: Broker, harness: Harness, make_match_event: MakeEvent
) -> None:
    subscriber = harness.subscriber(broker)
    publisher = harness.publisher(settings_for(broker, max_inflight=10))
    publisher.start()
    wait_until(lambda: publisher.connected, what="connected")
    events = [make_match_event() for _ in range(50)]
    for index, event in enumerate(events):
        harness.commit([event])
        publisher.wake()
        if index == 20:
            broker.stop()  # graceful: mosquitto keeps the subscriber's queued messages
        if index == 30:
            broker.start()
        time.sleep(0.01)
    assert publisher.drain(10.0)
    assert harness.store.depth() == 0
    received = subscriber.wait_until(lambda got: len(set(event_ids(got))) >= 50)
    assert first_arrivals(received) == [str(e.event_id) for e in events]
    payloads = {str(e.event_id): e.to_json() for e in events}
    matches = [m for m in received if m.topic == TOPICS.match]
    assert all(m.payload == payloads[json.loads(m.payload)["event_id"]] for m in matches)
    assert sum(line.startswith("mqtt: connected") for line in harness.lines) == 2


def test_messages_in_flight_when_the_broker_dies_are_sent_again(
    broker: Broker, harness: Harness, make_match_event: MakeEvent
) -> None:
    """Published, never acknowledged (the broker is frozen, then killed): re-sent after the reconnect, from
    the outbox, same payload, in order."""
    subscriber = harness.subscriber(broker)
    broker.restart()  # a graceful stop saves the subscriber's session; the kill below saves nothing
    publisher = harness.publisher(settings_for(broker, max_inflight=4))
    publisher.start()
    wait_until(lambda: publisher.connected, what="connected")
    first = [make_match_event() for _ in range(5)]
    harness.commit(first)
    publisher.wake()
    assert publisher.drain(5.0)
    subscriber.wait_for(5, topic=TOPICS.match)  # delivered: the kill cannot lose them on the broker's side
    broker.pause()
    second = [make_match_event() for _ in range(8)]
    harness.commit(second)
    publisher.wake()
    wait_until(lambda: publisher.inflight == 4, what="4 in flight")
    broker.kill()  # the 4 in flight were never read by the broker
    wait_until(lambda: not publisher.connected, what="the disconnect")
    assert harness.store.depth() == 8
    broker.start()
    assert publisher.drain(10.0)
    received = subscriber.wait_until(lambda got: len(set(event_ids(got))) >= 13)
    assert first_arrivals(received) == [str(e.event_id) for e in first + second]
    payloads = {json.loads(m.payload)["event_id"]: m.payload for m in received if m.topic == TOPICS.match}
    assert all(payloads[str(e.event_id)] == e.to_json() for e in second)


# ---- status, last will, health ------------------------------------------------------------------------


def test_online_is_retained_and_a_clean_stop_sets_offline(broker: Broker, harness: Harness) -> None:
    publisher = harness.publisher(settings_for(broker))
    publisher.start()
    wait_until(lambda: publisher.connected, what="connected")
    late = harness.subscriber(broker, TOPICS.status)
    (online,) = late.wait_for(1)
    assert online.retain
    assert json.loads(online.payload)["state"] == "online"
    publisher.stop()
    harness.publishers.remove(publisher)
    later = harness.subscriber(broker, TOPICS.status)
    (offline,) = later.wait_for(1)
    status = json.loads(offline.payload)
    assert offline.retain
    assert status["state"] == "offline"
    assert "at" in status  # set at the stop; the last will has none


CHILD = """
import sys, time
from pathlib import Path
from edge_agent.events.settings import MqttSettings
from edge_agent.events.publisher import Publisher
from edge_agent.events.store import EventStore
from edge_agent.events.schema import StatusMessage

port, folder = int(sys.argv[1]), Path(sys.argv[2])
store = EventStore.open(folder / "child.db", max_events=10, max_age_s=60.0, review_days=1.0)
status = dict(device_id="edge-1", agent_version="0.1.0")
publisher = Publisher(
    MqttSettings(host="127.0.0.1", port=port, keepalive_s=5),
    "edge-1",
    store,
    online=StatusMessage(state="online", **status),
    offline=StatusMessage(state="offline", **status),
)
publisher.start()
while not publisher.connected:
    time.sleep(0.02)
print("connected", flush=True)
time.sleep(60)
"""


def test_the_last_will_says_offline_when_the_process_dies(
    broker: Broker, harness: Harness, tmp_path: Path
) -> None:
    subscriber = harness.subscriber(broker, TOPICS.status)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(broker.port), str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "connected"
        subscriber.wait_until(lambda got: status_states(got) == ["online"])
    finally:
        child.kill()
        child.wait()
    received = subscriber.wait_until(lambda got: status_states(got) == ["online", "offline"], timeout_s=5.0)
    will = json.loads(received[-1].payload)
    assert "at" not in will
    (retained,) = harness.subscriber(broker, TOPICS.status).wait_for(1)
    assert retained.retain and json.loads(retained.payload)["state"] == "offline"


def health_message() -> HealthMessage:
    return HealthMessage(
        device_id="edge-1",
        camera_id="cam-1",
        at=datetime.now(UTC),
        uptime_s=12.0,
        fps=9.5,
        camera=CameraHealth(state="streaming", frames=120, frames_dropped=3, reconnects=0),
        latency={},
        outbox=OutboxHealth(depth=0, dropped=0),
        counters=Counters(frames=120, faces_seen=4, tracks=2, embeddings=6, matches=0),
    )


def test_health_goes_out_only_while_connected(broker_factory: MakeBroker, harness: Harness) -> None:
    broker = broker_factory()
    publisher = harness.publisher(settings_for(broker))
    publisher.start()
    assert publisher.publish_health(health_message()) is False
    broker.start()
    subscriber = harness.subscriber(broker, TOPICS.health)
    wait_until(lambda: publisher.connected, what="connected")
    assert publisher.publish_health(health_message()) is True
    (health,) = subscriber.wait_for(1)
    assert not health.retain
    assert json.loads(health.payload)["fps"] == 9.5


# ---- credentials and TLS ------------------------------------------------------------------------------


def test_refused_credentials_are_one_line_and_retried_until_allowed(
    broker_factory: MakeBroker, harness: Harness, make_match_event: MakeEvent
) -> None:
    broker = broker_factory(users={"edge": "right"})
    broker.start()
    subscriber = harness.subscriber(broker)
    publisher = harness.publisher(settings_for(broker, username="edge", password="wrong"))
    publisher.start()
    refused = "broker refused the connection: not authorized"
    wait_until(lambda: publisher.last_error == refused, what="the refusal")
    wait_until(lambda: broker.log_count("not authorised") >= 3, what="three refused attempts")
    assert not publisher.connected
    assert harness.lines == [f"mqtt: {refused}"]

    broker.set_users({"edge": "wrong"})
    broker.reload()
    wait_until(lambda: publisher.connected, what="connected once allowed")
    event = make_match_event()
    harness.commit([event])
    publisher.wake()
    assert event_ids(subscriber.wait_for(1, topic=TOPICS.match)) == [str(event.event_id)]
    assert publisher.last_error is None


def test_tls_with_a_private_ca_and_a_password(
    broker_factory: MakeBroker, pki: Pki, harness: Harness, make_match_event: MakeEvent
) -> None:
    broker = broker_factory(users={"edge": "secret"}, pki=pki)
    broker.start()
    subscriber = harness.subscriber(broker)
    settings = settings_for(broker, ca_file=pki.ca_cert, username="edge", password="secret")
    assert settings.uses_tls
    publisher = harness.publisher(settings)
    publisher.start()
    events = [make_match_event() for _ in range(5)]
    harness.commit(events)
    publisher.wake()
    assert event_ids(subscriber.wait_for(5, topic=TOPICS.match)) == [str(e.event_id) for e in events]
    assert publisher.drain(5.0)


def test_mutual_tls_needs_the_client_certificate(
    broker_factory: MakeBroker, pki: Pki, harness: Harness, make_match_event: MakeEvent
) -> None:
    broker = broker_factory(pki=pki, require_certificate=True)
    broker.start()
    subscriber = harness.subscriber(broker)
    without = harness.publisher(settings_for(broker, ca_file=pki.ca_cert, client_id="no-cert"))
    without.start()
    with_cert = harness.publisher(
        settings_for(broker, ca_file=pki.ca_cert, cert_file=pki.client_cert, key_file=pki.client_key)
    )
    with_cert.start()
    event = make_match_event()
    harness.commit([event])
    with_cert.wake()
    assert event_ids(subscriber.wait_for(1, topic=TOPICS.match)) == [str(event.event_id)]
    wait_until(lambda: without.last_error is not None, what="an error without a client certificate")
    assert not without.connected
    error = without.last_error or ""
    # TLS 1.3: "broker <address> closed the connection before accepting it: ... certificate required"
    assert f"{broker.host}:{broker.port}" in error
    assert "\n" not in error


def test_a_broker_certificate_from_an_unknown_ca_is_named(
    broker_factory: MakeBroker, pki: Pki, harness: Harness
) -> None:
    broker = broker_factory(pki=pki)
    broker.start()
    publisher = harness.publisher(settings_for(broker, tls=True))  # system CAs only
    publisher.start()
    wait_until(lambda: publisher.last_error is not None, what="a TLS error")
    assert publisher.last_error is not None
    assert publisher.last_error.startswith(f"broker {broker.host}:{broker.port} certificate not trusted")
    assert not publisher.connected


def test_unreadable_tls_files_are_one_line_config_errors(tmp_path: Path, pki: Pki, harness: Harness) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    settings = MqttSettings(host="127.0.0.1", port=1, ca_file=garbage)
    with pytest.raises(ConfigError, match=f"^mqtt.ca_file {garbage}: not a readable PEM certificate$"):
        harness.publisher(settings)
    mismatched = MqttSettings(host="127.0.0.1", port=1, cert_file=pki.client_cert, key_file=pki.server_key)
    with pytest.raises(ConfigError, match=f"mqtt.cert_file {pki.client_cert} / mqtt.key_file"):
        harness.publisher(mismatched)


# ---- Home Assistant -----------------------------------------------------------------------------------


def test_home_assistant_discovery_is_retained_valid_json(broker: Broker, harness: Harness) -> None:
    publisher = harness.publisher(settings_for(broker, home_assistant=True, discovery_prefix="ha"))
    publisher.start()
    wait_until(lambda: publisher.connected, what="connected")
    configs = {m.topic: m for m in harness.subscriber(broker, "ha/#").wait_for(4)}
    node = "edge-agent-edge-1"
    assert set(configs) == {
        f"ha/event/{node}/match/config",
        f"ha/binary_sensor/{node}/connectivity/config",
        f"ha/sensor/{node}/fps/config",
        f"ha/sensor/{node}/last_match/config",
    }
    assert all(m.retain for m in configs.values())
    parsed = {topic.split("/")[-2]: json.loads(m.payload) for topic, m in configs.items()}
    connectivity, fps, last_match = parsed["connectivity"], parsed["fps"], parsed["last_match"]
    assert connectivity["state_topic"] == TOPICS.status
    assert connectivity["device_class"] == "connectivity"
    assert "value_json.state" in connectivity["value_template"]
    assert (connectivity["payload_on"], connectivity["payload_off"]) == ("online", "offline")
    assert fps["state_topic"] == TOPICS.health
    assert "value_json.fps" in fps["value_template"]
    assert last_match["device_class"] == "timestamp"
    assert "value_json.last_match_at" in last_match["value_template"]
    for config in (fps, last_match):
        assert config["availability_topic"] == TOPICS.status
    for config in parsed.values():
        assert config["device"]["identifiers"] == [node]
        assert config["unique_id"].startswith(node)
    assert len({config["unique_id"] for config in parsed.values()}) == 4

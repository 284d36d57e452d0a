"""Home Assistant MQTT discovery: the configs' keys against Home Assistant's own schema, clearing when
turned off, and the shipped example config seen by a Home-Assistant-style subscriber."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Environment, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edge_agent.config import load_settings
from edge_agent.events.discovery import MATCH_EVENT_TYPE, discovery
from edge_agent.events.publisher import Publisher
from edge_agent.events.schema import StatusMessage
from edge_agent.events.settings import MqttSettings
from edge_agent.events.store import EventStore
from edge_agent.events.topics import Topics
from edge_agent.service import Agent
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from tests.kits.agent_kit import DEMO_CLIP, REPO, decided_at_rate, enrol_demo_people, payloads
from tests.kits.broker import Broker, Subscriber
from tests.kits.waiting import wait_until

# ---- Home Assistant's discovery schema, as its source has it -----------------------------------------

# homeassistant/components/mqtt/schemas.py @ c6ca7f5f416326437e8e652a5623aa5eff7b3d00:
# MQTT_AVAILABILITY_SINGLE_SCHEMA + MQTT_AVAILABILITY_LIST_SCHEMA + MQTT_ENTITY_COMMON_SCHEMA, with
# `default_entity_id` (abbreviation `def_ent_id`), which replaced `object_id` in Home Assistant 2025.10.
COMMON = {
    "availability_topic", "availability_template", "payload_available", "payload_not_available",
    "availability_mode", "availability", "device", "origin", "enabled_by_default", "entity_category",
    "icon", "json_attributes_topic", "json_attributes_template", "default_entity_id", "unique_id",
}  # fmt: skip
# homeassistant/components/mqtt/config.py @ a5c8209270205b905bb35a9082c39708b0d5f52f: MQTT_RO_SCHEMA
READ_ONLY = {"qos", "encoding", "state_topic", "value_template"}
PLATFORM = {
    # homeassistant/components/mqtt/event.py @ 03ffd74c83de5ed77022d84e4a056fd1a699a6b5
    "event": {"device_class", "name", "event_types"},
    # homeassistant/components/mqtt/sensor.py @ 17309b787222b2ff5a7496ce85391c3c067138fe
    "sensor": {
        "device_class", "expire_after", "force_update", "last_reset_value_template", "name",
        "state_class", "unit_of_measurement", "suggested_display_precision", "options",
    },
    # homeassistant/components/mqtt/binary_sensor.py @ 121590832b463474eb8766daa04e6a099a568a9e
    "binary_sensor": {"device_class", "expire_after", "force_update", "name", "off_delay", "payload_off",
                      "payload_on"},
}  # fmt: skip
REQUIRED = {
    "event": {"state_topic", "event_types"},
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
}
# schemas.py: MQTT_ENTITY_DEVICE_INFO_SCHEMA (at least one of identifiers, connections) and
# MQTT_ORIGIN_INFO_SCHEMA (`name` required)
DEVICE = {
    "identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version",
    "serial_number", "sw_version", "via_device", "suggested_area", "configuration_url",
}  # fmt: skip
ORIGIN = {"name", "sw_version", "support_url"}
ENTITY_CATEGORIES = {"config", "diagnostic"}  # homeassistant/helpers/entity.py ENTITY_CATEGORIES_SCHEMA
ENTITY_ID = re.compile(r"^(?P<domain>[a-z0-9_]+)\.[a-z0-9_]+$")  # cv.entity_id

TOPICS = Topics("edge-agent", "Gate 1")
ONLINE = StatusMessage(device_id="Gate 1", state="online", agent_version="0.1.0")
OFFLINE = ONLINE.model_copy(update={"state": "offline"})


def configs(settings: MqttSettings) -> dict[str, tuple[str, dict[str, Any]]]:
    """object id -> (component, config) of each discovery message."""
    found = {}
    for topic, payload in discovery(settings, TOPICS, ONLINE).messages:
        _, component, _, object_id, _ = topic.split("/")
        found[object_id] = (component, json.loads(payload))
    return found


def test_every_discovery_key_is_one_home_assistant_accepts() -> None:
    """Each config uses only keys of its platform's discovery schema (Home Assistant drops unknown keys
    silently, so a typo would never show), has the required ones, and identifies device and origin."""
    found = configs(MqttSettings(home_assistant=True))
    assert {component for component, _ in found.values()} == set(PLATFORM)
    for object_id, (component, config) in found.items():
        unknown = set(config) - COMMON - READ_ONLY - PLATFORM[component]
        assert not unknown, f"{component}/{object_id}: keys Home Assistant does not know: {unknown}"
        assert REQUIRED[component] <= set(config), object_id
        assert "object_id" not in config
        entity_id = ENTITY_ID.match(config["default_entity_id"])
        assert entity_id is not None and entity_id["domain"] == component
        assert set(config["device"]) <= DEVICE and config["device"]["identifiers"]
        assert set(config["origin"]) <= ORIGIN and config["origin"]["name"] == "edge-agent"
        assert config.get("entity_category", "diagnostic") in ENTITY_CATEGORIES
    assert len({config["default_entity_id"] for _, config in found.values()}) == len(found)
    assert found["connectivity"][1]["entity_category"] == "diagnostic"
    assert found["fps"][1]["entity_category"] == "diagnostic"
    assert "entity_category" not in found["match"][1]  # a primary entity, shown on the device's page


def test_the_match_event_entity_reads_the_match_topic() -> None:
    component, match = configs(MqttSettings(home_assistant=True))["match"]
    assert component == "event" and match["state_topic"] == TOPICS.match
    assert match["event_types"] == [MATCH_EVENT_TYPE]
    assert match["availability_topic"] == TOPICS.status
    assert f'"event_type": "{MATCH_EVENT_TYPE}"' in match["value_template"]
    assert "| tojson" in match["value_template"]
    for _, config in configs(MqttSettings(home_assistant=True)).values():
        uses_only_jinja(config["value_template"])
    assert match["default_entity_id"] == "event.edge_agent_gate_1_match"


def test_no_configs_when_home_assistant_is_off() -> None:
    found = discovery(MqttSettings(), TOPICS, ONLINE)
    assert found.messages == []
    topic = "homeassistant/sensor/edge-agent-Gate_1/fps/config"
    assert found.stale(topic, b"{}", retain=True)
    assert not found.stale(topic, b"", retain=True)  # already cleared
    assert not found.stale(topic, b"{}", retain=False)  # a live message, not what the broker keeps
    assert not found.stale("homeassistant/sensor/edge-agent-other/fps/config", b"{}", retain=True)


# ---- clearing against a real broker -------------------------------------------------------------------


def retained_configs(broker: Broker) -> dict[str, bytes]:
    """What a subscriber arriving now gets from the broker: the retained discovery configs."""
    subscriber = Subscriber(broker, "homeassistant/#").start()
    try:
        with pytest.raises(AssertionError):  # nothing more will come: wait briefly for the retained ones
            subscriber.wait_for(99, timeout_s=1.0)
        return {m.topic: m.payload for m in subscriber.messages() if m.retain}
    finally:
        subscriber.close()


@contextlib.contextmanager
def running_publisher(broker: Broker, store: EventStore, **options: Any) -> Iterator[Publisher]:
    settings = MqttSettings(host=broker.host, port=broker.port, reconnect_min_s=0.1, **options)
    publisher = Publisher(settings, "Gate 1", store, ONLINE, OFFLINE)
    publisher.start()
    try:
        wait_until(lambda: publisher.connected, what="connected")
        yield publisher
    finally:
        publisher.stop()


def test_turning_discovery_off_clears_the_retained_configs(tmp_path: Path, broker: Broker) -> None:
    store = EventStore.open(tmp_path / "events.db", max_events=10, max_age_s=60.0, review_days=1.0)
    watcher = Subscriber(broker, "homeassistant/#").start()
    try:
        with running_publisher(broker, store, home_assistant=True):
            announced = {m.topic for m in watcher.wait_for(4)}
        assert set(retained_configs(broker)) == announced

        with running_publisher(broker, store, home_assistant=False):
            got = watcher.wait_until(lambda got: sum(1 for m in got if m.payload == b"") >= 4)
        assert {m.topic for m in got if m.payload == b""} == announced
        assert retained_configs(broker) == {}
    finally:
        watcher.close()
        store.close()


# ---- the shipped example config, end to end -----------------------------------------------------------


def test_example_config_gives_home_assistant_its_entities_and_one_event_per_match(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog, faces: FacePipeline
) -> None:
    """systemd/config.example.toml with its paths under a temporary folder, its broker this test's
    mosquitto (no TLS, no login), the demo clip for a camera, and Home Assistant and names turned on."""
    settings = load_settings(
        REPO / "systemd" / "config.example.toml",
        use_environment=False,
        watchlist={"path": tmp_path / "watchlist.db"},
        events={"path": tmp_path / "events.db", "include_name": True},
        camera={"source": str(DEMO_CLIP), "kind": "file"},
        mqtt={"host": broker.host, "port": broker.port, "tls": False, "username": None,
              "home_assistant": True, "health_interval_s": 1.0},
    )  # fmt: skip
    people = enrol_demo_people(settings, faces)
    device = Topics(settings.mqtt.topic_prefix, settings.device_id)
    home_assistant = Subscriber(broker, f"{settings.mqtt.discovery_prefix}/#").start()
    device_topics = Subscriber(broker, f"{device.root}/#").start()

    agent = Agent(settings, catalog=catalog)
    assert agent.run() == 0

    announced = {m.topic.split("/")[1]: json.loads(m.payload) for m in home_assistant.wait_for(4)}
    assert set(announced) == {"event", "sensor", "binary_sensor"}
    match_entity = announced["event"]
    assert len(retained_configs(broker)) == 4  # kept for a Home Assistant that starts later
    statuses = payloads(device_topics.messages(device.status))
    assert [s["state"] for s in statuses][-2:] == ["online", "offline"]
    assert match_entity["availability_topic"] == device.status

    events = payloads(device_topics.wait_for(1, match_entity["state_topic"]))
    assert len({e["event_id"] for e in events}) == len(events) == 1  # one match, one event
    attributes = home_assistant_attributes(match_entity["value_template"], events[0])
    assert attributes["event_type"] in match_entity["event_types"]
    assert attributes["subject_id"] == people["lin_manuel_miranda"]
    assert attributes["display_name"] == "lin_manuel_miranda"  # the name enrol_kit_photos gives
    assert attributes["review_required"] is True
    assert attributes["distance"] < attributes["threshold"]
    # the rate of the calibration point the deciding looks passed: the operating point's for k of n, the
    # stricter single-look rate for one look (engine/vote.py)
    assert attributes["false_match_rate"] == decided_at_rate(agent, events[0])


# homeassistant/helpers/template/__init__.py `TemplateEnvironment`: an `ImmutableSandboxedEnvironment` whose
# undefined is a (logging) `jinja2.Undefined` unless strict, with the `loopcontrols` and `do` extensions; its
# own extensions add Home Assistant's helpers, which the value templates here must not need (checked below).
# homeassistant/components/mqtt/models.py `MqttValueTemplate` renders with `value` = the payload's text and
# `value_json` = the payload parsed as JSON; mqtt/event.py then parses the rendered text as a JSON object and
# takes its `event_type`, the other keys becoming the event's attributes.
HOME_ASSISTANT_TEMPLATES = ImmutableSandboxedEnvironment(
    extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do"]
)


def uses_only_jinja(template: str) -> None:
    """The template needs nothing of Home Assistant's own: its only variables are the two MQTT gives, and
    every filter and test is one of jinja2's built-ins."""
    tree = HOME_ASSISTANT_TEMPLATES.parse(template)
    assert meta.find_undeclared_variables(tree) <= {"value", "value_json"}, template
    builtin = Environment()
    assert {f.name for f in tree.find_all(nodes.Filter)} <= set(builtin.filters), template
    assert {t.name for t in tree.find_all(nodes.Test)} <= set(builtin.tests), template


def home_assistant_attributes(template: str, event: dict[str, Any]) -> dict[str, Any]:
    """What Home Assistant's event entity gets from the event's payload: the value template rendered as
    Home Assistant renders it, then read as a JSON object."""
    uses_only_jinja(template)
    payload = json.dumps(event)
    rendered = HOME_ASSISTANT_TEMPLATES.from_string(template).render(value=payload, value_json=event)
    attributes = json.loads(rendered)
    assert isinstance(attributes, dict), rendered
    return attributes

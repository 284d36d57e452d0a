"""Home Assistant MQTT discovery: the retained configs that make the agent a device with four entities,
published on every connect when `mqtt.home_assistant` is on, and cleared when it is off.

The entities: an `event` entity fired by every match event (its attributes are the subject's display name
when `events.include_name` is on, the subject id, distance, false-match rate and review flag), the last
match time, and two diagnostics (connectivity and frames per second). The keys are those of Home
Assistant's MQTT discovery schema (`homeassistant/components/mqtt/schemas.py`, `event.py`, `sensor.py`,
`binary_sensor.py`; `tests/events/test_discovery.py` checks them against a table taken from there), with
`default_entity_id` (full entity id) in place of `object_id`, which Home Assistant deprecated in 2025.10.

The connectivity sensor reads the status topic itself, so it has no availability (it would show
"unavailable" instead of "off"); the others are available while the retained status says online.

Clearing: the publisher subscribes to this device's discovery topics (`Discovery.filter`); a retained
config the broker holds there that the current settings do not publish (all of them when discovery is
off, or an entity of an older version) is `stale` and is cleared with an empty retained payload, which
is how Home Assistant removes an entity. Nothing is published when nothing is there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from edge_agent.events.schema import StatusMessage
from edge_agent.events.settings import MqttSettings
from edge_agent.events.topics import Topics

Entity = tuple[str, str, dict[str, Any]]  # component, object id, its config

MATCH_EVENT_TYPE: Final = "match"
# The `event` entity's attributes: attribute name -> the match event's field (dotted path).
MATCH_ATTRIBUTES: Final = {
    "display_name": "display_name",
    "subject_id": "subject_id",
    "watchlist": "watchlist",
    "camera_id": "camera_id",
    "distance": "distance",
    "threshold": "threshold",
    "false_match_rate": "false_match_rate.target",
    "review_required": "review_required",
    "event_id": "event_id",
}


def _match_template() -> str:
    """A Jinja value template turning the match event into Home Assistant's `{"event_type": ...}` form;
    `display_name` is absent from events when names are off, hence `default(none)` on every field."""
    fields = [f'"event_type": "{MATCH_EVENT_TYPE}"'] + [
        f'"{name}": value_json.{path} | default(none)' for name, path in MATCH_ATTRIBUTES.items()
    ]
    return "{{ {" + ", ".join(fields) + "} | tojson }}"


@dataclass(frozen=True)
class Discovery:
    """This device's discovery configs and how to recognise a stale retained one."""

    prefix: str
    node: str
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def filter(self) -> str:
        """Every discovery config topic of this device, whatever the component or entity."""
        return f"{self.prefix}/+/{self.node}/+/config"

    def stale(self, topic: str, payload: bytes, retain: bool) -> bool:
        """A retained, non-empty config of this device that the current settings do not publish."""
        if not retain or not payload or not topic.startswith(f"{self.prefix}/"):
            return False
        parts = topic[len(self.prefix) + 1 :].split("/")
        if len(parts) != 4 or parts[1] != self.node or parts[3] != "config":
            return False
        return topic not in {published for published, _ in self.messages}


def discovery(settings: MqttSettings, topics: Topics, online: StatusMessage) -> Discovery:
    """The discovery configs under `mqtt.discovery_prefix` (none when `mqtt.home_assistant` is off)."""
    node = "edge-agent-" + re.sub(r"[^A-Za-z0-9_-]", "_", topics.device_id)
    if not settings.home_assistant:
        return Discovery(settings.discovery_prefix, node)
    entity_slug = re.sub(r"[^a-z0-9_]", "_", node.lower())
    shared = {"device": _device(node, topics, online), "origin": _origin(online)}
    messages = []
    for component, object_id, config in _entities(settings, topics):
        body = {
            **config,
            **shared,
            "unique_id": f"{node}-{object_id}",
            "default_entity_id": f"{component}.{entity_slug}_{object_id}",
        }
        topic = f"{settings.discovery_prefix}/{component}/{node}/{object_id}/config"
        messages.append((topic, json.dumps(body, sort_keys=True).encode()))
    return Discovery(settings.discovery_prefix, node, messages)


def _device(node: str, topics: Topics, online: StatusMessage) -> dict[str, Any]:
    return {
        "identifiers": [node],
        "name": f"edge-agent {topics.device_id}",
        "manufacturer": "edge-agent",
        "model": "face-watchlist agent",
        "sw_version": online.agent_version,
    }


def _origin(online: StatusMessage) -> dict[str, Any]:
    """Who published the config (Home Assistant shows it in the device's MQTT info)."""
    return {"name": "edge-agent", "sw_version": online.agent_version}


def _entities(settings: MqttSettings, topics: Topics) -> list[Entity]:
    availability = {
        "availability_topic": topics.status,
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    match = {
        "name": "Match",
        "state_topic": topics.match,
        "qos": 1,
        "event_types": [MATCH_EVENT_TYPE],
        "value_template": _match_template(),
        "icon": "mdi:face-recognition",
        **availability,
    }
    last_match = {
        "name": "Last match",
        "device_class": "timestamp",
        "state_topic": topics.health,
        "value_template": "{{ value_json.last_match_at | default(None) }}",
        **availability,
    }
    connectivity = {
        "name": "Connectivity",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "state_topic": topics.status,
        "value_template": "{{ value_json.state }}",
        "payload_on": "online",
        "payload_off": "offline",
    }
    fps = {
        "name": "Frames per second",
        "entity_category": "diagnostic",
        "state_topic": topics.health,
        "value_template": "{{ value_json.fps }}",
        "unit_of_measurement": "fps",
        "state_class": "measurement",
        "expire_after": round(3 * settings.health_interval_s),
        **availability,
    }
    return [
        ("event", "match", match),
        ("sensor", "last_match", last_match),
        ("binary_sensor", "connectivity", connectivity),
        ("sensor", "fps", fps),
    ]

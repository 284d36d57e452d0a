"""Home Assistant MQTT discovery: the retained configs that make the agent a device with three entities
(connectivity, frames per second, the last match time), published on every connect when
`mqtt.home_assistant` is on.

The connectivity sensor reads the status topic itself, so it has no availability (it would show
"unavailable" instead of "off"); the other two are available while the status says online.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edge_agent.events.schema import StatusMessage
from edge_agent.events.settings import MqttSettings
from edge_agent.events.topics import Topics

Entity = tuple[str, str, dict[str, Any]]  # component, object id, its config


def discovery_messages(
    settings: MqttSettings, topics: Topics, online: StatusMessage
) -> list[tuple[str, bytes]]:
    """(topic, payload) of each retained discovery config, under `mqtt.discovery_prefix`."""
    node = "edge-agent-" + re.sub(r"[^A-Za-z0-9_-]", "_", topics.device_id)
    device = _device(node, topics, online)
    messages = []
    for component, object_id, config in _entities(settings, topics):
        body = {
            **config,
            "unique_id": f"{node}-{object_id}",
            "object_id": f"{node}_{object_id}",
            "device": device,
        }
        topic = f"{settings.discovery_prefix}/{component}/{node}/{object_id}/config"
        messages.append((topic, json.dumps(body, sort_keys=True).encode()))
    return messages


def _device(node: str, topics: Topics, online: StatusMessage) -> dict[str, Any]:
    return {
        "identifiers": [node],
        "name": f"edge-agent {topics.device_id}",
        "manufacturer": "edge-agent",
        "model": "face-watchlist agent",
        "sw_version": online.agent_version,
    }


def _entities(settings: MqttSettings, topics: Topics) -> list[Entity]:
    availability = {
        "availability_topic": topics.status,
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    connectivity = {
        "name": "Connectivity",
        "device_class": "connectivity",
        "state_topic": topics.status,
        "value_template": "{{ value_json.state }}",
        "payload_on": "online",
        "payload_off": "offline",
    }
    fps = {
        "name": "Frames per second",
        "state_topic": topics.health,
        "value_template": "{{ value_json.fps }}",
        "unit_of_measurement": "fps",
        "state_class": "measurement",
        "expire_after": round(3 * settings.health_interval_s),
        **availability,
    }
    last_match = {
        "name": "Last match",
        "device_class": "timestamp",
        "state_topic": topics.health,
        "value_template": "{{ value_json.last_match_at | default(None) }}",
        **availability,
    }
    return [
        ("binary_sensor", "connectivity", connectivity),
        ("sensor", "fps", fps),
        ("sensor", "last_match", last_match),
    ]

"""The events' sections: `[events]` (the durable outbox, the review store) and `[mqtt]` (the broker).

A base module (pydantic, `edge_agent.section` and `edge_agent.state_dir` only), composed by `config.py`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from edge_agent.section import Section
from edge_agent.state_dir import default_data_path


class EventSettings(Section):
    """The durable outbox of match events and the reviewer's copy of each sent match."""

    path: Path = Field(
        default_factory=lambda: default_data_path("events.db"),
        description="Outbox and review store (SQLite). Default: events.db in the state directory "
        "(edge_agent/state_dir.py), beside the watchlist.",
    )
    outbox_max_events: int = Field(
        10000, ge=1, description="Most unsent messages kept; past it the oldest is dropped and counted."
    )
    outbox_max_age_s: float = Field(
        7 * 86400.0, gt=0.0, description="Unsent messages older than this are dropped and counted."
    )
    review_days: float = Field(
        30.0,
        ge=0.0,
        le=3650.0,
        description="How long a sent match (event + matched face's embedding, never the frame) is kept for "
        "reviewer feedback before it is deleted.",
    )
    include_name: bool = Field(
        False,
        description="Put the subject's display name in match events (and Home Assistant's event "
        "attributes); the subject id is always there.",
    )
    face_crop: bool = Field(False, description="Attach a JPEG of the matched face crop for the reviewer.")
    face_crop_quality: int = Field(85, ge=10, le=100, description="JPEG quality of that crop.")
    drain_timeout_s: float = Field(
        10.0, ge=0.0, le=3600.0, description="On shutdown, how long to wait for unsent events to be acked."
    )


class MqttSettings(Section):
    host: str = Field("localhost", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    client_id: str | None = Field(None, description="MQTT client id (default: edge-agent-<device_id>).")
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password (prefer the environment).")
    tls: bool = Field(False, description="Connect with TLS (on by itself when ca_file or cert_file is set).")
    ca_file: Path | None = Field(
        None, description="CA certificate(s) (PEM) the broker's certificate must chain to."
    )
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(None, description="Client private key (PEM) for mutual TLS.")
    topic_prefix: str = Field(
        "edge-agent",
        min_length=1,
        pattern=r"^[^#+]+$",
        description="Topics are <prefix>/<device_id>/events/match, .../status, .../health.",
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive.")
    reconnect_min_s: float = Field(1.0, gt=0.0, le=60.0, description="First wait before reconnecting.")
    reconnect_max_s: float = Field(60.0, gt=0.0, le=3600.0, description="Longest wait between reconnects.")
    max_inflight: int = Field(20, ge=1, le=1000, description="Events published and not yet acknowledged.")
    health_interval_s: float = Field(30.0, ge=1.0, le=86400.0, description="Period of the health message.")
    home_assistant: bool = Field(False, description="Publish Home Assistant MQTT discovery for the sensors.")
    discovery_prefix: str = Field(
        "homeassistant", min_length=1, description="Home Assistant discovery prefix."
    )

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} is not a file")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

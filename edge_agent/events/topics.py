"""The agent's MQTT topics, under `<prefix>/<device_id>/` (see docs/architecture.md, "Events and topics")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str
    device_id: str

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def match(self) -> str:
        return f"{self.root}/events/match"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def health(self) -> str:
        return f"{self.root}/health"

    @property
    def report(self) -> str:
        return f"{self.root}/report"

    @property
    def cmd(self) -> str:
        return f"{self.root}/cmd"

    @property
    def cmd_result(self) -> str:
        return f"{self.cmd}/result"

    @property
    def command_filters(self) -> tuple[str, str]:
        """Where commands arrive: this device's and the fleet-wide command topics."""
        return f"{self.cmd}/#", f"{self.prefix}/all/cmd/#"

    def is_command(self, topic: str) -> bool:
        return not topic.endswith("/cmd/result") and (
            topic.startswith(f"{self.cmd}/") or topic.startswith(f"{self.prefix}/all/cmd/")
        )

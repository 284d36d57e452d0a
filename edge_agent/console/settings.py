"""`[console]`: the reviewers' web console on the central side (`edge-agent console serve`).

A base module (pydantic, `edge_agent.section` and `edge_agent.state_dir` only), composed by `config.py`.
The console also reads `[mqtt]` (the fleet's broker) and `[watchlist]` (the master watchlist it exports,
and `signing_key` for its bundles).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator

from edge_agent.section import Section
from edge_agent.state_dir import default_data_path


class ConsoleSettings(Section):
    path: Path = Field(
        default_factory=lambda: default_data_path("console.db"),
        description="The console's database (SQLite): events, devices, accounts, sessions, its audit log.",
    )
    host: str = Field("127.0.0.1", min_length=1, description="Address the web server listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port the web server listens on.")
    command_key: Path | None = Field(
        None,
        description="Ed25519 private key (PEM) that signs the console's fleet commands (review verdicts, "
        "bundles); the devices trust its public key. Read on the server only, never sent to a browser.",
    )
    client_id: str = Field(
        "edge-agent-console",
        min_length=1,
        max_length=64,
        description="MQTT client id of the console's persistent session (the broker queues QoS 1 messages "
        "for it while the console is down): never a device's id.",
    )
    session_hours: float = Field(12.0, gt=0.0, le=24.0 * 30, description="How long a login lasts.")
    secure_cookies: bool = Field(
        False,
        description="Send the cookies only over HTTPS, named `__Host-…` (on behind a TLS-terminating proxy).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses (or networks) of the reverse proxies in front of the console: from these, "
        "the client's address is read from X-Forwarded-For (the login throttle counts per address). "
        'Behind a proxy on the same machine: `["127.0.0.1"]`. Never `"*"`: anyone could then say who '
        "they are.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _named_proxies(cls, proxies: list[str]) -> list[str]:
        """Addresses or small networks only, written as uvicorn reads them."""
        named = []
        for proxy in proxies:
            try:
                network = ipaddress.ip_network(proxy.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or network") from None
            if network.prefixlen < (16 if network.version == 4 else 48):
                raise ValueError(
                    f"{proxy!r} would trust a whole range of clients' X-Forwarded-For: name the proxies"
                )
            named.append(str(network.network_address) if network.num_addresses == 1 else str(network))
        return named

    login_attempts: int = Field(
        5, ge=1, le=100, description="Failed logins for one account (or address) before it is slowed down."
    )
    login_lockout_s: float = Field(
        30.0,
        gt=0.0,
        le=86400.0,
        description="The wait after `login_attempts` failures; it doubles with each failure after that "
        "(up to an hour).",
    )
    command_lifetime_s: float = Field(
        900.0, ge=60.0, le=7 * 86400.0, description="How long a signed review command stays valid."
    )

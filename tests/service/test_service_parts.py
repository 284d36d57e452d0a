"""systemd notify over a real datagram socket, board readings from real files, and the unit file."""

from __future__ import annotations

import os
import socket
import subprocess
import tomllib
from pathlib import Path

import pytest

from edge_agent.config import load_settings
from edge_agent.sdnotify import SystemdNotifier
from edge_agent.sysinfo import cpu_temperature_c, rss_mib

REPO = Path(__file__).resolve().parents[2]


def test_notify_messages_reach_the_socket(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(2)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"})
        assert notifier.enabled and notifier.watchdog_interval_s == 1.0
        notifier.ready("watching")
        assert server.recv(256).decode().split("\n") == ["READY=1", "STATUS=watching"]
        notifier.pet()
        notifier.pet()  # within the interval: not sent again
        notifier.stopping()
        assert server.recv(256) == b"WATCHDOG=1"
        assert server.recv(256) == b"STOPPING=1"


def test_without_systemd_every_call_is_a_no_op() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    notifier.ready("x")
    notifier.pet()


def test_watchdog_for_another_process_is_ignored() -> None:
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": str(os.getpid() + 1)}
    )
    assert notifier.watchdog_interval_s is None


def test_cpu_temperature_prefers_the_cpu_zone(tmp_path: Path) -> None:
    for index, (kind, millideg) in enumerate([("gpu-thermal", "39000"), ("cpu-thermal", "51540")]):
        zone = tmp_path / f"thermal_zone{index}"
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(millideg + "\n")
    assert cpu_temperature_c(tmp_path) == pytest.approx(51.54)
    assert cpu_temperature_c(tmp_path / "none") is None


def test_rss_is_this_process() -> None:
    before = rss_mib()
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])
    assert rss_mib() - before > 50


def test_unit_file_is_hardened_and_systemd_accepts_it(tmp_path: Path) -> None:
    unit = (REPO / "systemd" / "edge-agent.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=edge-agent",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "DevicePolicy=closed",
        "SupplementaryGroups=video",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert line in unit
    analyze = subprocess.run(["which", "systemd-analyze"], capture_output=True, text=True).stdout.strip()
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    result = subprocess.run(
        [analyze, "verify", str(REPO / "systemd" / "edge-agent.service")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    problems = [
        line for line in result.stderr.splitlines() if "is not executable" not in line and line.strip()
    ]
    assert problems == [], result.stderr


def test_example_config_is_valid(tmp_path: Path) -> None:
    text = (REPO / "systemd" / "config.example.toml").read_text()
    for name in ("ca.pem", "gate-1.crt", "gate-1.key"):
        (tmp_path / name).write_text("x")
        text = text.replace(f"/etc/edge-agent/{name}", str(tmp_path / name))
    config = tmp_path / "config.toml"
    config.write_text(text)
    settings = load_settings(config, use_environment=False)
    assert settings.mqtt.uses_tls and settings.camera.kind == "stream"
    assert tomllib.loads(text)["embedder"]["target_fmr"] == 1e-4
    env = (REPO / "systemd" / "edge-agent.env.example").read_text()
    assert "EDGE_AGENT_MQTT__PASSWORD=" in env

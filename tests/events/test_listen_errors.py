"""`edge-agent listen` that cannot listen says why in one line and exits 1 (a real mosquitto, real TLS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.events.publisher import Publisher
from edge_agent.events.schema import StatusMessage
from edge_agent.events.settings import MqttSettings
from edge_agent.events.store import EventStore
from edge_agent.lab.mosquitto import free_port
from tests.kits.broker import Broker, make_pki
from tests.kits.waiting import wait_until

LISTEN_TIMEOUT_S = 20  # a listener that does not give up by itself would run this long


def listen(tmp_path: Path, **mqtt: object) -> tuple[int, str, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    env |= {f"EDGE_AGENT_MQTT__{key.upper()}": str(value) for key, value in mqtt.items()}
    env |= {"EDGE_AGENT_MQTT__RECONNECT_MIN_S": "0.2", "EDGE_AGENT_MQTT__RECONNECT_MAX_S": "0.5"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "listen", "--timeout", str(LISTEN_TIMEOUT_S)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_no_broker_is_one_line_and_exit_1(tmp_path: Path) -> None:
    port = free_port()
    code, out, err, took = listen(tmp_path, host="127.0.0.1", port=port)
    assert code == 1 and out == ""
    line = one_line(err)
    assert line.startswith("edge-agent: cannot reach broker 127.0.0.1:") and str(port) in line
    assert "refused" in line.lower()
    assert took < LISTEN_TIMEOUT_S / 2  # it gave up, it did not wait for --timeout


def test_a_wrong_ca_is_one_line_and_exit_1(tmp_path: Path, broker_factory: Callable[..., Broker]) -> None:
    broker = broker_factory(pki=make_pki(tmp_path / "pki"))
    broker.start()
    other_ca = make_pki(tmp_path / "other").ca_cert
    code, out, err, took = listen(tmp_path, host="127.0.0.1", port=broker.port, tls="true", ca_file=other_ca)
    assert code == 1 and out == ""
    line = one_line(err)
    assert "certificate not trusted" in line and f"127.0.0.1:{broker.port}" in line
    assert took < LISTEN_TIMEOUT_S / 2


def test_a_plain_client_on_a_tls_port_is_one_line_and_exit_1(
    tmp_path: Path, broker_factory: Callable[..., Broker]
) -> None:
    broker = broker_factory(pki=make_pki(tmp_path / "pki"))
    broker.start()
    code, out, err, took = listen(tmp_path, host="127.0.0.1", port=broker.port)
    assert code == 1 and out == ""
    line = one_line(err)
    assert f"127.0.0.1:{broker.port}" in line and "TLS" in line  # the hint: is it a TLS port?
    assert took < LISTEN_TIMEOUT_S / 2


def test_a_tls_client_on_a_plain_port_says_the_tls_handshake_failed(tmp_path: Path, broker: Broker) -> None:
    ca = make_pki(tmp_path / "pki").ca_cert
    code, out, err, took = listen(tmp_path, host="127.0.0.1", port=broker.port, tls="true", ca_file=ca)
    assert code == 1 and out == ""
    line = one_line(err)
    assert "TLS handshake" in line and f"127.0.0.1:{broker.port}" in line
    assert "cannot reach" not in line
    assert took < LISTEN_TIMEOUT_S / 2


def test_the_agent_publisher_also_says_the_tls_handshake_failed(tmp_path: Path, broker: Broker) -> None:
    """The same words from the agent's own publisher (logged once, while it keeps retrying)."""
    ca = make_pki(tmp_path / "pki").ca_cert
    settings = MqttSettings(
        host="127.0.0.1", port=broker.port, tls=True, ca_file=ca, reconnect_min_s=0.2, reconnect_max_s=0.5
    )
    lines: list[str] = []
    with EventStore.open(tmp_path / "events.db", max_events=10, max_age_s=60.0, review_days=1.0) as store:
        status = StatusMessage(device_id="edge-1", state="offline", agent_version="0")
        publisher = Publisher(settings, "edge-1", store, online=status, offline=status, log=lines.append)
        publisher.start()
        try:
            wait_until(lambda: publisher.last_error is not None, "a connection error", timeout_s=10)
        finally:
            publisher.stop()
    assert publisher.last_error is not None and "TLS handshake" in publisher.last_error, lines
    assert not any("cannot reach" in line for line in lines), lines


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

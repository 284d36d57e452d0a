"""The central side of fleet commands against simulated devices on a real mosquitto: a signed bundle to
twenty devices, every refusal answered and audited, and the `edge-agent fleet` commands."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.errors import EdgeAgentError
from edge_agent.events.settings import MqttSettings
from edge_agent.fleet import central
from edge_agent.fleet.command import sign_command
from edge_agent.fleet.state import FleetState
from edge_agent.lab.mosquitto import free_port
from edge_agent.signed import generate_key, load_private_key, public_key_hex
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist.transfer import export_bundle
from tests.kits.agent_kit import agent_settings, enrol_demo_people, open_watchlist, payloads
from tests.kits.broker import Broker, Subscriber
from tests.kits.clihelp import run_cli
from tests.kits.fleet_kit import SimDevice, WatchlistModel, start_fleet
from tests.kits.waiting import wait_until

FLEET_SIZE = 20


@dataclass(frozen=True)
class Source:
    """A central watchlist's export: the bundle (signed by the central key) and what it holds."""

    bundle: bytes
    subject_ids: frozenset[str]
    model: WatchlistModel


@pytest.fixture(scope="module")
def central_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("central") / "central.pem"
    generate_key(path)
    return path


@pytest.fixture(scope="module")
def central_key(central_key_file: Path) -> Ed25519PrivateKey:
    return load_private_key(central_key_file)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, catalog: ModelCatalog, central_key_file: Path) -> Source:
    """The two demo-kit people enrolled with the project pipeline (real descriptors), exported."""
    settings = agent_settings(tmp_path_factory.mktemp("source"), None, port=1)
    faces = FacePipeline.from_settings(settings, catalog)
    people = enrol_demo_people(settings, faces)
    assert len(people) == 2
    with open_watchlist(settings, faces) as watchlist:
        bundle, count = export_bundle(
            watchlist, central_key_file, "central", datetime.now(UTC) + timedelta(days=1)
        )
    assert count == 2
    model = WatchlistModel(settings.embedder.model, faces.embedder.spec.dimensions)
    return Source(bundle, frozenset(people.values()), model)


def mqtt_settings(broker: Broker) -> MqttSettings:
    return MqttSettings(host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5)


@pytest.fixture
def fleet(tmp_path: Path, broker: Broker, source: Source) -> Iterator[Callable[..., list[SimDevice]]]:
    started: list[SimDevice] = []

    def start(count: int, trusted_keys: list[str]) -> list[SimDevice]:
        devices = start_fleet(
            tmp_path / "fleet", broker, mqtt_settings(broker), count, trusted_keys, source.model
        )
        started.extend(devices)
        return devices

    yield start
    for device in started:
        device.stop()


def apply_args(source: Source) -> dict[str, str]:
    return {"bundle": base64.b64encode(source.bundle).decode("ascii"), "mode": "delta"}


def live_ids(device: SimDevice) -> set[str]:
    return {subject_id for subject_id, status in device.subjects().items() if status == "active"}


def test_a_signed_delta_bundle_reaches_twenty_devices(
    broker: Broker,
    source: Source,
    central_key: Ed25519PrivateKey,
    fleet: Callable[..., list[SimDevice]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    devices = fleet(FLEET_SIZE, [public_key_hex(central_key)])
    assert all(not live_ids(device) for device in devices)

    signed_at = time.monotonic()
    envelope = sign_command(central_key, "apply_bundle", apply_args(source))
    collected = central.send(mqtt_settings(broker), envelope, "all", expect=FLEET_SIZE, timeout_s=30)
    assert collected.last_at is not None
    total_s = collected.last_at - signed_at

    assert collected.complete and collected.ok, collected.summary()
    assert sorted(r.device_id for r in collected.results) == sorted(d.device_id for d in devices)
    assert all(r.by_nonce and r.nonce == collected.nonce for r in collected.results)
    assert all(set(r.details["added"]) == source.subject_ids for r in collected.results)
    for device in devices:
        assert live_ids(device) == source.subject_ids, device.device_id
    with capsys.disabled():
        print(
            f"\nfleet: signed delta apply_bundle ({len(source.bundle)} byte bundle, 2 subjects) to "
            f"{FLEET_SIZE} devices, sign -> last result {total_s:.3f} s; {collected.summary()}; "
            f"first answer after {collected.results[0].after_s:.3f} s, "
            f"last after {collected.results[-1].after_s:.3f} s"
        )


def test_replayed_untrusted_and_tampered_commands_are_refused_answered_and_counted(
    broker: Broker, source: Source, central_key: Ed25519PrivateKey, fleet: Callable[..., list[SimDevice]]
) -> None:
    devices = fleet(2, [public_key_hex(central_key)])
    settings = mqtt_settings(broker)
    apply = sign_command(central_key, "apply_bundle", apply_args(source))
    assert central.send(settings, apply, expect=2, timeout_s=15).ok
    before = {device.device_id: (device.subjects(), len(device.audit_rows())) for device in devices}
    target = sorted(source.subject_ids)[0]

    stranger = sign_command(Ed25519PrivateKey.generate(), "remove_subject", {"subject_id": target})
    decoy = json.loads(sign_command(central_key, "remove_subject", {"subject_id": "s-000000000000"}))
    payload = base64.b64decode(decoy["payload"]).replace(b"s-000000000000", target.encode())
    tampered = json.dumps({**decoy, "payload": base64.b64encode(payload).decode()}).encode()

    for envelope, reason in ((apply, "replayed"), (stranger, "untrusted_key"), (tampered, "bad_signature")):
        collected = central.send(settings, envelope, expect=2, timeout_s=15)
        assert collected.complete, f"{reason}: {collected.summary()}"
        assert [(r.accepted, r.reason) for r in collected.results] == [(False, reason)] * 2
        # a replay is answered with its (verified) nonce; the others carry none the device could trust
        assert all(r.by_nonce == (reason == "replayed") for r in collected.results)
        assert "2 of 2 devices answered" in collected.summary() and "2 refused" in collected.summary()

    for device in devices:
        subjects, audited = before[device.device_id]
        assert device.subjects() == subjects  # still both subjects, both active
        assert set(subjects) == source.subject_ids
        # refusals go to the bounded refusal store, never into the audit chain anyone could grow
        assert device.audit_rows()[audited:] == []
        refusals = device.query(lambda w: FleetState(w).refusals())
        assert [row["reason"] for row in refusals] == ["bad_signature", "untrusted_key", "replayed"]
        assert device.query(lambda w: FleetState(w).refusal_counts()) == {
            "replayed": 1,
            "untrusted_key": 1,
            "bad_signature": 1,
        }


def test_publish_then_collect_by_nonce(
    broker: Broker, central_key: Ed25519PrivateKey, fleet: Callable[..., list[SimDevice]]
) -> None:
    (device,) = fleet(1, [public_key_hex(central_key)])
    settings = mqtt_settings(broker)
    status = sign_command(central_key, "request_status", target=device.device_id)
    with ThreadPoolExecutor(1) as pool:
        collecting = pool.submit(
            central.collect_results, settings, central.read_envelope(status).nonce, 1, 10
        )
        wait_until(lambda: broker.log_count(" 1 edge-agent/+/cmd/result") == 1)  # it listens first
        nonce = central.publish_command(settings, status)
        (answer,) = collecting.result()
    assert (answer["device_id"], answer["nonce"], answer["details"]) == (
        device.device_id,
        nonce,
        {"status": {"live_subjects": 0}, "envelope_sha256": hashlib.sha256(status).hexdigest()},
    )

    # an answer to an earlier command is not taken for the next one's
    central.publish_command(settings, sign_command(central_key, "request_status", target="cam-00"))
    fmr = sign_command(central_key, "set_target_fmr", {"target_fmr": 1e-3}, target="cam-00")
    collected = central.send(settings, fmr, timeout_s=10)
    assert collected.expected == 1  # a command for one device waits for that one
    digest = hashlib.sha256(fmr).hexdigest()
    assert [(r.device_id, r.command, r.accepted, r.details) for r in collected.results] == [
        ("cam-00", "set_target_fmr", True, {"target_fmr": 1e-3, "threshold": 0.47, "envelope_sha256": digest})
    ]
    with pytest.raises(EdgeAgentError, match="signed for 'all', not 'cam-00'"):
        central.publish_command(settings, sign_command(central_key, "request_status"), "cam-00")
    with pytest.raises(EdgeAgentError, match="format is not 'edge-agent-command'"):
        central.send(settings, b'{"format": "edge-agent-watchlist-bundle"}')


def test_an_unreachable_broker_is_one_line(central_key: Ed25519PrivateKey) -> None:
    settings = MqttSettings(host="127.0.0.1", port=free_port())
    envelope = sign_command(central_key, "request_status")
    for call in (
        lambda: central.send(settings, envelope, timeout_s=2),
        lambda: central.publish_command(settings, envelope, timeout_s=2),
        lambda: central.collect_results(settings, "0" * 32, timeout_s=2),
    ):
        with pytest.raises(EdgeAgentError, match=r"^cannot reach broker 127\.0\.0\.1:\d+: "):
            call()


def test_fleet_cli_keygen_sign_publish_send(
    tmp_path: Path,
    broker: Broker,
    source: Source,
    central_key: Ed25519PrivateKey,
    fleet: Callable[..., list[SimDevice]],
) -> None:
    key = tmp_path / "fleet.pem"
    made = run_cli("fleet", "keygen", key)
    assert made.returncode == 0, made.stderr
    public = re.findall(r"\b[0-9a-f]{64}\b", made.stdout)
    assert public == [public_key_hex(load_private_key(key))]
    assert run_cli("fleet", "keygen", key).returncode == 1  # never overwritten

    # the bundle was signed by the central key; the commands by the new one: the devices trust both
    devices = fleet(2, [public[0], public_key_hex(central_key)])
    env = {**os.environ, "EDGE_AGENT_MQTT__HOST": broker.host, "EDGE_AGENT_MQTT__PORT": str(broker.port)}
    bundle = tmp_path / "list.bundle"
    bundle.write_bytes(source.bundle)
    envelope = tmp_path / "apply.json"
    signed = run_cli(
        "fleet", "sign", "apply_bundle", "--bundle", bundle, "--mode", "delta",
        "--target", "cam-01", "--lifetime", "10m", "--key", key, "-o", envelope,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert central.read_envelope(envelope.read_bytes()).target == "cam-01"

    results = Subscriber(broker, "edge-agent/+/cmd/result").start()
    published = run_cli("fleet", "publish", envelope, env=env)
    assert published.returncode == 0, published.stderr
    assert "edge-agent/cam-01/cmd/apply_bundle" in published.stdout
    (answer,) = payloads(results.wait_for(1, timeout_s=10))
    results.close()
    assert (answer["device_id"], answer["accepted"]) == ("cam-01", True)
    assert live_ids(devices[1]) == source.subject_ids and not live_ids(devices[0])

    sent = run_cli(
        "fleet", "send", "request_status", "--key", key, "--expect", "2", "--timeout", "20", env=env
    )
    assert sent.returncode == 0, sent.stderr
    lines = sent.stdout.splitlines()
    assert sorted(line.split(":")[0] for line in lines[:-1]) == ["cam-00", "cam-01"]
    assert all(": accepted after " in line for line in lines[:-1])
    assert re.fullmatch(r"2 of 2 devices answered in \d+\.\d\d s: 2 accepted, 0 refused", lines[-1])

    short = run_cli(
        "fleet", "send", "set_target_fmr", "--arg", "target_fmr=0.5", "--key", key,
        "--expect", "3", "--timeout", "2", env=env,
    )  # fmt: skip
    assert short.returncode == 1
    assert short.stdout.splitlines()[-1].startswith("2 of 3 devices answered in ")
    assert "0 accepted, 2 refused" in short.stdout and "refused (invalid_args)" in short.stdout
    assert short.stderr == "edge-agent: 1 device(s) did not answer within 2 s\n"

    closed = {**env, "EDGE_AGENT_MQTT__PORT": str(free_port())}
    unreachable = run_cli("fleet", "send", "request_status", "--key", key, env=closed)
    assert unreachable.returncode == 1
    assert re.fullmatch(r"edge-agent: cannot reach broker 127\.0\.0\.1:\d+: .+\n", unreachable.stderr)
    missing = run_cli("fleet", "sign", "apply_bundle", "--key", key)
    assert (missing.returncode, missing.stderr) == (1, "edge-agent: apply_bundle needs --bundle FILE "
                                                    "(a signed watchlist bundle)\n")  # fmt: skip

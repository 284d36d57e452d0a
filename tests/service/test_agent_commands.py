"""Fleet commands through running agents: a real mosquitto, real models, the demo clip looping."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.publish as publish
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.config import Settings
from edge_agent.fleet.command import sign_command
from edge_agent.service import Agent
from edge_agent.signed import public_key_hex
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist import audit
from edge_agent.watchlist.bundle import load_private_key
from edge_agent.watchlist.transfer import export_bundle
from tests.kits.agent_kit import (
    PREFIX,
    agent_settings,
    enrol_demo_people,
    open_watchlist,
    payloads,
    table_rows,
)
from tests.kits.broker import Broker, Subscriber


@pytest.fixture
def central(central_key_file: Path) -> Ed25519PrivateKey:
    return load_private_key(central_key_file)


def _settings(
    folder: Path, broker: Broker, device: str, key: Ed25519PrivateKey, **sections: object
) -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    settings = agent_settings(folder, broker, camera={"loop": True}, **sections)  # type: ignore[arg-type]
    watchlist = settings.watchlist.model_copy(update={"trusted_keys": [public_key_hex(key)]})
    return settings.model_copy(update={"device_id": device, "watchlist": watchlist})


@pytest.fixture
def run_agents(catalog: ModelCatalog) -> Iterator[Callable[..., list[Agent]]]:
    started: list[tuple[Agent, threading.Thread]] = []

    def start(*settings: Settings) -> list[Agent]:
        agents = []
        for one in settings:
            agent = Agent(one, catalog=catalog)
            thread = threading.Thread(target=agent.run)
            thread.start()
            started.append((agent, thread))
            agents.append(agent)
        deadline = time.monotonic() + 30
        while not all(a.publisher is not None and a.publisher.connected for a in agents):
            assert time.monotonic() < deadline, "agents did not connect"
            time.sleep(0.05)
        time.sleep(0.3)  # their SUBSCRIBE to the command topics
        return agents

    yield start
    for agent, thread in started:
        agent.stop()
        thread.join(30)


def _bundle(tmp_path: Path, broker: Broker, faces: FacePipeline, key_file: Path) -> tuple[bytes, set[str]]:
    """The demo people exported from a central watchlist as a bundle signed by the central key."""
    central = agent_settings(tmp_path / "central", broker)
    people = enrol_demo_people(central, faces)
    with open_watchlist(central, faces) as watchlist:
        data, _ = export_bundle(watchlist, key_file, "central", datetime.now(UTC) + timedelta(days=1))
    return data, set(people.values())


def _send(broker: Broker, envelope: bytes, target: str = "all") -> None:
    publish.single(f"{PREFIX}/{target}/cmd/apply", envelope, qos=1, hostname="127.0.0.1", port=broker.port)


def _results(subscriber: Subscriber, count: int) -> list[dict[str, object]]:
    return payloads(subscriber.wait_for(count, timeout_s=30))


def _subjects(settings: Settings) -> int:
    return table_rows(settings.watchlist.path)["subjects"]


def test_signed_bundle_reaches_two_agents_and_every_bad_command_is_refused_and_counted(
    tmp_path: Path,
    broker: Broker,
    faces: FacePipeline,
    central: Ed25519PrivateKey,
    central_key_file: Path,
    run_agents: Callable[..., list[Agent]],
) -> None:
    a = _settings(tmp_path / "a", broker, "cam-a", central)
    b = _settings(tmp_path / "b", broker, "cam-b", central)
    for settings in (a, b):
        open_watchlist(settings, faces).close()
    bundle, subject_ids = _bundle(tmp_path, broker, faces, central_key_file)
    run_agents(a, b)
    results = Subscriber(broker, f"{PREFIX}/+/cmd/result").start()

    apply = sign_command(
        central, "apply_bundle", {"bundle": base64.b64encode(bundle).decode(), "mode": "delta"}
    )
    _send(broker, apply)
    answers = _results(results, 2)
    assert {(r["device_id"], r["accepted"]) for r in answers} == {("cam-a", True), ("cam-b", True)}
    assert all(set(r["details"]["added"]) == subject_ids for r in answers)  # type: ignore[index]
    assert _subjects(a) == _subjects(b) == len(subject_ids)

    stranger = sign_command(
        Ed25519PrivateKey.generate(), "remove_subject", {"subject_id": sorted(subject_ids)[0]}
    )
    envelope = json.loads(sign_command(central, "remove_subject", {"subject_id": sorted(subject_ids)[0]}))
    forged = dict(
        envelope,
        payload=base64.b64encode(
            base64.b64decode(envelope["payload"]).replace(b'"all"', b'"cam-a"')
        ).decode(),
    )
    for bad in (apply, stranger, json.dumps(forged).encode()):  # replayed, untrusted, tampered
        _send(broker, bad)
    answers = _results(results, 2 + 3 * 2)[2:]
    reasons = sorted(str(r["reason"]) for r in answers)
    assert reasons == sorted(["replayed", "untrusted_key", "bad_signature"] * 2), answers
    assert _subjects(a) == _subjects(b) == len(subject_ids)  # nothing changed
    for settings in (a, b):
        rows = _audit_actions(settings)
        assert rows.count("command") == 1 and rows.count("command_rejected") == 0
        assert _refusal_reasons(settings) == ["bad_signature", "replayed", "untrusted_key"]


def _audit_actions(settings: Settings) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{settings.watchlist.path}?mode=ro", uri=True)
    try:
        assert audit.verify(conn).ok
        return [row.action for row in audit.rows(conn)]
    finally:
        conn.close()


def _refusal_reasons(settings: Settings) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{settings.watchlist.path}?mode=ro", uri=True)
    try:
        return sorted(str(row[0]) for row in conn.execute("SELECT reason FROM command_refusals"))
    finally:
        conn.close()


def test_a_false_match_verdict_stops_the_repeat_match(
    tmp_path: Path,
    broker: Broker,
    faces: FacePipeline,
    central: Ed25519PrivateKey,
    run_agents: Callable[..., list[Agent]],
) -> None:
    """The reviewer marks the agent's match event as a false match (a mechanism test: the demo clip's
    performer stands in for the wrongly matched passer-by). The event's kept embedding becomes an
    exclusion of that subject, every agreeing shot of the track: on the clip's later passes no event for
    him comes again."""
    # k of n only (at a fixed rate, a single-look rate equal to the target is not used), so several shots vote
    decision = {"cooldown_s": 0.0, "operating_point": "target_fmr", "single_look_fmr": 1e-4}
    settings = _settings(tmp_path / "a", broker, "cam-a", central, decision=decision)
    people = enrol_demo_people(settings, faces)
    events = Subscriber(broker, f"{PREFIX}/cam-a/events/match").start()
    results = Subscriber(broker, f"{PREFIX}/cam-a/cmd/result").start()
    [agent] = run_agents(settings)
    first = payloads(events.wait_for(1, timeout_s=30))[0]
    assert first["subject_id"] == people["lin_manuel_miranda"]

    review = sign_command(central, "review", {"event_id": first["event_id"], "verdict": "false_match"})
    _send(broker, review, "cam-a")
    [answer] = _results(results, 1)
    assert answer["accepted"] is True, answer
    # every shot that voted for the match is excluded, not only the best one
    assert answer["details"]["embeddings_excluded"] == first["frames_agreeing"] >= 2  # type: ignore[index]
    seen = len(events.messages())
    frames = agent.runner.frames if agent.runner else 0
    deadline = time.monotonic() + 60
    while (agent.runner.frames if agent.runner else 0) < frames + 2 * 275 and time.monotonic() < deadline:
        time.sleep(0.1)  # two more passes of the clip
    assert len(events.messages()) == seen  # no new event for him
    with open_watchlist(settings, faces) as watchlist:
        [exclusion] = watchlist.exclusions(people["lin_manuel_miranda"])
    assert exclusion.event_id == first["event_id"]
    with open_watchlist(settings, faces) as watchlist:
        blob = watchlist.conn.execute("SELECT embedding FROM exclusions").fetchone()[0]
    assert len(blob) == 4 * 128 * int(first["frames_agreeing"])

"""Hostile input: commands, bundles and media that anyone could publish or drop in a folder.

Property-based (hypothesis) where the space is large, and the red team's cases by name. The live tests run
`edge-agent run` as a process against a real mosquitto, so a crash shows as an exit and a traceback as a
line on its stderr; every message sent is accounted for in the agent's answers and its refusal counts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import bounded
from edge_agent.bounded import InputRefusedError
from edge_agent.capture.media import read_image
from edge_agent.config import Settings, settings_as_toml
from edge_agent.errors import EdgeAgentError
from edge_agent.fleet.command import COMMAND, COMMANDS, sign_command
from edge_agent.signed import public_key_hex, seal
from edge_agent.vision.faces import FacePipeline
from edge_agent.watchlist.bundle import BUNDLE, BundleError, read_bundle
from tests.kits.agent_kit import DEMO_KIT, DEVICE, PREFIX, agent_settings, enrol_demo_people, table_rows
from tests.kits.broker import Broker, Subscriber
from tests.kits.clihelp import run_cli
from tests.kits.waiting import wait_until

T = TypeVar("T")


def wait_for(look: Callable[[], T | None], what: str, timeout_s: float) -> T:
    """The first non-None value of `look()`, polled until `timeout_s`."""
    found: list[T] = []

    def check() -> bool:
        value = look()
        if value is not None:
            found.append(value)
        return value is not None

    wait_until(check, what, timeout_s)
    return found[0]


RESULT_TOPIC = f"{PREFIX}/{DEVICE}/cmd/result"
HEALTH_TOPIC = f"{PREFIX}/{DEVICE}/health"
BRACKETS = b"[" * 2000 + b"]" * 2000  # the red team's 4 kB payload that ended every agent
UNCHANGED_TABLES = ("subjects", "templates", "exclusions", "command_keys", "fleet_settings")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


finite_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(item) for item in value.values()), default=0)
    return 0


# ---- the bounds themselves -----------------------------------------------------------------------


@given(json_values)
def test_json_depth_is_the_nesting_of_any_document(value: object) -> None:
    assert bounded.json_depth(json.dumps(value).encode()) == depth_of(value)


@given(st.binary(max_size=2000) | st.integers(1, 20_000).map(lambda n: b"[" * n + b"]" * n))
def test_load_json_refuses_in_one_line_and_never_raises_anything_else(data: bytes) -> None:
    try:
        bounded.load_json(data, bounded.JsonLimits(max_bytes=64 * 1024), "input")
    except InputRefusedError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("input ")


def test_load_json_names_the_bound_it_broke() -> None:
    limits = bounded.JsonLimits(max_bytes=100, max_depth=3)
    with pytest.raises(InputRefusedError, match="nests 1000 levels deep, over the limit of 3"):
        bounded.load_json(BRACKETS[:1000] + BRACKETS[-1000:], bounded.JsonLimits(10_000, 3), "x")
    with pytest.raises(InputRefusedError, match="is 4,000 bytes, over the limit of 100"):
        bounded.load_json(BRACKETS, limits, "x")
    with pytest.raises(InputRefusedError, match="not UTF-8 JSON"):
        bounded.load_json(b'{"a": NaN}', limits, "x")
    assert bounded.load_json(b'[[["ok"]]]', limits, "x") == [[["ok"]]]


def test_base64_is_measured_before_it_is_decoded() -> None:
    assert bounded.b64decode(base64.b64encode(b"x" * 30).decode(), 30, "blob") == b"x" * 30
    with pytest.raises(InputRefusedError, match="decodes to over 29 bytes"):
        bounded.b64decode(base64.b64encode(b"x" * 31).decode(), 29, "blob")
    with pytest.raises(InputRefusedError, match="not base64"):
        bounded.b64decode("@@@@", 30, "blob")


# ---- bundles: fuzzed payloads under a valid signature ---------------------------------------------


@pytest.fixture(scope="module")
def central() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def bundle_context(key: Ed25519PrivateKey) -> dict[str, Any]:
    return {
        "trusted_keys": [public_key_hex(key)],
        "model_id": "m",
        "dimensions": 128,
        "now": datetime.now(UTC),
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=300))
def test_a_signed_bundle_with_any_payload_is_a_bundle_error(
    central: Ed25519PrivateKey, payload: bytes
) -> None:
    """The signature checks out, so every byte of the payload reaches the parser."""
    envelope = seal(BUNDLE, payload, central)
    with pytest.raises(BundleError) as refused:
        read_bundle(envelope, **bundle_context(central))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (BRACKETS, "bundle payload nests 2000 levels deep"),
        (b"{" + b'"a":{' * 40 + b"}" * 41, "bundle payload nests 41 levels deep"),
        (
            b'{"subjects": [' + b"1," * 9_000_000 + b"1]}",
            r"envelope is 24,000,\d+ bytes, over the limit of 22,373,720",
        ),
    ],
    ids=["brackets", "objects", "oversize"],
)
def test_the_red_team_bundles_are_one_line(
    central: Ed25519PrivateKey, payload: bytes, expected: str, tmp_path: Path
) -> None:
    envelope = seal(BUNDLE, payload, central)
    with pytest.raises(BundleError, match=expected):
        read_bundle(envelope, **bundle_context(central))


def test_watchlist_import_of_a_bracket_bomb_is_one_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.bundle"
    bomb.write_bytes(BRACKETS)
    env = os.environ | {"EDGE_AGENT_WATCHLIST__PATH": str(tmp_path / "w.db")}
    result = run_cli("watchlist", "import", bomb, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        "edge-agent: not a watchlist bundle: envelope nests 2000 levels deep, over the limit of 32"
    ]


def test_watchlist_import_measures_a_file_before_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.bundle"
    with huge.open("wb") as handle:
        handle.truncate(BUNDLE.max_envelope + 1)  # sparse: nothing is written, nothing must be read
    env = os.environ | {"EDGE_AGENT_WATCHLIST__PATH": str(tmp_path / "w.db")}
    result = run_cli("watchlist", "import", huge, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"edge-agent: {huge}: {BUNDLE.max_envelope + 1:,} bytes, "
        f"over the bundle limit of {BUNDLE.max_envelope:,}"
    ]


# ---- media: fuzzed bytes of a real photo ----------------------------------------------------------

PHOTO = (DEMO_KIT / "alex_lacamoire.jpg").read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cut=st.integers(0, len(PHOTO)),
    flips=st.lists(st.tuples(st.integers(0, len(PHOTO) - 1), st.integers(0, 255)), max_size=8),
    suffix=st.sampled_from([".jpg", ".png", ".bin"]),
)
def test_any_damage_to_a_photo_is_a_media_error_or_a_picture(
    tmp_path: Path, cut: int, flips: list[tuple[int, int]], suffix: str
) -> None:
    data = bytearray(PHOTO[:cut])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    path = tmp_path / f"photo{suffix}"
    path.write_bytes(bytes(data))
    try:
        image = read_image(path)
    except EdgeAgentError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        assert image.ndim == 3 and image.shape[2] == 3


# ---- the live agent -------------------------------------------------------------------------------


class LiveAgent:
    """`edge-agent run` on the looping demo clip (paced like a camera), its log in a file."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.log = folder / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveAgent:
        config = self.folder / "agent.toml"
        config.write_text(settings_as_toml(self.settings))
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.folder,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def live(
    tmp_path: Path, broker: Broker, faces: FacePipeline, central: Ed25519PrivateKey
) -> Iterator[LiveAgent]:
    settings = agent_settings(tmp_path, broker, camera={"loop": True, "realtime": True})
    watchlist = settings.watchlist.model_copy(update={"trusted_keys": [public_key_hex(central)]})
    settings = settings.model_copy(update={"watchlist": watchlist})
    enrol_demo_people(settings, faces)
    agent = LiveAgent(settings, tmp_path)
    try:
        yield agent
    finally:
        agent.kill()


def publisher(broker: Broker) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="red-team")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def send(client: mqtt.Client, topic: str, payload: bytes, retain: bool = False) -> str:
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    return hashlib.sha256(payload).hexdigest()


def answered(subscriber: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in subscriber.messages(RESULT_TOPIC)]


def by_envelope(subscriber: Subscriber, digest: str) -> dict[str, Any] | None:
    found = [a for a in answered(subscriber) if a["details"].get("envelope_sha256") == digest]
    assert len(found) <= 1, found
    return found[0] if found else None


def start_watched(live: LiveAgent, broker: Broker) -> tuple[Subscriber, Subscriber, dict[str, int]]:
    """Subscribers for answers and health, then the agent, once connected; and its watchlist's rows."""
    results = Subscriber(broker, RESULT_TOPIC).start()
    health = Subscriber(broker, HEALTH_TOPIC).start()
    live.start()
    wait_connected(live, health)
    return results, health, watchlist_rows(live)


def by_nonce(subscriber: Subscriber, nonce: str) -> dict[str, Any] | None:
    return next((a for a in answered(subscriber) if a.get("nonce") == nonce), None)


def wait_connected(agent: LiveAgent, health: Subscriber) -> None:
    before = len(health.messages(HEALTH_TOPIC))
    health.wait_for(before + 1, HEALTH_TOPIC, timeout_s=60)
    time.sleep(0.5)  # its SUBSCRIBE to the command topics follows the CONNACK
    assert agent.alive(), agent.text()


def watchlist_rows(agent: LiveAgent) -> dict[str, int]:
    rows = table_rows(agent.settings.watchlist.path)
    return {table: rows[table] for table in UNCHANGED_TABLES}


def refusal_totals(agent: LiveAgent) -> tuple[int, int, int]:
    """(refusals counted, refusal rows ever written, audit rows of verified commands)."""
    conn = sqlite3.connect(f"file:{agent.settings.watchlist.path}?mode=ro", uri=True)
    try:
        counted = conn.execute("SELECT COALESCE(SUM(count), 0) FROM command_refusal_counts").fetchone()[0]
        written = conn.execute("SELECT COALESCE(MAX(id), 0) FROM command_refusals").fetchone()[0]
        audited = conn.execute(
            "SELECT COUNT(*) FROM audit WHERE action IN ('command', 'command_rejected')"
        ).fetchone()[0]
        return int(counted), int(written), int(audited)
    finally:
        conn.close()


def signed_payload(key: Ed25519PrivateKey, payload: bytes) -> bytes:
    return seal(COMMAND, payload, key)


def red_team_cases(key: Ed25519PrivateKey) -> list[tuple[str, str, bytes, str]]:
    """(name, topic, payload, the refusal reason the answer must give)."""
    own, everyone = f"{PREFIX}/{DEVICE}/cmd", f"{PREFIX}/all/cmd"
    now = datetime.now(UTC)
    deep_args = {"command": "request_status", "args": json.loads("[" * 30 + "]" * 30)}
    bomb_bundle = base64.b64encode(seal(BUNDLE, BRACKETS, key)).decode()
    return [
        ("brackets to all", f"{everyone}/request_status", BRACKETS, "malformed"),
        ("brackets as a bundle", f"{own}/apply_bundle", BRACKETS, "malformed"),
        ("not UTF-8", f"{own}/request_status", b"\xff\xfe\x00garbage", "malformed"),
        ("100 kB status request", f"{own}/request_status", b"{" + b" " * 100_000 + b"}", "too_large"),
        ("signed brackets", f"{own}/request_status", signed_payload(key, BRACKETS), "malformed"),
        (
            "signed deep args",
            f"{own}/request_status",
            signed_payload(key, json.dumps(deep_args).encode()),
            "malformed",
        ),
        (
            "signed bundle of brackets",
            f"{own}/apply_bundle",
            sign_command(key, "apply_bundle", {"bundle": bomb_bundle}, now=now),
            "failed",  # verified, so audited as a command that failed to run
        ),
        (
            "expired",
            f"{own}/request_status",
            sign_command(key, "request_status", now=now - timedelta(hours=1)),
            "expired",
        ),
    ]


def test_the_red_team_commands_are_each_answered_once_and_the_agent_stays_up(
    live: LiveAgent, broker: Broker, central: Ed25519PrivateKey
) -> None:
    results, health, before = start_watched(live, broker)
    client = publisher(broker)
    try:
        for name, topic, payload, reason in red_team_cases(central):
            digest = send(client, topic, payload)
            answer = wait_for(partial(by_envelope, results, digest), f"an answer to {name}", 15)
            assert (answer["accepted"], answer["reason"]) == (False, reason), (name, answer)
            assert "\n" not in answer["message"]
            assert live.alive(), f"{name}: {live.text()}"

        # published retained, the bomb reaches every agent at every start: it must be answered, not fatal
        retained = b"[" * 3000 + b"]" * 3000
        digest = send(client, f"{PREFIX}/all/cmd/request_status", retained, retain=True)
        wait_for(lambda: by_envelope(results, digest), "an answer to the retained bomb", 15)
        assert live.stop() == 0
        results.close()
        results = Subscriber(broker, RESULT_TOPIC).start()
        live.start()
        wait_for(lambda: by_envelope(results, digest), "the retained bomb answered after a restart", 60)
        wait_connected(live, health)
        time.sleep(2.0)
        assert live.alive(), live.text()
        send(client, f"{PREFIX}/all/cmd/request_status", b"", retain=True)  # clears the retained message

        # a good command still works after all that
        good = sign_command(central, "request_status", target=DEVICE)
        digest = send(client, f"{PREFIX}/{DEVICE}/cmd/request_status", good)
        nonce = json.loads(base64.b64decode(json.loads(good)["payload"]))["nonce"]
        answer = wait_for(lambda: by_nonce(results, nonce), "an answer to a good command", 15)
        assert answer["accepted"] is True
    finally:
        client.loop_stop()
        client.disconnect()
    assert live.stop() == 0
    log = live.text()
    assert "Traceback" not in log, log
    assert watchlist_rows(live) == before


command_topics = st.sampled_from(
    [f"{PREFIX}/{DEVICE}/cmd/{name}" for name in sorted(COMMANDS)]
    + [f"{PREFIX}/all/cmd/request_status", f"{PREFIX}/{DEVICE}/cmd/nothing"]
)


def fuzzed_payloads(key: Ed25519PrivateKey) -> st.SearchStrategy[bytes]:
    """Noise, JSON, envelopes with one field replaced, and validly signed commands with any arguments
    (so the parsers behind the signature check are fuzzed too)."""
    template = json.loads(sign_command(key, "request_status"))
    envelopes = st.builds(
        lambda field, value: json.dumps({**template, field: value}).encode(),
        st.sampled_from(sorted(template)),
        json_values,
    )
    signed_commands = st.builds(
        lambda command, args: sign_command(key, command, args),
        st.sampled_from(sorted(COMMANDS - {"remove_subject", "rotate_keys", "set_target_fmr"})),
        st.dictionaries(st.sampled_from(["bundle", "mode", "event_id", "verdict", "x"]), finite_json_values),
    )
    signed_json = json_values.map(lambda v: signed_payload(key, json.dumps(v).encode()))
    return st.one_of(
        st.binary(max_size=600),
        json_values.map(lambda v: json.dumps(v).encode()),
        envelopes,
        signed_commands,
        signed_json,
        st.integers(33, 3000).map(lambda n: b"[" * n + b"]" * n),
    )


def test_fuzzed_commands_never_end_the_agent_and_each_is_answered_or_counted(
    live: LiveAgent, broker: Broker, central: Ed25519PrivateKey
) -> None:
    """Hundreds of fuzzed messages as fast as the broker takes them: the agent stays up and writes no
    traceback; every message is either answered or counted past the refusal limit (or the full inbox),
    and nothing but the bounded refusal store and verified commands' audit rows is written."""
    results, _health, before = start_watched(live, broker)
    client = publisher(broker)
    sent: list[str] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(topic=command_topics, payload=fuzzed_payloads(central))
    def publish_one(topic: str, payload: bytes) -> None:
        digest = send(client, topic, payload)
        if payload:  # an empty message is how a retained one is cleared: ignored, by design
            sent.append(digest)

    try:
        publish_one()
    finally:
        client.loop_stop()
        client.disconnect()

    def accounted() -> bool:
        counted, _written, audited = refusal_totals(live)
        return counted + audited == len(sent)

    wait_until(accounted, f"all {len(sent)} messages answered or counted", timeout_s=30)
    assert live.alive(), live.text()
    counted, written, audited = refusal_totals(live)
    wait_until(lambda: len(answered(results)) >= written + audited, "every answer", timeout_s=15)
    answers = answered(results)
    assert len(answers) == written + audited
    assert {a["details"]["envelope_sha256"] for a in answers} <= set(sent)
    assert all("\n" not in a["message"] for a in answers)
    assert written <= 30 + 0.5 * 120  # the refusal limit: a burst, then one every 2 s
    assert live.stop() == 0
    assert "Traceback" not in live.text(), live.text()
    assert watchlist_rows(live) == before
    print(
        f"\nfuzz: {len(sent)} messages, {written} refusals answered and stored, "
        f"{counted - written} only counted, {audited} verified commands audited"
    )

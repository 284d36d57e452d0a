"""Every example in README.md is run, or listed here with the reason it cannot run here.

Each command runs for real as a child process in a copy of one prepared folder (a config whose paths
are in that folder, a watchlist with the demo kit's Lin-Manuel Miranda enrolled, an event store, a
signed bundle), with the README's placeholder files there under their README names (`FILES`) and its
placeholder words replaced (`WORDS`); a local mosquitto where a command needs a broker. JSON payloads
are checked against their models, whose JSON Schemas are the files in docs/schema/. An example that
matches no entry of `RUN` or `NOT_RUN` fails, so a new one cannot slip by. The ```toml blocks are
example configs, which tests/packaging/test_service.py validates with `config validate`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.events.schema import PAYLOADS, StatusMessage, schema_text
from edge_agent.events.session import MqttSession
from edge_agent.events.settings import MqttSettings
from edge_agent.events.store import EventStore
from edge_agent.lab.mosquitto import free_port
from edge_agent.signed import generate_key, load_private_key, public_key_hex
from tests.conftest import DEMO_KIT, REPO
from tests.kits.broker import Broker
from tests.kits.fleet_kit import SimDevice, WatchlistModel, start_fleet
from tests.kits.readme_kit import Example, argv, check_abridged, readme_examples, text_block, unmatched

README = REPO / "README.md"
EXAMPLES = readme_examples(README)

# The README's placeholder files, made in the folder each example runs in: name -> (where, what).
FILES: dict[str, tuple[str, str]] = {
    "photo.jpg": ("demo", "alex_lacamoire.jpg"),  # a photo with one face
    "lin.png": ("demo", "lin_manuel_miranda.png"),  # the enrolled subject's photo
    "clip.mp4": ("demo", "short_hamilton_clip.mp4"),  # a source for `run`
    "a.jpg": ("faces", "people/joe_biden/biden.jpg"),  # two photos of one person, to enrol
    "b.jpg": ("faces", "people/joe_biden/biden2.jpg"),
    "people": ("faces", "people"),  # the compare example's relative paths
    "groups": ("faces", "groups"),
}
# The README's placeholder words, as arguments ("{subject}": the enrolled subject's id).
WORDS = {
    "PATH": "photo.jpg", "A": "photo.jpg", "B": "lin.png", "PHOTO": "lin.png", "FILE": "config.toml",
    "ID": "{subject}", "KEY.pem": "new-key.pem", "BUNDLE": "list.bundle", "DATE": "2026-11-01",
    "COMMAND": "request_status", "KEYFILE": "central.pem", "ENVELOPE_FILE": "envelope.json",
}  # fmt: skip
DEVICE_MODEL = WatchlistModel("dlib_resnet_v1", 128)
Prepare = Callable[[Path, "Context"], None]


@dataclass(frozen=True)
class Run:
    """How an example runs: its arguments (default: the README line through `argv`), the exit status
    the README gives, a pattern the output must contain, what it needs and what to set up first."""

    args: tuple[str, ...] | None = None
    exit: int = 0
    output: str = ""
    broker: bool = False
    devices: int = 0  # simulated fleet devices (tests/kits/fleet_kit.py) trusting central.pem
    prepare: tuple[Prepare, ...] = ()
    shown: tuple[str, ...] = ()  # output lines to check (default: the example's own)


@dataclass
class Context:
    subject: str
    broker: Broker | None = None

    def mqtt(self) -> MqttSettings:
        assert self.broker is not None
        return MqttSettings(host=self.broker.host, port=self.broker.port)


def _remove(*names: str) -> Prepare:
    def prepare(folder: Path, _: Context) -> None:
        for name in names:
            for path in folder.glob(name):
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    return prepare


def _sign_envelope(folder: Path, context: Context) -> None:
    signed = cli(folder, context, "fleet", "sign", "request_status", "--key", "central.pem")
    assert signed.returncode == 0, signed.stderr
    (folder / "envelope.json").write_text(signed.stdout)


def _retained_status(folder: Path, context: Context) -> None:
    status = StatusMessage(device_id="edge-1", state="online", at=datetime.now(UTC), agent_version="t")
    with MqttSession(context.mqtt(), "readme", timeout_s=10) as session:
        session.publish("edge-agent/edge-1/status", status.to_json(), what="status", retain=True)


def _apply_bundle(folder: Path, context: Context) -> None:
    """The first fleet example, so that the second's devices hold the bundle's two subjects."""
    (first,) = [
        example for example in EXAMPLES if example.text.startswith("edge-agent fleet send apply_bundle")
    ]
    sent = cli(folder, context, *argv(first.text, WORDS))
    assert sent.returncode == 0, sent.stdout + sent.stderr


def _shows_demo() -> tuple[str, ...]:
    return tuple(text_block(README, "match event: lin_manuel_miranda"))


# Every runnable example, by the start of its README line.
RUN: dict[str, Run] = {
    "edge-agent detect PATH": Run(output=r"^photo\.jpg frame 0: face \[(?s:.*)1 face\(s\)"),
    "edge-agent config validate FILE": Run(output="config.toml: valid"),
    "edge-agent config show": Run(output='device_id = "edge-1"'),
    "edge-agent models verify": Run(),
    "edge-agent embed PATH": Run(output="descriptor 128-d"),
    "edge-agent compare A B": Run(output=r"^distance [0-9.]+ -> different people at false-match rate"),
    "edge-agent run [--config FILE] [--source S]": Run(("run", "--source", "clip.mp4"), broker=True),
    "edge-agent sources [--explain]": Run(output="Configured camera cam-1"),
    "edge-agent listen": Run(
        ("listen", "--timeout", "3"), broker=True, prepare=(_retained_status,), output='"kind": "status"'
    ),
    "edge-agent schema": Run(("schema", "--out", "schema")),
    "edge-agent report --since DATE": Run(output="2026-11-01"),
    "edge-agent report --since 2026-11-01": Run(output="2026-11-01"),
    "edge-agent demo": Run(output="match event: lin_manuel_miranda", shown=_shows_demo()),
    "edge-agent compare people/joe_biden/biden.jpg groups/obama_and_biden.jpg": Run(),
    'edge-agent watchlist enroll "Jane Doe" a.jpg b.jpg': Run(output="enrolled s-[0-9a-f]+ 'Jane Doe'"),
    "edge-agent watchlist list": Run(output="Lin-Manuel"),
    "edge-agent watchlist show ID": Run(output="Lin-Manuel"),
    "edge-agent watchlist search PHOTO": Run(output="MATCH"),
    "edge-agent watchlist remove ID": Run(output="s-"),
    "edge-agent watchlist purge-expired": Run(),
    "edge-agent watchlist audit verify": Run(),
    "edge-agent watchlist audit head": Run(output=r"^\d+:[0-9a-f]{64}$"),
    "edge-agent watchlist stats": Run(output="^subjects: 2 live"),
    "edge-agent watchlist operating-point": Run(output=r"^2 live templates(?s:.*)<- picked"),
    "edge-agent watchlist keygen KEY.pem": Run(output=r"\b[0-9a-f]{64}\b"),
    "edge-agent watchlist export BUNDLE": Run(output="^2 subject"),
    "edge-agent watchlist import BUNDLE": Run(output="2 subject", prepare=(_remove("data/watchlist.db*"),)),
    "edge-agent fleet keygen central.pem": Run(output=r"\b[0-9a-f]{64}\b", prepare=(_remove("central.pem"),)),
    "edge-agent fleet sign COMMAND": Run(output='"signature"'),
    "edge-agent fleet publish ENVELOPE_FILE": Run(broker=True, prepare=(_sign_envelope,)),
    "edge-agent fleet send COMMAND ...the options of sign...": Run(
        ("fleet", "send", "request_status", "--key", "central.pem", "--target", "cam-00"),
        broker=True,
        devices=1,
    ),
    "edge-agent fleet send apply_bundle --bundle list.bundle": Run(broker=True, devices=3),
    "edge-agent fleet send request_status --target cam-02": Run(
        broker=True, devices=3, prepare=(_apply_bundle,)
    ),
    "edge-agent sources": Run(),  # the `$ edge-agent sources` example with its output (checked by shape)
}

# Every example that cannot run here, by the start of its README line, with the reason.
NOT_RUN: dict[str, str] = {
    "make demo": "installs into .venv with pip; what it runs, `edge-agent demo`, is run and its output "
    "checked against the README's (the wheel test also runs it from a fresh venv)",
    "make test": "the whole test suite itself (this test is part of it)",
    "python3 -m venv": "makes a venv; tests/packaging builds the wheel and installs it into a fresh venv",
    "pip install -e .": "installs from the network; tests/packaging installs the wheel into a fresh venv",
    "edge-agent bench detect": "runs dlib's HOG baseline over every build and thread count and rewrites "
    "docs/benchmarks.md; the README shows it at full size only",
    "edge-agent bench embed": "runs dlib's descriptor baseline and rewrites docs/benchmarks.md",
    "edge-agent bench watchlist --size N": "the README shows it at --size 1000000 (minutes)",
    "edge-agent bench pipeline": "runs dlib on every frame of the clip beside the agent (minutes) and "
    "rewrites docs/benchmarks.md",
    "edge-agent bench soak": "a multi-minute soak (--minutes M) by design",
    "edge-agent bench false-alerts": "about 7 minutes over lfw-devtrain, and rewrites docs/benchmarks.md; "
    "tests/lab/test_bench_false_alerts.py runs it on a slice",
    "edge-agent watchlist ...": "points at the Watchlist section, whose every command is run here",
    "edge-agent fleet keygen|sign|publish|send ...": "points at the Fleet section, whose every command "
    "is run here",
    "sudo ": "sudo and systemctl on an installed service; the same `watchlist enroll` / `list` with "
    "--config are run here without sudo",
    "edge-agent console adduser": "asks for the password twice on the terminal; "
    "tests/console/test_console_web.py runs it with --password-stdin",
    "edge-agent console serve": "serves until stopped; tests/console/test_console_review.py serves the same "
    "application to a real headless Chromium",
    "make test-slow": "downloads and model rebuilds (slow by design)",
    "make eval": "about 12 minutes of dlib",
    "make calibrate": "about 3 minutes over lfw-devtrain, and rewrites models/manifest.toml",
    "make models-check": "rebuilds the embedder (needs g++ and libdlib-dev)",
}


def entry(example: Example) -> tuple[str, Run | str]:
    """The one RUN or NOT_RUN entry whose key starts the example (the longest when several do)."""
    keys = [key for key in [*RUN, *NOT_RUN] if example.text.startswith(key)]
    assert keys, f"README line {example.line}: `{example.text}` is neither run nor listed in {__file__}"
    key = max(keys, key=len)
    return key, RUN.get(key) or NOT_RUN[key]


def cli(folder: Path, context: Context, *args: str) -> subprocess.CompletedProcess[str]:
    port = context.broker.port if context.broker is not None else free_port()
    env = {**os.environ, "EDGE_AGENT_CONFIG": str(folder / "config.toml"), "EDGE_AGENT_MQTT__PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> tuple[Path, str]:
    """The folder every command example starts from (copied per example), and the enrolled subject."""
    folder = tmp_path_factory.mktemp("readme")
    for name, (where, what) in FILES.items():
        (folder / name).symlink_to((DEMO_KIT if where == "demo" else faces_dir) / what)
    generate_key(folder / "signing.pem")
    generate_key(folder / "central.pem")
    keys = [public_key_hex(load_private_key(folder / name)) for name in ("signing.pem", "central.pem")]
    (folder / "config.toml").write_text(
        f'device_id = "edge-1"\n[watchlist]\npath = "data/watchlist.db"\nsigning_key = "signing.pem"\n'
        f'trusted_keys = {json.dumps(keys)}\n[events]\npath = "data/events.db"\n'
        '[mqtt]\nhost = "127.0.0.1"\n'
    )
    context = Context(subject="")
    enrol = ["watchlist", "enroll", "--reason", "r", "--source", "s", "--expires", "30d"]
    for args in (
        [*enrol, "Lin-Manuel Miranda", "lin.png"],
        [*enrol, "Alex Lacamoire", "photo.jpg"],
        ["watchlist", "export", "list.bundle"],
    ):
        done = cli(folder, context, *args)
        assert done.returncode == 0, done.stderr
    EventStore.open(folder / "data" / "events.db", max_events=10, max_age_s=60, review_days=1).close()
    listed = [
        json.loads(line) for line in cli(folder, context, "watchlist", "list", "--json").stdout.splitlines()
    ]
    return folder, next(row["id"] for row in listed if row["display_name"] == "Lin-Manuel Miranda")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[[Broker, int, Path], list[SimDevice]]]:
    started: list[SimDevice] = []

    def start(broker: Broker, count: int, folder: Path) -> list[SimDevice]:
        keys = tomllib.loads((folder / "config.toml").read_text())["watchlist"]["trusted_keys"]
        mqtt = MqttSettings(host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
        started.extend(start_fleet(tmp_path / "fleet", broker, mqtt, count, keys, DEVICE_MODEL))
        return started

    yield start
    for device in started:
        device.stop()


COMMANDS = [example for example in EXAMPLES if example.kind == "command"]


@pytest.mark.parametrize("example", COMMANDS, ids=[example.id for example in COMMANDS])
def test_command_example(
    example: Example,
    prepared: tuple[Path, str],
    tmp_path: Path,
    broker_factory: Callable[..., Broker],
    fleet: Callable[[Broker, int, Path], list[SimDevice]],
) -> None:
    key, how = entry(example)
    if isinstance(how, str):
        pytest.skip(f"not run here: {how}")
    folder = tmp_path / "work"
    shutil.copytree(prepared[0], folder, symlinks=True)
    context = Context(subject=prepared[1])
    if how.broker:
        context.broker = broker_factory()
        context.broker.start()
    if how.devices:
        assert context.broker is not None
        fleet(context.broker, how.devices, folder)
    for step in how.prepare:
        step(folder, context)
    args = how.args or tuple(argv(example.text, WORDS))
    done = cli(folder, context, *(arg.format(subject=context.subject) for arg in args))
    printed = done.stdout + done.stderr
    assert done.returncode == how.exit, f"{key}: exit {done.returncode}\n{printed}"
    assert "Traceback" not in printed, printed
    assert re.search(how.output, printed, re.MULTILINE), f"{key}: {how.output!r} not in\n{printed}"
    shown = how.shown or example.output
    missing = unmatched(list(shown), done.stdout.splitlines())
    assert not missing, f"{key}: README lines not in the output:\n{missing}\noutput:\n{printed}"
    if key == "edge-agent schema":
        for kind in PAYLOADS:
            assert (folder / "schema" / f"{kind}.schema.json").read_text() == schema_text(kind)


PAYLOAD_EXAMPLES = [example for example in EXAMPLES if example.kind == "json"]


@pytest.mark.parametrize("example", PAYLOAD_EXAMPLES, ids=[example.id for example in PAYLOAD_EXAMPLES])
def test_json_example(example: Example) -> None:
    """A payload is valid for its schema's model (abridged ones: every field shown exists and holds a
    value the field accepts); `detect --json` output is what the command prints for that photo."""
    data = json.loads(example.text.replace("{...}", '"..."'))
    if "schema" not in data:
        done = subprocess.run(
            [sys.executable, "-m", "edge_agent", "detect", data["file"], "--json"],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        (printed,) = [json.loads(line) for line in done.stdout.splitlines()]
        assert _close(printed, data), printed
        return
    kind = re.fullmatch(r"edge-agent\.([a-z-]+)/1", data["schema"])
    assert kind is not None and kind.group(1) in PAYLOADS, data["schema"]
    model = PAYLOADS[kind.group(1)]
    if "..." in example.text:
        assert not check_abridged(model, data), check_abridged(model, data)
    else:
        model.model_validate(data)
    assert (REPO / "docs" / "schema" / f"{kind.group(1)}.schema.json").read_text() == schema_text(
        kind.group(1)
    )


def _close(printed: object, shown: object) -> bool:
    """The same keys and strings, numbers within 1 % (pytest.approx does not nest into dicts of lists)."""
    if isinstance(shown, dict) and isinstance(printed, dict):
        return printed.keys() == shown.keys() and all(_close(printed[k], shown[k]) for k in shown)
    if isinstance(shown, list) and isinstance(printed, list):
        return len(printed) == len(shown) and all(_close(p, s) for p, s in zip(printed, shown, strict=True))
    if isinstance(shown, float | int) and isinstance(printed, float | int):
        return bool(printed == pytest.approx(shown, rel=0.01, abs=0.01))
    return printed == shown


def test_every_table_entry_names_an_example() -> None:
    """No stale entry: each key of RUN and NOT_RUN starts at least one README example."""
    commands = [example.text for example in COMMANDS]
    stale = [key for key in [*RUN, *NOT_RUN] if not any(text.startswith(key) for text in commands)]
    assert not stale, stale
    assert len(PAYLOAD_EXAMPLES) >= 3 and len(COMMANDS) >= 40  # the extraction still finds the blocks

"""The admins' master-watchlist page: the subjects with why they are on the list, a signed bundle to
download, and the same bundle sent to every device as a signed `apply_bundle`, which the devices take
(simulated devices with the agent's real command path, tests/kits/fleet_kit.py, on a real mosquitto)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from edge_agent.console.app import build_app
from edge_agent.console.service import Console
from edge_agent.events.settings import MqttSettings
from edge_agent.signed import load_private_key, public_key_hex
from edge_agent.vision.faces import FacePipeline
from edge_agent.watchlist import audit
from edge_agent.watchlist.bundle import read_bundle
from tests.kits.agent_kit import enrol_demo_people, open_watchlist
from tests.kits.broker import Broker
from tests.kits.console_kit import console_settings, csrf_of, login, with_accounts
from tests.kits.fleet_kit import SimDevice, WatchlistModel, start_fleet


@pytest.fixture
def console(tmp_path: Path, broker: Broker, central_key_file: Path, faces: FacePipeline) -> Iterator[Console]:
    settings = console_settings(tmp_path / "console", broker, command_key=central_key_file)
    settings = settings.model_copy(
        update={"watchlist": settings.watchlist.model_copy(update={"signing_key": central_key_file})}
    )
    enrol_demo_people(settings, faces)
    opened = with_accounts(Console.open(settings, open_master=lambda: open_watchlist(settings, faces)))
    assert opened.ingest is not None
    opened.ingest.start()
    assert opened.ingest.subscription.subscribed.wait(10)
    yield opened
    opened.close()


@pytest.fixture
def devices(
    tmp_path: Path, broker: Broker, central_key_file: Path, faces: FacePipeline, console: Console
) -> Iterator[list[SimDevice]]:
    mqtt = MqttSettings(host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    model = WatchlistModel(console.settings.embedder.model, faces.embedder.spec.dimensions)
    trusted = [public_key_hex(load_private_key(central_key_file))]
    started = start_fleet(tmp_path / "fleet", broker, mqtt, 2, trusted, model)
    yield started
    for device in started:
        device.stop()


def test_an_admin_downloads_the_signed_master_list_and_sends_it_to_every_device(
    console: Console, devices: list[SimDevice], central_key_file: Path, faces: FacePipeline
) -> None:
    with TestClient(build_app(console), base_url="http://127.0.0.1", follow_redirects=False) as client:
        assert login(client, "rey") == 303
        assert client.post("/admin/watchlist/export", data={"csrf_token": csrf_of(client)}).status_code == 403
        client.post("/logout", data={"csrf_token": csrf_of(client)})

        assert login(client, "ada") == 303
        page = client.get("/admin/watchlist")
        assert page.status_code == 200 and page.text.count("demo enrolment") == 2  # each subject's reason
        download = client.post("/admin/watchlist/export", data={"csrf_token": csrf_of(client)})
        assert download.status_code == 200
        assert download.headers["content-disposition"].startswith('attachment; filename="watchlist-')
        bundle = read_bundle(
            download.content,
            trusted_keys=[public_key_hex(load_private_key(central_key_file))],
            model_id=console.settings.embedder.model,
            dimensions=faces.embedder.spec.dimensions,
            now=datetime.now(UTC),
        )
        assert len(bundle.subjects) == 2

        sent = client.post("/admin/watchlist/send", data={"csrf_token": csrf_of(client)})
        assert sent.status_code == 200 and "2 subject(s) sent to every device" in sent.text
        deadline = time.monotonic() + 30
        wanted = {subject.id for subject in bundle.subjects}
        while not all(set(device.subjects()) == wanted for device in devices):
            assert time.monotonic() < deadline, "the devices did not take the bundle"
            time.sleep(0.1)
        while client.get("/admin/watchlist").text.count(" accepted") < len(devices):
            assert time.monotonic() < deadline, "the devices' answers did not reach the page"
            time.sleep(0.2)
    actions = [row.action for row in audit.rows(console.db.conn)]
    assert "bundle_exported" in actions and "bundle_sent" in actions

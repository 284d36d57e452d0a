"""The audit anchor in the retained status: signed by the device, moving with the chain, and what makes
a cut tail visible (`audit verify --against` the anchor a subscriber kept)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from edge_agent.fleet.anchor import device_key, device_key_path, open_anchor
from edge_agent.service import Agent
from edge_agent.signed import public_key_hex
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from tests.kits.agent_kit import DEVICE, PREFIX, agent_settings, enrol_demo_people
from tests.kits.broker import Broker, Subscriber
from tests.kits.clihelp import run_cli

STATUS_TOPIC = f"{PREFIX}/{DEVICE}/status"


def test_the_status_carries_a_signed_anchor_that_exposes_a_cut_tail(
    tmp_path: Path, broker: Broker, catalog: ModelCatalog
) -> None:
    settings = agent_settings(tmp_path, broker)
    faces = FacePipeline.from_settings(settings, catalog)
    enrol_demo_people(settings, faces)
    subscriber = Subscriber(broker, STATUS_TOPIC).start()

    assert Agent(settings, catalog=catalog).run() == 0

    statuses = [json.loads(m.payload) for m in subscriber.wait_for(2, STATUS_TOPIC)]
    assert statuses[0]["state"] == "online" and statuses[-1]["state"] == "offline"
    key = public_key_hex(device_key(device_key_path(settings.watchlist.path)))
    anchors = [open_anchor(json.dumps(s["audit_anchor"]).encode(), [key]) for s in statuses]
    assert all(s["audit_anchor"]["signer"] == key for s in statuses)
    first, last = anchors[0], anchors[-1]
    assert last.row_id > first.row_id  # the match's audit row moved the head, and a new status said so

    env = os.environ | {"EDGE_AGENT_WATCHLIST__PATH": str(settings.watchlist.path)}
    kept = tmp_path / "status.json"  # what a subscriber kept of the last retained status
    kept.write_bytes(subscriber.messages(STATUS_TOPIC)[-1].payload)
    assert run_cli("watchlist", "audit", "verify", "--against", last.text, env=env).returncode == 0
    held = run_cli("watchlist", "audit", "verify", "--against", f"@{kept}", env=env)
    assert held.returncode == 0 and f"holds anchor {last.text}" in held.stdout, held.stderr
    forged = tmp_path / "forged.json"
    envelope = statuses[-1]["audit_anchor"]
    forged.write_text(json.dumps({**envelope, "signature": envelope["signature"][::-1]}))
    refused = run_cli("watchlist", "audit", "verify", "--against", f"@{forged}", env=env)
    assert refused.returncode == 1 and "signature does not verify" in refused.stderr, refused.stderr

    conn = sqlite3.connect(settings.watchlist.path)
    with conn:  # what someone with the file can do: lift the append-only guard, cut the match away
        triggers = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'"
        )
        for (name,) in triggers.fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("DELETE FROM audit WHERE id = (SELECT MAX(id) FROM audit)")
    conn.close()
    assert run_cli("watchlist", "audit", "verify", env=env).returncode == 0  # the chain alone looks fine
    cut = run_cli("watchlist", "audit", "verify", "--against", f"@{kept}", env=env)
    assert cut.returncode == 1
    assert len(cut.stderr.strip().splitlines()) == 1 and "Traceback" not in cut.stderr, cut.stderr
    assert f"{last.row_id}" in cut.stderr

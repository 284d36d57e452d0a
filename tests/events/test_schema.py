"""The published JSON Schemas are generated from the payload models and kept in docs/schema/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.cli.main import main
from edge_agent.events.listen import check_payload
from edge_agent.events.schema import PAYLOADS, schema_text

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_committed_schema_is_what_the_models_generate(kind: str) -> None:
    committed = (REPO / "docs" / "schema" / f"{kind}.schema.json").read_text()
    assert committed == schema_text(kind), "run: edge-agent schema --out docs/schema"


def test_schema_command_writes_every_payload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [
        "cmd-result.schema.json",
        "health.schema.json",
        "match.schema.json",
        "report.schema.json",
        "status.schema.json",
    ]
    match = json.loads((tmp_path / "match.schema.json").read_text())
    assert match["properties"]["schema"]["const"] == "edge-agent.match/1"
    assert "review_required" in match["properties"] and "event_id" in match["required"]


def test_match_event_round_trips_and_validates(make_match_event: object) -> None:
    assert callable(make_match_event)
    event = make_match_event()
    checked = check_payload("t", event.to_json())
    assert checked.error is None and checked.kind == "match"
    assert checked.payload is not None and checked.payload["review_required"] is True


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"schema": "edge-agent.match/9"}', "unknown schema"),
        (
            b'{"schema": "edge-agent.status/1", "device_id": "d", "state": "maybe", "agent_version": "1"}',
            "state",
        ),
    ],
)
def test_invalid_payloads_are_named(raw: bytes, problem: str) -> None:
    checked = check_payload("t", raw)
    assert checked.error is not None and problem in checked.error


def test_a_match_event_without_review_flag_is_refused(make_match_event: object) -> None:
    assert callable(make_match_event)
    data = json.loads(make_match_event().to_json())
    data["review_required"] = False
    checked = check_payload("t", json.dumps(data).encode())
    assert checked.error is not None and "review_required" in checked.error

"""Moving a watchlist between two devices with signed bundles, through the CLI."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from tests.kits.clihelp import one_error, run_cli


def device(tmp_path: Path, name: str, **settings: str) -> dict[str, str]:
    values = {"EDGE_AGENT_WATCHLIST__PATH": str(tmp_path / name / "wl.db"), "EDGE_AGENT_DEVICE_ID": name}
    return os.environ | values | settings


def test_export_and_import_between_devices(tmp_path: Path, faces_dir: Path) -> None:
    key = tmp_path / "hq.pem"
    made = run_cli("watchlist", "keygen", key)
    assert made.returncode == 0, made.stderr
    public = made.stdout.strip().split()[-1]
    assert len(public) == 64
    other = run_cli("watchlist", "keygen", tmp_path / "other.pem").stdout.strip().split()[-1]

    hq = device(tmp_path, "hq", EDGE_AGENT_WATCHLIST__SIGNING_KEY=str(key))
    photo = faces_dir / "people" / "rose_leslie" / "img1.jpg"
    enrolled = run_cli(
        "watchlist",
        "enroll",
        "Rose Leslie",
        photo,
        "--reason",
        "r",
        "--source",
        "s",
        "--expires",
        "30d",
        env=hq,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    bundle = tmp_path / "wl.bundle"
    exported = run_cli("watchlist", "export", bundle, env=hq)
    assert exported.returncode == 0, exported.stderr
    assert b"img1.jpg" not in bundle.read_bytes()  # metadata and descriptors only: no photo, no path

    untrusted = device(tmp_path, "cam1", EDGE_AGENT_WATCHLIST__TRUSTED_KEYS=json.dumps([other]))
    refused = run_cli("watchlist", "import", bundle, env=untrusted)
    assert refused.returncode == 1
    assert "untrusted key" in one_error(refused.stderr)
    assert run_cli("watchlist", "list", "--all", env=untrusted).stdout == ""

    cam = device(tmp_path, "cam2", EDGE_AGENT_WATCHLIST__TRUSTED_KEYS=json.dumps([public]))
    tampered = tmp_path / "tampered.bundle"
    document = json.loads(bundle.read_text())
    payload = json.loads(base64.b64decode(document["payload"]))
    payload["subjects"][0]["reason"] = "something else"
    document["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    tampered.write_text(json.dumps(document))
    altered = run_cli("watchlist", "import", tampered, env=cam)
    assert altered.returncode == 1 and "does not verify" in one_error(altered.stderr)

    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"\x89PNG not a bundle")
    assert "not a watchlist bundle" in one_error(run_cli("watchlist", "import", junk, env=cam).stderr)
    assert run_cli("watchlist", "list", "--all", env=cam).stdout == ""

    imported = run_cli("watchlist", "import", bundle, env=cam)
    assert imported.returncode == 0, imported.stderr
    listed = [
        json.loads(line) for line in run_cli("watchlist", "list", "--json", env=cam).stdout.splitlines()
    ]
    assert [s["display_name"] for s in listed] == ["Rose Leslie"] and listed[0]["created_by"]
    again = run_cli("watchlist", "import", bundle, env=cam)
    assert again.returncode == 1 and "already on this device" in one_error(again.stderr)
    found = run_cli(
        "watchlist", "search", "--json", faces_dir / "people" / "rose_leslie" / "img2.jpg", env=cam
    )
    assert json.loads(found.stdout)["candidates"][0]["name"] == "Rose Leslie"
    assert run_cli("watchlist", "audit", "verify", env=cam).returncode == 0


def test_export_needs_a_signing_key(tmp_path: Path) -> None:
    result = run_cli("watchlist", "export", tmp_path / "x.bundle", env=device(tmp_path, "d"))
    assert result.returncode == 1
    assert "watchlist.signing_key is not set" in one_error(result.stderr)
    assert not (tmp_path / "x.bundle").exists()


def test_a_trusted_key_must_be_hex(tmp_path: Path) -> None:
    env = device(tmp_path, "d", EDGE_AGENT_WATCHLIST__TRUSTED_KEYS=json.dumps(["not-a-key"]))
    result = run_cli("watchlist", "list", env=env)
    assert result.returncode == 2
    assert "watchlist.trusted_keys" in one_error(result.stderr)

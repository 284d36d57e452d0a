"""`edge-agent bench pipeline` on the demo clip, once, without writing docs: are its numbers sane?"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.kits.clihelp import run_cli

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").is_file(),
    reason="mosquitto is not installed",
)
CLIP_FRAMES = 275  # edge_agent/lab/demo/files/short_hamilton_clip.mp4
BASELINE_FRAMES = 20


def test_pipeline_bench_on_the_demo_clip(tmp_path: Path) -> None:
    report = tmp_path / "pipeline.json"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGE_AGENT_")}
    done = run_cli(
        "bench",
        "pipeline",
        "--repeat",
        "1",
        "--baseline-frames",
        str(BASELINE_FRAMES),
        "--no-write",
        "--json",
        report,
        env=env,
    )
    print(done.stdout, done.stderr[-2000:])
    assert done.returncode == 0, done.stderr
    assert "written to" not in done.stdout
    result = json.loads(report.read_text())
    (subject_id,) = result["subjects"]

    throughput = result["throughput"]
    assert throughput["frames"] == CLIP_FRAMES and throughput["fps"] > 0
    assert {"detect", "track", "align", "embed", "search"} <= set(throughput["latencies"])
    assert all(lat["p50_ms"] > 0 for lat in throughput["latencies"].values())

    first = result["first_recognisable"][subject_id]
    assert first["first"] is not None and first["steady"] is not None
    assert first["first"]["frame_index"] <= first["steady"]["frame_index"]

    (camera,) = result["camera"]
    assert camera["frames_read"] == CLIP_FRAMES
    assert camera["frames_processed"] + camera["frames_dropped"] == CLIP_FRAMES
    arrived = [e for e in camera["events"] if e["subject_id"] == subject_id and e["delivery_s"] is not None]
    assert arrived, "an event for the enrolled person should reach the subscriber"
    assert all(0 < e["delivery_s"] < 5 for e in arrived)
    assert 0 < camera["from_steady_s"][subject_id] <= camera["from_first_s"][subject_id]
    assert result["delivery_ms"] and result["from_first_s"]

    phases = {u["phase"]: u for u in result["usage"]}
    assert {"throughput", "camera-like"} <= set(phases)
    for usage in phases.values():
        assert usage["cpu_mean"] > 0 and 0 < usage["rss_start"] <= usage["rss_max"]

    if result["baseline"] is None:
        assert result["baseline_skipped"]
    else:
        assert result["baseline"]["frames"] == BASELINE_FRAMES and result["baseline"]["fps"] > 0
        assert result["fps_ratio"] > 0

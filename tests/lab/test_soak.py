"""`edge-agent bench soak`: the live agent on a looped clip with a real broker; its memory stays flat.

The short run goes through the same code path as `make soak` (the CLI in a child process, so pytest's own
memory does not blur the measurement), with --minutes as a float; the 5-minute run is `slow`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from edge_agent.errors import EdgeAgentError
from edge_agent.lab.bench.soak import RssPoint, default_warmup_s, rss_growth
from tests.kits.clihelp import run_cli

MAX_GROWTH_PCT = 5.0

needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").is_file(),
    reason="mosquitto is not installed",
)


def _clean_env() -> dict[str, str]:
    """This machine's environment without agent settings, so the defaults are measured."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGE_AGENT_")}


def _soak(tmp_path: Path, minutes: float) -> dict[str, Any]:
    report = tmp_path / "soak.json"
    done = run_cli(
        "bench",
        "soak",
        "--minutes",
        f"{minutes:g}",
        "--sample-s",
        "1",
        "--no-write",
        "--json",
        report,
        env=_clean_env(),
    )
    assert done.returncode in (0, 1), done.stderr
    result: dict[str, Any] = json.loads(report.read_text())
    print(done.stdout)
    assert (done.returncode == 0) == result["passed"]
    return result


def _check(result: dict[str, Any], minutes: float) -> None:
    assert result["frames_processed"] > 0 and result["fps"] > 0
    assert result["frames_dropped"] == 0  # a file source at full speed waits for the worker
    assert result["events"] >= 1, "the enrolled demo face should give at least one event"
    assert result["arrived"] == result["events"]
    assert result["points"][-1][0] >= minutes * 60 * 0.9
    assert result["growth"]["growth_pct"] < MAX_GROWTH_PCT, result["points"]
    assert result["passed"]


@needs_mosquitto
def test_short_soak_keeps_memory_flat(tmp_path: Path) -> None:
    minutes = 0.75
    _check(_soak(tmp_path, minutes), minutes)


@pytest.mark.slow
@needs_mosquitto
def test_five_minute_soak_keeps_memory_flat(tmp_path: Path) -> None:
    _check(_soak(tmp_path, 5.0), 5.0)


def test_growth_is_measured_from_the_end_of_warm_up() -> None:
    points = tuple(RssPoint(float(t), 100.0 if t < 10 else 200.0 + (t >= 50) * 10.0) for t in range(0, 60, 2))
    growth = rss_growth(points, warmup_s=10.0)
    assert growth.after_warmup == 200.0
    assert growth.end == 210.0
    assert growth.growth_pct == pytest.approx(5.0)
    assert growth.samples_after_warmup == 25
    assert growth.slope_mib_per_hour is not None and growth.slope_mib_per_hour > 0


def test_a_run_too_short_for_its_warm_up_is_refused() -> None:
    with pytest.raises(EdgeAgentError, match="too short"):
        rss_growth((RssPoint(0.0, 100.0), RssPoint(2.0, 101.0)), warmup_s=60.0)


def test_default_warm_up() -> None:
    assert default_warmup_s(600.0) == 60.0
    assert default_warmup_s(45.0) == 11.25

"""Run the real `edge-agent` command in a child process, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str | Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def one_error(stderr: str) -> str:
    """The one `edge-agent:` error line of a failed command (and no traceback)."""
    lines = [line for line in stderr.splitlines() if line.startswith("edge-agent:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]

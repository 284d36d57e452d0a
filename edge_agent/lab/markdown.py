"""Where benchmark numbers go: a named section of `docs/benchmarks.md`, with machine and command."""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from edge_agent.files import atomic_write_bytes


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        fields = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (
                line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines()
            )
        )
    except OSError:
        fields = {}
    # x86 names the CPU in "model name"; a Raspberry Pi names the board in "Model"
    cpu = fields.get("model name") or fields.get("model") or fields.get("hardware") or cpu
    cores = os.cpu_count() or 0
    return (
        f"{cpu}, {cores} logical cores, {platform.system()} {platform.release()} "
        f"({platform.machine()}), Python {sys.version.split()[0]}"
    )


def package_versions(*names: str) -> str:
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def section_header(title: str, command: str, versions: str) -> list[str]:
    return [
        f"## {title}",
        "",
        f"- Measured: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine_description()}",
        f"- Command: `{command}`",
        f"- Versions: {versions}",
        "",
        "",
    ]


def write_section(doc: Path, key: str, body: str) -> None:
    """Replace (or append) the block between `<!-- bench:KEY -->` markers, atomically."""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic_write_bytes(doc, (text if text.endswith("\n") else text + "\n").encode("utf-8"))

"""Writing files so that a reader never sees half of one, and failures are one-line errors."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from edge_agent.errors import EdgeAgentError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over `path`."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise EdgeAgentError(f"cannot write {path}: {exc.strerror or exc}") from None

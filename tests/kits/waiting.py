"""Waiting in tests for something another thread or process does, with a deadline and a clear failure."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(check: Callable[[], object], what: str = "condition", timeout_s: float = 10.0) -> None:
    """Poll `check` until it is true; AssertionError naming `what` when `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)

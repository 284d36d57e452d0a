"""systemd's notify protocol (READY, WATCHDOG, STATUS, STOPPING) without depending on libsystemd.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the agent runs the same in a terminal.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            # pet twice per timeout, as sd_watchdog_enabled(3) advises
            self.watchdog_interval_s = int(usec) / 2e6
        self._last_pet = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> bool:
        if not self._address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto("\n".join(fields).encode(), self._address)
            except OSError:
                return False
        return True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def reloading(self) -> None:
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def pet(self) -> None:
        """Tell the watchdog the worker loop is alive, at most twice per watchdog period."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_pet >= self.watchdog_interval_s:
            self._last_pet = now
            self.notify("WATCHDOG=1")

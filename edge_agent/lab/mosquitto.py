"""A throw-away mosquitto for benchmarks: one process on a free loopback port, anonymous, no persistence.

The same way of starting a broker as the test helper `tests/kits/broker.py` (which the package must not
import), cut down to what a benchmark needs: start, wait until the port answers, stop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from edge_agent.errors import EdgeAgentError

HOST = "127.0.0.1"
INSTALL_HINT = "install it (apt-get install mosquitto) or use the configured broker (--broker config)"


def mosquitto_binary() -> str:
    """The mosquitto executable, or an EdgeAgentError saying how to get one."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()), None
    )
    if found is None:
        raise EdgeAgentError(f"mosquitto not found: {INSTALL_HINT}")
    return found


def mosquitto_version() -> str:
    """E.g. "mosquitto 2.0.11" (from `mosquitto -h`), or "mosquitto" when it does not say."""
    try:
        result = subprocess.run(
            [mosquitto_binary(), "-h"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired, EdgeAgentError):
        return "mosquitto"
    first = (result.stdout or result.stderr).splitlines()[:1]
    words = first[0].split() if first else []
    return f"mosquitto {words[2]}" if len(words) >= 3 and words[1] == "version" else "mosquitto"


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's choice, so never 1883)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class LocalMosquitto:
    """One mosquitto in `folder` on a free loopback port; a context manager that starts and stops it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.host = HOST
        self.port = free_port()
        self.binary = mosquitto_binary()
        self.config_path = folder / "mosquitto.conf"
        self.log_path = folder / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} {HOST}",
            "persistence false",
            "allow_anonymous true",
            "max_queued_messages 10000",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to the `mosquitto` user
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 5.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EdgeAgentError(f"mosquitto exited with {self.process.returncode}: {self._log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=0.2):
                return
            time.sleep(0.02)
        self.stop()
        raise EdgeAgentError(f"mosquitto did not listen on {HOST}:{self.port} within {timeout_s} s")

    def stop(self, timeout_s: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    def __enter__(self) -> LocalMosquitto:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

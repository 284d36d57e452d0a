"""A throw-away mosquitto: one process in a folder of its own, on a free loopback port (never 1883, which a
system broker may own), for the benchmarks, the demo and the tests (tests/kits/broker.py builds on it).

By default it is what a benchmark needs: anonymous, no persistence, its output in `mosquitto.log`. The
tests turn on the rest: persistent sessions on disk (a graceful `stop()` saves them, so a subscriber with
`clean_session=False` still gets its queued QoS 1 messages after a restart on the same port), a full log,
a password file, and a TLS listener.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
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


class MosquittoError(EdgeAgentError):
    """The broker would not start, or ignored a signal to stop."""


@dataclass(frozen=True)
class TlsListener:
    """The server side of a TLS listener: the CA that signs client certificates, the broker's own
    certificate and key, and whether a client must present a certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    require_certificate: bool = False


@dataclass(frozen=True)
class MosquittoOptions:
    """What the broker is started with beyond a listener; the defaults are a benchmark's broker.

    `persistent`: sessions and queued messages saved under `data/` (autosave every second).
    `full_log`: mosquitto logs everything, connections included, to `mosquitto.log` (its console output
    then goes to `mosquitto.out`). `password_file`: logins required, from that file (`mosquitto_passwd`).
    """

    persistent: bool = False
    full_log: bool = False
    password_file: Path | None = None
    tls: TlsListener | None = None


class LocalMosquitto:
    """One mosquitto in `folder` on one port for its whole life (across stops and restarts); a context
    manager that starts and stops it."""

    def __init__(
        self, folder: Path, options: MosquittoOptions | None = None, *, port: int | None = None
    ) -> None:
        self.folder = folder
        self.options = options or MosquittoOptions()
        self.host = HOST
        self.port = port or free_port()
        self.config_path = folder / "mosquitto.conf"
        self.log_path = folder / "mosquitto.log"
        self.output_path = folder / "mosquitto.out" if self.options.full_log else self.log_path
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        if self.options.persistent:
            (folder / "data").mkdir(exist_ok=True)
        self.config_path.write_text("\n".join(self._config_lines()) + "\n")

    def _config_lines(self) -> list[str]:
        options = self.options
        lines = [f"listener {self.port} {HOST}", f"persistence {'true' if options.persistent else 'false'}"]
        if options.persistent:
            lines += [f"persistence_location {self.folder / 'data'}/", "autosave_interval 1"]
        if options.full_log:
            lines += [f"log_dest file {self.log_path}", "log_type all", "connection_messages true"]
        lines += [
            f"allow_anonymous {'false' if options.password_file is not None else 'true'}",
            "max_queued_messages 10000",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to `mosquitto` and cannot write here
        if options.password_file is not None:
            lines.append(f"password_file {options.password_file}")
        if options.tls is not None:
            lines += [
                f"cafile {options.tls.ca_cert}",
                f"certfile {options.tls.server_cert}",
                f"keyfile {options.tls.server_key}",
                f"require_certificate {'true' if options.tls.require_certificate else 'false'}",
            ]
        return lines

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 5.0) -> None:
        """Starts mosquitto and waits until the port accepts connections."""
        if self.running:
            raise MosquittoError("mosquitto already running")
        with self.output_path.open("ab") as output:
            self.process = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.config_path)], stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MosquittoError(f"mosquitto exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=0.2):
                return
            time.sleep(0.02)
        self.kill()
        raise MosquittoError(f"mosquitto did not listen on {HOST}:{self.port} within {timeout_s} s")

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Graceful: SIGTERM, so mosquitto saves its sessions and queued messages before it exits.
        False when it ignored that for `timeout_s` and was killed."""
        return self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> bool:
        """SIGKILL: nothing saved since the last autosave survives."""
        return self._end(signal.SIGKILL, 5.0)

    def _end(self, how: signal.Signals, timeout_s: float) -> bool:
        process = self.process
        if process is None or process.poll() is not None:
            return True
        process.send_signal(how)
        if how != signal.SIGKILL:
            process.send_signal(signal.SIGCONT)  # a paused broker acts on SIGTERM only once resumed
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return False
        return True

    def log(self) -> str:
        """Everything mosquitto wrote, file by file."""
        parts = []
        for path in dict.fromkeys((self.output_path, self.log_path)):
            if path.is_file():
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def log_tail(self) -> str:
        """The last three lines mosquitto wrote, on one line (for an error message)."""
        try:
            lines = self.output_path.read_text(errors="replace").splitlines()
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

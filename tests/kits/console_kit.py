"""Helpers for the console's tests: a console on a test folder (and broker), its web server on a free
loopback port, and logged-in clients."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.testclient import TestClient

from edge_agent.config import Settings, load_settings
from edge_agent.console.app import build_app
from edge_agent.console.service import Console
from edge_agent.lab.mosquitto import free_port
from tests.kits.agent_kit import PREFIX
from tests.kits.broker import Broker

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(
    client: TestClient, username: str, password: str = PASSWORD, forwarded_for: str | None = None
) -> int:
    """Logs in through the login form (its CSRF token and cookie); the answer's status code."""
    page = client.get("/login")
    token = CSRF.search(page.text)
    assert token is not None, page.text
    data = {"username": username, "password": password, "csrf_token": token[1]}
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return client.post("/login", data=data, headers=headers).status_code


def csrf_of(client: TestClient, path: str = "/") -> str:
    """The CSRF token in the forms of `path` (a logged-in client's session token)."""
    found = CSRF.search(client.get(path).text)
    assert found is not None
    return found[1]


def console_settings(folder: Path, broker: Broker | None, **console: Any) -> Settings:
    mqtt: dict[str, Any] = {"host": "127.0.0.1", "port": broker.port if broker else 1, "topic_prefix": PREFIX}
    return load_settings(
        None,
        use_environment=False,
        watchlist={"path": folder / "master.db"},
        mqtt=mqtt,
        console={"path": folder / "console.db", **console},
    )


def with_accounts(console: Console) -> Console:
    """An admin `ada` and a reviewer `rey`, both with PASSWORD."""
    now = console.clock()
    console.accounts.create("ada", PASSWORD, "admin", "test", now)
    console.accounts.create("rey", PASSWORD, "reviewer", "test", now)
    return console


@contextmanager
def served(console: Console) -> Iterator[str]:
    """The console's web application on a free loopback port (with its ingest, if it has one); its URL."""
    port = free_port()
    config = uvicorn.Config(
        build_app(console), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    if console.ingest is not None:
        console.ingest.start()
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the console's web server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        if console.ingest is not None:
            console.ingest.close()

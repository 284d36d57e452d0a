"""The console's web application: its routes and middleware, and `serve`, which runs it with the MQTT
ingest until the process is stopped."""

from __future__ import annotations

import socket
import sqlite3

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from edge_agent.console import admin_pages, pages
from edge_agent.console.service import Console
from edge_agent.console.web import HERE, SessionGate, database_error, http_error
from edge_agent.errors import EdgeAgentError


def build_app(console: Console) -> Starlette:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    routes: list[BaseRoute] = [
        *pages.routes(),
        *admin_pages.routes(),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    proxies = console.settings.console.trusted_proxies
    middleware = [Middleware(SessionGate)]
    if proxies:  # the client's address from X-Forwarded-For, only when a trusted proxy sent it
        middleware.insert(0, Middleware(ProxyHeadersMiddleware, trusted_hosts=proxies))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error, sqlite3.Error: database_error},
    )
    app.state.console = console
    return app


def serve(console: Console, host: str | None = None, port: int | None = None) -> None:
    """The MQTT ingest and the web server, until SIGINT/SIGTERM (uvicorn's handlers)."""
    import uvicorn

    settings = console.settings.console
    host, port = host or settings.host, port or settings.port
    _check_listen(host, port)
    if console.ingest is not None:
        console.ingest.start()
    try:
        uvicorn.run(
            build_app(console),
            host=host,
            port=port,
            log_level="info",
            proxy_headers=False,  # build_app reads them, from console.trusted_proxies only
            server_header=False,
        )
    finally:
        console.close()


def _check_listen(host: str, port: int) -> None:
    """A one-line error before anything starts when the address cannot be listened on."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise EdgeAgentError(f"the console cannot listen on {host}:{port}: {exc.strerror or exc}") from None

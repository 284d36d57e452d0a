"""The console's web application: its routes and middleware, and `serve`, which runs it with the MQTT
ingest until the process is stopped."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from edge_agent.console import admin_pages, pages
from edge_agent.console.service import Console
from edge_agent.console.web import HERE, SessionGate, http_error


def build_app(console: Console) -> Starlette:
    routes: list[BaseRoute] = [
        *pages.routes(),
        *admin_pages.routes(),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SessionGate)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.console = console
    return app


def serve(console: Console, host: str | None = None, port: int | None = None) -> None:
    """The MQTT ingest and the web server, until SIGINT/SIGTERM (uvicorn's handlers)."""
    import uvicorn

    settings = console.settings.console
    if console.ingest is not None:
        console.ingest.start()
    try:
        uvicorn.run(
            build_app(console),
            host=host or settings.host,
            port=port or settings.port,
            log_level="info",
            proxy_headers=False,
            server_header=False,
        )
    finally:
        console.close()

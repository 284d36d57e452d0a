"""The console's web pages' common parts (Starlette, Jinja2 templates, no JavaScript): who may see what.

- Every page and API needs a session, except the login form and the style sheet: without one a page
  redirects to /login and the API answers 401. Admin pages (`/admin/...`) answer 403 to a reviewer.
- Every form carries a CSRF token and every POST is refused (403) without the right one: the session's
  token once logged in, a double-submit cookie on the login form. Routes are made only through `page`
  and `form` below, so no POST can skip the check.
- Cookies are HttpOnly and SameSite=Strict; with `console.secure_cookies` they are also Secure and
  named with the `__Host-` prefix (the browser then keeps them for this host and path `/` only). Every
  answer carries a Content-Security-Policy allowing nothing but this site (no scripts at all), and no
  framing.
- Handlers are plain functions run in Starlette's thread pool: a password hash, a database lock or a
  wait for the broker's acknowledgement blocks that request, never the server's event loop.
"""

from __future__ import annotations

import hmac
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from edge_agent.console.accounts import Session
from edge_agent.console.service import Console

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "edge_agent_session"
LOGIN_CSRF_COOKIE = "edge_agent_login_csrf"
SECURE_PREFIX = "__Host-"  # the cookies' names with console.secure_cookies
PUBLIC_PAGES = frozenset({"/login"})
MAX_FORM_BYTES = 64 * 1024  # the longest form is a verdict with its comment (2,000 characters); no uploads
PUBLIC_PREFIXES = ("/static/",)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[Request, "Ctx"], Response]
FormHandler = Callable[[Request, "Ctx", FormData], Response]


@dataclass(frozen=True)
class Ctx:
    """What every handler gets: the console, and the logged-in session (None only on public pages)."""

    console: Console
    session: Session | None

    @property
    def user(self) -> str:
        assert self.session is not None
        return self.session.account.username


templates = Jinja2Templates(directory=HERE / "templates")


def render(request: Request, ctx: Ctx, name: str, status_code: int = 200, **values: Any) -> Response:
    context = {"session": ctx.session, "console": ctx.console, "path": request.url.path, **values}
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def page(path: str, handler: Handler, *, admin: bool = False) -> Route:
    """A GET route for logged-in users (admins only with `admin`)."""

    async def endpoint(request: Request) -> Response:
        return await run_in_threadpool(handler, request, _ctx(request, admin))

    return Route(path, endpoint, methods=["GET"])


def form(path: str, handler: FormHandler, *, admin: bool = False, public: bool = False) -> Route:
    """A POST route whose form must carry the CSRF token (the session's; the login cookie's if public)."""

    async def endpoint(request: Request) -> Response:
        ctx = _ctx(request, admin, public)
        length = request.headers.get("content-length", "")
        if not length.isascii() or not length.isdigit():
            raise HTTPException(411, "a form is posted with its Content-Length")
        if int(length) > MAX_FORM_BYTES:
            raise HTTPException(413, f"a form is at most {MAX_FORM_BYTES // 1024} KiB")
        data = await request.form(max_files=0, max_fields=50, max_part_size=MAX_FORM_BYTES)
        given = str(data.get("csrf_token", ""))
        expected = (
            cookie(request, ctx.console, LOGIN_CSRF_COOKIE) if ctx.session is None else ctx.session.csrf_token
        )
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
        return await run_in_threadpool(handler, request, ctx, data)

    return Route(path, endpoint, methods=["POST"])


def _ctx(request: Request, admin: bool, public: bool = False) -> Ctx:
    console: Console = request.app.state.console
    session: Session | None = getattr(request.state, "session", None)
    if session is None and not public:
        raise HTTPException(401)  # the middleware stops these first; never reached without a session
    if admin and (session is None or not session.account.is_admin):
        raise HTTPException(403, "this page is for admins")
    return Ctx(console, session)


class SessionGate(BaseHTTPMiddleware):
    """Reads the session cookie; sends anyone without a valid session to the login page."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        console: Console = request.app.state.console
        token = cookie(request, console, SESSION_COOKIE)
        try:
            session = await run_in_threadpool(console.accounts.session, token, console.clock())
        except sqlite3.Error as exc:  # outside the app's exception handlers: answered here
            return await database_error(request, exc)
        request.state.session = session
        path = request.url.path
        if session is None and not (path in PUBLIC_PAGES or path.startswith(PUBLIC_PREFIXES)):
            if path.startswith("/api/"):
                response: Response = JSONResponse({"error": "log in first"}, status_code=401)
            else:
                response = RedirectResponse("/login", status_code=303)
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response


def cookie_name(console: Console, name: str) -> str:
    return SECURE_PREFIX + name if console.settings.console.secure_cookies else name


def cookie(request: Request, console: Console, name: str) -> str:
    return request.cookies.get(cookie_name(console, name), "")


def _cookie_flags(console: Console) -> dict[str, Any]:
    """HttpOnly, SameSite=Strict, path /; Secure (with the `__Host-` name) with console.secure_cookies."""
    return {
        "path": "/",
        "httponly": True,
        "samesite": "strict",
        "secure": console.settings.console.secure_cookies,
    }


def set_cookie(response: Response, console: Console, name: str, value: str, max_age: int) -> None:
    response.set_cookie(cookie_name(console, name), value, max_age=max_age, **_cookie_flags(console))


def set_session_cookie(response: Response, console: Console, token: str) -> None:
    set_cookie(response, console, SESSION_COOKIE, token, int(console.settings.console.session_hours * 3600))


def delete_session_cookie(response: Response, console: Console) -> None:
    response.delete_cookie(cookie_name(console, SESSION_COOKIE), **_cookie_flags(console))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def set_login_csrf(response: Response, console: Console, token: str) -> None:
    """The login form's double-submit token, set as its cookie (the form carries the same)."""
    set_cookie(response, console, LOGIN_CSRF_COOKIE, token, 3600)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    console: Console = request.app.state.console
    ctx = Ctx(console, getattr(request.state, "session", None))
    response = render(request, ctx, "error.html", exc.status_code, status=exc.status_code, detail=exc.detail)
    response.headers.update(SECURITY_HEADERS)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def database_error(request: Request, exc: Exception) -> Response:
    """The console's database refused (a full or broken disk, a lock held too long): one line, 503,
    nothing half-done (every write is one transaction, rolled back)."""
    assert isinstance(exc, sqlite3.Error)
    why = f"the console's database cannot be used now ({exc}): nothing was changed; try again later"
    return await http_error(request, HTTPException(503, why))

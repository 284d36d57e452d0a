"""The reviewers' pages: log in and out, the review queue, one match and its verdict, the fleet, the
transparency reports, the console's audit log, and the queue as JSON."""

from __future__ import annotations

import time
from dataclasses import asdict

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from edge_agent.console import views
from edge_agent.console.accounts import LoginRefused
from edge_agent.console.reviews import ReviewError, review
from edge_agent.console.web import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Ctx,
    cookie,
    delete_session_cookie,
    form,
    new_token,
    page,
    render,
    set_login_csrf,
    set_session_cookie,
)
from edge_agent.watchlist.records import Subject


def routes() -> list[Route]:
    return [
        Route("/login", _login_page, methods=["GET"]),
        form("/login", _login, public=True),
        form("/logout", _logout),
        page("/", _queue),
        page("/reviewed", _reviewed),
        page("/events/{event_id}", _event),
        page("/events/{event_id}/face.jpg", _face),
        form("/events/{event_id}/review", _review),
        page("/fleet", _fleet),
        page("/reports", _reports),
        page("/audit", _audit),
        page("/api/events", _api_events),
    ]


def _login_page(request: Request) -> Response:
    ctx = Ctx(request.app.state.console, None)
    if getattr(request.state, "session", None) is not None:
        return RedirectResponse("/", status_code=303)
    return _login_form(request, ctx, None, 200)


def _login_form(request: Request, ctx: Ctx, error: str | None, status: int) -> Response:
    # the browser's own token while it has one: a second login page (another tab, or the favicon's
    # redirect here) must not invalidate the form already shown
    given = cookie(request, ctx.console, LOGIN_CSRF_COOKIE)
    token = given if 32 <= len(given) <= 64 else new_token()
    response = render(request, ctx, "login.html", status, error=error, csrf_token=token)
    set_login_csrf(response, ctx.console, token)
    return response


def _login(request: Request, ctx: Ctx, data: FormData) -> Response:
    address = request.client.host if request.client else "unknown"
    outcome = ctx.console.accounts.login(
        str(data.get("username", "")), str(data.get("password", "")), address, time.time()
    )
    if isinstance(outcome, LoginRefused):
        status = 429 if outcome.retry_after_s is not None else 401
        response = _login_form(request, ctx, outcome.message, status)
        if outcome.retry_after_s is not None:
            response.headers["Retry-After"] = str(max(1, round(outcome.retry_after_s)))
        return response
    token = ctx.console.accounts.open_session(outcome, address, ctx.console.clock())
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, ctx.console, token)
    return response


def _logout(request: Request, ctx: Ctx, data: FormData) -> Response:
    ctx.console.accounts.close_session(cookie(request, ctx.console, SESSION_COOKIE), ctx.console.clock())
    response = RedirectResponse("/login", status_code=303)
    delete_session_cookie(response, ctx.console)
    return response


def _subjects(ctx: Ctx) -> dict[str, Subject]:
    return ctx.console.master.subjects()


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "0")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 7 else 0


def _queue(request: Request, ctx: Ctx) -> Response:
    found = views.events(ctx.console.db, _subjects(ctx), open_only=True, page=_page_number(request))
    watch = not found.events  # an empty queue reloads itself (no scripts) to show the next match
    return render(request, ctx, "queue.html", found=found, watch=watch, title="Review queue")


def _reviewed(request: Request, ctx: Ctx) -> Response:
    found = views.events(ctx.console.db, _subjects(ctx), open_only=False, page=_page_number(request))
    return render(request, ctx, "queue.html", found=found, title="Reviewed")


def _event(request: Request, ctx: Ctx) -> Response:
    found = views.event(ctx.console.db, request.path_params["event_id"], _subjects(ctx))
    if found is None:
        raise HTTPException(404, "no such match event")
    return render(request, ctx, "event.html", event=found, title="Match")


def _face(request: Request, ctx: Ctx) -> Response:
    data = views.face_jpeg(ctx.console.db, request.path_params["event_id"])
    if data is None:
        raise HTTPException(404, "no face chip for this event")
    return Response(data, media_type="image/jpeg")


def _review(request: Request, ctx: Ctx, data: FormData) -> Response:
    event_id = request.path_params["event_id"]
    try:
        review(
            ctx.console.db,
            ctx.console.signer,
            event_id,
            str(data.get("verdict", "")),
            ctx.user,
            str(data.get("comment", "")),
            ctx.console.clock(),
        )
    except ReviewError as exc:
        found = views.event(ctx.console.db, event_id, _subjects(ctx))
        if found is None:
            raise HTTPException(404, "no such match event") from None
        return render(request, ctx, "event.html", 409, event=found, title="Match", error=str(exc))
    if ctx.console.ingest is not None:
        ctx.console.ingest.wake()
    return RedirectResponse(f"/events/{event_id}", status_code=303)


def _fleet(request: Request, ctx: Ctx) -> Response:
    ingest = ctx.console.ingest
    return render(
        request, ctx, "fleet.html", devices=views.devices(ctx.console.db), ingest=ingest, title="Fleet"
    )


def _reports(request: Request, ctx: Ctx) -> Response:
    devices = [device for device in views.devices(ctx.console.db) if device.report is not None]
    return render(request, ctx, "reports.html", devices=devices, title="Transparency reports")


def _audit(request: Request, ctx: Ctx) -> Response:
    check, rows = views.audit_rows(ctx.console.db)
    return render(request, ctx, "audit.html", check=check, rows=list(reversed(rows)), title="Audit log")


def _api_events(request: Request, ctx: Ctx) -> Response:
    open_only = request.query_params.get("state") != "reviewed"
    found = views.events(ctx.console.db, _subjects(ctx), open_only=open_only, page=_page_number(request))
    return JSONResponse(
        {
            "total": found.total,
            "page": found.page,
            "pages": found.pages,
            "events": [_json_event(event) for event in found.events],
        }
    )


def _json_event(event: views.EventView) -> dict[str, object]:
    values = asdict(event)
    values["subject"] = None if event.subject is None else event.subject.as_dict()
    return values

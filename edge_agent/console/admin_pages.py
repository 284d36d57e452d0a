"""The admins' pages: accounts, and the master watchlist with its export to the devices.

Exporting signs a bundle of every live subject with `watchlist.signing_key` (subjects and embeddings,
never photos): the admin downloads it, or the console sends it to every device as a signed
`apply_bundle` (delta: each device adds the subjects it lacks). Both are in the console's audit log.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edge_agent.console.accounts import ROLES, AccountError
from edge_agent.console.web import Ctx, form, page, render
from edge_agent.errors import EdgeAgentError
from edge_agent.fleet.central import command_topic, read_envelope
from edge_agent.fleet.command import ALL_DEVICES
from edge_agent.watchlist import audit
from edge_agent.watchlist.transfer import export_bundle

BUNDLE_DAYS = 7


def routes() -> list[Route]:
    return [
        page("/admin/accounts", _accounts, admin=True),
        form("/admin/accounts", _add_account, admin=True),
        page("/admin/watchlist", _watchlist, admin=True),
        form("/admin/watchlist/export", _export, admin=True),
        form("/admin/watchlist/send", _send, admin=True),
    ]


def _accounts(request: Request, ctx: Ctx) -> Response:
    return _accounts_page(request, ctx, None, 200)


def _accounts_page(request: Request, ctx: Ctx, error: str | None, status: int) -> Response:
    listed = ctx.console.accounts.listed()
    return render(
        request, ctx, "accounts.html", status, accounts=listed, roles=ROLES, error=error, title="Accounts"
    )


def _add_account(request: Request, ctx: Ctx, data: FormData) -> Response:
    try:
        ctx.console.accounts.create(
            str(data.get("username", "")),
            str(data.get("password", "")),
            str(data.get("role", "")),
            ctx.user,
            ctx.console.clock(),
        )
    except AccountError as exc:
        return _accounts_page(request, ctx, str(exc), 400)
    return RedirectResponse("/admin/accounts", status_code=303)


def _watchlist(request: Request, ctx: Ctx) -> Response:
    return _watchlist_page(request, ctx, None, None, 200)


def _watchlist_page(request: Request, ctx: Ctx, error: str | None, sent: str | None, status: int) -> Response:
    subjects = sorted(ctx.console.master.subjects().values(), key=lambda s: s.id)
    with ctx.console.db.reading() as conn:
        recent = audit.rows(conn, limit=200)
    pushes = [row for row in reversed(recent) if row.action == "bundle_sent"]
    results = {}
    for push in pushes[:5]:
        nonce = str(push.details.get("command_nonce"))
        results[nonce] = [
            json.loads(row["payload"])
            for row in ctx.console.db.rows("SELECT payload FROM results WHERE nonce = ? ORDER BY id", nonce)
        ]
    return render(
        request,
        ctx,
        "watchlist.html",
        status,
        subjects=subjects,
        now=ctx.console.clock().isoformat(),
        pushes=pushes[:5],
        results=results,
        error=error,
        sent=sent,
        title="Master watchlist",
    )


def _bundle(ctx: Ctx) -> tuple[bytes, int]:
    settings = ctx.console.settings
    if settings.watchlist.signing_key is None:
        raise EdgeAgentError("watchlist.signing_key is not set: no bundle can be signed")
    if ctx.console.open_master is None:
        raise EdgeAgentError("this console has no master watchlist")
    expires = ctx.console.clock() + timedelta(days=BUNDLE_DAYS)
    with ctx.console.open_master() as watchlist:
        return export_bundle(watchlist, settings.watchlist.signing_key, f"console:{ctx.user}", expires)


def _export(request: Request, ctx: Ctx, data: FormData) -> Response:
    try:
        bundle, count = _bundle(ctx)
    except EdgeAgentError as exc:
        return _watchlist_page(request, ctx, str(exc), None, 409)
    now = ctx.console.clock()
    with ctx.console.db.transaction() as conn:
        audit.append(
            conn,
            actor=ctx.user,
            action="bundle_exported",
            subject_id=None,
            details={"subjects": count},
            at=now,
        )
    name = f"watchlist-{now.strftime('%Y%m%dT%H%M%SZ')}.bundle"
    return Response(
        bundle,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _send(request: Request, ctx: Ctx, data: FormData) -> Response:
    console = ctx.console
    if console.signer is None or console.ingest is None:
        return _watchlist_page(
            request, ctx, "console.command_key is not set: no command can be signed", None, 409
        )
    try:
        bundle, count = _bundle(ctx)
    except EdgeAgentError as exc:
        return _watchlist_page(request, ctx, str(exc), None, 409)
    if not console.ingest.connected:
        return _watchlist_page(
            request, ctx, "the console is not connected to the broker: nothing was sent", None, 503
        )
    args = {"bundle": base64.b64encode(bundle).decode("ascii"), "mode": "delta"}
    envelope = console.signer.sign("apply_bundle", args, ALL_DEVICES, console.clock())
    nonce = read_envelope(envelope).nonce
    with console.db.transaction() as conn:  # before it goes out: a send is never missing from the log
        details = {"subjects": count, "command_nonce": nonce, "mode": "delta"}
        audit.append(
            conn, actor=ctx.user, action="bundle_sent", subject_id=None, details=details, at=console.clock()
        )
    if not console.ingest.publish(
        command_topic(console.settings.mqtt, ALL_DEVICES, "apply_bundle"), envelope
    ):
        why = (
            f"the broker did not acknowledge the command (nonce {nonce}) in time: it may still reach the "
            "devices, whose answers will show here; send again if none does"
        )
        return _watchlist_page(request, ctx, why, None, 503)
    return _watchlist_page(
        request, ctx, None, f"{count} subject(s) sent to every device (nonce {nonce})", 200
    )

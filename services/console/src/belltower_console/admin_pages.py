"""The web console's admin pages: users and API tokens, site settings and the audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import forms
from .errors import FieldErrors
from .http import client_of, console_of, principal_of, when
from .store import Principal
from .web import back, page, posted

router = APIRouter(include_in_schema=False)


# -- admin --------------------------------------------------------------------------------------


@router.get("/admin/users")
async def users_page(request: Request, notice: str | None = None) -> Response:
    return await _users_page(request, await principal_of(request), notice=notice)


async def _users_page(
    request: Request,
    who: Principal,
    *,
    http_status: int = 200,
    notice: str | None = None,
    new_token: Any = None,
    errors: dict[str, str] | None = None,
    form: Any = None,
) -> Response:
    """The users and tokens page, with what the last action left to show."""
    console = console_of(request)
    return page(
        request,
        "users.html",
        who,
        http_status=http_status,
        users=await console.users(who, client_of(request)),
        tokens=await console.tokens(who, client_of(request)),
        notice=notice,
        new_token=new_token,
        errors=errors or {},
        form=form,
    )


@router.post("/admin/users")
async def add_user(request: Request) -> Response:
    who, form = await posted(request)
    console = console_of(request)
    try:
        await console.add_user(
            who,
            client_of(request),
            str(form.get("username", "")),
            str(form.get("password", "")),
            str(form.get("role", "")),
        )
    except FieldErrors as exc:
        return await _users_page(
            request, who, http_status=422, errors=forms.by_field(exc.errors), form=form
        )
    return back("/admin/users", f"User {form.get('username')} added.")


@router.post("/admin/users/{username}")
async def change_user(request: Request, username: str) -> Response:
    who, form = await posted(request)
    await console_of(request).update_user(
        who,
        client_of(request),
        username,
        role=str(form.get("role")) if form.get("role") else None,
        password=str(form.get("password")) if form.get("password") else None,
        disabled="disabled" in form,
    )
    return back("/admin/users", f"User {username} saved.")


@router.post("/admin/tokens")
async def add_token(request: Request) -> Response:
    who, form = await posted(request)
    console = console_of(request)
    try:
        days = float(str(form.get("days") or "90"))
    except ValueError:
        days = -1
    token = await console.add_token(
        who,
        client_of(request),
        str(form.get("username") or who.username),
        str(form.get("name") or ""),
        days,
    )
    return await _users_page(request, who, new_token=token)


@router.post("/admin/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: str) -> Response:
    who, _ = await posted(request)
    await console_of(request).revoke_token(who, client_of(request), token_id)
    return back("/admin/users", "Token revoked.")


@router.get("/admin/settings")
async def settings_page(request: Request, notice: str | None = None) -> Response:
    who = await principal_of(request)
    settings = await console_of(request).site_settings(who, client_of(request))
    return page(request, "settings.html", who, settings=settings, notice=notice)


@router.post("/admin/settings")
async def save_settings(request: Request) -> Response:
    who, form = await posted(request)
    choice = str(form.get("result_mail_only_failures") or "")
    value = {"true": True, "false": False}.get(choice)
    await console_of(request).change_site_settings(
        who, client_of(request), {"result_mail_only_failures": value}
    )
    return back("/admin/settings", "Settings saved.")


@router.get("/admin/audit")
async def audit_page(
    request: Request,
    actor: str = "",
    action: str = "",
    outcome: str = "",
    q: str = "",
    from_date: str = "",
    to_date: str = "",
    offset: int = 0,
) -> Response:
    who = await principal_of(request)
    until = when(to_date, "to")
    if until is not None and len(to_date.strip()) == 10:
        until += timedelta(days=1)
    items, total = await console_of(request).audit_log(
        who,
        client_of(request),
        actor=actor or None,
        action=action or None,
        outcome=outcome or None,
        text=q or None,
        since=when(from_date, "from"),
        until=until,
        limit=50,
        offset=max(offset, 0),
    )

    def link(**change: Any) -> str:
        params = {
            "actor": actor,
            "action": action,
            "outcome": outcome,
            "q": q,
            "from_date": from_date,
            "to_date": to_date,
            "offset": offset,
        } | change
        return "/admin/audit?" + urlencode(
            {k: v for k, v in params.items() if v not in ("", None, 0)}
        )

    return page(
        request,
        "audit.html",
        who,
        items=items,
        total=total,
        actor=actor,
        action=action,
        outcome=outcome,
        q=q,
        from_date=from_date,
        to_date=to_date,
        offset=offset,
        link=link,
    )

"""The web console's calendars: each calendar's days, and what a change would do before it is
made (a snow day, a day given back, a new year's iCalendar file): the runs of its jobs that
would move, be skipped or be added, from ``calendars.diff``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from belltower.calendars import parse_days
from belltower.errors import InvalidInput

from .errors import FieldErrors
from .http import client_of, console_of, principal_of
from .web import page, posted

router = APIRouter(include_in_schema=False)


@router.get("/calendars")
async def calendars_page(request: Request) -> Response:
    who = await principal_of(request)
    return page(request, "calendars.html", who, calendars=await console_of(request).calendars())


@router.get("/calendars/{name}")
async def calendar_page(request: Request, name: str) -> Response:
    who = await principal_of(request)
    calendar = await console_of(request).calendar(name)
    return page(request, "calendar.html", who, calendar=calendar, diff=None, form={})


@router.post("/calendars/{name}/diff")
async def calendar_diff_page(request: Request, name: str) -> Response:
    """The what-if: the form's days (or uploaded file) compared with the calendar as it is."""
    who, form = await posted(request)
    console = console_of(request)
    calendar = await console.calendar(name)
    shown = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    try:
        body = await _diff_body(form)
        diff = await console.calendar_diff(who, client_of(request), name, body)
    except (InvalidInput, FieldErrors) as exc:
        return page(
            request, "calendar.html", who, http_status=422, calendar=calendar, diff=None,
            form=shown, error=exc.message,
        )  # fmt: skip
    return page(request, "calendar.html", who, calendar=calendar, diff=diff, form=shown)


async def _diff_body(form: dict[str, Any]) -> dict[str, Any]:
    def days(field: str) -> list[Any]:
        text = str(form.get(field) or "").replace(",", " ").split()
        return [d.isoformat() for d in parse_days(text, field=field)] if text else []

    try:
        horizon = int(str(form.get("days") or "30"))
    except ValueError:
        raise InvalidInput("days", "is not a number", "1 to 366") from None
    body: dict[str, Any] = {
        "add_days": [{"day": d, "label": str(form.get("label") or "")} for d in days("add")],
        "remove_days": days("remove"),
        "replace": bool(form.get("replace")),
        "days": horizon,
    }
    upload = form.get("ics")
    if upload is not None and hasattr(upload, "read"):
        content = await upload.read()
        if content:
            body["ics"] = content.decode("utf-8", errors="replace")
    return body

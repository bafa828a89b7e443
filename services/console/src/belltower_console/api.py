"""The HTTP API, ``/api/v1``: jobs, calendars, runs, export/import, users, tokens and the audit log.

Authenticate with ``Authorization: Bearer <token>`` (scripts) or the console's session cookie
plus its ``X-CSRF-Token`` header on every state-changing request. Every refusal is an RFC 9457
``application/problem+json`` document ``{"type", "title", "status", "detail"}``, with
``"errors": [{"field", "message", "accepted"}]`` naming each refused field (401, 403, 404,
409, 413, 422, 429 with Retry-After, and 5xx without internals).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from belltower.api import RUNS_PAGE_MAX

from . import holds, listing, progress
from .actions import MAX_PER_PAGE, SORTS
from .http import (
    CSRF_HEADER,
    SESSION_COOKIE,
    MsgspecResponse,
    check_csrf,
    client_of,
    console_of,
    principal_of,
    secure_cookies,
    when,
)
from .pausing import pause_note_of
from .store import ROLES, Principal


async def caller(request: Request) -> Principal:
    who = await principal_of(request)
    await check_csrf(request, who, request.headers.get(CSRF_HEADER))
    return who


Caller = Annotated[Principal, Depends(caller)]
UUID_FORMAT = {"format": "uuid"}
JobId = Annotated[str, Path(description="The job's id", json_schema_extra=UUID_FORMAT)]
RunId = Annotated[str, Path(description="The run's id", json_schema_extra=UUID_FORMAT)]
TokenId = Annotated[str, Path(description="The token's id", json_schema_extra=UUID_FORMAT)]
CalendarName = Annotated[
    str,
    Path(
        description="The calendar's name, e.g. district-2026-27",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    ),
]
router = APIRouter(prefix="/api/v1", default_response_class=MsgspecResponse)

JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobDocument"}}},
    }
}


def body_of(schema: str, description: str | None = None) -> dict[str, Any]:
    """``openapi_extra`` for a JSON body of a msgspec type the contract declares."""
    body: dict[str, Any] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if description:
        body["description"] = description
    return {"requestBody": body}


def reply(value: Any, status: int = 200) -> Response:
    return MsgspecResponse(value, status_code=status)


def page_reply(
    path: str,
    params: dict[str, Any],
    items: list[Any],
    next_cursor: str | None,
    prev_cursor: str | None,
    **more: Any,
) -> Response:
    """A page of a list: its items, its sort and limit, the cursors and links of the pages
    after and before it, also as an RFC 8288 ``Link`` header."""
    links = {
        "next": listing.page_link(path, params, next_cursor),
        "prev": listing.page_link(path, params, prev_cursor),
    }
    body = {"items": items, **more, "limit": params["limit"], "sort": params["sort"]}
    body |= {"next_cursor": next_cursor, "prev_cursor": prev_cursor, "links": links}
    response = reply(body)
    if header := listing.link_header(links):
        response.headers["Link"] = header
    return response


# -- session ------------------------------------------------------------------------------------


class Login(BaseModel):
    username: str
    password: str


@router.post("/login", tags=["session"])
async def login(body: Login, request: Request) -> Response:
    """Start a console session (cookie); the reply carries the CSRF token to send back."""
    settings = request.app.state.settings
    session_id, csrf = await console_of(request).login(
        body.username, body.password, client_of(request)
    )
    response = reply({"username": body.username, "csrf_token": csrf})
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(settings.console_session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path="/",
    )
    return response


@router.post("/logout", tags=["session"], status_code=204)
async def logout(who: Caller, request: Request, response: Response) -> None:
    await console_of(request).logout(
        who, request.cookies.get(SESSION_COOKIE, ""), client_of(request)
    )
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/me", tags=["session"])
async def me(who: Caller) -> Response:
    return reply(
        {"username": who.username, "role": who.role, "via": who.via, "csrf_token": who.csrf_token}
    )


# -- jobs ---------------------------------------------------------------------------------------


@router.get("/job-types", tags=["jobs"])
async def job_types(who: Caller, request: Request) -> Response:
    """The installed job types, each with its parameters' JSON Schema (``params_schema``)."""
    return reply(await console_of(request).job_types())


@router.get("/jobs", tags=["jobs"])
async def list_jobs(
    who: Caller,
    request: Request,
    q: str = Query("", description="Text in the title, type or id"),
    type: str = Query("", description="Only this job type"),
    state: str = Query("", description="active, paused or not_installed"),
    sort: str = Query("title", description=f"{', '.join(SORTS)}; prefix '-' for descending"),
    cursor: str | None = Query(
        None, description="A page's next_cursor or prev_cursor (same sort and filters)"
    ),
    limit: int = Query(25, description=f"1 to {MAX_PER_PAGE}"),
    last_run: bool = Query(True, description="Give each job's last run (false: null, faster)"),
) -> Response:
    """A page of jobs, sorted, searched and filtered on the server; follow ``links.next``
    (also the ``Link`` header) for the next page. Keyset pages: a job added or removed between
    two requests never makes one appear twice or be skipped. A bad sort, cursor or limit is a
    400 problem naming the parameter and what it accepts."""
    found = await console_of(request).list_jobs(
        q=q,
        type_=type,
        state=state,
        sort=sort,
        cursor=cursor,
        limit=limit,
        with_last_run=last_run,
    )
    params: dict[str, Any] = {"q": q, "type": type, "state": state, "sort": sort, "limit": limit}
    if not last_run:
        params["last_run"] = "false"
    items = [{"job": r.job, "last_run": r.last_run} for r in found.items]
    return page_reply(
        "/api/v1/jobs", params, items, found.next_cursor, found.prev_cursor, total=found.total
    )


@router.post("/jobs", tags=["jobs"], status_code=201, openapi_extra=JOB_BODY)
async def create_job(
    who: Caller,
    request: Request,
    document: Annotated[dict[str, Any], Body()],
    dry_run: bool = False,
) -> Response:
    """Create a job from a job document; ``dry_run`` only checks it (200, nothing written)."""
    job = await console_of(request).create_job(who, client_of(request), document, dry_run)
    if job is None:
        return reply({"valid": True})
    created = reply(job, 201)
    created.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return created


@router.get("/jobs/{job_id}", tags=["jobs"])
async def get_job(job_id: JobId, who: Caller, request: Request) -> Response:
    return reply(await console_of(request).get_job(job_id))


@router.patch("/jobs/{job_id}", tags=["jobs"])
async def update_job(
    job_id: JobId,
    who: Caller,
    request: Request,
    patch: Annotated[dict[str, Any], Body(description="The fields of a job document to change")],
) -> Response:
    """Change the given fields; operators may set only ``paused``, editors every field."""
    return reply(await console_of(request).update_job(who, client_of(request), job_id, patch))


@router.delete("/jobs/{job_id}", tags=["jobs"], status_code=204)
async def delete_job(job_id: JobId, who: Caller, request: Request) -> None:
    await console_of(request).delete_job(who, client_of(request), job_id)


PAUSE_BODY = body_of("PauseBody", "Why the job is paused (optional)")
PAUSE_BODY["requestBody"]["required"] = False


@router.post("/jobs/{job_id}/pause", tags=["jobs"], openapi_extra=PAUSE_BODY)
async def pause_job(
    job_id: JobId, who: Caller, request: Request, body: Annotated[Any, Body()] = None
) -> Response:
    """Pause the job; the optional ``note`` (one line, at most 500 characters) is kept with the
    pause, who paused it and when, and shown in `jobs show` and the console."""
    note = pause_note_of(body)
    return reply(
        await console_of(request).set_paused(who, client_of(request), job_id, True, note=note)
    )


@router.post("/jobs/{job_id}/resume", tags=["jobs"])
async def resume_job(job_id: JobId, who: Caller, request: Request) -> Response:
    return reply(await console_of(request).set_paused(who, client_of(request), job_id, False))


@router.post("/jobs/{job_id}/run", tags=["jobs"], status_code=202)
async def run_job(
    job_id: JobId,
    who: Caller,
    request: Request,
    force: bool = Query(
        False,
        description="Run even while a run of the job is still going, overriding its overlap "
        "policy (skip refuses with 409 naming that run; buffer queues the run, state waiting)",
    ),
) -> Response:
    """Run the job once now; history records the user and their address as the trigger."""
    return reply(await console_of(request).run_now(who, client_of(request), job_id, force), 202)


@router.get("/jobs/{job_id}/preview", tags=["jobs"])
async def preview_job(
    job_id: JobId,
    who: Caller,
    request: Request,
    from_: str | None = Query(None, alias="from", description="ISO date-time; default now"),
    count: int = Query(10, ge=1, le=100),
) -> Response:
    """The job's next runs (``times``) and, as `belltower jobs preview` shows them, every
    occurrence between with why it is skipped (its calendar, window, weekdays, DST)."""
    shown = await console_of(request).job_preview(job_id, when(from_, "from"), count)
    times = [o.at for o in shown.occurrences if not o.skipped]
    return reply(
        {
            "job_id": job_id,
            "times": times,
            "description": shown.description,
            "occurrences": shown.occurrences,
        }
    )


@router.get("/jobs/{job_id}/why", tags=["jobs"])
async def why_job(
    job_id: JobId,
    who: Caller,
    request: Request,
    from_: str | None = Query(None, alias="from", description="Scheduled at or after (ISO)"),
    to: str | None = Query(None, description="Scheduled before (ISO)"),
    limit: int = Query(200, ge=1, le=10_000, description="At most this many, newest first"),
) -> Response:
    """Why did (or didn't) the job run: every occurrence in the ledger and what became of it,
    with the reason, and the job's pauses (who, from where, when)."""
    return reply(await console_of(request).why(job_id, when(from_, "from"), when(to, "to"), limit))


@router.post(
    "/schedule/preview",
    tags=["jobs"],
    openapi_extra=body_of("SchedulePreviewRequest", "A schedule as a job document holds it"),
)
async def preview_schedule(
    who: Caller, request: Request, body: Annotated[Any, Body()] = None
) -> Response:
    """The next runnable occurrences of a schedule without a job, with the skipped ones between
    and why (window, weekday, calendar, DST); an on-demand schedule has none."""
    return reply(await console_of(request).preview_schedule(body))


# -- school calendars ---------------------------------------------------------------------------


@router.get("/calendars", tags=["calendars"])
async def list_calendars(who: Caller, request: Request) -> Response:
    """Every school calendar with its number of non-school days."""
    return reply(await console_of(request).calendars())


@router.post(
    "/calendars", tags=["calendars"], status_code=201, openapi_extra=body_of("CalendarSpec")
)
async def create_calendar(
    who: Caller, request: Request, body: Annotated[Any, Body()] = None
) -> Response:
    """Define a school calendar, optionally with its first non-school days."""
    cal = await console_of(request).create_calendar(who, client_of(request), body)
    created = reply(cal, 201)
    created.headers["Location"] = f"/api/v1/calendars/{cal.name}"
    return created


@router.get("/calendars/{name}", tags=["calendars"])
async def get_calendar(name: CalendarName, who: Caller, request: Request) -> Response:
    """A calendar's non-school days in order, and the jobs that use it."""
    return reply(await console_of(request).calendar(name))


@router.patch("/calendars/{name}", tags=["calendars"], openapi_extra=body_of("CalendarChange"))
async def update_calendar(
    name: CalendarName, who: Caller, request: Request, body: Annotated[Any, Body()] = None
) -> Response:
    """Change a calendar's description (its days change through ``days`` and ``remove-days``)."""
    return reply(await console_of(request).update_calendar(who, client_of(request), name, body))


@router.post(
    "/calendars/{name}/remove-days",
    tags=["calendars"],
    openapi_extra=body_of("CalendarDaysRemoval"),
)
async def remove_calendar_days(
    name: CalendarName, who: Caller, request: Request, body: Annotated[Any, Body()] = None
) -> Response:
    """Take non-school days out of a calendar; a day it does not have is no error."""
    return reply(
        await console_of(request).remove_calendar_days(who, client_of(request), name, body)
    )


@router.delete("/calendars/{name}", tags=["calendars"], status_code=204)
async def delete_calendar(name: CalendarName, who: Caller, request: Request) -> None:
    """Delete a calendar no job uses (422 naming the jobs otherwise)."""
    await console_of(request).delete_calendar(who, client_of(request), name)


@router.post(
    "/calendars/{name}/days", tags=["calendars"], openapi_extra=body_of("CalendarDaysChange")
)
async def add_calendar_days(
    name: CalendarName, who: Caller, request: Request, body: Annotated[Any, Body()] = None
) -> Response:
    """Add non-school days (a day already there gets the new label); ``replace`` makes them
    the calendar's only days."""
    return reply(await console_of(request).add_calendar_days(who, client_of(request), name, body))


@router.post(
    "/calendars/{name}/import", tags=["calendars"], openapi_extra=body_of("CalendarIcsImport")
)
async def import_calendar(
    name: CalendarName, who: Caller, request: Request, body: Annotated[Any, Body()] = None
) -> Response:
    """Non-school days from an iCalendar file's text: all-day events, multi-day ranges and
    recurring holidays (expanded from ``since`` within ``horizon_days``), each labelled with its
    event; ``create`` makes the calendar first when it does not exist."""
    return reply(await console_of(request).import_calendar(who, client_of(request), name, body))


@router.post(
    "/calendars/{name}/diff", tags=["calendars"], openapi_extra=body_of("CalendarDiffBody")
)
async def diff_calendar(
    name: CalendarName, who: Caller, request: Request, body: Annotated[Any, Body()] = None
) -> Response:
    """What a calendar change would do, before it is saved: for every job that uses the
    calendar, the runs of the next ``days`` days (default 30) that would move (next school
    day), be skipped or be added, from the schedule engine run with the days as they are and as
    they would be. Give ``add_days``/``remove_days`` (a snow day, a day given back) or an
    iCalendar file's text (``ics``, with ``replace`` for a new year's calendar). Nothing is
    saved; any role may ask."""
    return reply(await console_of(request).calendar_diff(who, client_of(request), name, body))


# -- runs ---------------------------------------------------------------------------------------


@router.get("/runs", tags=["runs"])
async def list_runs(
    who: Caller,
    request: Request,
    job_id: str | None = None,
    status: str | None = Query(
        None,
        description="succeeded, failed, timed_out, dead_lettered, lost, abandoned, held or running",
    ),
    from_: str | None = Query(None, alias="from", description="Scheduled at or after (ISO)"),
    to: str | None = Query(None, description="Scheduled before (ISO)"),
    q: str = Query("", description="Text in the job's title or the run's summary"),
    sort: str = Query(
        "-scheduled_for",
        description="scheduled_for, finished_at or duration_ms; prefix '-' for descending",
    ),
    cursor: str | None = Query(
        None, description="A page's next_cursor or prev_cursor (same sort and filters)"
    ),
    limit: int = Query(50, description=f"1 to {RUNS_PAGE_MAX}"),
) -> Response:
    """A page of runs, newest first unless ``sort`` says otherwise, sorted, searched and
    filtered on the server; follow ``links.next`` (also the ``Link`` header). A bad sort,
    cursor or limit is a 400 problem naming the parameter and what it accepts."""
    found = await console_of(request).runs_page(
        job_id=job_id,
        status=status,
        since=when(from_, "from"),
        until=when(to, "to"),
        q=q,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    params: dict[str, object] = {"job_id": job_id, "status": status, "from": from_, "to": to}
    params |= {"q": q, "sort": sort, "limit": limit}
    return page_reply("/api/v1/runs", params, found.runs, found.cursor, found.prev_cursor)


@router.get("/runs/{run_id}", tags=["runs"])
async def get_run(run_id: RunId, who: Caller, request: Request) -> Response:
    """One run with its output as text and, when the job made one, as HTML."""
    return reply(await console_of(request).run(run_id))


@router.post("/runs/{run_id}/release", tags=["runs"])
async def release_run(run_id: RunId, who: Caller, request: Request) -> Response:
    """Release a run held by its safety thresholds (editor or admin): starts one new run of
    the job that applies the held change once (``release_run_id``); when a run of the job is
    going, the next run applies it. Releasing it again is refused with 409."""
    return reply(await holds.release(console_of(request), who, client_of(request), run_id))


# -- export and import --------------------------------------------------------------------------


@router.get("/export", tags=["transfer"], response_class=Response)
async def export(
    who: Caller, request: Request, format: Literal["yaml", "json"] = "yaml"
) -> Response:
    """Every job definition, as YAML documents or a JSON list, ready for import."""
    text = await console_of(request).export(format)
    media = "application/json" if format == "json" else "application/yaml"
    return Response(
        text,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="belltower-jobs.{format}"'},
    )


@router.post(
    "/import",
    tags=["transfer"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/JobDocument"},
                    }
                },
            },
        }
    },
)
async def import_jobs(
    who: Caller,
    request: Request,
    dry_run: bool = False,
    format: Literal["yaml", "json"] | None = None,
) -> Response:
    """Check every document, then apply all or none; ``dry_run`` shows create/change/unchanged.
    More than 1,000 documents go to the scheduler in staged batches, applied in one
    transaction at the end. With ``Accept: application/x-ndjson`` the reply is a stream of
    ``{"progress": {"done", "total"}}`` lines and a last ``{"result": ImportResult}`` (or
    ``{"problem": ...}``) line, status 200 either way. The body may be up to
    BELLTOWER_CONSOLE_MAX_IMPORT_BYTES (64 MiB), else 413."""
    text = (await request.body()).decode("utf-8", errors="replace")
    if format is None and "json" in request.headers.get("content-type", ""):
        format = "json"
    console, client = console_of(request), client_of(request)
    if "application/x-ndjson" in request.headers.get("accept", ""):
        await console.require(who, "editor", client, "jobs.import")
        return StreamingResponse(
            progress.ndjson_progress(
                lambda progress: console.import_jobs(who, client, text, format, dry_run, progress)
            ),
            media_type="application/x-ndjson",
        )
    result = await console.import_jobs(who, client, text, format, dry_run)
    return reply(result, 422 if result.errors else 200)


# -- users, tokens, audit (admin) ----------------------------------------------------------------


class NewUser(BaseModel):
    username: str
    password: str
    role: Literal["viewer", "operator", "editor", "admin"]


class UserChange(BaseModel):
    role: Literal["viewer", "operator", "editor", "admin"] | None = None
    password: str | None = None
    disabled: bool | None = None
    revoke_tokens: bool = Field(
        False, description="With a new password: also revoke every API token of the user"
    )


class NewToken(BaseModel):
    name: str
    username: str | None = Field(None, description="Whose token; default the caller")
    expires_in_days: float = 90


@router.get("/settings", tags=["admin"])
async def site_settings(who: Caller, request: Request) -> Response:
    """Run-time settings; ``null`` leaves a setting to the services' environment."""
    return reply(await console_of(request).site_settings(who, client_of(request)))


class SettingsChange(BaseModel):
    result_mail_only_failures: bool | None = Field(
        None,
        description="Result e-mails only for unsuccessful runs unless a job says otherwise; "
        "null: BELLTOWER_RESULT_MAIL_ONLY_FAILURES decides",
    )


@router.patch("/settings", tags=["admin"])
async def change_site_settings(body: SettingsChange, who: Caller, request: Request) -> Response:
    changes = body.model_dump(exclude_unset=True)
    return reply(await console_of(request).change_site_settings(who, client_of(request), changes))


@router.get("/users", tags=["admin"])
async def users(who: Caller, request: Request) -> Response:
    return reply(await console_of(request).users(who, client_of(request)))


@router.post("/users", tags=["admin"], status_code=201)
async def add_user(body: NewUser, who: Caller, request: Request) -> Response:
    return reply(
        await console_of(request).add_user(
            who, client_of(request), body.username, body.password, body.role
        ),
        201,
    )


@router.patch("/users/{username}", tags=["admin"])
async def update_user(username: str, body: UserChange, who: Caller, request: Request) -> Response:
    """Change a user's role, password or state; a new password ends the user's sessions (and,
    with ``revoke_tokens``, their API tokens) and clears their failed-login back-off."""
    changed = reply(
        await console_of(request).update_user(
            who,
            client_of(request),
            username,
            role=body.role,
            password=body.password,
            disabled=body.disabled,
        )
    )
    if body.revoke_tokens and body.password:
        console = console_of(request)
        revoked = await console.store.revoke_user_tokens(username)
        await console.audit(
            who,
            client_of(request),
            "tokens.revoke",
            target=username,
            detail=f"{revoked} API tokens revoked with the new password",
        )
    return changed


@router.get("/tokens", tags=["admin"])
async def tokens(who: Caller, request: Request) -> Response:
    return reply(await console_of(request).tokens(who, client_of(request)))


@router.post("/tokens", tags=["admin"], status_code=201)
async def add_token(body: NewToken, who: Caller, request: Request) -> Response:
    """A new API token; its secret is in this reply only, and stored only hashed."""
    return reply(
        await console_of(request).add_token(
            who, client_of(request), body.username or who.username, body.name, body.expires_in_days
        ),
        201,
    )


@router.delete("/tokens/{token_id}", tags=["admin"], status_code=204)
async def revoke_token(token_id: TokenId, who: Caller, request: Request) -> None:
    await console_of(request).revoke_token(who, client_of(request), token_id)


@router.get("/audit", tags=["admin"])
async def audit(
    who: Caller,
    request: Request,
    actor: str | None = None,
    action: str | None = Query(None, description="Action or its prefix, e.g. jobs."),
    outcome: Literal["ok", "denied", "failed"] | None = None,
    q: str | None = Query(None, description="Text in the target, detail or before/after"),
    from_: str | None = Query(None, alias="from"),
    to: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=1_000_000_000),
) -> Response:
    items, total = await console_of(request).audit_log(
        who,
        client_of(request),
        actor=actor,
        action=action,
        outcome=outcome,
        text=q,
        since=when(from_, "from"),
        until=when(to, "to"),
        limit=limit,
        offset=offset,
    )
    return reply({"items": items, "total": total, "limit": limit, "offset": offset})


__all__ = ["ROLES", "router"]

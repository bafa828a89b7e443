"""The web console: Jobs, Execution history and Import/export (the admin pages: ``admin_pages``).

Server-rendered pages (Jinja2) over the same actions as the API. Every state-changing form
carries the session's CSRF token; a viewer is shown no control it could not use.
"""

from __future__ import annotations

import contextlib
import secrets
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from belltower.api import FieldError, Job, JobTypeInfo
from belltower.errors import BelltowerError, Conflict, InvalidInput, NotFound
from belltower.events import RUN_STATUSES as EVENT_RUN_STATUSES
from belltower.schedule import WEEKDAYS, Daily, OnDemand, zone

from . import forms, holds, listing, requested
from .actions import SORTS, STATES
from .errors import FieldErrors, Throttled, Unauthenticated
from .http import (
    SESSION_COOKIE,
    check_csrf,
    client_of,
    console_of,
    principal_of,
    same_secret,
    secure_cookies,
    status_and_errors,
    when,
)
from .limits import check_json, check_yaml, form_problems
from .store import ROLES, Principal

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(
    directory=str(resources.files("belltower_console").joinpath("templates"))
)
RUN_STATUSES = (*EVENT_RUN_STATUSES, "running")
PAGE_SIZE = 25


def weekdays_of(job: Job) -> str:
    rule = job.schedule.rule
    if isinstance(rule, Daily):
        days = rule.weekdays or list(WEEKDAYS)
        return "every day" if len(days) == 7 else ", ".join(d.capitalize() for d in days)
    return "—"


def in_zone(value: datetime | None, tz: str) -> datetime | None:
    return value.astimezone(zone(tz)) if value else value


def on_demand(job: Job) -> bool:
    return isinstance(job.schedule.rule, OnDemand)


templates.env.filters["in_zone"] = in_zone
templates.env.globals.update(
    weekdays_of=weekdays_of, on_demand=on_demand, ROLES=ROLES, WEEKDAYS=WEEKDAYS
)


def page(
    request: Request, name: str, who: Principal | None, http_status: int = 200, **context: Any
) -> HTMLResponse:
    context.update(request=request, who=who, path=request.url.path)
    response = templates.TemplateResponse(request, name, context, status_code=http_status)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; frame-src 'self'; img-src 'self' data:; style-src 'self'; "
        "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def back(path: str, notice: str | None = None) -> RedirectResponse:
    target = path + (
        ("&" if "?" in path else "?") + urlencode({"notice": notice}) if notice else ""
    )
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, exc: Exception) -> Any:
    if isinstance(exc, Unauthenticated):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    status, message, errors = status_and_errors(exc)
    who = getattr(request.state, "principal", None)
    return page(
        request,
        "error.html",
        who,
        http_status=status,
        status_code=status,
        message=message,
        errors=errors,
    )


async def posted(request: Request) -> tuple[Principal, dict[str, Any]]:
    """The caller of a form post and the form, after its CSRF token is checked."""
    who = await principal_of(request)
    form = await request.form()
    refused = form_problems(form.multi_items())
    if refused:
        raise FieldErrors(refused)
    await check_csrf(request, who, str(form.get("csrf_token") or ""))
    return who, {k: v for k, v in form.items()}


# -- session ------------------------------------------------------------------------------------


LOGIN_CSRF_COOKIE = "belltower_login_csrf"
"""Double-submit token of the login form: a page on another site cannot read the cookie, so it
cannot post a login that would sign the victim's browser in to the attacker's account."""


def _login_page(request: Request, http_status: int = 200, **context: Any) -> Response:
    token = secrets.token_urlsafe(32)
    response = page(
        request, "login.html", None, http_status=http_status, login_csrf=token, **context
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
        path="/login",
    )
    return response


@router.get("/login")
async def login_form(request: Request, next: str = "/jobs") -> Response:
    return _login_page(request, next=_safe_next(next), error=None)


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/jobs"


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    username, password = str(form.get("username") or ""), str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or "/jobs"))
    bad_fields = form_problems(form.multi_items())
    if bad_fields:
        return _login_page(
            request,
            http_status=422,
            next=target,
            error="; ".join(f"{e.field}: {e.message}" for e in bad_fields),
        )
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not same_secret(expected, str(form.get("login_csrf") or "")):
        return _login_page(
            request,
            http_status=403,
            next=target,
            error="This login form has expired or did not come from this site; please log in again.",
            username=username,
        )
    try:
        session_id, _ = await console_of(request).login(username, password, client_of(request))
    except Unauthenticated as exc:
        return _login_page(
            request, http_status=401, next=target, error=exc.message, username=username
        )
    except Throttled as exc:
        refused = _login_page(
            request, http_status=429, next=target, error=exc.message, username=username
        )
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    settings = request.app.state.settings
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
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


@router.post("/logout")
async def logout(request: Request) -> Response:
    who, _ = await posted(request)
    await console_of(request).logout(
        who, request.cookies.get(SESSION_COOKIE, ""), client_of(request)
    )
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/jobs", status_code=303)


# -- jobs ---------------------------------------------------------------------------------------


@router.get("/jobs")
async def jobs(
    request: Request,
    q: str = "",
    type: str = "",
    state: str = "",
    sort: str = "title",
    cursor: str = "",
    notice: str | None = None,
) -> Response:
    """The Jobs tab: one keyset page of the jobs, sorted and searched by the scheduler."""
    who = await principal_of(request)
    console = console_of(request)
    found = await console.list_jobs(
        q=q, type_=type, state=state, sort=sort, cursor=cursor or None, limit=PAGE_SIZE
    )
    types = await console.job_types()
    decisions = await requested.pending(console)
    kept = {"q": q, "type": type, "state": state, "sort": sort}

    def link(**change: Any) -> str:
        params = kept | {"cursor": cursor} | change
        return "/jobs?" + urlencode({k: v for k, v in params.items() if v not in ("", None)})

    return page(
        request,
        "jobs.html",
        who,
        found=found,
        types=types,
        sorts=SORTS,
        states=STATES,
        link=link,
        next_link=listing.page_link("/jobs", kept, found.next_cursor),
        prev_link=listing.page_link("/jobs", kept, found.prev_cursor),
        q=q,
        type=type,
        state=state,
        sort=sort,
        notice=notice,
        decisions=decisions,
    )


async def _type_info(request: Request, name: str) -> JobTypeInfo | None:
    return next((t for t in await console_of(request).job_types() if t.name == name), None)


@router.get("/jobs/new")
async def new_job(request: Request, type: str = "", q: str = "") -> Response:
    who = await principal_of(request)
    await console_of(request).require(who, "editor", client_of(request), "jobs.create")
    info = await _type_info(request, type) if type else None
    if info is None:
        types = await console_of(request).job_types()
        groups = forms.type_groups(types, q)
        shown = sum(len(members) for _, members in groups)
        return page(
            request, "choose_type.html", who, groups=groups, q=q, shown=shown, total=len(types)
        )
    return _job_form(request, who, info, None, forms.values_of(None, info), {})


@router.get("/job-types/{name}")
async def job_type_page(request: Request, name: str) -> Response:
    """What a job type does, the seed task it rebuilds and its parameters; any signed-in role."""
    who = await principal_of(request)
    info = await _type_info(request, name)
    if info is None:
        raise NotFound(f"no job type {name!r} is installed")
    return page(
        request,
        "job_type.html",
        who,
        info=info,
        fields=forms.param_fields(info),
        can_create=who.may("editor"),
    )


def _job_form(
    request: Request,
    who: Principal,
    info: JobTypeInfo,
    job: Job | None,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    upcoming: list[datetime] | None = None,
) -> Response:
    return page(
        request,
        "job_form.html",
        who,
        http_status=status,
        upcoming=upcoming,
        info=info,
        job=job,
        fields=forms.param_fields(info),
        values=values,
        errors=errors,
        kinds=forms.KINDS,
        keep=forms.KEEP,
        limits=forms.LIMIT_FIELDS,
    )


async def _submit_job(request: Request, job: Job | None, type_name: str) -> Response:
    who, form = await posted(request)
    console = console_of(request)
    info = await _type_info(request, type_name)
    if info is None:
        raise InvalidInput(
            "type", f"job type {type_name!r} is not installed", "a type listed under New job"
        )
    multi = await request.form()
    weekdays = [d for d in multi.getlist("weekdays") if d in WEEKDAYS]
    doc, local_errors = forms.read_form(form, [str(d) for d in weekdays], info)
    values = {**form, "weekdays": weekdays, "paused": "paused" in form}
    if job is not None and not forms.form_can_express(job.schedule):
        values["kept_schedule"] = job.schedule_text
    if "preview" in form:
        schedule_errors = [e for e in local_errors if e.field in forms.SCHEDULE_FIELDS]
        if "schedule" not in doc and job is not None:  # the stored schedule, kept
            upcoming = [] if job.paused else await console.preview(job.id, None, 10)
        else:
            upcoming = (
                []
                if schedule_errors
                else forms.upcoming(doc["schedule"], 10, job.id if job is not None else "")
            )
        return _job_form(
            request, who, info, job, values, forms.by_field(schedule_errors), upcoming=upcoming
        )
    try:
        if job is None:
            created = await console.create_job(
                who, client_of(request), doc, dry_run=bool(local_errors)
            )
        else:
            patch = {k: v for k, v in doc.items() if k != "type"}
            created = await console.update_job(
                who, client_of(request), job.id, patch, dry_run=bool(local_errors)
            )
        remote: list[FieldError] = []
    except FieldErrors as exc:
        created, remote = None, exc.errors
    if local_errors:
        local = {e.field for e in local_errors}
        remote = [e for e in remote if not (e.field.startswith("schedule") or e.field in local)]
    if local_errors or remote:
        return _job_form(
            request, who, info, job, values, forms.by_field(local_errors + remote), status=422
        )
    assert created is not None
    return back(f"/jobs/{created.id}", "Saved.")


@router.post("/jobs/new")
async def create_job(request: Request, type: str = "") -> Response:
    return await _submit_job(request, None, type)


@router.get("/jobs/{job_id}")
async def job_detail(request: Request, job_id: str, notice: str | None = None) -> Response:
    who = await principal_of(request)
    return await _job_page(request, who, job_id, notice)


async def _job_page(
    request: Request,
    who: Principal,
    job_id: str,
    notice: str | None = None,
    refused: str | None = None,
    http_status: int = 200,
) -> Response:
    console = console_of(request)
    job = await console.get_job(job_id)
    upcoming = await console.preview(job_id, None, 10) if not job.paused else []
    runs = await console.runs(job_id=job_id, limit=10)
    decisions = await requested.pending(console, job_id)
    return page(
        request, "job.html", who, http_status=http_status, job=job, upcoming=upcoming,
        runs=runs, notice=notice, refused=refused, decisions=decisions,
    )  # fmt: skip


@router.get("/jobs/{job_id}/edit")
async def edit_job(request: Request, job_id: str) -> Response:
    who = await principal_of(request)
    console = console_of(request)
    await console.require(who, "editor", client_of(request), "jobs.update", job_id)
    job = await console.get_job(job_id)
    info = await _type_info(request, job.type)
    if info is None:
        raise InvalidInput(
            "type",
            f"job type {job.type!r} is not installed, so its parameters cannot be edited",
            "start the worker that provides it, or delete this job",
        )
    return _job_form(request, who, info, job, forms.values_of(job, info), {})


@router.post("/jobs/{job_id}/edit")
async def update_job(request: Request, job_id: str) -> Response:
    job = await console_of(request).get_job(job_id)
    return await _submit_job(request, job, job.type)


@router.post("/jobs/{job_id}/run")
async def run_job(request: Request, job_id: str) -> Response:
    """Run now; while a run of the job is still going, a refusal (overlap: skip) is shown on
    the job's page with a "Run anyway" button, and a queued run (overlap: buffer) says so."""
    who, form = await posted(request)
    force = form.get("force") == "1"
    try:
        result = await console_of(request).run_now(who, client_of(request), job_id, force)
    except Conflict as exc:
        return await _job_page(request, who, job_id, refused=exc.message, http_status=409)
    if result.state == "waiting":
        return back(f"/jobs/{job_id}", f"Run queued: {result.note}")
    return back(
        f"/history/{result.run_id}", "Run started: this page shows it once a worker picks it up."
    )


@router.post("/jobs/{job_id}/pause")
async def pause_job(request: Request, job_id: str) -> Response:
    who, form = await posted(request)
    note = str(form.get("note") or "") or None
    await console_of(request).set_paused(who, client_of(request), job_id, True, note=note)
    return back(_safe_next(str(form.get("next") or f"/jobs/{job_id}")), "Paused.")


@router.post("/jobs/{job_id}/resume")
async def resume_job(request: Request, job_id: str) -> Response:
    who, form = await posted(request)
    await console_of(request).set_paused(who, client_of(request), job_id, False)
    return back(_safe_next(str(form.get("next") or f"/jobs/{job_id}")), "Resumed.")


@router.get("/jobs/{job_id}/delete")
async def confirm_delete(request: Request, job_id: str) -> Response:
    who = await principal_of(request)
    await console_of(request).require(who, "editor", client_of(request), "jobs.delete", job_id)
    return page(request, "confirm_delete.html", who, job=await console_of(request).get_job(job_id))


@router.post("/jobs/{job_id}/delete")
async def delete_job(request: Request, job_id: str) -> Response:
    who, _ = await posted(request)
    job = await console_of(request).get_job(job_id)
    await console_of(request).delete_job(who, client_of(request), job_id)
    return back("/jobs", f"Deleted “{job.title}”.")


# -- history ------------------------------------------------------------------------------------


@router.get("/history")
async def history(
    request: Request,
    job_id: str = "",
    status: str = "",
    from_date: str = "",
    to_date: str = "",
    q: str = "",
    sort: str = "-scheduled_for",
    cursor: str = "",
) -> Response:
    """Execution history: one keyset page of runs, sorted and searched by history in SQL."""
    who = await principal_of(request)
    console = console_of(request)
    until = when(to_date, "to")
    if until is not None and len(to_date.strip()) == 10:
        until += timedelta(days=1)
    found = await console.runs_page(
        job_id=job_id or None,
        status=status or None,
        since=when(from_date, "from"),
        until=until,
        q=q,
        sort=sort,
        cursor=cursor or None,
        limit=PAGE_SIZE,
    )
    # The job filter offers the first jobs by title (and the one chosen); with thousands of
    # jobs, search by title with q instead.
    jobs = (await console.list_jobs(limit=200, with_last_run=False)).items
    choices = [r.job for r in jobs]
    if job_id and all(j.id != job_id for j in choices):
        with contextlib.suppress(BelltowerError):
            choices.insert(0, await console.get_job(job_id))
    kept = {
        "job_id": job_id, "status": status, "from_date": from_date, "to_date": to_date,
        "q": q, "sort": sort if sort != "-scheduled_for" else "",
    }  # fmt: skip
    return page(
        request,
        "history.html",
        who,
        runs=found.runs,
        jobs=choices,
        statuses=RUN_STATUSES,
        job_id=job_id,
        status=status,
        from_date=from_date,
        to_date=to_date,
        q=q,
        sort=sort,
        next_link=listing.page_link("/history", kept, found.cursor),
        prev_link=listing.page_link("/history", kept, found.prev_cursor),
        first_link=listing.first_link("/history", kept) if found.prev_cursor else None,
    )


@router.get("/history/{run_id}")
async def run_detail(request: Request, run_id: str, notice: str | None = None) -> Response:
    who = await principal_of(request)
    try:
        run = await console_of(request).run(run_id)
    except NotFound:
        if notice:
            return page(request, "run_pending.html", who, run_id=run_id, notice=notice)
        raise
    return page(request, "run.html", who, run=run, notice=notice)


@router.post("/history/{run_id}/release")
async def release_run(request: Request, run_id: str) -> Response:
    """The run page's Release button (held runs): starts the run that applies the held change."""
    who, _ = await posted(request)
    try:
        done = await holds.release(console_of(request), who, client_of(request), run_id)
    except Conflict as exc:
        return back(f"/history/{run_id}", f"Not released: {exc.message}")
    if done.release_run_id:
        return back(
            f"/history/{done.release_run_id}", "Released: this run applies the held change."
        )
    return back(f"/history/{run_id}", "Released: the job's next run applies the held change.")


@router.get("/history/{run_id}/output.html")
async def run_output_html(request: Request, run_id: str) -> Response:
    """A run's HTML output on its own, for a sandboxed frame: no scripts, no outside requests."""
    await principal_of(request)
    run = await console_of(request).run(run_id)
    return HTMLResponse(
        run.output_html or "<p>This run has no HTML output.</p>",
        headers={
            "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            "X-Content-Type-Options": "nosniff",
        },
    )


# -- import and export --------------------------------------------------------------------------


@router.get("/transfer")
async def transfer_page(request: Request) -> Response:
    who = await principal_of(request)
    return page(request, "transfer.html", who, result=None, text="")


@router.post("/transfer")
async def import_jobs(request: Request) -> Response:
    who, form = await posted(request)
    upload = form.get("file")
    text = str(form.get("text") or "")
    if upload is not None and hasattr(upload, "read"):
        content = await upload.read()
        if content:
            text = content.decode("utf-8", errors="replace")
    dry_run = "apply" not in form
    try:
        if text.lstrip()[:1] in ("[", "{"):
            refused = check_json(text.encode())
            if refused:
                raise FieldErrors(refused)
        else:
            check_yaml(text)
        result = await console_of(request).import_jobs(who, client_of(request), text, None, dry_run)
    except (InvalidInput, FieldErrors) as exc:
        return page(
            request,
            "transfer.html",
            who,
            http_status=422,
            result=None,
            text=text,
            error=exc.message,
        )
    return page(
        request,
        "transfer.html",
        who,
        http_status=422 if result.errors else 200,
        result=result,
        text=text,
    )


__all__ = ["error_page", "router"]

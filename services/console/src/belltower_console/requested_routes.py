"""The HTTP API and the pages of backfills and catch-up decisions (``requested``'s actions).

API: ``POST /api/v1/jobs/{id}/backfill`` (``dry_run`` lists, else dispatches: 202),
``POST /api/v1/jobs/{id}/decision``, ``GET /api/v1/jobs/{id}/decision`` and
``GET /api/v1/decisions``. Pages: a backfill form that shows the runs before a confirm button
dispatches them, and the decision banner's three answers.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from belltower import decisions as dc
from belltower.errors import InvalidInput
from belltower.schedule import parse_datetime

from . import requested
from .api import Caller, JobId, body_of, reply
from .http import MsgspecResponse, client_of, console_of, principal_of
from .web import _safe_next, back, page, posted, templates

api_router = APIRouter(prefix="/api/v1", default_response_class=MsgspecResponse)
pages = APIRouter(include_in_schema=False)
templates.env.globals["decision_sentence"] = dc.sentence


@api_router.post(
    "/jobs/{job_id}/backfill",
    tags=["jobs"],
    openapi_extra=body_of("BackfillBody", "The range [from, to) and the bound"),
)
async def backfill_job(
    job_id: JobId, who: Caller, request: Request, body: Annotated[Any, Body()] = None
) -> Response:
    """The occurrences the job's schedule had in ``[from, to)`` (calendar, window, DST policy
    applied): ``dry_run`` lists them (200), else those not run yet are dispatched with trigger
    ``backfill`` (202); more than ``max`` (default 1,000, at most 10,000) is refused (422)."""
    result = await requested.backfill(console_of(request), who, client_of(request), job_id, body)
    return reply(result, 200 if result.dry_run else 202)


@api_router.post("/jobs/{job_id}/decision", tags=["jobs"], openapi_extra=body_of("DecisionBody"))
async def decide_job(
    job_id: JobId, who: Caller, request: Request, body: Annotated[Any, Body()] = None
) -> Response:
    """Answer the job's catch-up decision (policy ask): ``latest`` runs the latest missed run
    and skips the others, ``all`` runs every one, ``none`` skips them; 409 when nothing awaits
    (answered already, or expired)."""
    return reply(await requested.decide(console_of(request), who, client_of(request), job_id, body))


@api_router.get("/jobs/{job_id}/decision", tags=["jobs"])
async def job_decision(job_id: JobId, who: Caller, request: Request) -> Response:
    """The job's missed runs awaiting a decision: an empty list, or one entry."""
    return reply(await requested.pending(console_of(request), job_id))


@api_router.get("/decisions", tags=["jobs"])
async def decisions(who: Caller, request: Request) -> Response:
    """Every job whose missed runs await a decision (the first 100, oldest first)."""
    return reply(await requested.pending(console_of(request)))


REPLIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/jobs/{job_id}/backfill"): {
        "200": {"$ref": "#/components/schemas/BackfillResult"},
        "202": {"$ref": "#/components/schemas/BackfillResult"},
    },
    ("post", "/jobs/{job_id}/decision"): {"200": {"$ref": "#/components/schemas/DecisionResult"}},
    ("get", "/jobs/{job_id}/decision"): {
        "200": {"type": "array", "items": {"$ref": "#/components/schemas/PendingDecision"}}
    },
    ("get", "/decisions"): {
        "200": {"type": "array", "items": {"$ref": "#/components/schemas/PendingDecision"}}
    },
}
"""What the OpenAPI document says these operations answer (``contract.improve`` adds them)."""


# -- pages --------------------------------------------------------------------------------------


def _form_body(form: dict[str, Any], tz: str, dry_run: bool) -> dict[str, Any]:
    """The backfill form as the API's body: times without an offset are in the job's zone."""
    body: dict[str, Any] = {"dry_run": dry_run}
    for name in ("from", "to"):
        body[name] = parse_datetime(str(form.get(name) or ""), tz, name).isoformat()
    for name in ("max", "priority"):
        text = str(form.get(name) or "").strip()
        if text:
            if not text.isdigit() or len(text) > 9:
                raise InvalidInput(name, f"{text!r} is not a whole number", "e.g. 1000")
            body[name] = int(text)
    return body


@pages.get("/jobs/{job_id}/backfill")
async def backfill_form(request: Request, job_id: str) -> Response:
    who = await principal_of(request)
    console = console_of(request)
    await console.require(who, "editor", client_of(request), "jobs.backfill", job_id)
    job = await console.get_job(job_id)
    return page(request, "backfill.html", who, job=job, form={}, shown=None)


@pages.post("/jobs/{job_id}/backfill")
async def backfill_post(request: Request, job_id: str) -> Response:
    """Without ``confirm`` the runs are shown (a dry run); with it they are dispatched."""
    who, form = await posted(request)
    console = console_of(request)
    job = await console.get_job(job_id)
    confirmed = form.get("confirm") == "1"
    body = _form_body(form, job.schedule.tz, dry_run=not confirmed)
    result = await requested.backfill(console, who, client_of(request), job_id, body)
    if not confirmed:
        return page(request, "backfill.html", who, job=job, form=form, shown=result)
    return back(
        f"/jobs/{job_id}",
        f"Backfill: {result.to_run} run(s) dispatched; {result.already} had run already.",
    )


@pages.post("/jobs/{job_id}/decision")
async def decision_post(request: Request, job_id: str) -> Response:
    who, form = await posted(request)
    result = await requested.decide(
        console_of(request), who, client_of(request), job_id, {"choice": form.get("choice")}
    )
    done = f"{len(result.run)} run(s) dispatched, {result.skipped} skipped."
    return back(_safe_next(str(form.get("next") or f"/jobs/{job_id}")), f"Decided: {done}")

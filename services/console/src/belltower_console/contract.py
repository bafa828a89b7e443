"""The OpenAPI document as the API really is: the reply types of every operation (from the
msgspec types the services send), the two ways to authenticate, and every refusal as the RFC 9457
problem document the console sends."""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from belltower.api import (
    Calendar,
    CalendarDiff,
    CalendarImport,
    CalendarSpec,
    CalendarSummary,
    FieldError,
    ImportResult,
    Job,
    JobDocument,
    JobTypeInfo,
    RunNowResult,
    RunRecord,
    SchedulePreview,
    SchedulePreviewRequest,
    WhyResult,
)
from belltower.backfill import BackfillBody, BackfillResult
from belltower.decisions import DecisionBody, DecisionResult, PendingDecision

from .actions import (
    CalendarChange,
    CalendarDaysChange,
    CalendarDaysRemoval,
    CalendarDiffBody,
    CalendarIcsImport,
)
from .http import CSRF_HEADER, PROBLEM_MEDIA, SESSION_COOKIE
from .pausing import PauseBody
from .requested_routes import REPLIES as REQUESTED_REPLIES

REF = "#/components/schemas/{name}"


def ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(name=name)}


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    schema["required"] = list(props) if required is None else required
    return schema


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
WHEN = {"type": "string", "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
ROLE = {"type": "string", "enum": ["viewer", "operator", "editor", "admin"]}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


EXTRA_SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; ``errors`` names each refused field",
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": STR,
            "status": INT,
            "detail": STR,
            "errors": {"type": "array", "items": ref("FieldError")},
        },
        "required": ["type", "title", "status", "detail"],
    },
    "Session": obj(username=STR, csrf_token=STR),
    "Me": obj(
        username=STR,
        role=ROLE,
        via={"type": "string", "enum": ["session", "token"]},
        csrf_token=nullable(STR),
    ),
    "JobListing": obj(job=ref("Job"), last_run=nullable(ref("RunRecord"))),
    "PageLinks": obj(next=nullable(STR), prev=nullable(STR)),
    "JobPage": obj(
        items={"type": "array", "items": ref("JobListing")},
        total=INT,
        limit=INT,
        sort=STR,
        next_cursor=nullable(STR),
        prev_cursor=nullable(STR),
        links=ref("PageLinks"),
    ),
    "Valid": obj(valid=BOOL),
    "Preview": obj(
        job_id=UUID,
        times={"type": "array", "items": WHEN},
        description=STR,
        occurrences={"type": "array", "items": ref("PreviewOccurrence")},
    ),
    "RunPage": obj(
        items={"type": "array", "items": ref("RunRecord")},
        limit=INT,
        sort=STR,
        next_cursor=nullable(STR),
        prev_cursor=nullable(STR),
        links=ref("PageLinks"),
    ),
    "SiteSettings": obj(result_mail_only_failures=nullable(BOOL)),
    "User": obj(username=STR, role=ROLE, disabled=BOOL, created_at=WHEN, updated_at=WHEN),
    "NewUserReply": obj(username=STR, role=ROLE),
    "UserReply": obj(
        ["username", "role", "disabled"],
        username=STR,
        role=ROLE,
        disabled=BOOL,
        password={"type": "string", "enum": ["changed"]},
    ),
    "Token": obj(
        id=UUID,
        name=STR,
        username=STR,
        created_at=WHEN,
        expires_at=WHEN,
        revoked_at=nullable(WHEN),
        last_used_at=nullable(WHEN),
    ),
    "NewTokenReply": obj(id=UUID, name=STR, username=STR, expires_at=WHEN, token=STR),
    "AuditEntry": obj(
        id=INT,
        at=WHEN,
        actor=nullable(STR),
        role=nullable(ROLE),
        client=nullable(STR),
        action=STR,
        target=nullable(STR),
        outcome={"type": "string", "enum": ["ok", "denied", "failed"]},
        detail=nullable(STR),
        before={},
        after={},
    ),
    "AuditPage": obj(
        items={"type": "array", "items": ref("AuditEntry")}, total=INT, limit=INT, offset=INT
    ),
}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": ref(name)}


REPLIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/login"): {"200": ref("Session")},
    ("get", "/me"): {"200": ref("Me")},
    ("get", "/job-types"): {"200": _array("JobTypeInfo")},
    ("get", "/jobs"): {"200": ref("JobPage")},
    ("post", "/jobs"): {"201": ref("Job"), "200": ref("Valid")},
    ("get", "/jobs/{job_id}"): {"200": ref("Job")},
    ("patch", "/jobs/{job_id}"): {"200": ref("Job")},
    ("post", "/jobs/{job_id}/pause"): {"200": ref("Job")},
    ("post", "/jobs/{job_id}/resume"): {"200": ref("Job")},
    ("post", "/jobs/{job_id}/run"): {"202": ref("RunNowResult")},
    ("get", "/jobs/{job_id}/preview"): {"200": ref("Preview")},
    ("get", "/jobs/{job_id}/why"): {"200": ref("WhyResult")},
    ("post", "/schedule/preview"): {"200": ref("SchedulePreview")},
    ("get", "/calendars"): {"200": _array("CalendarSummary")},
    ("post", "/calendars"): {"201": ref("Calendar")},
    ("get", "/calendars/{name}"): {"200": ref("Calendar")},
    ("patch", "/calendars/{name}"): {"200": ref("Calendar")},
    ("post", "/calendars/{name}/days"): {"200": ref("Calendar")},
    ("post", "/calendars/{name}/remove-days"): {"200": ref("Calendar")},
    ("post", "/calendars/{name}/import"): {"200": ref("CalendarImport")},
    ("post", "/calendars/{name}/diff"): {"200": ref("CalendarDiff")},
    ("get", "/runs"): {"200": ref("RunPage")},
    ("get", "/runs/{run_id}"): {"200": ref("RunRecord")},
    ("post", "/import"): {"200": ref("ImportResult")},
    ("get", "/settings"): {"200": ref("SiteSettings")},
    ("patch", "/settings"): {"200": ref("SiteSettings")},
    ("get", "/users"): {"200": _array("User")},
    ("post", "/users"): {"201": ref("NewUserReply")},
    ("patch", "/users/{username}"): {"200": ref("UserReply")},
    ("get", "/tokens"): {"200": _array("Token")},
    ("post", "/tokens"): {"201": ref("NewTokenReply")},
    ("get", "/audit"): {"200": ref("AuditPage")},
    **REQUESTED_REPLIES,
}

REFUSALS = {
    "400": "The body cannot be read (not UTF-8, or not parsable at all), or a list's query "
    "parameter (sort, cursor, limit) is refused; ``errors`` names it and what it accepts",
    "401": "No valid session or token",
    "403": "The caller's role may not do this, or the session's CSRF token is missing",
    "404": "No such job, run, calendar, user or token",
    "409": "Clashes with the current state (a run of the job is still going)",
    "413": "The request body is over the size limit",
    "422": "Input refused; ``errors`` names each field",
    "500": "The console failed; its log has the details",
    "502": "A Belltower service failed; its log has the details",
    "503": "A Belltower service or NATS did not answer",
}


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_MEDIA: {"schema": ref("Problem")}}}


def improve(schema: dict[str, Any]) -> dict[str, Any]:
    """Post-process FastAPI's document in place; returns it."""
    _, components = msgspec.json.schema_components(
        [
            JobDocument,
            Job,
            JobTypeInfo,
            RunRecord,
            ImportResult,
            FieldError,
            RunNowResult,
            WhyResult,
            SchedulePreviewRequest,
            SchedulePreview,
            CalendarSpec,
            CalendarSummary,
            Calendar,
            CalendarChange,
            CalendarDaysChange,
            CalendarDaysRemoval,
            CalendarIcsImport,
            CalendarImport,
            BackfillBody,
            BackfillResult,
            DecisionBody,
            DecisionResult,
            PendingDecision,
            PauseBody,
            CalendarDiffBody,
            CalendarDiff,
        ],
        ref_template=REF,
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(components)
    schemas.update(EXTRA_SCHEMAS)
    patch = copy.deepcopy(schemas["JobDocument"])
    patch.pop("required", None)
    patch.get("properties", {}).pop("id", None)
    patch["additionalProperties"] = False
    patch["description"] = "The fields of a job document to change; the rest stay as they are"
    schemas["JobPatch"] = patch
    schema["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (bt_...)"},
        "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
        "csrf": {
            "type": "apiKey",
            "in": "header",
            "name": CSRF_HEADER,
            "description": "The session's CSRF token, on every state-changing request",
        },
    }
    schema["security"] = [{"bearer": []}, {"session": [], "csrf": []}]
    for path, operations in schema.get("paths", {}).items():
        short = path.removeprefix("/api/v1")
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status, body in REPLIES.get((method, short), {}).items():
                entry = responses.setdefault(status, {"description": "OK"})
                entry["content"] = {"application/json": {"schema": body}}
            if "204" in responses:
                responses["204"].pop("content", None)
            for status, text in REFUSALS.items():
                responses[status] = _problem_response(text)
            if short == "/login":
                operation["security"] = []
                responses.pop("401")
                responses["401"] = _problem_response("Wrong user name or password")
                responses["429"] = _problem_response(
                    "Too many failed logins from this address or for this account; "
                    "the Retry-After header says when to try again"
                )
                responses["429"]["headers"] = {
                    "Retry-After": {"schema": INT, "description": "Seconds to wait"}
                }
            if (method, short) == ("post", "/import"):
                responses["422"]["content"]["application/json"] = {"schema": ref("ImportResult")}
            if (method, short) == ("patch", "/jobs/{job_id}"):
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref("JobPatch")}},
                }
            if short == "/export":
                responses["200"]["content"] = {
                    "application/yaml": {
                        "schema": {"description": "YAML documents, one job document each"}
                    },
                    "application/json": {"schema": _array("JobDocument")},
                }
    return schema

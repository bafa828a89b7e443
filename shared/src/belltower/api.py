"""Request and reply types of the management API (NATS request-reply).

Every reply is a :class:`Reply`: ``ok`` with a ``result``, or not ok with an ``error`` that names
the field and the accepted form. The CLI, the console and scripts all speak this.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from .schedule import Schedule


class JobSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a user gives to define a job."""

    type: str
    title: str
    schedule: Schedule
    priority: int = 500
    params: dict[str, Any] = {}
    paused: bool = False
    keep_history_days: int | None = 30
    timeout_s: float | None = None


class Job(msgspec.Struct, kw_only=True):
    """A stored job definition, as the API returns it."""

    id: str
    title: str
    type: str
    pool: str
    params: dict[str, Any]
    schedule: Schedule
    schedule_text: str
    priority: int
    paused: bool
    next_run_at: datetime | None
    keep_history_days: int | None
    timeout_s: float | None
    type_installed: bool
    created_at: datetime
    updated_at: datetime


class JobTypeInfo(msgspec.Struct, kw_only=True):
    """What a worker advertises about a job type it can run."""

    name: str
    pool: str
    title: str
    description: str
    params_schema: dict[str, Any]
    timeout_s: float | None = None


class JobRef(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str


class RunNowRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    requested_by: str | None = None
    requested_from: str | None = None
    """The client address the request came from (the console sets it), shown with ``requested_by``."""


class RunNowResult(msgspec.Struct, kw_only=True):
    job_id: str
    occurrence_id: str
    run_id: str
    dispatched_at: datetime


class RunRecord(msgspec.Struct, kw_only=True):
    """One run of one occurrence, as history stores it."""

    run_id: str
    occurrence_id: str
    job_id: str
    job_type: str
    job_title: str
    status: str
    trigger: str
    requested_by: str | None
    priority: int
    scheduled_for: datetime
    dispatched_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    attempt: int
    worker: str
    summary: str
    output_text: str
    output_html: str | None
    error: str | None
    trace_id: str | None
    progress_done: int | None = None
    progress_total: int | None = None
    progress_message: str | None = None


class RunQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    job_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0
    include_output: bool = False


class RunRef(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    run_id: str


class PurgeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Delete runs finished before their job's retention: ``keep_days`` per job id, else ``default_days``."""

    keep_days: dict[str, int | None] = {}
    default_days: int | None = None
    dry_run: bool = False


class PurgeResult(msgspec.Struct, kw_only=True):
    deleted: int
    by_job: dict[str, int] = {}


class LedgerPurgeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    older_than_days: int
    dry_run: bool = False


class JobDocument(JobSpec, kw_only=True, forbid_unknown_fields=True):
    """A job definition as exported and imported: the spec, plus the id it keeps across a round trip."""

    id: str | None = None


class ImportRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Documents are decoded one by one by the scheduler, so each error names its document."""

    documents: list[Any]
    dry_run: bool = False


class ImportItem(msgspec.Struct, kw_only=True):
    index: int
    action: str
    """``create``, ``change`` or ``unchanged``."""
    id: str
    title: str


class FieldError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One refused field of one document (``index`` is None outside an import)."""

    field: str
    message: str
    accepted: str | None = None
    index: int | None = None


class ImportResult(msgspec.Struct, kw_only=True):
    """``applied`` only when there is no error and it was not a dry run: all or nothing."""

    dry_run: bool
    applied: bool
    items: list[ImportItem] = []
    errors: list[FieldError] = []


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: str
    message: str
    field: str | None = None
    accepted: str | None = None


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    result: Any = None
    error: ErrorBody | None = None


encoder = msgspec.json.Encoder()

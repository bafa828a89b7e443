"""Everything a console user or API client can do, each checked against the role and audited.

The HTTP API and the web pages are two faces of these methods. Job and run state stays with the
scheduler and history, reached over NATS request-reply; this keeps only users and the audit log.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, TypeVar

import msgspec

from belltower import calendars as ics
from belltower import operations as ops
from belltower import previews, sitesettings, transfer
from belltower.api import (
    CALENDAR_DIFF_MAX_DAYS,
    IMPORT_BATCH,
    RUNS_PAGE_MAX,
    Calendar,
    CalendarDayRefs,
    CalendarDays,
    CalendarDiff,
    CalendarDiffRequest,
    CalendarImport,
    CalendarRef,
    CalendarSpec,
    CalendarSummary,
    CalendarUpdate,
    FieldError,
    ImportFinishRequest,
    ImportItem,
    ImportRequest,
    ImportResult,
    ImportStageRequest,
    Job,
    JobDocument,
    JobRef,
    JobsPageRequest,
    JobTypeInfo,
    LastRunsRequest,
    NonSchoolDay,
    PauseRequest,
    RunNowRequest,
    RunNowResult,
    RunQuery,
    RunRecord,
    RunRef,
    RunsPage,
    RunsPageRequest,
    SchedulePreview,
    SchedulePreviewRequest,
    WhyRequest,
    WhyResult,
)
from belltower.errors import BelltowerError, InvalidInput, NotFound
from belltower.rpc import ApiClient, all_jobs, invalid_from_msgspec

from . import auth, listing, throttle
from .errors import Denied, FieldErrors, Unauthenticated
from .store import ROLES, AuditEntry, Principal, Store

log = logging.getLogger(__name__)

EDITABLE = tuple(f for f in JobDocument.__struct_fields__ if f != "id")
OPERATOR_FIELDS = frozenset({"paused"})
SORTS = ("title", "type", "schedule", "next_run_at", "priority", "state")
STATES = ("active", "paused", "not_installed")
MAX_PER_PAGE = 200
STAGED_ABOVE = 1_000
"""Imports of more documents go in staged batches (one audit entry); smaller ones in one
request, audited job by job with before and after."""
FINISH_TIMEOUT_S = 300.0
MAX_IMPORT_ERRORS = 1_000
"""A staged import stops checking after this many errors: nothing is applied either way."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


@dataclass
class JobListing:
    """A job as the Jobs tab shows it: the job and how its last run went."""

    job: Job
    last_run: RunRecord | None = None


@dataclass
class JobPage:
    """A page of the Jobs tab: its rows, how many jobs match, and the cursors of the pages
    after and before it (None at either end)."""

    items: list[JobListing]
    total: int
    limit: int
    sort: str
    next_cursor: str | None = None
    prev_cursor: str | None = None
    filters: dict[str, str] = field(default_factory=dict)


class Console:
    def __init__(self, api: ApiClient, store: Store, session_ttl: timedelta) -> None:
        self.api = api
        self.store = store
        self.session_ttl = session_ttl

    # -- plumbing -------------------------------------------------------------------------------

    async def audit(
        self,
        who: Principal | None,
        client: str | None,
        action: str,
        *,
        target: str | None = None,
        outcome: str = "ok",
        detail: str | None = None,
        before: Any = None,
        after: Any = None,
        actor: str | None = None,
    ) -> None:
        await self.store.audit(
            AuditEntry(
                actor=who.username if who else actor,
                role=who.role if who else None,
                client=client,
                action=action,
                target=target,
                outcome=outcome,
                detail=detail,
                before=before,
                after=after,
            )
        )

    async def require(
        self,
        who: Principal,
        role: str,
        client: str | None,
        action: str,
        target: str | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        """Refuse, and record the refusal, unless ``who`` has at least ``role``."""
        if who.may(role) and not errors:
            return
        message = (
            f"{who.username} ({who.role}) may not set " + ", ".join(e.field for e in errors or [])
            if errors
            else f"{who.username} ({who.role}) may not {action}: it needs the {role} role"
        )
        await self.audit(who, client, action, target=target, outcome="denied", detail=message)
        raise Denied(message, errors)

    # -- authentication -------------------------------------------------------------------------

    async def login(self, username: str, password: str, client: str | None) -> tuple[str, str]:
        """A new session (cookie value, CSRF token) for a right password; every try is audited."""
        await throttle.check(self, username[:64], client)
        row = await self.store.user(username) if auth.USERNAME.match(username or "") else None
        ok = auth.verify(row["password_hash"] if row else None, password or "")
        if not ok or row is None or row["disabled"]:
            reason = "disabled account" if ok and row is not None else "wrong user name or password"
            await self.audit(
                None, client, "login", actor=username[:64], outcome="failed", detail=reason
            )
            raise Unauthenticated("wrong user name or password, or the account is disabled")
        session_id, csrf = await self.store.add_session(username, client, self.session_ttl)
        await self.audit(
            Principal(username, row["role"], "session"), client, "login", target=username
        )
        return session_id, csrf

    async def logout(self, who: Principal, session_id: str, client: str | None) -> None:
        await self.store.end_session(session_id)
        await self.audit(who, client, "logout", target=who.username)

    async def principal(
        self,
        bearer: str | None,
        session_id: str | None,
        client: str | None,
        path: str,
        method: str = "GET",
    ) -> Principal:
        """Who the request is from; a wrong or expired token or session is refused and audited."""
        if bearer is not None:
            found = await self.store.principal_for_token(bearer)
            if found is None:
                await self.audit(
                    None, client, "auth.token", outcome="denied", detail=f"bad token for {path}"
                )
                raise Unauthenticated("the API token is wrong, expired or revoked")
            return found
        if session_id:
            found = await self.store.principal_for_session(session_id)
            if found is not None:
                return found
        if method not in ("GET", "HEAD", "OPTIONS"):
            await self.audit(
                None,
                client,
                "auth.anonymous",
                outcome="denied",
                detail=f"{method} {path} without a session or token",
            )
        raise Unauthenticated("log in first, or send an API token as 'Authorization: Bearer ...'")

    # -- jobs -----------------------------------------------------------------------------------

    async def job_types(self) -> list[JobTypeInfo]:
        return await self.api.call(ops.JOB_TYPES_LIST)

    async def list_jobs(
        self,
        *,
        q: str = "",
        type_: str = "",
        state: str = "",
        sort: str = "title",
        cursor: str | None = None,
        limit: int = 25,
        with_last_run: bool = True,
    ) -> JobPage:
        """One page of jobs, sorted, searched and filtered by the scheduler in SQL (keyset
        pages: ``cursor`` is a page's ``next_cursor`` or ``prev_cursor``)."""
        listing.check_limit(limit, MAX_PER_PAGE)
        with listing.query_parameters():
            found = await self.api.call(
                ops.JOBS_LIST,
                JobsPageRequest(
                    sort=sort, q=q, type=type_, state=state, cursor=cursor or None,
                    limit=limit, total=True,
                ),
            )  # fmt: skip
        rows = [JobListing(j) for j in found.jobs]
        if with_last_run and rows:
            # One request for the page's last runs; history away leaves them blank.
            with contextlib.suppress(BelltowerError):
                lasts = await self.api.call(
                    ops.RUNS_LAST, LastRunsRequest(job_ids=[r.job.id for r in rows])
                )
                by_job = {run.job_id: run for run in lasts}
                for row in rows:
                    row.last_run = by_job.get(row.job.id)
        filters = {"q": q, "type": type_, "state": state}
        return JobPage(
            rows,
            found.total or 0,
            limit,
            sort,
            found.cursor,
            found.prev_cursor,
            {k: v for k, v in filters.items() if v},
        )

    async def get_job(self, job_id: str) -> Job:
        return await self.api.call(ops.JOBS_GET, JobRef(id=job_id))

    async def _import(self, documents: list[Any], dry_run: bool) -> ImportResult:
        return await self.api.call(
            ops.JOBS_IMPORT, ImportRequest(documents=documents, dry_run=dry_run)
        )

    async def create_job(
        self, who: Principal, client: str | None, document: Any, dry_run: bool = False
    ) -> Job | None:
        """Create a job from a job document (a JobSpec); every field error at once, nothing written."""
        await self.require(who, "editor", client, "jobs.create")
        if not isinstance(document, dict):
            raise FieldErrors(
                [FieldError(field="body", message="is not an object", accepted="a job document")]
            )
        if "id" in document:
            raise FieldErrors(
                [
                    FieldError(
                        field="id",
                        message="is given by Belltower, not by the client",
                        accepted="a document without id (use import to keep ids)",
                    )
                ]
            )
        result = await self._import([document], dry_run)
        if result.errors:
            raise FieldErrors(_unindexed(result.errors))
        if dry_run:
            return None
        job = await self.get_job(result.items[0].id)
        await self.audit(who, client, "jobs.create", target=job.id, after=builtins(job))
        return job

    async def update_job(
        self, who: Principal, client: str | None, job_id: str, patch: Any, dry_run: bool = False
    ) -> Job:
        """Change the given fields of a job; a field the role may not set refuses the whole change."""
        if not isinstance(patch, dict):
            raise FieldErrors(
                [FieldError(field="body", message="is not an object", accepted="fields to change")]
            )
        unknown = [k for k in patch if k not in EDITABLE]
        if unknown:
            raise FieldErrors(
                [
                    FieldError(
                        field=k,
                        message="is not a field of a job that can be changed",
                        accepted=", ".join(EDITABLE),
                    )
                    for k in unknown
                ]
            )
        await self.require(who, "operator", client, "jobs.update", job_id)
        if not who.may("editor"):
            refused = [
                FieldError(
                    field=k,
                    message=f"the {who.role} role may not set this field",
                    accepted="only "
                    + ", ".join(sorted(OPERATOR_FIELDS))
                    + " (editors set the rest)",
                )
                for k in patch
                if k not in OPERATOR_FIELDS
            ]
            if refused:
                await self.require(who, "editor", client, "jobs.update", job_id, refused)
        if set(patch) == {"paused"} and isinstance(patch["paused"], bool) and not dry_run:
            # Pausing works even when the job's type is gone, which a full re-check would refuse.
            return await self.set_paused(who, client, job_id, patch["paused"])
        before = await self.get_job(job_id)
        document = transfer.document_of(before) | patch
        document["id"] = before.id
        result = await self._import([document], dry_run)
        if result.errors:
            raise FieldErrors(_unindexed(result.errors))
        after = await self.get_job(job_id)
        if not dry_run and result.items[0].action != "unchanged":
            await self.audit(
                who,
                client,
                "jobs.update",
                target=job_id,
                before=builtins(before),
                after=builtins(after),
            )
        return after

    async def delete_job(self, who: Principal, client: str | None, job_id: str) -> None:
        await self.require(who, "editor", client, "jobs.delete", job_id)
        before = await self.get_job(job_id)
        await self.api.call(ops.JOBS_DELETE, JobRef(id=job_id))
        await self.audit(who, client, "jobs.delete", target=job_id, before=builtins(before))

    async def set_paused(
        self,
        who: Principal,
        client: str | None,
        job_id: str,
        paused: bool,
        note: str | None = None,
    ) -> Job:
        op = ops.JOBS_PAUSE if paused else ops.JOBS_RESUME
        action = op.name
        await self.require(who, "operator", client, action, job_id)
        before = await self.get_job(job_id)
        # Who and from where are the authenticated caller and its address, as for run-now.
        request = PauseRequest(
            id=job_id, requested_by=who.username, requested_from=client, note=note
        )
        after = await self.api.call(op, request)
        done: dict[str, Any] = {"paused": after.paused}
        if after.paused and after.pause_note:
            done["pause_note"] = after.pause_note  # why, as the pause ledger keeps it
        await self.audit(
            who, client, action, target=job_id, before={"paused": before.paused}, after=done
        )
        return after

    async def run_now(
        self, who: Principal, client: str | None, job_id: str, force: bool = False
    ) -> RunNowResult:
        """Run the job once now. While a run of it is still going its overlap policy applies
        (skip refuses with Conflict, buffer queues this one), unless ``force``."""
        await self.require(who, "operator", client, "jobs.run_now", job_id)
        request = RunNowRequest(
            id=job_id, requested_by=who.username, requested_from=client, force=force
        )
        result = await self.api.call(ops.JOBS_RUN_NOW, request)
        after: dict[str, Any] = {"run_id": result.run_id, "state": result.state}
        if force:
            after["force"] = True
        await self.audit(who, client, "jobs.run_now", target=job_id, after=after)
        return result

    async def job_preview(self, job_id: str, since: datetime | None, count: int) -> SchedulePreview:
        """The job's next ``count`` runs after ``since`` with the skipped ones between, its
        calendar and its ``H`` instants applied, as `belltower jobs preview` shows them."""
        if not 1 <= count <= 100:
            raise InvalidInput("count", f"{count} is out of range", "1 to 100")
        job = await self.get_job(job_id)
        days = []
        if job.schedule.calendar is not None:
            days = [d.day for d in (await self.calendar(job.schedule.calendar)).days]
        return previews.preview(job.schedule, since, count, days, spread_key=job.id)

    async def preview(self, job_id: str, since: datetime | None, count: int) -> list[datetime]:
        """The instants of the job's next ``count`` runs, in its time zone."""
        shown = await self.job_preview(job_id, since, count)
        return [o.at for o in shown.occurrences if not o.skipped]

    async def why(
        self, job_id: str, since: datetime | None, until: datetime | None, limit: int
    ) -> WhyResult:
        """The job's ledger with reasons and its pauses; outcomes the ledger has not heard of
        yet (it learns them from run events) are filled in from history."""
        if not 1 <= limit <= 10_000:
            raise InvalidInput("limit", f"{limit} is out of range", "1 to 10000")
        why = await self.api.call(
            ops.JOBS_WHY, WhyRequest(id=job_id, since=since, until=until, limit=limit)
        )
        unknown = [
            e
            for e in why.occurrences
            if e.state == "dispatched" and e.run_status in (None, "running")
        ]
        if not unknown:
            return why
        query = RunQuery(job_id=why.job_id, since=why.since, until=why.until, limit=10_000)
        try:
            runs = await self.api.call(ops.RUNS_LIST, query)
        except BelltowerError:
            runs = []  # history down: the ledger's own view is still the answer
        by_occurrence = {r.occurrence_id: r for r in runs}
        for e in unknown:
            if (r := by_occurrence.get(e.occurrence_id)) is not None:
                e.run_status, e.run_error = r.status, r.error
        return why

    async def preview_schedule(self, body: Any) -> SchedulePreview:
        """A schedule's next occurrences without a job, as `belltower schedule preview` shows
        them; its calendar's non-school days apply when it names one."""
        request = _decoded(body, SchedulePreviewRequest)
        if request.since is not None and not EARLIEST <= request.since < LATEST:
            raise InvalidInput("from", "is out of range", "a date-time from 1970 to 2199")
        days = []
        if request.schedule.calendar is not None:
            _check_calendar_name(request.schedule.calendar, "schedule.calendar")
            cal = await self.calendar(request.schedule.calendar)
            days = [d.day for d in cal.days]
        try:
            return previews.preview(request.schedule, request.since, request.count, days)
        except (OverflowError, ValueError, TypeError) as exc:  # past what a datetime can hold
            raise InvalidInput("schedule", f"cannot be previewed: {exc}") from None

    # -- school calendars -----------------------------------------------------------------------

    async def calendars(self) -> list[CalendarSummary]:
        return await self.api.call(ops.CALENDARS_LIST)

    async def calendar(self, name: str) -> Calendar:
        _check_calendar_name(name)
        return await self.api.call(ops.CALENDARS_GET, CalendarRef(name=name))

    async def create_calendar(self, who: Principal, client: str | None, body: Any) -> Calendar:
        await self.require(who, "editor", client, "calendars.create")
        spec = _decoded(body, CalendarSpec)
        _check_calendar_name(spec.name)
        _check_text("description", spec.description)
        _check_days(spec.days)
        cal = await self.api.call(ops.CALENDARS_CREATE, spec)
        await self.audit(who, client, "calendars.create", target=cal.name, after=builtins(cal))
        return cal

    async def update_calendar(
        self, who: Principal, client: str | None, name: str, body: Any
    ) -> Calendar:
        """Change a calendar's description."""
        await self.require(who, "editor", client, "calendars.update", name)
        change = _decoded(body, CalendarChange)
        _check_text("description", change.description)
        before = await self.calendar(name)
        after = await self.api.call(
            ops.CALENDARS_UPDATE, CalendarUpdate(name=name, description=change.description)
        )
        if after.description != before.description:
            await self.audit(
                who,
                client,
                "calendars.update",
                target=name,
                before={"description": before.description},
                after={"description": after.description},
            )
        return after

    async def remove_calendar_days(
        self, who: Principal, client: str | None, name: str, body: Any
    ) -> Calendar:
        """Take non-school days out of a calendar; a day it does not have is no error."""
        await self.require(who, "editor", client, "calendars.remove_days", name)
        change = _decoded(body, CalendarDaysRemoval)
        if len(change.days) > ics.MAX_DAYS:
            raise InvalidInput("days", f"more than {ics.MAX_DAYS} days", ics.DAYS_FORM)
        before = await self.calendar(name)
        after = await self.api.call(
            ops.CALENDARS_REMOVE_DAYS, CalendarDayRefs(name=name, days=change.days)
        )
        await self.audit(
            who,
            client,
            "calendars.remove_days",
            target=name,
            detail=f"{len(before.days) - len(after.days)} of {len(change.days)} days removed",
            before=builtins(before.days),
            after=builtins(after.days),
        )
        return after

    async def delete_calendar(self, who: Principal, client: str | None, name: str) -> None:
        await self.require(who, "editor", client, "calendars.delete", name)
        before = await self.calendar(name)
        await self.api.call(ops.CALENDARS_DELETE, CalendarRef(name=name))
        await self.audit(who, client, "calendars.delete", target=name, before=builtins(before))

    async def add_calendar_days(
        self, who: Principal, client: str | None, name: str, body: Any
    ) -> Calendar:
        """Add non-school days (a day already there gets the new label), or with ``replace``
        make them the calendar's only days."""
        await self.require(who, "editor", client, "calendars.add_days", name)
        change = _decoded(body, CalendarDaysChange)
        _check_calendar_name(name)
        request = CalendarDays(name=name, days=change.days, replace=change.replace)
        return await self._change_days(who, client, "calendars.add_days", request)

    async def _change_days(
        self, who: Principal, client: str | None, action: str, request: CalendarDays
    ) -> Calendar:
        _check_days(request.days)
        if len(request.days) > ics.MAX_DAYS:
            raise InvalidInput("days", f"more than {ics.MAX_DAYS} days", ics.DAYS_FORM)
        before = await self.calendar(request.name)
        after = await self.api.call(ops.CALENDARS_ADD_DAYS, request)
        await self.audit(
            who,
            client,
            action,
            target=request.name,
            detail=f"{len(request.days)} days given" + (", replacing" if request.replace else ""),
            before=builtins(before.days),
            after=builtins(after.days),
        )
        return after

    async def import_calendar(
        self, who: Principal, client: str | None, name: str, body: Any
    ) -> CalendarImport:
        """Non-school days from an iCalendar file's text (the client reads the file or URL):
        all-day events, ranges and recurring holidays expanded within the horizon."""
        await self.require(who, "editor", client, "calendars.import", name)
        request = _decoded(body, CalendarIcsImport)
        _check_calendar_name(name)
        if not 1 <= request.horizon_days <= 20 * 366:
            raise InvalidInput(
                "horizon_days", f"{request.horizon_days} is out of range", "1 to 7320 days"
            )
        since = request.since or datetime.now(UTC).date()
        if not date(1970, 1, 1) <= since <= date(2199, 12, 31):
            raise InvalidInput("since", f"{since} is out of range", "a date from 1970 to 2199")
        found = _days_from_ics(request.ics, since, request.horizon_days)
        if request.create and name not in {c.name for c in await self.calendars()}:
            await self.create_calendar(who, client, {"name": name})
        days = [NonSchoolDay(day=d, label=label) for d, label in found]
        cal = await self._change_days(
            who,
            client,
            "calendars.import",
            CalendarDays(name=name, days=days, replace=request.replace),
        )
        return CalendarImport(imported=len(days), calendar=cal)

    async def calendar_diff(
        self, who: Principal, client: str | None, name: str, body: Any
    ) -> CalendarDiff:
        """What a calendar change would do to its jobs' runs in the next ``days`` days, before
        it is saved: days to add or remove, or an iCalendar file's days. A read: any role may,
        and like other reads it is not audited."""
        await self.require(who, "viewer", client, "calendars.diff", name)
        change = _decoded(body, CalendarDiffBody)
        _check_calendar_name(name)
        _check_days(change.add_days)
        days = list(change.add_days)
        if change.ics is not None:
            since = change.ics_since or datetime.now(UTC).date()
            if not 1 <= change.horizon_days <= 20 * 366:
                raise InvalidInput(
                    "horizon_days", f"{change.horizon_days} is out of range", "1 to 7320 days"
                )
            days += [
                NonSchoolDay(day=d, label=label)
                for d, label in _days_from_ics(change.ics, since, change.horizon_days)
            ]
        if len(days) > ics.MAX_DAYS or len(change.remove_days) > ics.MAX_DAYS:
            raise InvalidInput("days", f"more than {ics.MAX_DAYS} days", ics.DAYS_FORM)
        return await self.api.call(
            ops.CALENDARS_DIFF,
            CalendarDiffRequest(
                name=name, add_days=days, remove_days=change.remove_days,
                replace=change.replace, days=change.days, since=change.since,
            ),
        )  # fmt: skip

    # -- runs -----------------------------------------------------------------------------------

    async def runs(
        self,
        *,
        job_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        query = RunQuery(
            job_id=job_id or None,
            status=status or None,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        return await self.api.call(ops.RUNS_LIST, query)

    async def runs_page(
        self,
        *,
        job_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        q: str = "",
        sort: str = "-scheduled_for",
        cursor: str | None = None,
        limit: int = 50,
    ) -> RunsPage:
        """A keyset page of runs, sorted, searched and filtered by history in SQL."""
        listing.check_limit(limit, RUNS_PAGE_MAX)
        with listing.query_parameters():
            return await self.api.call(
                ops.RUNS_PAGE,
                RunsPageRequest(
                    job_id=job_id or None, status=status or None, since=since, until=until,
                    q=q, sort=sort, cursor=cursor or None, limit=limit,
                ),
            )  # fmt: skip

    async def run(self, run_id: str) -> RunRecord:
        return await self.api.call(ops.RUNS_GET, RunRef(run_id=run_id))

    # -- export and import ----------------------------------------------------------------------

    async def export(self, fmt: str) -> str:
        if fmt not in transfer.FORMATS:
            raise InvalidInput("format", f"{fmt!r} is not an export format", "yaml or json")
        jobs = await all_jobs(self.api)
        return transfer.dump(transfer.documents_of(jobs), fmt)

    async def import_jobs(
        self,
        who: Principal,
        client: str | None,
        text: str,
        fmt: str | None,
        dry_run: bool,
        progress: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> ImportResult:
        await self.require(who, "editor", client, "jobs.import")
        if fmt not in (None, "", *transfer.FORMATS):
            raise InvalidInput("format", f"{fmt!r} is not an import format", "yaml or json")
        documents = transfer.load(text, fmt or None)  # type: ignore[arg-type]
        if len(documents) > STAGED_ABOVE:
            return await self._import_staged(who, client, documents, dry_run, progress)
        before: dict[str, Job] = {}
        if not dry_run:
            listed = await all_jobs(self.api)
            before = {j.id: j for j in listed}
        result = await self._import(documents, dry_run)
        if result.applied:
            summary = ", ".join(
                f"{a} {sum(i.action == a for i in result.items)}"
                for a in ("create", "change", "unchanged")
            )
            await self.audit(who, client, "jobs.import", detail=summary)
            for item in result.items:
                if item.action == "unchanged":
                    continue
                after = await self.get_job(item.id)
                old = before.get(item.id)
                await self.audit(
                    who,
                    client,
                    f"jobs.import.{item.action}",
                    target=item.id,
                    before=builtins(old) if old else None,
                    after=builtins(after),
                )
        return result

    async def _import_staged(
        self,
        who: Principal,
        client: str | None,
        documents: list[Any],
        dry_run: bool,
        progress: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> ImportResult:
        """A large import in batches of ``IMPORT_BATCH``, staged by the scheduler and applied
        in one transaction at the end, or dropped at the first batch with errors (all or none,
        as a small import). Audited as one entry listing the jobs created and changed."""
        import_id = str(uuid.uuid4())
        items: list[ImportItem] = []
        errors: list[FieldError] = []
        try:
            for start in range(0, len(documents), IMPORT_BATCH):
                batch = documents[start : start + IMPORT_BATCH]
                result = await self.api.call(
                    ops.JOBS_IMPORT_STAGE,
                    ImportStageRequest(import_id=import_id, offset=start, documents=batch),
                )
                items += result.items
                errors += result.errors
                if progress is not None:
                    await progress(start + len(batch), len(documents))
                if len(errors) >= MAX_IMPORT_ERRORS:
                    break
            if errors or dry_run:
                await self.api.call(
                    ops.JOBS_IMPORT_FINISH, ImportFinishRequest(import_id=import_id, commit=False)
                )
                return ImportResult(dry_run=dry_run, applied=False, items=items, errors=errors)
            # One transaction writes every staged job: give it longer than a usual request.
            # (Should even that run out, the import may still land whole; never half.)
            finisher = ApiClient(self.api.nc, timeout=max(self.api.timeout, FINISH_TIMEOUT_S))
            done = await finisher.call(
                ops.JOBS_IMPORT_FINISH, ImportFinishRequest(import_id=import_id)
            )
        except BaseException:
            with contextlib.suppress(BelltowerError):
                await self.api.call(
                    ops.JOBS_IMPORT_FINISH, ImportFinishRequest(import_id=import_id, commit=False)
                )
            raise
        await self.audit(
            who,
            client,
            "jobs.import",
            detail=f"create {done.created}, change {done.changed}, unchanged {done.unchanged} "
            f"(in batches of {IMPORT_BATCH})",
            after={
                action: [i.id for i in items if i.action == action]
                for action in ("create", "change")
            },
        )
        return ImportResult(dry_run=False, applied=True, items=items)

    # -- users and tokens -----------------------------------------------------------------------

    # -- site settings ------------------------------------------------------------------------

    async def site_settings(self, who: Principal, client: str | None) -> dict[str, Any]:
        """The run-time settings (``null``: as the services' environment says)."""
        await self.require(who, "admin", client, "settings.read")
        return _settings_view(await sitesettings.load(self.api.nc.jetstream()))

    async def change_site_settings(
        self, who: Principal, client: str | None, changes: dict[str, Any]
    ) -> dict[str, Any]:
        await self.require(who, "admin", client, "settings.update")
        js = self.api.nc.jetstream()
        before = await sitesettings.load(js)
        try:
            after = msgspec.convert(
                {**_settings_view(before), **changes}, sitesettings.SiteSettings
            )
        except msgspec.ValidationError as exc:
            bad = invalid_from_msgspec(exc)
            raise FieldErrors(
                [FieldError(field=bad.field, message=bad.reason, accepted=bad.accepted)]
            ) from None
        if after != before:
            await sitesettings.save(js, after)
            await self.audit(
                who,
                client,
                "settings.update",
                target="site",
                before=_settings_view(before),
                after=_settings_view(after),
            )
        return _settings_view(after)

    async def users(self, who: Principal, client: str | None) -> list[dict[str, Any]]:
        await self.require(who, "admin", client, "users.list")
        return [dict(r) for r in await self.store.users()]

    async def add_user(
        self, who: Principal | None, client: str | None, username: str, password: str, role: str
    ) -> dict[str, Any]:
        """Add a local user; ``who`` None is the command line (`belltower-console create-user`)."""
        if who is not None:
            await self.require(who, "admin", client, "users.create", username)
        auth.check_new_user(username, password, role)
        if not await self.store.add_user(username, auth.hash_password(password), role):
            raise FieldErrors(
                [
                    FieldError(
                        field="username",
                        message=f"{username!r} exists already",
                        accepted="a new name",
                    )
                ]
            )
        after = {"username": username, "role": role}
        await self.audit(
            who,
            client,
            "users.create",
            target=username,
            after=after,
            actor="cli" if who is None else None,
        )
        return after

    async def update_user(
        self,
        who: Principal,
        client: str | None,
        username: str,
        *,
        role: str | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> dict[str, Any]:
        await self.require(who, "admin", client, "users.update", username)
        row = await self.store.user(username)
        if row is None:
            raise NotFound(f"no user {username!r}")
        auth.check_new_user(None, password, role, for_user=username)
        if username == who.username and (disabled or (role is not None and role != "admin")):
            raise FieldErrors(
                [
                    FieldError(
                        field="role",
                        message="an admin cannot demote or disable themself",
                        accepted="another admin does it",
                    )
                ]
            )
        await self.store.update_user(
            username,
            role=role,
            password_hash=auth.hash_password(password) if password else None,
            disabled=disabled,
        )
        before = {"role": row["role"], "disabled": row["disabled"]}
        after = {
            "role": role or row["role"],
            "disabled": row["disabled"] if disabled is None else disabled,
        }
        if password:
            after["password"] = "changed"
        await self.audit(who, client, "users.update", target=username, before=before, after=after)
        return {"username": username, **after}

    async def tokens(self, who: Principal, client: str | None) -> list[dict[str, Any]]:
        await self.require(who, "admin", client, "tokens.list")
        return [dict(r) for r in await self.store.tokens()]

    async def add_token(
        self,
        who: Principal | None,
        client: str | None,
        username: str,
        name: str,
        expires_in_days: float,
    ) -> dict[str, Any]:
        if who is not None:
            await self.require(who, "admin", client, "tokens.create", username)
        errors = []
        if not name.strip() or len(name) > 100:
            errors.append(
                FieldError(
                    field="name",
                    message="must not be empty",
                    accepted="up to 100 characters, e.g. 'nightly export script'",
                )
            )
        if not 0 < expires_in_days <= 3660:
            errors.append(
                FieldError(
                    field="expires_in_days",
                    message=f"{expires_in_days} is out of range",
                    accepted="more than 0, at most 3660",
                )
            )
        if await self.store.user(username) is None:
            errors.append(
                FieldError(
                    field="username", message=f"no user {username!r}", accepted="an existing user"
                )
            )
        if errors:
            raise FieldErrors(errors)
        expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)
        token_id, secret = await self.store.add_token(username, name.strip(), expires_at)
        after = {
            "id": token_id,
            "name": name.strip(),
            "username": username,
            "expires_at": expires_at.isoformat(),
        }
        await self.audit(
            who,
            client,
            "tokens.create",
            target=token_id,
            after=after,
            actor="cli" if who is None else None,
        )
        return {**after, "token": secret}

    async def revoke_token(self, who: Principal, client: str | None, token_id: str) -> None:
        await self.require(who, "admin", client, "tokens.revoke", token_id)
        try:
            row = await self.store.revoke_token(token_id)
        except Exception:
            row = None
        if row is None:
            raise NotFound(f"no active token with id {token_id}")
        await self.audit(who, client, "tokens.revoke", target=token_id, before=dict(row))

    async def audit_log(
        self, who: Principal, client: str | None, **filters: Any
    ) -> tuple[list[dict[str, Any]], int]:
        await self.require(who, "admin", client, "audit.read")
        return await self.store.audit_log(**filters)


class CalendarDaysChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Non-school days to add to a calendar (``POST /calendars/{name}/days``); ``replace`` drops
    the days it had first."""

    days: list[NonSchoolDay]
    replace: bool = False


class CalendarDiffBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A calendar change to try (``POST /calendars/{name}/diff``): days to add (and with
    ``replace``, only those), days to take out, or an iCalendar file's text (``ics``, expanded
    from ``ics_since`` within ``horizon_days`` as an import does); the runs of the next ``days``
    days after ``from`` (default now) are compared."""

    add_days: list[NonSchoolDay] = []
    remove_days: list[date] = []
    replace: bool = False
    ics: str | None = None
    ics_since: date | None = None
    horizon_days: int = 3 * 366
    days: Annotated[int, msgspec.Meta(ge=1, le=CALENDAR_DIFF_MAX_DAYS)] = 30
    since: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(
        default=None, name="from"
    )


class CalendarChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A calendar's fields to change (``PATCH /calendars/{name}``)."""

    description: str


class CalendarDaysRemoval(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Non-school days to take out of a calendar (``POST /calendars/{name}/remove-days``)."""

    days: list[date]


class CalendarIcsImport(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An iCalendar file's text and how to import it (``POST /calendars/{name}/import``)."""

    ics: str
    replace: bool = False
    create: bool = False
    since: date | None = None
    horizon_days: int = 3 * 366


CALENDAR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
CALENDAR_NAME_FORM = (
    "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. district-2026-27"
)


def _check_calendar_name(name: str, field: str = "name") -> None:
    """The scheduler's rule for calendar names, checked before a name reaches it."""
    if not CALENDAR_NAME.match(name):
        raise InvalidInput(field, f"{name!r} is not a calendar name", CALENDAR_NAME_FORM)


def _check_text(field: str, text: str, limit: int = 1000) -> None:
    if "\x00" in text:
        raise InvalidInput(field, "contains a NUL character", "text without control characters")
    if len(text) > limit:
        raise InvalidInput(field, f"is longer than {limit} characters", "a shorter text")


def _check_days(days: list[NonSchoolDay]) -> None:
    for d in days:
        _check_text("days.label", d.label, 200)


def _days_from_ics(text: str, since: date, horizon_days: int) -> list[tuple[date, str]]:
    """The file's days; a file the parser trips over is refused naming ``ics``, never a 500."""
    try:
        found = ics.days_from_ics(text.encode(), since=since, horizon_days=horizon_days)
    except InvalidInput:
        raise
    except Exception as exc:  # icalendar and dateutil raise many kinds on a malformed file
        raise InvalidInput("ics", f"is not an iCalendar file: {exc}", ics.ICS_FORM) from None
    if len(found) > ics.MAX_DAYS:
        raise InvalidInput("ics", f"gives more than {ics.MAX_DAYS} days", ics.ICS_FORM)
    return found


def _unindexed(errors: list[FieldError]) -> list[FieldError]:
    return [FieldError(field=e.field, message=e.message, accepted=e.accepted) for e in errors]


__all__ = ["ROLES", "Console", "JobListing", "JobPage"]


def _settings_view(settings: sitesettings.SiteSettings) -> dict[str, Any]:
    """Every setting by name, ``None`` for those left to the environment."""
    return {name: getattr(settings, name) for name in settings.__struct_fields__}


B = TypeVar("B")


def _decoded(body: Any, type_: type[B]) -> B:
    """A request body as its Struct, or the field errors msgspec found (a 422)."""
    try:
        return msgspec.convert(body, type_)
    except msgspec.ValidationError as exc:
        raise invalid_from_msgspec(exc) from None

"""The scheduler's management operations, served over NATS request-reply.

Each method answers the operation of :mod:`belltower.operations` it is marked with: it takes the
decoded request and returns the declared reply; anything invalid is refused with an error naming
the field before anything is written.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from belltower import operations as ops
from belltower import paging
from belltower.api import (
    Calendar,
    CalendarDayRefs,
    CalendarDays,
    CalendarDiff,
    CalendarDiffRequest,
    CalendarRef,
    CalendarSpec,
    CalendarSummary,
    CalendarUpdate,
    Deleted,
    FieldError,
    ImportFinished,
    ImportFinishRequest,
    ImportItem,
    ImportRequest,
    ImportResult,
    ImportStageRequest,
    Job,
    JobDocument,
    JobRef,
    JobsPage,
    JobsPageRequest,
    JobSpec,
    JobTypeInfo,
    LedgerEntry,
    LedgerPurged,
    LedgerPurgeRequest,
    NonSchoolDay,
    NoRequest,
    PauseRequest,
    PauseSpan,
    RunNowRequest,
    RunNowResult,
    RunPolicy,
    WhyRequest,
    WhyResult,
)
from belltower.errors import InvalidInput, NotFound
from belltower.events import EmailOn, ResultMail, occurrence_id, run_id_for
from belltower.jobstate import check_pause_note
from belltower.rpc import invalid_from_msgspec, serves
from belltower.schedule import (
    DATETIME_FORM,
    CompiledSchedule,
    OnDemand,
    Schedule,
    compile_schedule,
    describe,
    is_spread,
)

from . import limits, listing, whatif
from .catalog import Catalog, validate_params
from .dispatcher import Dispatcher
from .entry import Entry, compiled_for
from .jobchecks import (
    OverdueRule,
    check_state_policy,
    fill_state,
    refuse_resume_past_max_runs,
)
from .requested import RequestedOccurrences
from .staging import StagedImports
from .store import CalendarStore, JobRow, LedgerRow, StateStore, Store

MAX_PAUSED_LISTED = 1_000
"""Occurrences of a pause recorded one by one when the job resumes; later ones are summed up."""

MAX_PRIORITY = 1_000_000
MAX_DIFF_DAYS = 5_000
"""Days a what-if may add or take out (an ICS import's worth, as calendars.MAX_DAYS)."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
CALENDAR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
CALENDAR_NAME_FORM = (
    "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. district-2026-27"
)


class Operations(RequestedOccurrences):
    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        catalog: Catalog,
        overdue: OverdueRule | None = None,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.catalog = catalog
        self.calendars = CalendarStore(store.pool)
        self.state = StateStore(store.pool)
        self.overdue = overdue or OverdueRule()
        self.staged = StagedImports(store.pool)

    @serves(ops.JOB_TYPES_LIST)
    async def job_types(self, _: NoRequest) -> list[JobTypeInfo]:
        return sorted((await self.catalog.types()).values(), key=lambda t: t.name)

    @serves(ops.JOBS_CREATE)
    async def create(self, spec: JobSpec) -> Job:
        now = self.dispatcher.clock()
        job_id = str(uuid.uuid4())
        checked = await self._check(spec, now, job_id)
        if isinstance(checked, list):
            raise checked[0]
        info, params, next_run, policy, result_mail = checked
        row = JobRow(
            id=job_id,
            title=spec.title.strip(),
            type=spec.type,
            pool=info.pool,
            params=params,
            schedule=spec.schedule,
            priority=spec.priority,
            paused=spec.paused,
            keep_history_days=spec.keep_history_days,
            timeout_s=spec.timeout_s,
            next_run_at=next_run,
            created_at=now,
            updated_at=now,
            policy=policy,
            result_mail=result_mail,
        )
        await self.store.insert_job(row)
        self.dispatcher.put(Entry.from_row(row))
        return await self._view(row)

    async def _check(
        self, spec: JobSpec, now: datetime, job_id: str
    ) -> (
        tuple[JobTypeInfo, dict[str, Any], datetime | None, RunPolicy, ResultMail | None]
        | list[InvalidInput]
    ):
        """Every check of a spec; returns what storing it needs, or every error found."""
        errors: list[InvalidInput] = []
        title = spec.title.strip()
        if not title or len(title) > 200:
            errors.append(
                InvalidInput(
                    "title",
                    "must not be empty and at most 200 characters",
                    "a short name, e.g. 'Nightly cleanup'",
                )
            )
        elif any(unicodedata.category(ch) in ("Cc", "Cs") for ch in title):
            errors.append(
                InvalidInput(
                    "title",
                    "contains a control character (NUL, CR, LF, ...) or a lone surrogate",
                    "one line of printable text, e.g. 'Nightly cleanup'",
                )
            )
        if not 0 <= spec.priority <= MAX_PRIORITY:
            errors.append(
                InvalidInput(
                    "priority",
                    f"{spec.priority} is out of range",
                    f"a whole number from 0 to {MAX_PRIORITY}; default 500, higher runs first",
                )
            )
        if spec.keep_history_days is not None and spec.keep_history_days < 1:
            errors.append(
                InvalidInput(
                    "keep_history_days",
                    f"{spec.keep_history_days} is not a number of days",
                    "1 or more, or null to keep forever",
                )
            )
        if spec.timeout_s is not None and spec.timeout_s <= 0:
            errors.append(
                InvalidInput(
                    "timeout_s", f"{spec.timeout_s} is not a duration", "seconds greater than 0"
                )
            )
        result_mail = policy = compiled = None
        try:
            result_mail = check_result_mail(spec.result_emails, spec.result_email_on)
        except InvalidInput as exc:
            errors.append(exc)
        try:
            compiled = await self._compile(spec.schedule, job_id)
        except InvalidInput as exc:
            errors.append(exc)
        try:
            policy = await self._check_policy(spec.policy())
        except InvalidInput as exc:
            errors.append(exc)
        info = params = None
        try:
            info = await self.catalog.require(spec.type)
            params = validate_params(info, spec.params)
            policy = limits.checked(policy, info, params)
        except InvalidInput as exc:
            errors.append(exc)
        next_run = None
        if compiled is not None and not spec.paused:
            next_run = compiled.next_after(now)
            if next_run is None and not isinstance(spec.schedule.rule, OnDemand):
                errors.append(
                    InvalidInput(
                        "schedule",
                        f"{describe(spec.schedule)} has no occurrence after now ({now.isoformat(timespec='seconds')}), so the job would never run",
                        f"a schedule with a future occurrence: check the once-at time and the end ({DATETIME_FORM})",
                    )
                )
        if errors:
            return errors
        assert info is not None and params is not None and policy is not None
        return info, params, next_run, policy, result_mail

    @serves(ops.JOBS_IMPORT)
    async def import_jobs(self, request: ImportRequest) -> ImportResult:
        """Validate every document, then create or change them all in one transaction, or none.

        A document with an ``id`` that exists changes that job (or leaves it alone when nothing
        differs); without one, or with an unknown one, it creates a job with that id.
        """
        items, rows, errors = await self.prepare_import(request.documents, 0, set())
        if errors or request.dry_run:
            return ImportResult(dry_run=request.dry_run, applied=False, items=items, errors=errors)
        await self.store.apply_import(
            [r for a, r in rows if a == "create"], [r for a, r in rows if a == "change"]
        )
        for _, row in rows:
            self.dispatcher.put(Entry.from_row(row))
        return ImportResult(dry_run=False, applied=True, items=items)

    @serves(ops.JOBS_IMPORT_STAGE)
    async def import_stage(self, request: ImportStageRequest) -> ImportResult:
        """Check one batch as ``jobs.import`` checks documents and stage what it would do; the
        same job id twice in one import (in any batches) is an error of the later document."""
        _check_id(request.import_id, "import_id")
        items, rows, errors = await self.prepare_import(request.documents, request.offset, set())
        staged = [(i.action, i.index, row) for i, row in _with_rows(items, rows)]
        again = await self.staged.stage(request.import_id, staged)
        errors += [
            FieldError(
                field="id", message=f"{i.id} appears in more than one document",
                accepted="each job once", index=i.index,
            )
            for i in items
            if i.id in again
        ]  # fmt: skip
        return ImportResult(dry_run=False, applied=False, items=items, errors=errors)

    @serves(ops.JOBS_IMPORT_FINISH)
    async def import_finish(self, request: ImportFinishRequest) -> ImportFinished:
        """Apply the import's staged batches in one transaction, or drop them."""
        _check_id(request.import_id, "import_id")
        counts = await self.staged.count(request.import_id)
        if not request.commit:
            await self.staged.discard(request.import_id)
            return ImportFinished(applied=False)
        if not counts:
            raise NotFound(f"no staged import {request.import_id}; stage its batches first")
        for row in await self.staged.commit(request.import_id):
            self.dispatcher.put(Entry.from_row(row))
        return ImportFinished(
            applied=True,
            created=counts.get("create", 0),
            changed=counts.get("change", 0),
            unchanged=counts.get("unchanged", 0),
        )

    async def prepare_import(
        self, documents: list[Any], offset: int, seen: set[str]
    ) -> tuple[list[ImportItem], list[tuple[str, JobRow]], list[FieldError]]:
        """Check documents as an import does: their items, the rows to create or change, and
        the errors (indexes from ``offset``); ``seen`` holds the ids met so far."""
        now = self.dispatcher.clock()
        errors: list[FieldError] = []
        items: list[ImportItem] = []
        rows: list[tuple[str, JobRow]] = []
        for index, raw in enumerate(documents, start=offset):
            try:
                doc = msgspec.convert(raw, JobDocument)
            except msgspec.ValidationError as exc:
                errors.append(_field_error(invalid_from_msgspec(exc), index))
                continue
            if doc.id is not None:
                try:
                    _check_id(doc.id)
                except InvalidInput as exc:
                    errors.append(_field_error(exc, index))
                    continue
                if doc.id in seen:
                    errors.append(
                        FieldError(
                            field="id",
                            message=f"{doc.id} appears in more than one document",
                            accepted="each job once",
                            index=index,
                        )
                    )
                    continue
                seen.add(doc.id)
            job_id = doc.id or str(uuid.uuid4())
            checked = await self._check(doc, now, job_id)
            if isinstance(checked, list):
                errors.extend(_field_error(exc, index) for exc in checked)
                continue
            info, params, next_run, policy, result_mail = checked
            existing = await self.store.get_job(doc.id) if doc.id else None
            row = JobRow(
                id=job_id,
                title=doc.title.strip(),
                type=doc.type,
                pool=info.pool,
                params=params,
                schedule=doc.schedule,
                priority=doc.priority,
                paused=doc.paused,
                keep_history_days=doc.keep_history_days,
                timeout_s=doc.timeout_s,
                next_run_at=next_run,
                created_at=existing.created_at if existing else now,
                updated_at=now,
                policy=policy,
                result_mail=result_mail,
            )
            if existing is None:
                action = "create"
            elif _same(existing, row):
                action = "unchanged"
            else:
                action = "change"
                if existing.schedule == row.schedule and existing.paused == row.paused:
                    row.next_run_at = existing.next_run_at
            items.append(ImportItem(index=index, action=action, id=row.id, title=row.title))
            if action != "unchanged":
                rows.append((action, row))
        return items, rows, errors

    @serves(ops.JOBS_LIST)
    async def list_jobs(self, request: JobsPageRequest) -> JobsPage:
        """A page of jobs that fits one NATS message: cut at ``limit`` or at ``paging.PAGE_BYTES`` of
        encoded jobs, whichever comes first (a district's 100,000 jobs are many pages).
        Sorted, searched and filtered in SQL (:mod:`.listing`)."""
        if request.after is not None:
            _check_id(request.after)
            if request.cursor is not None or request.sort != "id":
                raise InvalidInput(
                    "after", "pages jobs in id order only", "after without sort or cursor"
                )
        types = await self.catalog.types()
        if request.after is not None:
            rows = await self.store.list_jobs_page(request.after, request.limit)
            jobs, cut = paging.fit([self._to_api(row, row.type in types) for row in rows])
            more = cut or len(rows) == request.limit
            return JobsPage(jobs=jobs, next=jobs[-1].id if more and jobs else None)
        window = await listing.jobs_page(self.store.pool, request, sorted(types))
        jobs, cut = paging.fit([self._to_api(row, row.type in types) for row in window.rows])
        nxt, prev = window.next, window.prev
        if cut:
            nxt = paging.encode_cursor(window.order, window.scope, window.keys[len(jobs) - 1])
        by_id = window.order.text == "id"
        return JobsPage(
            jobs=jobs,
            next=jobs[-1].id if by_id and nxt is not None and jobs else None,
            cursor=nxt,
            prev_cursor=prev,
            total=window.total,
        )

    @serves(ops.JOBS_GET)
    async def get(self, ref: JobRef) -> Job:
        return await self._view(await self._row(ref.id))

    @serves(ops.JOBS_DELETE)
    async def delete(self, ref: JobRef) -> Deleted:
        job_id = ref.id
        _check_id(job_id)
        if not await self.store.delete_job(job_id):
            raise NotFound(f"no job with id {job_id}")
        self.dispatcher.remove(job_id)
        return Deleted(deleted=job_id)

    @serves(ops.JOBS_PAUSE)
    async def pause(self, request: PauseRequest) -> Job:
        return await self._set_paused(request, True)

    @serves(ops.JOBS_RESUME)
    async def resume(self, request: PauseRequest) -> Job:
        return await self._set_paused(request, False)

    async def _set_paused(self, request: PauseRequest, paused: bool) -> Job:
        """Pause or resume; on resume the occurrences of the pause are recorded as skipped.

        Those skipped rows are not fenced by a lease: any replica answers the API (a queue
        group), often one that does not hold the job's partition, and they record this
        request, not a leader's decision. Their ids are the scheduled occurrences' own, so
        whichever of them and the leader's plan is written first stands, as with one replica.
        """
        job_id = request.id
        note = check_pause_note(request.note) if paused else None
        row = await self._row(job_id)
        now = self.dispatcher.clock()
        compiled = await self._compile(row.schedule, row.id)
        if row.paused and not paused:
            await refuse_resume_past_max_runs(self.state, job_id, row.policy)
            pause = await self.store.open_pause(job_id)
            since = pause["paused_at"] if pause else row.updated_at
            who = _by(
                pause["paused_by"] if pause else None, pause["paused_from"] if pause else None
            )
            skipped = _paused_occurrences(row, compiled, since, now, who)
            if skipped:
                await self.store.plan(skipped, [])
        elif paused and not row.paused and row.next_run_at is not None and row.next_run_at <= now:
            # Due but not planned yet: the pause holds these back too, and says so.
            who = _by(request.requested_by, request.requested_from)
            held = _paused_occurrences(
                row, compiled, row.next_run_at - timedelta(microseconds=1), now, who, now
            )
            await self.store.plan(held, [])
        row.paused = paused
        row.next_run_at = None if paused else compiled.next_after(now)
        row.updated_at = now
        await self.store.set_paused(
            job_id, paused, row.next_run_at, now, request.requested_by, request.requested_from, note
        )
        self.dispatcher.put(Entry.from_row(row))
        return await self._view(row)

    @serves(ops.JOBS_WHY)
    async def why(self, request: WhyRequest) -> WhyResult:
        """The job's ledger with reasons, its pauses, and (while paused) what the pause holds back."""
        if not 1 <= request.limit <= 10_000:
            raise InvalidInput("limit", f"{request.limit} is out of range", "1 to 10000")
        if request.since and request.until and request.until <= request.since:
            raise InvalidInput("to", "is not after --from", "a --to later than --from")
        row = await self._row(request.id)
        now = self.dispatcher.clock()
        entries = [
            LedgerEntry(
                occurrence_id=r["id"],
                run_id=run_id_for(r["id"])
                if r["state"] in ("dispatched", "pending", "lost")
                else None,
                scheduled_for=r["scheduled_for"],
                trigger=r["trigger"],
                state=r["state"],
                cause=r["cause"],
                reason=r["reason"],
                requested_by=r["requested_by"],
                requested_from=r["requested_from"],
                chained_from=r["chained_from"],
                dispatched_at=r["dispatched_at"],
                run_status=r["run_status"],
                run_error=r["run_error"],
                run_finished_at=r["run_finished_at"],
                recovery_attempts=r["recovery_attempts"],
            )
            for r in await self.store.ledger(row.id, request.since, request.until, request.limit)
        ]
        pauses = [
            PauseSpan(**dict(r))
            for r in await self.store.pauses(row.id, request.since, request.until)
        ]
        if row.paused:
            pause = await self.store.open_pause(row.id)
            paused_at = pause["paused_at"] if pause else row.updated_at
            since = paused_at if request.since is None else max(paused_at, request.since)
            until = min(now, request.until) if request.until else now
            who = _by(
                pause["paused_by"] if pause else None, pause["paused_from"] if pause else None
            )
            held = _paused_occurrences(
                row, await self._compile(row.schedule, row.id), since, until, who
            )
            entries = [
                LedgerEntry(
                    occurrence_id=o.id, run_id=None, scheduled_for=o.scheduled_for, trigger=o.trigger,
                    state=o.state, cause=o.cause, reason=o.reason,
                )
                for o in reversed(held)
            ] + entries  # fmt: skip
            entries = entries[: request.limit]
        return WhyResult(
            job_id=row.id,
            title=row.title,
            paused=row.paused,
            next_run_at=row.next_run_at,
            schedule_text=_schedule_text(row),
            schedule_end=row.schedule.end,
            on_demand=isinstance(row.schedule.rule, OnDemand),
            since=request.since,
            until=request.until,
            # Newest first, cut to what one NATS message holds (10,000 entries would not).
            occurrences=paging.fit(entries)[0],
            pauses=paging.fit(pauses)[0],
        )

    async def _check_policy(self, policy: RunPolicy) -> RunPolicy:
        """Refuse policy values that make no sense, naming the field."""
        check_state_policy(policy)
        if policy.catch_up_window_s <= 0:
            raise InvalidInput(
                "catch_up_window_s",
                f"{policy.catch_up_window_s:g} is not a duration",
                "seconds greater than 0, e.g. 3600",
            )
        if not 0 <= policy.catch_up_max <= 10_000:
            raise InvalidInput(
                "catch_up_max",
                f"{policy.catch_up_max} is out of range",
                "0 to 10000 missed occurrences to run",
            )
        if not 0 <= policy.retries <= 100:
            raise InvalidInput("retries", f"{policy.retries} is out of range", "0 to 100 retries")
        b = policy.retry_backoff
        if b.initial_s < 0 or b.factor < 1 or b.max_s < b.initial_s:
            raise InvalidInput(
                "retry_backoff",
                f"initial {b.initial_s:g}s, factor {b.factor:g}, max {b.max_s:g}s cannot be used",
                "initial_s >= 0, factor >= 1, max_s >= initial_s (e.g. 10, 2, 600)",
            )
        if policy.max_deliveries is not None and policy.max_deliveries <= policy.retries:
            raise InvalidInput(
                "max_deliveries",
                f"{policy.max_deliveries} leaves no room for {policy.retries} retries",
                f"more than the retries (at least {policy.retries + 1}), or null for retries + 3",
            )
        if policy.after is not None:
            after = policy.after
            _check_id(after.job, "after.job")
            if await self.store.get_job(after.job) is None:
                raise NotFound(
                    f"after.job: no job with id {after.job} to run after; `belltower jobs list` shows the ids"
                )
            if after.delay_s < 0:
                raise InvalidInput(
                    "after.delay_s",
                    f"{after.delay_s:g} is negative",
                    "seconds, 0 or more, e.g. 600 for 10 minutes",
                )
        return policy

    @serves(ops.JOBS_RUN_NOW)
    async def run_now(self, request: RunNowRequest) -> RunNowResult:
        row = await self._row(request.id)
        entry = self.dispatcher.entries.get(row.id) or Entry.from_row(row)
        occ = await self.dispatcher.run_now(
            entry, request.requested_by, request.requested_from, force=request.force
        )
        return RunNowResult(
            job_id=row.id,
            occurrence_id=occ.id,
            run_id=run_id_for(occ.id),
            dispatched_at=self.dispatcher.clock(),
            state="waiting" if occ.state == "waiting" else "dispatched",
            note=occ.reason if occ.state == "waiting" else None,
        )

    @serves(ops.LEDGER_PURGE)
    async def purge_ledger(self, request: LedgerPurgeRequest) -> LedgerPurged:
        if request.older_than_days < 1:
            raise InvalidInput(
                "older_than_days", f"{request.older_than_days} is too small", "1 or more"
            )
        before = datetime.now(UTC) - timedelta(days=request.older_than_days)
        return LedgerPurged(deleted=await self.store.purge_ledger(before, request.dry_run))

    async def _compile(self, schedule: Schedule, job_id: str = "") -> CompiledSchedule:
        """The schedule with its calendar's non-school days (and, for ``H`` fields, the values
        of this job's id); an unknown calendar is refused."""
        if schedule.calendar is None:
            return compile_schedule(schedule, spread_key=job_id)
        if await self.calendars.get(schedule.calendar) is None:
            raise InvalidInput(
                "calendar",
                f"no calendar named {schedule.calendar!r}",
                "a name from `belltower calendars list`",
            )
        days = [d for d, _ in await self.calendars.days(schedule.calendar)]
        return compile_schedule(schedule, non_school_days=days, spread_key=job_id)

    # -- school calendars ----------------------------------------------------------------

    @serves(ops.CALENDARS_CREATE)
    async def calendar_create(self, spec: CalendarSpec) -> Calendar:
        _check_calendar_name(spec.name)
        now = self.dispatcher.clock()
        days = _days(spec.days)
        if not await self.calendars.create(spec.name, spec.description.strip(), days, now):
            raise InvalidInput(
                "name",
                f"a calendar named {spec.name!r} already exists",
                "a new name, or `belltower calendars add-days` to change that one",
            )
        return await self._calendar(spec.name, changed=True)

    @serves(ops.CALENDARS_LIST)
    async def calendar_list(self, _: NoRequest) -> list[CalendarSummary]:
        return [
            CalendarSummary(
                name=r["name"],
                description=r["description"],
                days=r["days"],
                updated_at=r["updated_at"],
            )
            for r in await self.calendars.names()
        ]

    @serves(ops.CALENDARS_GET)
    async def calendar_get(self, ref: CalendarRef) -> Calendar:
        return await self._calendar(ref.name)

    @serves(ops.CALENDARS_ADD_DAYS)
    async def calendar_add_days(self, request: CalendarDays) -> Calendar:
        days = _days(request.days)
        if not await self.calendars.add_days(
            request.name, days, request.replace, self.dispatcher.clock()
        ):
            raise NotFound(
                f"no calendar named {request.name!r}; `belltower calendars list` shows them"
            )
        return await self._calendar(request.name, changed=True)

    @serves(ops.CALENDARS_UPDATE)
    async def calendar_update(self, request: CalendarUpdate) -> Calendar:
        _check_calendar_name(request.name)
        if not await self.calendars.update(
            request.name, request.description.strip(), self.dispatcher.clock()
        ):
            raise NotFound(
                f"no calendar named {request.name!r}; `belltower calendars list` shows them"
            )
        return await self._calendar(request.name)

    @serves(ops.CALENDARS_REMOVE_DAYS)
    async def calendar_remove_days(self, request: CalendarDayRefs) -> Calendar:
        _check_calendar_name(request.name)
        if not await self.calendars.remove_days(
            request.name, request.days, self.dispatcher.clock()
        ):
            raise NotFound(
                f"no calendar named {request.name!r}; `belltower calendars list` shows them"
            )
        return await self._calendar(request.name, changed=True)

    @serves(ops.CALENDARS_DELETE)
    async def calendar_delete(self, ref: CalendarRef) -> Deleted:
        name = ref.name
        users = await self.calendars.users(name)
        if users:
            raise InvalidInput(
                "name",
                f"calendar {name!r} is used by {len(users)} job(s): {', '.join(users[:5])}",
                "a calendar no job uses; delete those jobs or give them another calendar first",
            )
        if not await self.calendars.delete(name):
            raise NotFound(f"no calendar named {name!r}; `belltower calendars list` shows them")
        return Deleted(deleted=name)

    @serves(ops.CALENDARS_DIFF)
    async def calendar_diff(self, request: CalendarDiffRequest) -> CalendarDiff:
        """What the change would do to the runs of the calendar's jobs; nothing is saved."""
        _check_calendar_name(request.name)
        for field, given in (("add_days", request.add_days), ("remove_days", request.remove_days)):
            if len(given) > MAX_DIFF_DAYS:
                raise InvalidInput(field, f"more than {MAX_DIFF_DAYS} days", "fewer days")
        added = [d for d, _ in _days(request.add_days)]
        if request.since is not None and not EARLIEST <= request.since < LATEST:
            raise InvalidInput(
                "from", f"{request.since} is out of range", "a time from 1970 to 2199"
            )
        if await self.calendars.get(request.name) is None:
            raise NotFound(
                f"no calendar named {request.name!r}; `belltower calendars list` shows them"
            )
        current = [d for d, _ in await self.calendars.days(request.name)]
        return await whatif.calendar_diff(
            self.store.pool, request, current, added, self.dispatcher.clock()
        )

    async def _calendar(self, name: str, changed: bool = False) -> Calendar:
        """The calendar as the API shows it; ``changed`` hands its days to the dispatcher."""
        row = await self.calendars.get(name)
        if row is None:
            raise NotFound(f"no calendar named {name!r}; `belltower calendars list` shows them")
        days = await self.calendars.days(name)
        if changed:
            self.dispatcher.set_calendar(name, frozenset(d for d, _ in days))
        return Calendar(
            name=row["name"],
            description=row["description"],
            days=[NonSchoolDay(day=d, label=label) for d, label in days],
            # The first jobs that use it, as many as one NATS message holds with the days.
            jobs=paging.fit(await self.calendars.users(name), paging.PAGE_BYTES // 2)[0],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    async def _row(self, job_id: str) -> JobRow:
        _check_id(job_id)
        row = await self.store.get_job(job_id)
        if row is None:
            raise NotFound(f"no job with id {job_id}; `belltower jobs list` shows the ids")
        return row

    async def _view(self, row: JobRow) -> Job:
        job = self._to_api(row, row.type in await self.catalog.types())
        if row.paused and (pause := await self.store.open_pause(row.id)):
            job.paused_by = _by(pause["paused_by"], pause["paused_from"])
            job.paused_at = pause["paused_at"]
            job.pause_note = pause["note"]
        await limits.fill(job, row.policy, self.store.pool)
        return await fill_state(job, row.policy, self.state, self.overdue)

    @staticmethod
    def _to_api(row: JobRow, installed: bool) -> Job:
        p = row.policy
        return Job(
            id=row.id,
            title=row.title,
            type=row.type,
            pool=row.pool,
            params=row.params,
            schedule=row.schedule,
            schedule_text=_schedule_text(row),
            priority=row.priority,
            paused=row.paused,
            next_run_at=row.next_run_at,
            keep_history_days=row.keep_history_days,
            timeout_s=row.timeout_s,
            type_installed=installed,
            created_at=row.created_at,
            updated_at=row.updated_at,
            result_emails=list(row.result_mail.to) if row.result_mail else [],
            result_email_on=row.result_mail.on if row.result_mail else "default",
            catch_up=p.catch_up,
            catch_up_window_s=p.catch_up_window_s,
            catch_up_max=p.catch_up_max,
            overlap=p.overlap,
            retries=p.retries,
            retry_backoff=p.retry_backoff,
            max_deliveries=p.max_deliveries,
            after=p.after,
            max_runs=p.max_runs,
            alert_after_failures=p.alert_after_failures,
            pause_after_failures=p.pause_after_failures,
            concurrency_key=p.concurrency_key,
            concurrency_limit=p.concurrency_limit,
        )


_ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]+")
MAX_RESULT_EMAILS = 50


def check_result_mail(addresses: list[str], on: EmailOn) -> ResultMail | None:
    """The job's result-mail setting, or None when nobody is to be told; refuses a malformed address."""
    if len(addresses) > MAX_RESULT_EMAILS:
        raise InvalidInput(
            "result_emails",
            f"has {len(addresses)} addresses",
            f"at most {MAX_RESULT_EMAILS}; use a mailing list address for more",
        )
    cleaned: list[str] = []
    for i, address in enumerate(addresses):
        address = address.strip()
        if not _ADDRESS.fullmatch(address):
            raise InvalidInput(
                f"result_emails[{i}]",
                f"{address!r} is not an e-mail address",
                "one address per entry, e.g. registrar@school.edu",
            )
        if address.lower() not in (a.lower() for a in cleaned):
            cleaned.append(address)
    if not cleaned and on == "default":
        return None
    return ResultMail(to=tuple(cleaned), on=on)


def _by(who: str | None, where: str | None) -> str:
    return (who or "someone") + (f" from {where}" if where else "")


def _paused_occurrences(
    row: JobRow,
    compiled: CompiledSchedule,
    since: datetime,
    until: datetime,
    who: str,
    paused_at: datetime | None = None,
) -> list[LedgerRow]:
    """The occurrences a pause from ``since`` held back up to ``until``, as skipped ledger rows.

    At most ``MAX_PAUSED_LISTED`` one by one; the next one stands for the rest, so nothing is
    left out silently.
    """
    out: list[LedgerRow] = []
    at = compiled.next_after(since)
    at_text = (paused_at or since).isoformat(timespec="seconds")
    reason = f"skipped: the job was paused by {who} at {at_text}"
    while at is not None and at <= until:
        if len(out) == MAX_PAUSED_LISTED:
            reason += f", with every later occurrence up to {until.isoformat(timespec='seconds')}"
        out.append(
            LedgerRow(
                id=occurrence_id(row.id, at), job_id=row.id, scheduled_for=at, priority=row.priority,
                trigger="schedule", state="skipped", reason=reason, cause="paused",
            )
        )  # fmt: skip
        if len(out) > MAX_PAUSED_LISTED:
            break
        at = compiled.next_after(at)
    return out


def _with_rows(
    items: list[ImportItem], rows: list[tuple[str, JobRow]]
) -> list[tuple[ImportItem, JobRow]]:
    """Each item with its row (an unchanged job's row is the item's job as it stands)."""
    by_id = {row.id: row for _, row in rows}
    return [(i, by_id[i.id]) for i in items if i.id in by_id]


def _check_id(job_id: str, field: str = "id") -> None:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise InvalidInput(
            field, f"{job_id!r} is not a job id", "a UUID as shown by `belltower jobs list`"
        ) from None


def _check_calendar_name(name: str) -> None:
    if not CALENDAR_NAME.match(name):
        raise InvalidInput("name", f"{name!r} is not a calendar name", CALENDAR_NAME_FORM)


def _days(days: list[NonSchoolDay]) -> list[tuple]:
    for d in days:
        if len(d.label) > 200:
            raise InvalidInput("days.label", "is longer than 200 characters", "a short label")
    return [(d.day, d.label.strip()) for d in days]


def _field_error(exc: InvalidInput, index: int) -> FieldError:
    return FieldError(field=exc.field, message=exc.reason, accepted=exc.accepted, index=index)


_COMPARED = (
    "title", "type", "params", "schedule", "priority", "paused", "keep_history_days", "timeout_s",
    "policy", "result_mail",
)  # fmt: skip
"""What an import compares to tell a changed job from an unchanged one."""


def _same(a: JobRow, b: JobRow) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in _COMPARED)


def _schedule_text(row: JobRow) -> str:
    """The schedule in words; with ``H`` fields, the values this job's id picked follow."""
    if is_spread(row.schedule):
        return compiled_for(row.schedule, spread_key=row.id).describe()
    return describe(row.schedule)

"""The scheduler's management operations, served over NATS request-reply.

Each takes the raw request body and returns an API struct; anything invalid is refused with an
error naming the field before anything is written.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from belltower.api import (
    Calendar,
    CalendarDays,
    CalendarRef,
    CalendarSpec,
    Job,
    JobRef,
    JobSpec,
    JobTypeInfo,
    LedgerPurgeRequest,
    NonSchoolDay,
    RunNowRequest,
    RunNowResult,
)
from belltower.errors import InvalidInput, NotFound
from belltower.events import run_id_for
from belltower.rpc import decode_request
from belltower.schedule import DATETIME_FORM, CompiledSchedule, Schedule, compile_schedule, describe

from .catalog import Catalog, validate_params
from .dispatcher import Dispatcher, Entry
from .store import CalendarStore, JobRow, Store

MAX_PRIORITY = 1_000_000
CALENDAR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CALENDAR_NAME_FORM = (
    "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. district-2026-27"
)

ROUTES = {
    "job_types.list": "job_types",
    "jobs.create": "create",
    "jobs.list": "list",
    "jobs.get": "get",
    "jobs.delete": "delete",
    "jobs.pause": "pause",
    "jobs.resume": "resume",
    "jobs.run_now": "run_now",
    "ledger.purge": "purge_ledger",
    "calendars.create": "calendar_create",
    "calendars.list": "calendar_list",
    "calendars.get": "calendar_get",
    "calendars.delete": "calendar_delete",
    "calendars.add_days": "calendar_add_days",
}
"""API operation name -> method of :class:`Operations`."""


class Operations:
    def __init__(self, store: Store, dispatcher: Dispatcher, catalog: Catalog) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.catalog = catalog
        self.calendars = CalendarStore(store.pool)

    async def job_types(self, _: bytes) -> list[JobTypeInfo]:
        return sorted((await self.catalog.types()).values(), key=lambda t: t.name)

    async def create(self, data: bytes) -> Job:
        spec = decode_request(data, JobSpec)
        title = spec.title.strip()
        if not title or len(title) > 200:
            raise InvalidInput(
                "title",
                "must not be empty and at most 200 characters",
                "a short name, e.g. 'Nightly cleanup'",
            )
        if not 0 <= spec.priority <= MAX_PRIORITY:
            raise InvalidInput(
                "priority",
                f"{spec.priority} is out of range",
                f"a whole number from 0 to {MAX_PRIORITY}; default 500, higher runs first",
            )
        if spec.keep_history_days is not None and spec.keep_history_days < 1:
            raise InvalidInput(
                "keep_history_days",
                f"{spec.keep_history_days} is not a number of days",
                "1 or more, or null to keep forever",
            )
        if spec.timeout_s is not None and spec.timeout_s <= 0:
            raise InvalidInput(
                "timeout_s", f"{spec.timeout_s} is not a duration", "seconds greater than 0"
            )
        compiled = await self._compile(spec.schedule)
        info = await self.catalog.require(spec.type)
        params = validate_params(info, spec.params)
        now = self.dispatcher.clock()
        next_run = None if spec.paused else compiled.next_after(now)
        if next_run is None and not spec.paused:
            raise InvalidInput(
                "schedule",
                f"{describe(spec.schedule)} has no occurrence after now ({now.isoformat(timespec='seconds')}), so the job would never run",
                f"a schedule with a future occurrence: check the once-at time and the end ({DATETIME_FORM})",
            )
        row = JobRow(
            id=str(uuid.uuid4()),
            title=title,
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
        )
        await self.store.insert_job(row)
        self.dispatcher.put(Entry.from_row(row))
        return await self._view(row)

    async def list(self, _: bytes) -> list[Job]:
        types = await self.catalog.types()
        return [self._to_api(row, row.type in types) for row in await self.store.list_jobs()]

    async def get(self, data: bytes) -> Job:
        return await self._view(await self._row(decode_request(data, JobRef).id))

    async def delete(self, data: bytes) -> dict[str, str]:
        job_id = decode_request(data, JobRef).id
        _check_id(job_id)
        if not await self.store.delete_job(job_id):
            raise NotFound(f"no job with id {job_id}")
        self.dispatcher.remove(job_id)
        return {"deleted": job_id}

    async def pause(self, data: bytes) -> Job:
        return await self._set_paused(decode_request(data, JobRef).id, True)

    async def resume(self, data: bytes) -> Job:
        return await self._set_paused(decode_request(data, JobRef).id, False)

    async def _set_paused(self, job_id: str, paused: bool) -> Job:
        row = await self._row(job_id)
        now = self.dispatcher.clock()
        row.paused = paused
        row.next_run_at = None if paused else (await self._compile(row.schedule)).next_after(now)
        row.updated_at = now
        await self.store.set_paused(job_id, paused, row.next_run_at, now)
        self.dispatcher.put(Entry.from_row(row))
        return await self._view(row)

    async def run_now(self, data: bytes) -> RunNowResult:
        request = decode_request(data, RunNowRequest)
        row = await self._row(request.id)
        entry = self.dispatcher.entries.get(row.id) or Entry.from_row(row)
        occ = await self.dispatcher.run_now(entry, request.requested_by)
        return RunNowResult(
            job_id=row.id,
            occurrence_id=occ.id,
            run_id=run_id_for(occ.id),
            dispatched_at=self.dispatcher.clock(),
        )

    async def purge_ledger(self, data: bytes) -> dict[str, int]:
        request = decode_request(data, LedgerPurgeRequest)
        if request.older_than_days < 1:
            raise InvalidInput(
                "older_than_days", f"{request.older_than_days} is too small", "1 or more"
            )
        before = datetime.now(UTC) - timedelta(days=request.older_than_days)
        return {"deleted": await self.store.purge_ledger(before, request.dry_run)}

    async def _compile(self, schedule: Schedule) -> CompiledSchedule:
        """The schedule with its calendar's non-school days; an unknown calendar is refused."""
        if schedule.calendar is None:
            return compile_schedule(schedule)
        if await self.calendars.get(schedule.calendar) is None:
            raise InvalidInput(
                "calendar",
                f"no calendar named {schedule.calendar!r}",
                "a name from `belltower calendars list`",
            )
        days = [d for d, _ in await self.calendars.days(schedule.calendar)]
        return compile_schedule(schedule, non_school_days=days)

    # -- school calendars ----------------------------------------------------------------

    async def calendar_create(self, data: bytes) -> Calendar:
        spec = decode_request(data, CalendarSpec)
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

    async def calendar_list(self, _: bytes) -> list[dict[str, object]]:
        return [
            {
                "name": r["name"],
                "description": r["description"],
                "days": r["days"],
                "updated_at": r["updated_at"],
            }
            for r in await self.calendars.names()
        ]

    async def calendar_get(self, data: bytes) -> Calendar:
        return await self._calendar(decode_request(data, CalendarRef).name)

    async def calendar_add_days(self, data: bytes) -> Calendar:
        request = decode_request(data, CalendarDays)
        days = _days(request.days)
        if not await self.calendars.add_days(
            request.name, days, request.replace, self.dispatcher.clock()
        ):
            raise NotFound(
                f"no calendar named {request.name!r}; `belltower calendars list` shows them"
            )
        return await self._calendar(request.name, changed=True)

    async def calendar_delete(self, data: bytes) -> dict[str, str]:
        name = decode_request(data, CalendarRef).name
        users = await self.calendars.users(name)
        if users:
            raise InvalidInput(
                "name",
                f"calendar {name!r} is used by {len(users)} job(s): {', '.join(users[:5])}",
                "a calendar no job uses; delete those jobs or give them another calendar first",
            )
        if not await self.calendars.delete(name):
            raise NotFound(f"no calendar named {name!r}; `belltower calendars list` shows them")
        return {"deleted": name}

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
            jobs=await self.calendars.users(name),
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
        return self._to_api(row, row.type in await self.catalog.types())

    @staticmethod
    def _to_api(row: JobRow, installed: bool) -> Job:
        return Job(
            id=row.id,
            title=row.title,
            type=row.type,
            pool=row.pool,
            params=row.params,
            schedule=row.schedule,
            schedule_text=describe(row.schedule),
            priority=row.priority,
            paused=row.paused,
            next_run_at=row.next_run_at,
            keep_history_days=row.keep_history_days,
            timeout_s=row.timeout_s,
            type_installed=installed,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def _check_id(job_id: str) -> None:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise InvalidInput(
            "id", f"{job_id!r} is not a job id", "a UUID as shown by `belltower jobs list`"
        ) from None


def _check_calendar_name(name: str) -> None:
    if not CALENDAR_NAME.match(name):
        raise InvalidInput("name", f"{name!r} is not a calendar name", CALENDAR_NAME_FORM)


def _days(days: list[NonSchoolDay]) -> list[tuple]:
    for d in days:
        if len(d.label) > 200:
            raise InvalidInput("days.label", "is longer than 200 characters", "a short label")
    return [(d.day, d.label.strip()) for d in days]

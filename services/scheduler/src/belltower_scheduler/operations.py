"""The scheduler's management operations, served over NATS request-reply.

Each takes the raw request body and returns an API struct; anything invalid is refused with an
error naming the field before anything is written.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from belltower.api import (
    Job,
    JobRef,
    JobSpec,
    JobTypeInfo,
    LedgerPurgeRequest,
    RunNowRequest,
    RunNowResult,
)
from belltower.errors import InvalidInput, NotFound
from belltower.events import EmailOn, ResultMail, run_id_for
from belltower.rpc import decode_request
from belltower.schedule import DATETIME_FORM, compile_schedule, describe

from .catalog import Catalog, validate_params
from .dispatcher import Dispatcher, Entry
from .store import JobRow, Store

MAX_PRIORITY = 1_000_000

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
}
"""API operation name -> method of :class:`Operations`."""


class Operations:
    def __init__(self, store: Store, dispatcher: Dispatcher, catalog: Catalog) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.catalog = catalog

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
        result_mail = check_result_mail(spec.result_emails, spec.result_email_on)
        compiled = compile_schedule(spec.schedule)
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
            result_mail=result_mail,
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
        row.next_run_at = None if paused else compile_schedule(row.schedule).next_after(now)
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
            result_emails=list(row.result_mail.to) if row.result_mail else [],
            result_email_on=row.result_mail.on if row.result_mail else "default",
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


def _check_id(job_id: str) -> None:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise InvalidInput(
            "id", f"{job_id!r} is not a job id", "a UUID as shown by `belltower jobs list`"
        ) from None

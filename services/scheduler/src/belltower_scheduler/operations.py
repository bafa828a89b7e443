"""The scheduler's management operations, served over NATS request-reply.

Each takes the raw request body and returns an API struct; anything invalid is refused with an
error naming the field before anything is written.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from belltower.api import (
    FieldError,
    ImportItem,
    ImportRequest,
    ImportResult,
    Job,
    JobDocument,
    JobRef,
    JobSpec,
    JobTypeInfo,
    LedgerPurgeRequest,
    RunNowRequest,
    RunNowResult,
)
from belltower.errors import InvalidInput, NotFound
from belltower.events import run_id_for
from belltower.rpc import decode_request, invalid_from_msgspec
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
    "jobs.import": "import_jobs",
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
        now = self.dispatcher.clock()
        checked = await self._check(spec, now)
        if isinstance(checked, list):
            raise checked[0]
        info, params, next_run = checked
        row = JobRow(
            id=str(uuid.uuid4()),
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
        )
        await self.store.insert_job(row)
        self.dispatcher.put(Entry.from_row(row))
        return await self._view(row)

    async def _check(
        self, spec: JobSpec, now: datetime
    ) -> tuple[JobTypeInfo, dict[str, Any], datetime | None] | list[InvalidInput]:
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
        compiled = None
        try:
            compiled = compile_schedule(spec.schedule)
        except InvalidInput as exc:
            errors.append(exc)
        info = params = None
        try:
            info = await self.catalog.require(spec.type)
            params = validate_params(info, spec.params)
        except InvalidInput as exc:
            errors.append(exc)
        next_run = None
        if compiled is not None and not spec.paused:
            next_run = compiled.next_after(now)
            if next_run is None:
                errors.append(
                    InvalidInput(
                        "schedule",
                        f"{describe(spec.schedule)} has no occurrence after now ({now.isoformat(timespec='seconds')}), so the job would never run",
                        f"a schedule with a future occurrence: check the once-at time and the end ({DATETIME_FORM})",
                    )
                )
        if errors:
            return errors
        assert info is not None and params is not None
        return info, params, next_run

    async def import_jobs(self, data: bytes) -> ImportResult:
        """Validate every document, then create or change them all in one transaction, or none.

        A document with an ``id`` that exists changes that job (or leaves it alone when nothing
        differs); without one, or with an unknown one, it creates a job with that id.
        """
        request = decode_request(data, ImportRequest)
        now = self.dispatcher.clock()
        errors: list[FieldError] = []
        items: list[ImportItem] = []
        rows: list[tuple[str, JobRow]] = []
        seen: set[str] = set()
        for index, raw in enumerate(request.documents):
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
            checked = await self._check(doc, now)
            if isinstance(checked, list):
                errors.extend(_field_error(exc, index) for exc in checked)
                continue
            info, params, next_run = checked
            existing = await self.store.get_job(doc.id) if doc.id else None
            row = JobRow(
                id=doc.id or str(uuid.uuid4()),
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
        if errors or request.dry_run:
            return ImportResult(dry_run=request.dry_run, applied=False, items=items, errors=errors)
        await self.store.apply_import(
            [r for a, r in rows if a == "create"], [r for a, r in rows if a == "change"]
        )
        for _, row in rows:
            self.dispatcher.put(Entry.from_row(row))
        return ImportResult(dry_run=False, applied=True, items=items)

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
        who = request.requested_by
        if request.requested_from:
            who = f"{who or 'unknown'} from {request.requested_from}"
        occ = await self.dispatcher.run_now(entry, who)
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
        )


def _check_id(job_id: str) -> None:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise InvalidInput(
            "id", f"{job_id!r} is not a job id", "a UUID as shown by `belltower jobs list`"
        ) from None


def _field_error(exc: InvalidInput, index: int) -> FieldError:
    return FieldError(field=exc.field, message=exc.reason, accepted=exc.accepted, index=index)


def _same(a: JobRow, b: JobRow) -> bool:
    return (
        a.title,
        a.type,
        a.params,
        a.schedule,
        a.priority,
        a.paused,
        a.keep_history_days,
        a.timeout_s,
    ) == (
        b.title,
        b.type,
        b.params,
        b.schedule,
        b.priority,
        b.paused,
        b.keep_history_days,
        b.timeout_s,
    )

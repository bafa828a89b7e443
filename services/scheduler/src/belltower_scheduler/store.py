"""The scheduler's SQL: job definitions and the occurrence ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from belltower.schedule import Schedule, schedule_decoder, schedule_encoder

JOB_COLUMNS = (
    "id::text AS id, title, type, pool, params::text AS params, schedule::text AS schedule, priority, paused, "
    "keep_history_days, timeout_s, next_run_at, created_at, updated_at"
)


@dataclass(slots=True)
class JobRow:
    id: str
    title: str
    type: str
    pool: str
    params: dict[str, Any]
    schedule: Schedule
    priority: int
    paused: bool
    keep_history_days: int | None
    timeout_s: float | None
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> JobRow:
        return cls(
            id=r["id"],
            title=r["title"],
            type=r["type"],
            pool=r["pool"],
            params=msgspec.json.decode(r["params"]),
            schedule=schedule_decoder.decode(r["schedule"]),
            priority=r["priority"],
            paused=r["paused"],
            keep_history_days=r["keep_history_days"],
            timeout_s=r["timeout_s"],
            next_run_at=r["next_run_at"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
        )


@dataclass(slots=True)
class Occurrence:
    """A ledger row about to be written."""

    id: str
    job_id: str
    scheduled_for: datetime
    priority: int
    trigger: str
    state: str
    requested_by: str | None = None
    reason: str | None = None


_INSERT = (
    "INSERT INTO scheduler.jobs (id, title, type, pool, params, schedule, priority, paused, "
    "keep_history_days, timeout_s, next_run_at, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10, $11, $12, $13)"
)


def _job_args(job: JobRow) -> tuple[Any, ...]:
    return (
        job.id,
        job.title,
        job.type,
        job.pool,
        msgspec.json.encode(job.params).decode(),
        schedule_encoder.encode(job.schedule).decode(),
        job.priority,
        job.paused,
        job.keep_history_days,
        job.timeout_s,
        job.next_run_at,
        job.created_at,
        job.updated_at,
    )


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert_job(self, job: JobRow) -> None:
        await self.pool.execute(_INSERT, *_job_args(job))

    async def apply_import(self, creates: Sequence[JobRow], changes: Sequence[JobRow]) -> None:
        """Insert and update jobs in one transaction: an import lands whole or not at all."""
        async with self.pool.acquire() as conn, conn.transaction():
            for job in creates:
                await conn.execute(_INSERT, *_job_args(job))
            for job in changes:
                await conn.execute(
                    "UPDATE scheduler.jobs SET title = $2, type = $3, pool = $4, params = $5::jsonb, "
                    "schedule = $6::jsonb, priority = $7, paused = $8, keep_history_days = $9, "
                    "timeout_s = $10, next_run_at = $11, created_at = $12, updated_at = $13 WHERE id = $1::uuid",
                    *_job_args(job),
                )

    async def list_jobs(self) -> list[JobRow]:
        rows = await self.pool.fetch(
            f"SELECT {JOB_COLUMNS} FROM scheduler.jobs ORDER BY priority DESC, title, id"
        )
        return [JobRow.from_record(r) for r in rows]

    async def job_pages(self, page: int = 5_000) -> AsyncIterator[list[asyncpg.Record]]:
        """Every job row, read through a server-side cursor in lists of ``page`` records.

        Used at start-up to fill the dispatcher: ``list_jobs`` would hold every record (and then
        every JobRow) at once, and CPython keeps most of that peak as resident memory after it
        is freed. Reading page by page keeps the peak to one page.
        """
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(
                f"SELECT {JOB_COLUMNS} FROM scheduler.jobs ORDER BY priority DESC, title, id"
            )
            while records := await cursor.fetch(page):
                yield records

    async def get_job(self, job_id: str) -> JobRow | None:
        row = await self.pool.fetchrow(
            f"SELECT {JOB_COLUMNS} FROM scheduler.jobs WHERE id = $1::uuid", job_id
        )
        return JobRow.from_record(row) if row else None

    async def delete_job(self, job_id: str) -> bool:
        status = await self.pool.execute("DELETE FROM scheduler.jobs WHERE id = $1::uuid", job_id)
        return status.endswith(" 1")

    async def set_paused(
        self, job_id: str, paused: bool, next_run_at: datetime | None, now: datetime
    ) -> None:
        await self.pool.execute(
            "UPDATE scheduler.jobs SET paused = $2, next_run_at = $3, updated_at = $4 WHERE id = $1::uuid",
            job_id,
            paused,
            next_run_at,
            now,
        )

    async def plan(
        self, occurrences: Sequence[Occurrence], next_runs: Sequence[tuple[str, datetime | None]]
    ) -> set[str]:
        """Write planned occurrences and the jobs' next times in one transaction.

        Returns the ids of the occurrences that were new: an occurrence already in the ledger
        (planned by another replica, or before a restart) is not dispatched again.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            new: set[str] = set()
            if occurrences:
                rows = await conn.fetch(
                    "INSERT INTO scheduler.occurrences (id, job_id, scheduled_for, priority, trigger, requested_by, state, reason) "
                    "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[]) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id::text",
                    [o.id for o in occurrences],
                    [o.job_id for o in occurrences],
                    [o.scheduled_for for o in occurrences],
                    [o.priority for o in occurrences],
                    [o.trigger for o in occurrences],
                    [o.requested_by for o in occurrences],
                    [o.state for o in occurrences],
                    [o.reason for o in occurrences],
                )
                new = {r["id"] for r in rows}
            if next_runs:
                await conn.execute(
                    "UPDATE scheduler.jobs j SET next_run_at = n.next_run_at FROM "
                    "unnest($1::uuid[], $2::timestamptz[]) AS n(id, next_run_at) WHERE j.id = n.id",
                    [job_id for job_id, _ in next_runs],
                    [at for _, at in next_runs],
                )
            return new

    async def mark_dispatched(self, ids: Sequence[str], at: datetime) -> None:
        if ids:
            await self.pool.execute(
                "UPDATE scheduler.occurrences SET state = 'dispatched', dispatched_at = $2 "
                "WHERE id = ANY($1::uuid[]) AND state = 'pending'",
                list(ids),
                at,
            )

    async def mark_skipped(self, ids: Sequence[str], reason: str) -> None:
        if ids:
            await self.pool.execute(
                "UPDATE scheduler.occurrences SET state = 'skipped', reason = $2 WHERE id = ANY($1::uuid[]) AND state = 'pending'",
                list(ids),
                reason,
            )

    async def pending(self, limit: int = 10_000) -> list[asyncpg.Record]:
        """Occurrences planned but not yet confirmed as published, with what is needed to publish them."""
        return await self.pool.fetch(
            "SELECT o.id::text AS id, o.job_id::text AS job_id, o.scheduled_for, o.priority, o.trigger, o.requested_by, "
            "j.id IS NOT NULL AS job_exists "
            "FROM scheduler.occurrences o LEFT JOIN scheduler.jobs j ON j.id = o.job_id "
            "WHERE o.state = 'pending' ORDER BY o.scheduled_for, o.priority DESC LIMIT $1",
            limit,
        )

    async def ledger(
        self, job_id: str, since: datetime | None, until: datetime | None, limit: int
    ) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT id::text AS id, scheduled_for, priority, trigger, requested_by, state, reason, created_at, dispatched_at "
            "FROM scheduler.occurrences WHERE job_id = $1::uuid "
            "AND ($2::timestamptz IS NULL OR scheduled_for >= $2) AND ($3::timestamptz IS NULL OR scheduled_for < $3) "
            "ORDER BY scheduled_for DESC LIMIT $4",
            job_id,
            since,
            until,
            limit,
        )

    async def purge_ledger(self, before: datetime, dry_run: bool) -> int:
        sql = "FROM scheduler.occurrences WHERE created_at < $1 AND state <> 'pending'"
        if dry_run:
            return int(await self.pool.fetchval(f"SELECT count(*) {sql}", before))
        status = await self.pool.execute(f"DELETE {sql}", before)
        return int(status.split()[-1])

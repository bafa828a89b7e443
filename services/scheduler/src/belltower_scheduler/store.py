"""The scheduler's SQL: job definitions and the occurrence ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from belltower.schedule import Schedule, schedule_decoder, schedule_encoder

from .lease import Deposed, partition_sql

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


Partition = tuple[int, int]
"""(index, count): the jobs whose id falls in partition ``index`` of ``count`` (see lease.py)."""

Fence = tuple[str, int]
"""(lease key, token): the lease a ledger write is made under."""


def _partition_filter(column: str, partition: Partition | None, first_param: int) -> str:
    if partition is None or partition[1] <= 1:
        return "true"
    return partition_sql(column, f"${first_param}::bigint", f"${first_param + 1}::bigint")


def _partition_args(partition: Partition | None) -> list[int]:
    if partition is None or partition[1] <= 1:
        return []
    return [partition[1], partition[0]]


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert_job(self, job: JobRow) -> None:
        await self.pool.execute(
            "INSERT INTO scheduler.jobs (id, title, type, pool, params, schedule, priority, paused, "
            "keep_history_days, timeout_s, next_run_at, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10, $11, $12, $13)",
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

    async def list_jobs(self) -> list[JobRow]:
        rows = await self.pool.fetch(
            f"SELECT {JOB_COLUMNS} FROM scheduler.jobs ORDER BY priority DESC, title, id"
        )
        return [JobRow.from_record(r) for r in rows]

    async def job_pages(
        self, page: int = 5_000, partition: Partition | None = None
    ) -> AsyncIterator[list[asyncpg.Record]]:
        """Every job row, read through a server-side cursor in lists of ``page`` records.

        Used at start-up to fill the dispatcher: ``list_jobs`` would hold every record (and then
        every JobRow) at once, and CPython keeps most of that peak as resident memory after it
        is freed. Reading page by page keeps the peak to one page.
        """
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(
                f"SELECT {JOB_COLUMNS} FROM scheduler.jobs WHERE {_partition_filter('id', partition, 1)} "
                "ORDER BY priority DESC, title, id",
                *_partition_args(partition),
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
        self,
        occurrences: Sequence[Occurrence],
        next_runs: Sequence[tuple[str, datetime | None]],
        fence: Fence | None = None,
    ) -> set[str]:
        """Write planned occurrences and the jobs' next times in one transaction.

        Returns the ids of the occurrences that were new: an occurrence already in the ledger
        (planned by another replica, or before a restart) is not dispatched again. With a
        ``fence``, raises :class:`Deposed` and writes nothing unless that lease's token is still
        the current one; the row lock holds a new holder's :meth:`fence` until this commits.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            if fence is not None:
                await self._check_fence(conn, fence)
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

    @staticmethod
    async def _check_fence(conn: asyncpg.Connection, fence: Fence) -> None:
        key, token = fence
        # A replica stalled inside this transaction (SIGSTOP, a long pause) would hold the row
        # lock and so block a new holder's fence: PostgreSQL ends such a transaction after 2 s.
        current = await conn.fetchval(
            "SELECT token, set_config('idle_in_transaction_session_timeout', '2000', true) "
            "FROM scheduler.leases WHERE partition_key = $1 FOR SHARE",
            key,
        )
        if current != token:
            raise Deposed(
                f"lease {key} is now held under token {current}, not {token}: this replica was "
                "deposed, and planned nothing"
            )

    async def fence(self, key: str, token: int, holder: str, force: bool = False) -> bool:
        """Record ``token`` as the lease's current one; False if a newer one is already there
        (unless ``force``). Waits for ledger transactions still running under the old token."""
        condition = "" if force else "WHERE scheduler.leases.token < excluded.token"
        row = await self.pool.fetchrow(
            "INSERT INTO scheduler.leases (partition_key, token, holder, acquired_at) "
            "VALUES ($1, $2, $3, now()) ON CONFLICT (partition_key) DO UPDATE SET "
            f"token = excluded.token, holder = excluded.holder, acquired_at = excluded.acquired_at {condition} "
            "RETURNING token",
            key,
            token,
            holder,
        )
        return row is not None

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

    async def pending(
        self, limit: int = 10_000, partition: Partition | None = None
    ) -> list[asyncpg.Record]:
        """Occurrences planned but not yet confirmed as published, with what is needed to publish
        them; with ``partition``, only those of its jobs."""
        return await self.pool.fetch(
            "SELECT o.id::text AS id, o.job_id::text AS job_id, o.scheduled_for, o.priority, o.trigger, o.requested_by, "
            "j.id IS NOT NULL AS job_exists "
            "FROM scheduler.occurrences o LEFT JOIN scheduler.jobs j ON j.id = o.job_id "
            f"WHERE o.state = 'pending' AND {_partition_filter('o.job_id', partition, 2)} "
            "ORDER BY o.scheduled_for, o.priority DESC LIMIT $1",
            limit,
            *_partition_args(partition),
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

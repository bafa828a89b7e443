"""The scheduler's SQL: job definitions and the occurrence ledger."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from operator import attrgetter
from typing import Any

import asyncpg
import msgspec

from belltower.api import RunPolicy
from belltower.events import ResultMail
from belltower.schedule import Schedule, schedule_decoder, schedule_encoder

from . import limits, statesql
from .fencing import Deposed, Fence, Partition, partition_sql
from .limits import Hold
from .statesql import LIMIT_RUNS, PAUSE_JOBS
from .streaks import BELLTOWER, max_runs_note

_result_mail_decoder = msgspec.json.Decoder(ResultMail)

FinishedHook = Callable[[asyncpg.Connection, list[asyncpg.Record]], Awaitable[None]]


def decode_result_mail(raw: str | None) -> ResultMail | None:
    return None if raw is None else _result_mail_decoder.decode(raw)


JOB_COLUMNS = (
    "id::text AS id, title, type, pool, params::text AS params, schedule::text AS schedule, priority, paused, "
    "keep_history_days, timeout_s, next_run_at, created_at, updated_at, policy::text AS policy, "
    "result_mail::text AS result_mail"
)

LOAD_COLUMNS = (
    "id::text AS id, title, type, pool, params::text AS params, schedule::text AS schedule, priority, paused, "
    "timeout_s, next_run_at, policy::text AS policy, result_mail::text AS result_mail"
)
"""What the dispatcher keeps of a job (``Entry.from_record``): a million rows at start-up
are not worth decoding timestamps and numbers that are dropped straight away."""

policy_decoder = msgspec.json.Decoder(RunPolicy)
policy_encoder = msgspec.json.Encoder()


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
    policy: RunPolicy = field(default_factory=RunPolicy)
    result_mail: ResultMail | None = None

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
            policy=policy_decoder.decode(r["policy"]),
            result_mail=decode_result_mail(r["result_mail"]),
        )


@dataclass(slots=True)
class LedgerRow:
    """A ledger row about to be written."""

    id: str
    job_id: str
    scheduled_for: datetime
    priority: int
    trigger: str
    state: str
    requested_by: str | None = None
    reason: str | None = None
    cause: str | None = None
    requested_from: str | None = None
    chained_from: str | None = None


class _AlreadyPlanned(Exception):
    """A chunk being copied into the ledger held an occurrence the ledger already has."""


_LEDGER_COLUMNS = [
    "id", "job_id", "scheduled_for", "priority", "trigger", "requested_by", "state", "reason",
]  # fmt: skip
_ledger_record = attrgetter(*_LEDGER_COLUMNS)
"""A :class:`LedgerRow` as the tuple ``COPY`` writes, in ``_LEDGER_COLUMNS`` order."""


def _partition_filter(column: str, partition: Partition | None, first_param: int) -> str:
    if partition is None or partition[1] <= 1:
        return "true"
    return partition_sql(column, f"${first_param}::bigint", f"${first_param + 1}::bigint")


def _partition_args(partition: Partition | None) -> list[int]:
    if partition is None or partition[1] <= 1:
        return []
    return [partition[1], partition[0]]


_INSERT = (
    "INSERT INTO scheduler.jobs (id, title, type, pool, params, schedule, priority, paused, "
    "keep_history_days, timeout_s, next_run_at, created_at, updated_at, policy, result_mail) "
    "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14::jsonb, $15::jsonb)"
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
        policy_encoder.encode(job.policy).decode(),
        None if job.result_mail is None else msgspec.json.encode(job.result_mail).decode(),
    )


_RECONCILE_COLUMNS = (
    "o.id::text AS id, o.job_id::text AS job_id, o.scheduled_for, o.priority, o.trigger, "
    "o.requested_by, o.requested_from, o.chained_from::text AS chained_from, o.dispatched_at, "
    "o.recovery_attempts, o.recovery_seq, o.recovered_at"
)


@dataclass
class RunLimits:
    """Max runs of the jobs in a chunk being planned (job id -> max runs), applied in the plan's
    transaction: the ledger counts each job's dispatched occurrences (run-now not counted),
    occurrences this transaction wrote beyond the limit are skipped (cause ``max_runs``) and a
    job that reached it is paused with that note. Because the count is the ledger's, a retried or
    re-planned chunk (same ids, ``ON CONFLICT DO NOTHING``) counts nothing twice."""

    max_runs: dict[str, int]
    now: datetime
    cut: set[str] = field(default_factory=set)
    """Occurrences skipped for max runs."""
    paused: list[str] = field(default_factory=list)
    """Jobs paused because they reached it."""

    async def apply(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(LIMIT_RUNS, list(self.max_runs), list(self.max_runs.values()))
        self.cut = set(row["cut"] or ())
        done = list(row["done"] or ())
        if done:
            notes = [max_runs_note(self.max_runs[j]) for j in done]
            rows = await conn.fetch(PAUSE_JOBS, done, notes, BELLTOWER, self.now)
            self.paused = [r["id"] for r in rows]


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
                    "timeout_s = $10, next_run_at = $11, created_at = $12, updated_at = $13, "
                    "policy = $14::jsonb, result_mail = $15::jsonb WHERE id = $1::uuid",
                    *_job_args(job),
                )

    async def list_jobs(self) -> list[JobRow]:
        rows = await self.pool.fetch(
            f"SELECT {JOB_COLUMNS} FROM scheduler.jobs ORDER BY priority DESC, title, id"
        )
        return [JobRow.from_record(r) for r in rows]

    async def list_jobs_page(self, after: str | None, limit: int) -> list[JobRow]:
        """Up to ``limit`` jobs in id order after the job id ``after`` (keyset paging)."""
        rows = await self.pool.fetch(
            f"SELECT {JOB_COLUMNS} FROM scheduler.jobs WHERE $1::uuid IS NULL OR id > $1::uuid "
            "ORDER BY id LIMIT $2",
            after,
            limit,
        )
        return [JobRow.from_record(r) for r in rows]

    async def job_pages(
        self, page: int = 5_000, partition: Partition | None = None
    ) -> AsyncIterator[list[asyncpg.Record]]:
        """Every job row (its ``LOAD_COLUMNS``), read through a server-side cursor in lists of
        ``page`` records.

        Used at start-up to fill the dispatcher: ``list_jobs`` would hold every record (and then
        every JobRow) at once, and CPython keeps most of that peak as resident memory after it
        is freed. Reading page by page keeps the peak to one page.
        """
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(
                f"SELECT {LOAD_COLUMNS} FROM scheduler.jobs WHERE {_partition_filter('id', partition, 1)} "
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
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute("DELETE FROM scheduler.jobs WHERE id = $1::uuid", job_id)
            await conn.execute(statesql.STREAKS_DROP, [job_id])
            await limits.forget_job(conn, job_id)
        return status.endswith(" 1")

    async def set_paused(
        self,
        job_id: str,
        paused: bool,
        next_run_at: datetime | None,
        now: datetime,
        by: str | None = None,
        source: str | None = None,
        note: str | None = None,
    ) -> None:
        """Pause or resume a job and keep who did it (and why) in the pause ledger, in one
        transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            was = await conn.fetchval(
                "SELECT paused FROM scheduler.jobs WHERE id = $1::uuid FOR UPDATE", job_id
            )
            await conn.execute(
                "UPDATE scheduler.jobs SET paused = $2, next_run_at = $3, updated_at = $4 WHERE id = $1::uuid",
                job_id,
                paused,
                next_run_at,
                now,
            )
            if paused and not was:
                await conn.execute(
                    "INSERT INTO scheduler.pauses (job_id, paused_at, paused_by, paused_from, note) "
                    "VALUES ($1::uuid, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    job_id,
                    now,
                    by,
                    source,
                    note,
                )
            elif was and not paused:
                await conn.execute(
                    "UPDATE scheduler.pauses SET resumed_at = $2, resumed_by = $3, resumed_from = $4 "
                    "WHERE job_id = $1::uuid AND resumed_at IS NULL",
                    job_id,
                    now,
                    by,
                    source,
                )

    async def open_pause(self, job_id: str) -> asyncpg.Record | None:
        """The pause a paused job is in (who, when, from where), if the ledger has it."""
        return await self.pool.fetchrow(
            "SELECT paused_at, paused_by, paused_from, note FROM scheduler.pauses "
            "WHERE job_id = $1::uuid AND resumed_at IS NULL ORDER BY paused_at DESC LIMIT 1",
            job_id,
        )

    async def pauses(
        self, job_id: str, since: datetime | None, until: datetime | None
    ) -> list[asyncpg.Record]:
        """Pauses that overlap [since, until), oldest first."""
        return await self.pool.fetch(
            "SELECT paused_at, paused_by, paused_from, resumed_at, resumed_by, resumed_from, note "
            "FROM scheduler.pauses WHERE job_id = $1::uuid "
            "AND ($2::timestamptz IS NULL OR resumed_at IS NULL OR resumed_at >= $2) "
            "AND ($3::timestamptz IS NULL OR paused_at < $3) ORDER BY paused_at",
            job_id,
            since,
            until,
        )

    async def plan(
        self,
        occurrences: Sequence[LedgerRow],
        next_runs: Sequence[tuple[str, datetime | None]],
        fence: Fence | None = None,
        limits: RunLimits | None = None,
        hold: Hold | None = None,
    ) -> set[str]:
        """Write planned occurrences and the jobs' next times in one transaction.

        Returns the ids of the occurrences that were new: an occurrence already in the ledger
        (planned by another replica, or before a restart) is not dispatched again. With a
        ``fence``, raises :class:`Deposed` and writes nothing unless that lease's token is still
        the current one; the row lock holds a new holder's :meth:`fence` until this commits.
        With ``limits`` (jobs with ``max_runs``), :meth:`RunLimits.apply` runs in the same
        transaction, and the ids it skipped are not returned as new. With ``hold`` (occurrences
        of jobs with a concurrency key), :meth:`limits.Hold.apply` runs in it too.
        """
        usual = bool(occurrences) and not any(
            o.cause or o.requested_from or o.chained_from for o in occurrences
        )
        if usual:
            try:
                return await self._plan(occurrences, next_runs, fence, limits, hold, copy=True)
            except _AlreadyPlanned:
                pass  # rolled back whole; again, skipping what the ledger has
        return await self._plan(occurrences, next_runs, fence, limits, hold, copy=False)

    async def _plan(
        self,
        occurrences: Sequence[LedgerRow],
        next_runs: Sequence[tuple[str, datetime | None]],
        fence: Fence | None,
        limits: RunLimits | None,
        hold: Hold | None,
        copy: bool,
    ) -> set[str]:
        """:meth:`plan`'s transaction. With ``copy``, the occurrences (the usual chunk: all
        without the policy columns) are written with ``COPY``, which costs PostgreSQL about two
        thirds of what ``INSERT ... ON CONFLICT`` does; an occurrence already in the ledger
        (another replica, a retry) makes it raise :class:`_AlreadyPlanned`, the transaction
        rolling back whole, and :meth:`plan` writes the chunk again without ``copy``. (Not in a
        savepoint: rows written in one have the savepoint's xmin, and ``statesql.LIMIT_RUNS``
        knows the rows this transaction planned by theirs.)"""
        async with self.pool.acquire() as conn, conn.transaction():
            if fence is not None:
                await self._check_fence(conn, fence)
            new: set[str] = set()
            if copy:
                try:
                    await conn.copy_records_to_table(
                        "occurrences",
                        schema_name="scheduler",
                        columns=_LEDGER_COLUMNS,
                        records=map(_ledger_record, occurrences),
                    )
                except asyncpg.UniqueViolationError:
                    raise _AlreadyPlanned from None
                new = {o.id for o in occurrences}
            elif occurrences and not any(
                o.cause or o.requested_from or o.chained_from for o in occurrences
            ):
                # Scheduled occurrences to dispatch, without the policy columns, some of them
                # perhaps in the ledger already: the row count says whether all were new, and
                # only if not do the ids of the new ones travel back.
                ids = [o.id for o in occurrences]
                status = await conn.execute(
                    "INSERT INTO scheduler.occurrences (id, job_id, scheduled_for, priority, trigger, requested_by, state, reason) "
                    "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[]) "
                    "ON CONFLICT (id) DO NOTHING",
                    ids,
                    [o.job_id for o in occurrences],
                    [o.scheduled_for for o in occurrences],
                    [o.priority for o in occurrences],
                    [o.trigger for o in occurrences],
                    [o.requested_by for o in occurrences],
                    [o.state for o in occurrences],
                    [o.reason for o in occurrences],
                )
                if int(status.rsplit(" ", 1)[-1]) == len(ids):
                    new = set(ids)
                else:
                    # Some were there already (another replica, a retry): the new ones are those
                    # this transaction wrote.
                    rows = await conn.fetch(
                        "SELECT id::text FROM scheduler.occurrences WHERE id = ANY($1::uuid[]) "
                        "AND xmin = pg_current_xact_id()::xid",
                        ids,
                    )
                    new = {r["id"] for r in rows}
            elif occurrences:
                rows = await conn.fetch(
                    "INSERT INTO scheduler.occurrences (id, job_id, scheduled_for, priority, trigger, requested_by, state, reason, "
                    "cause, requested_from, chained_from) "
                    "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[], "
                    "$9::text[], $10::text[], $11::uuid[]) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id::text",
                    [o.id for o in occurrences],
                    [o.job_id for o in occurrences],
                    [o.scheduled_for for o in occurrences],
                    [o.priority for o in occurrences],
                    [o.trigger for o in occurrences],
                    [o.requested_by for o in occurrences],
                    [o.state for o in occurrences],
                    [o.reason for o in occurrences],
                    [o.cause for o in occurrences],
                    [o.requested_from for o in occurrences],
                    [o.chained_from for o in occurrences],
                )
                new = {r["id"] for r in rows}
            if next_runs:
                await conn.execute(
                    "UPDATE scheduler.jobs j SET next_run_at = n.next_run_at FROM "
                    "unnest($1::uuid[], $2::timestamptz[]) AS n(id, next_run_at) WHERE j.id = n.id",
                    [job_id for job_id, _ in next_runs],
                    [at for _, at in next_runs],
                )
            if limits is not None:
                await limits.apply(conn)
                new -= limits.cut
            if hold is not None:
                await hold.apply(conn, new)
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
                "deposed, and wrote nothing"
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

    @contextlib.asynccontextmanager
    async def _writer(
        self, fence: Fence | None
    ) -> AsyncIterator[asyncpg.Pool | asyncpg.Connection]:
        """Where a ledger write runs: the pool as it is, or with a ``fence`` a transaction that
        first checks the lease's token (one indexed ``SELECT ... FOR SHARE``, see
        :meth:`_check_fence`), so a deposed replica's write raises :class:`Deposed` and changes
        nothing."""
        if fence is None:
            yield self.pool
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await self._check_fence(conn, fence)
            yield conn

    async def check_fence(self, fence: Fence | None) -> None:
        """Raise :class:`Deposed` unless ``fence`` is the lease's current token (a write-free
        check, for work whose first effects are not ledger writes)."""
        async with self._writer(fence):
            pass

    async def mark_dispatched(
        self, ids: Sequence[str], at: datetime, fence: Fence | None = None
    ) -> None:
        """Mark occurrences JetStream confirmed as ``dispatched``; with a ``fence``, only under
        that lease's current token (else :class:`Deposed`, and they stay pending)."""
        if ids:
            async with self._writer(fence) as db:
                await db.execute(
                    "UPDATE scheduler.occurrences SET state = 'dispatched', dispatched_at = $2 "
                    "WHERE id = ANY($1::uuid[]) AND state = 'pending'",
                    list(ids),
                    at,
                )

    async def mark_skipped(
        self, ids: Sequence[str], reason: str, cause: str = "deleted", fence: Fence | None = None
    ) -> None:
        if ids:
            async with self._writer(fence) as db:
                await db.execute(
                    "UPDATE scheduler.occurrences SET state = 'skipped', reason = $2, cause = $3 "
                    "WHERE id = ANY($1::uuid[]) AND state IN ('pending', 'waiting', 'delayed')",
                    list(ids),
                    reason,
                    cause,
                )

    async def pending(
        self, limit: int = 10_000, partition: Partition | None = None
    ) -> list[asyncpg.Record]:
        """Occurrences planned but not yet confirmed as published, with what is needed to publish
        them; with ``partition``, only those of its jobs."""
        return await self.pool.fetch(
            "SELECT o.id::text AS id, o.job_id::text AS job_id, o.scheduled_for, o.priority, o.trigger, o.requested_by, "
            "o.requested_from, o.chained_from::text AS chained_from, o.run_status, "
            "j.id IS NOT NULL AS job_exists "
            "FROM scheduler.occurrences o LEFT JOIN scheduler.jobs j ON j.id = o.job_id "
            f"WHERE o.state = 'pending' AND {_partition_filter('o.job_id', partition, 2)} "
            "ORDER BY o.scheduled_for, o.priority DESC LIMIT $1",
            limit,
            *_partition_args(partition),
        )

    async def held(self, since: datetime) -> list[asyncpg.Record]:
        """What the overlap and chaining policies hold: runs in flight planned after ``since``,
        buffered and delayed occurrences, those waiting for their concurrency key (state
        ``limited``), and pending ones planned after ``since`` (perhaps
        published before a crash, so perhaps run: their ``dispatched_at`` is when they were
        planned, the earliest their run can have finished)."""
        return await self.pool.fetch(
            "SELECT id::text AS id, job_id::text AS job_id, state, scheduled_for, dispatched_at "
            "FROM scheduler.occurrences WHERE created_at >= $1 AND state = 'dispatched' "
            "AND (run_status IS NULL OR run_status = 'running') "
            "UNION ALL SELECT id::text, job_id::text, state, scheduled_for, dispatched_at "
            "FROM scheduler.occurrences WHERE state IN ('waiting', 'delayed') "
            "AND cause IS DISTINCT FROM 'concurrency' "
            # Waiting for their concurrency key (limits.py): in flight for the overlap policy.
            "UNION ALL SELECT id::text, job_id::text, 'limited', scheduled_for, created_at "
            "FROM scheduler.occurrences WHERE state = 'waiting' AND cause = 'concurrency' "
            "UNION ALL SELECT id::text, job_id::text, state, scheduled_for, created_at "
            "FROM scheduler.occurrences WHERE state = 'pending' AND created_at >= $1",
            since,
        )

    async def unfinished(self, job_id: str, since: datetime) -> list[asyncpg.Record]:
        """One job's occurrences that hold back the next under its overlap policy: planned or
        dispatched after ``since`` and not finished (earliest first), and its buffered ones."""
        return await self.pool.fetch(
            "SELECT id::text AS id, state, trigger, scheduled_for, dispatched_at, run_status "
            "FROM scheduler.occurrences WHERE job_id = $1::uuid AND ((state IN ('pending', 'dispatched') "
            "AND scheduled_for >= $2 AND (run_status IS NULL OR run_status = 'running')) "
            "OR (state = 'waiting' AND cause IS DISTINCT FROM 'concurrency')) "
            "ORDER BY scheduled_for, created_at",
            job_id,
            since,
        )

    async def hold_delayed(
        self, rows: Sequence[tuple[str, str, str, str]], fence: Fence | None = None
    ) -> set[str]:
        """Give delayed (chained) occurrences whose delay has passed the state the overlap policy
        chose, skipped or waiting, with reason and cause: (id, state, reason, cause). Returns the
        ids changed; one no longer delayed (released already) is left alone. With a ``fence``,
        only under that lease's current token (else :class:`Deposed`)."""
        if not rows:
            return set()
        async with self._writer(fence) as db:
            changed = await db.fetch(
                "UPDATE scheduler.occurrences o SET state = u.state, reason = u.reason, cause = u.cause "
                "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(id, state, reason, cause) "
                "WHERE o.id = u.id AND o.state = 'delayed' RETURNING o.id::text AS id",
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [r[3] for r in rows],
            )
        return {r["id"] for r in changed}

    async def record_runs(
        self,
        updates: Sequence[tuple[Any, ...]],
        fence: Fence | None = None,
        after: FinishedHook | None = None,
    ) -> None:
        """Write what run events said about occurrences: (id, status, error, finished at[,
        started at]).

        A finished status is never replaced by ``running`` (events can arrive out of order).
        With a ``fence``, raises :class:`Deposed` and writes nothing unless that lease's token is
        still the current one. ``after`` is called in the same transaction with the rows whose
        status this write changed (``jobstate.py``: each occurrence's first finished status,
        once, whatever is redelivered), and its failure undoes the write.
        """
        if not updates:
            return
        sql = (
            "UPDATE scheduler.occurrences o SET run_status = u.status, run_error = u.error, "
            "run_finished_at = u.finished_at, run_started_at = COALESCE(o.run_started_at, u.started_at) "
            "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[]) "
            "AS u(id, status, error, finished_at, started_at) WHERE o.id = u.id "
            "AND (o.run_status IS NULL OR o.run_status = 'running')"
        )
        args = (
            [u[0] for u in updates],
            [u[1] for u in updates],
            [u[2] for u in updates],
            [u[3] for u in updates],
            [u[4] if len(u) > 4 else None for u in updates],
        )
        if after is None:
            async with self._writer(fence) as db:
                await db.execute(sql, *args)
            return
        async with self.pool.acquire() as conn, conn.transaction():
            if fence is not None:
                await self._check_fence(conn, fence)
            rows = await conn.fetch(
                sql + " RETURNING o.id::text AS id, o.job_id::text AS job_id, o.run_status, "
                "o.run_error, o.run_finished_at",
                *args,
            )
            await after(conn, rows)

    async def admit_waiting(
        self, now: datetime, stale: timedelta, fence: Fence | None = None
    ) -> list[str]:
        """Admit occurrences waiting for their concurrency key's slots (``limits.sweep``);
        returns those released (now pending)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if fence is not None:
                await self._check_fence(conn, fence)
            return await limits.sweep(conn, now, stale)

    async def hold_pending(self, hold: Hold, fence: Fence | None = None) -> None:
        """Queue pending occurrences of keyed jobs written outside the planner (a backfill, a
        decision, a released buffered or chained one) for their keys' slots, as
        :meth:`plan` does for the planner's (``hold.waiting``: those that must wait)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if fence is not None:
                await self._check_fence(conn, fence)
            await hold.apply(conn)

    async def occurrence(self, occurrence_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT id::text AS id, job_id::text AS job_id, scheduled_for, priority, trigger, "
            "state, requested_by, reason, cause, requested_from "
            "FROM scheduler.occurrences WHERE id = $1::uuid",
            occurrence_id,
        )

    async def unstarted(
        self, since: datetime, before: datetime, partition: Partition | None, limit: int
    ) -> list[asyncpg.Record]:
        """Occurrences dispatched after ``since`` and before ``before`` that no run event has
        reached (the reconciler's candidates for lost), oldest first, with what republishing
        them needs. Found through ``occurrences_created``, like the runs in flight at start."""
        return await self.pool.fetch(
            f"SELECT {_RECONCILE_COLUMNS} FROM scheduler.occurrences o "
            "WHERE o.created_at >= $1 AND o.state = 'dispatched' AND o.run_status IS NULL "
            f"AND o.dispatched_at < $2 AND {_partition_filter('o.job_id', partition, 4)} "
            "ORDER BY o.dispatched_at LIMIT $3",
            since,
            before,
            limit,
            *_partition_args(partition),
        )

    async def still_running(
        self, since: datetime, before: datetime, partition: Partition | None, limit: int
    ) -> list[asyncpg.Record]:
        """Runs started (a ``started`` event came) of occurrences dispatched between ``since``
        and ``before`` and not finished: the reconciler's candidates for abandoned."""
        return await self.pool.fetch(
            f"SELECT {_RECONCILE_COLUMNS} FROM scheduler.occurrences o "
            "WHERE o.created_at >= $1 AND o.state = 'dispatched' AND o.run_status = 'running' "
            f"AND o.dispatched_at < $2 AND {_partition_filter('o.job_id', partition, 4)} "
            "ORDER BY o.dispatched_at LIMIT $3",
            since,
            before,
            limit,
            *_partition_args(partition),
        )

    async def mark_recovered(
        self, copies: Sequence[tuple[str, int]], at: datetime, fence: Fence | None = None
    ) -> None:
        """Record that occurrences were published again: (id, stream sequence of the copy)."""
        if copies:
            async with self._writer(fence) as db:
                await db.execute(
                    "UPDATE scheduler.occurrences o SET recovery_attempts = o.recovery_attempts + 1, "
                    "recovery_seq = c.seq, recovered_at = $3 "
                    "FROM unnest($1::uuid[], $2::bigint[]) AS c(id, seq) "
                    "WHERE o.id = c.id AND o.state = 'dispatched'",
                    [c[0] for c in copies],
                    [c[1] for c in copies],
                    at,
                )

    async def mark_lost(
        self, lost: Sequence[tuple[str, str]], at: datetime, fence: Fence | None = None
    ) -> list[str]:
        """Record occurrences no worker ever started as ``lost``: (id, reason). Returns those
        changed; one a run event reached meanwhile is left alone."""
        if not lost:
            return []
        async with self._writer(fence) as db:
            rows = await db.fetch(
                "UPDATE scheduler.occurrences o SET state = 'lost', reason = l.reason, cause = 'lost', "
                "run_status = 'lost', run_error = l.reason, run_finished_at = $3 "
                "FROM unnest($1::uuid[], $2::text[]) AS l(id, reason) "
                "WHERE o.id = l.id AND o.state = 'dispatched' AND o.run_status IS NULL "
                "RETURNING o.id::text AS id",
                [r[0] for r in lost],
                [r[1] for r in lost],
                at,
            )
        return [r["id"] for r in rows]

    async def release(self, ids: Sequence[str], fence: Fence | None = None) -> list[str]:
        """Turn buffered or delayed occurrences into pending ones, to be published; returns those
        changed. With a ``fence``, only under that lease's current token (else :class:`Deposed`)."""
        if not ids:
            return []
        async with self._writer(fence) as db:
            rows = await db.fetch(
                "UPDATE scheduler.occurrences SET state = 'pending' WHERE id = ANY($1::uuid[]) "
                "AND state IN ('waiting', 'delayed') RETURNING id::text",
                list(ids),
            )
        return [r["id"] for r in rows]

    async def ledger(
        self, job_id: str, since: datetime | None, until: datetime | None, limit: int
    ) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT id::text AS id, scheduled_for, priority, trigger, requested_by, state, reason, created_at, dispatched_at, "
            "cause, requested_from, chained_from::text AS chained_from, run_status, run_error, run_finished_at, "
            "recovery_attempts FROM scheduler.occurrences WHERE job_id = $1::uuid "
            "AND ($2::timestamptz IS NULL OR scheduled_for >= $2) AND ($3::timestamptz IS NULL OR scheduled_for < $3) "
            "ORDER BY scheduled_for DESC LIMIT $4",
            job_id,
            since,
            until,
            limit,
        )

    async def purge_ledger(self, before: datetime, dry_run: bool) -> int:
        # A job with max_runs keeps its ledger: its dispatched occurrences are what is counted.
        sql = (
            "FROM scheduler.occurrences WHERE created_at < $1 AND state NOT IN ('pending', 'waiting', 'delayed', 'awaiting') "
            "AND job_id NOT IN (SELECT id FROM scheduler.jobs WHERE policy ? 'max_runs')"
        )
        if dry_run:
            return int(await self.pool.fetchval(f"SELECT count(*) {sql}", before))
        status = await self.pool.execute(f"DELETE {sql}", before)
        return int(status.split()[-1])


class StateStore:
    """Reads of job state for the API and the reconciler (``statesql.py``)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def runs_counted(self, job_id: str) -> int:
        return int(await self.pool.fetchval(statesql.RUNS_COUNTED, job_id))

    async def streak(self, job_id: str) -> int:
        return int(await self.pool.fetchval(statesql.STREAK_OF, job_id) or 0)

    async def streaks(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(statesql.STREAKS_ALL)

    async def expected_duration(self, job_id: str, sample: int) -> tuple[float | None, int]:
        """(p95 seconds, runs it is taken over) of the job's latest ``sample`` succeeded runs."""
        row = await self.pool.fetchrow(statesql.EXPECTED_DURATION, job_id, sample)
        return (row["p95"], int(row["n"])) if row else (None, 0)

    async def overdue(
        self,
        since: datetime,
        now: datetime,
        *,
        sample: int,
        min_runs: int,
        factor: float,
        partition: Partition | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        sql = statesql.OVERDUE.format(partition=_partition_filter("o.job_id", partition, 7))
        return await self.pool.fetch(
            sql, since, sample, min_runs, factor, now, limit, *_partition_args(partition)
        )

    async def mark_overdue(
        self, ids: Sequence[str], now: datetime, fence: Fence | None
    ) -> list[str]:
        async with self.pool.acquire() as conn, conn.transaction():
            if fence is not None:
                await Store._check_fence(conn, fence)
            return [r["id"] for r in await conn.fetch(statesql.MARK_OVERDUE, list(ids), now)]

    async def record_started(
        self, started: Sequence[tuple[str, datetime]], fence: Fence | None
    ) -> None:
        if not started:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            if fence is not None:
                await Store._check_fence(conn, fence)
            await conn.execute(
                statesql.RECORD_STARTED, [i for i, _ in started], [at for _, at in started]
            )


class CalendarStore:
    """School calendars and their non-school days (migration 0002)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self, name: str, description: str, days: Sequence[tuple[date, str]], now: datetime
    ) -> bool:
        """Insert a calendar with its days; False when the name is taken (nothing written)."""
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "INSERT INTO scheduler.calendars (name, description, created_at, updated_at) "
                "VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING",
                name,
                description,
                now,
            )
            if not status.endswith(" 1"):
                return False
            await self._insert_days(conn, name, days)
            return True

    async def add_days(
        self, name: str, days: Sequence[tuple[date, str]], replace: bool, now: datetime
    ) -> bool:
        """Add (or with ``replace``, set) a calendar's days in one transaction; False if unknown."""
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE scheduler.calendars SET updated_at = $2 WHERE name = $1", name, now
            )
            if not status.endswith(" 1"):
                return False
            if replace:
                await conn.execute(
                    "DELETE FROM scheduler.non_school_days WHERE calendar = $1", name
                )
            await self._insert_days(conn, name, days)
            return True

    async def update(self, name: str, description: str, now: datetime) -> bool:
        """Change a calendar's description; False if there is no such calendar."""
        status = await self.pool.execute(
            "UPDATE scheduler.calendars SET description = $2, updated_at = $3 WHERE name = $1",
            name,
            description,
            now,
        )
        return status.endswith(" 1")

    async def remove_days(self, name: str, days: Sequence[date], now: datetime) -> bool:
        """Take days out of a calendar in one transaction; False if there is no such calendar."""
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE scheduler.calendars SET updated_at = $2 WHERE name = $1", name, now
            )
            if not status.endswith(" 1"):
                return False
            await conn.execute(
                "DELETE FROM scheduler.non_school_days WHERE calendar = $1 AND day = ANY($2::date[])",
                name,
                list(days),
            )
            return True

    @staticmethod
    async def _insert_days(
        conn: asyncpg.Connection, name: str, days: Sequence[tuple[date, str]]
    ) -> None:
        if days:
            await conn.execute(
                "INSERT INTO scheduler.non_school_days (calendar, day, label) "
                "SELECT $1, d, l FROM unnest($2::date[], $3::text[]) AS u(d, l) "
                "ON CONFLICT (calendar, day) DO UPDATE SET label = EXCLUDED.label",
                name,
                [d for d, _ in days],
                [label for _, label in days],
            )

    async def get(self, name: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT name, description, created_at, updated_at FROM scheduler.calendars "
            "WHERE name = $1",
            name,
        )

    async def names(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT c.name, c.description, c.created_at, c.updated_at, "
            "count(d.day) AS days FROM scheduler.calendars c "
            "LEFT JOIN scheduler.non_school_days d ON d.calendar = c.name "
            "GROUP BY c.name ORDER BY c.name"
        )

    async def days(self, name: str) -> list[tuple[date, str]]:
        rows = await self.pool.fetch(
            "SELECT day, label FROM scheduler.non_school_days WHERE calendar = $1 ORDER BY day",
            name,
        )
        return [(r["day"], r["label"]) for r in rows]

    async def all_days(self) -> dict[str, frozenset[date]]:
        """Every calendar's days, for the dispatcher to load at start."""
        rows = await self.pool.fetch(
            "SELECT c.name, coalesce(array_agg(d.day) FILTER (WHERE d.day IS NOT NULL), '{}') AS days "
            "FROM scheduler.calendars c LEFT JOIN scheduler.non_school_days d ON d.calendar = c.name "
            "GROUP BY c.name"
        )
        return {r["name"]: frozenset(r["days"]) for r in rows}

    async def users(self, name: str) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT id::text AS id FROM scheduler.jobs WHERE schedule ->> 'calendar' = $1 "
            "ORDER BY id",
            name,
        )
        return [r["id"] for r in rows]

    async def delete(self, name: str) -> bool:
        status = await self.pool.execute("DELETE FROM scheduler.calendars WHERE name = $1", name)
        return status.endswith(" 1")

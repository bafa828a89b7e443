"""Occurrences a person asks for after the fact: backfills and catch-up decisions.

Both are answered by whichever replica takes the management request (a queue group) and written
to the ledger in one transaction that locks the rows it reads, without a lease's fence: like the
skipped rows a resume records (``operations._set_paused``), they record a request, not a
leader's plan. What makes them safe is the occurrence id and the row's state: a backfill runs an
occurrence only when the ledger has no row for it or a row of one that never ran
(:data:`belltower.backfill.RERUNNABLE`); a decision turns only rows still ``awaiting`` into
``pending`` or ``skipped``, so the second of two decisions (or a decision after the expiry)
finds nothing to do. The ``pending`` rows are then published by the partition's holder
(:meth:`Partitions.pending_written`, and the holder's reconciler looks again every round), with
``Nats-Msg-Id`` = occurrence id, exactly as after a crash: at most once, whatever restarts.

Expiry is the holder's, fenced by its lease (:func:`expire_decisions`, from the reconciler).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from belltower import backfill as bf
from belltower import decisions as dc
from belltower import operations as ops
from belltower.errors import Conflict, InvalidInput
from belltower.events import occurrence_id, run_id_for
from belltower.rpc import serves
from belltower.schedule import CompiledSchedule, Schedule

from .fencing import Fence, Partition
from .store import JobRow, LedgerRow, Store, _partition_args, _partition_filter

log = logging.getLogger(__name__)

PENDING_LOOK_S = 5.0
"""The reconciler publishes ``pending`` rows older than this (a wake-up notice that was lost)."""


def _by(who: str | None, where: str | None) -> str:
    return (who or "someone") + (f" from {where}" if where else "")


class RequestedOccurrences:
    """The ``jobs.backfill``, ``jobs.decide`` and ``decisions.list`` operations (a part of
    :class:`~.operations.Operations`)."""

    store: Store
    dispatcher: Any
    """A Dispatcher or Partitions: its ``clock`` and ``pending_written``."""
    _row: Callable[[str], Awaitable[JobRow]]
    _compile: Callable[[Schedule, str], Awaitable[CompiledSchedule]]
    decision_ttl_s: float = 86_400.0

    @serves(ops.JOBS_BACKFILL)
    async def backfill(self, request: bf.BackfillRequest) -> bf.BackfillResult:
        row = await self._row(request.id)
        now = self.dispatcher.clock()
        bf.check(request.since, request.until, request.max, request.priority, now)
        compiled = await self._compile(row.schedule, row.id)
        times = bf.occurrences_in(compiled, request.since, request.until, request.max)
        priority = row.priority if request.priority is None else request.priority
        reason = (
            f"backfill requested by {_by(request.requested_by, request.requested_from)} at "
            f"{now.isoformat(timespec='seconds')}"
        )
        rows = [
            LedgerRow(
                id=occurrence_id(row.id, t), job_id=row.id, scheduled_for=t, priority=priority,
                trigger="backfill", state="pending", requested_by=request.requested_by,
                reason=reason, cause="backfill", requested_from=request.requested_from,
            )
            for t in times
        ]  # fmt: skip
        outcome = await write_backfill(self.store.pool, rows, request.dry_run)
        found = [
            bf.BackfillOccurrence(
                occurrence_id=r.id, run_id=run_id_for(r.id), scheduled_for=r.scheduled_for,
                action=action, was=was,
            )
            for r, (action, was) in zip(rows, outcome, strict=True)
        ]  # fmt: skip
        to_run = sum(1 for o in found if o.action == "run")
        if to_run and not request.dry_run:
            self.dispatcher.pending_written(row.id)
            log.info(
                "backfill dispatched",
                extra={"action": "backfill.requested", "job_id": row.id, "count": to_run},
            )
        return bf.BackfillResult(
            job_id=row.id, title=row.title, since=request.since, until=request.until,
            dry_run=request.dry_run, priority=priority, occurrences=found, to_run=to_run,
            already=len(found) - to_run,
        )  # fmt: skip

    @serves(ops.JOBS_DECIDE)
    async def decide(self, request: dc.DecisionRequest) -> dc.DecisionResult:
        row = await self._row(request.id)
        now = self.dispatcher.clock()
        who = _by(request.requested_by, request.requested_from)
        run, skipped = await write_decision(
            self.store.pool, row.id, request.choice, request.requested_by,
            request.requested_from, f"{who} decided '{request.choice}' at "
            f"{now.isoformat(timespec='seconds')}",
        )  # fmt: skip
        if run is None:
            raise Conflict(
                f"no missed runs of '{row.title}' await a decision: it was answered already or "
                f"expired; `belltower jobs why {row.id}` shows what became of them"
            )
        if run:
            self.dispatcher.pending_written(row.id)
        log.info(
            "catch-up decided",
            extra={
                "action": "decision.answered",
                "job_id": row.id,
                "choice": request.choice,
                "run": len(run),
                "skipped": skipped,
            },
        )
        return dc.DecisionResult(
            job_id=row.id, choice=request.choice, decided_at=now, run=[i for _, i in run],
            run_for=[t for t, _ in run], skipped=skipped,
        )  # fmt: skip

    @serves(ops.DECISIONS_LIST)
    async def decisions(self, request: dc.DecisionsRequest) -> list[dc.PendingDecision]:
        if request.job_id is not None:
            await self._row(request.job_id)
        if not 1 <= request.limit <= 1_000:
            raise InvalidInput("limit", f"{request.limit} is out of range", "1 to 1000")
        rows = await self.store.pool.fetch(
            "SELECT o.job_id::text AS job_id, j.title, count(*) AS count, min(o.scheduled_for) AS first, "
            "max(o.scheduled_for) AS last, min(o.created_at) AS since, "
            "min(o.created_at) + make_interval(secs => $3) AS expires_at "
            "FROM scheduler.occurrences o JOIN scheduler.jobs j ON j.id = o.job_id "
            "WHERE o.state = 'awaiting' AND ($1::uuid IS NULL OR o.job_id = $1::uuid) "
            "GROUP BY o.job_id, j.title ORDER BY min(o.scheduled_for), o.job_id LIMIT $2",
            request.job_id,
            request.limit,
            self.decision_ttl_s,
        )
        return [dc.PendingDecision(**dict(r)) for r in rows]


async def write_backfill(
    pool: asyncpg.Pool, rows: list[LedgerRow], dry_run: bool
) -> list[tuple[Any, str | None]]:
    """Write a backfill's occurrences in one transaction; returns (action, was) per row.

    The rows the ledger has are locked, so a concurrent backfill or decision waits; a row
    another backfill inserts meanwhile is not inserted again (``ON CONFLICT DO NOTHING``) and is
    reported ``already``. A re-run row is planned afresh (``created_at`` now), so the reconciler
    follows it like any occurrence dispatched today.
    """
    ids = [r.id for r in rows]
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetch(
            "SELECT id::text AS id, state FROM scheduler.occurrences WHERE id = ANY($1::uuid[]) "
            "ORDER BY id FOR UPDATE",
            ids,
        )
        states = {r["id"]: r["state"] for r in found}
        outcome: list[tuple[Any, str | None]] = list(bf.classify(ids, states))
        if dry_run or not rows:
            return outcome
        new = [r for r in rows if r.id not in states]
        inserted = {
            r["id"]
            for r in await conn.fetch(
                "INSERT INTO scheduler.occurrences (id, job_id, scheduled_for, priority, trigger, "
                "requested_by, state, reason, cause, requested_from) "
                "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[], $5::text[], "
                "$6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) "
                "ON CONFLICT (id) DO NOTHING RETURNING id::text AS id",
                [r.id for r in new],
                [r.job_id for r in new],
                [r.scheduled_for for r in new],
                [r.priority for r in new],
                [r.trigger for r in new],
                [r.requested_by for r in new],
                [r.state for r in new],
                [r.reason for r in new],
                [r.cause for r in new],
                [r.requested_from for r in new],
            )
        }
        again = [r for r in rows if states.get(r.id) in bf.RERUNNABLE]
        if again:
            first = again[0]
            await conn.execute(
                "UPDATE scheduler.occurrences SET state = 'pending', trigger = 'backfill', "
                "priority = $2, requested_by = $3, requested_from = $4, cause = 'backfill', "
                "reason = $5 || ' (it was ' || state || coalesce(': ' || reason, '') || ')', "
                "created_at = now(), dispatched_at = NULL WHERE id = ANY($1::uuid[]) "
                f"AND state IN ({', '.join(repr(s) for s in bf.RERUNNABLE)})",
                [r.id for r in again],
                first.priority,
                first.requested_by,
                first.requested_from,
                first.reason,
            )
        for i, r in enumerate(rows):
            if r.id not in states and r.id not in inserted:
                outcome[i] = ("already", "pending")  # another backfill wrote it meanwhile
        return outcome


async def write_decision(
    pool: asyncpg.Pool,
    job_id: str,
    choice: dc.Choice,
    by: str | None,
    source: str | None,
    what: str,
) -> tuple[list[tuple[datetime, str]] | None, int]:
    """Apply a decision to the job's awaiting occurrences in one transaction: (scheduled
    instant, id) of those it runs, and how many it skipped; None when none was awaiting."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id::text AS id, scheduled_for FROM scheduler.occurrences "
            "WHERE job_id = $1::uuid AND state = 'awaiting' ORDER BY scheduled_for FOR UPDATE",
            job_id,
        )
        if not rows:
            return None, 0
        run, skip = dc.split(
            [(r["scheduled_for"], (r["scheduled_for"], r["id"])) for r in rows], choice
        )
        # A run is planned afresh (created_at now), so the reconciler follows it like any other.
        for ids, state in (([i for _, i in run], "pending"), ([i for _, i in skip], "skipped")):
            if ids:
                await conn.execute(
                    "UPDATE scheduler.occurrences SET state = $2, cause = 'decision', "
                    "requested_by = $3, requested_from = $4, reason = $5, "
                    "created_at = CASE WHEN $2 = 'pending' THEN now() ELSE created_at END "
                    "WHERE id = ANY($1::uuid[]) AND state = 'awaiting'",
                    ids, state, by, source, f"{'run' if state == 'pending' else 'skipped'}: {what}",
                )  # fmt: skip
        return run, len(skip)


async def expire_decisions(
    store: Store,
    partition: Partition | None,
    fence: Fence | None,
    ttl_s: float,
) -> dict[str, int]:
    """Skip the awaiting occurrences of the partition found longer than ``ttl_s`` ago, under the
    holder's lease (:class:`Deposed` otherwise); returns how many per job. Times are the
    database's, as ``created_at`` is."""
    reason = (
        f"skipped: nobody decided within {ttl_s:g}s of the occurrence being found missed "
        "(catch-up policy ask; BELLTOWER_SCHEDULER_DECISION_TTL_S), so the decision expired"
    )
    async with store._writer(fence) as db:
        rows = await db.fetch(
            "UPDATE scheduler.occurrences SET state = 'skipped', cause = 'decision_expired', "
            "reason = $2 WHERE state = 'awaiting' AND created_at < now() - make_interval(secs => $1) "
            f"AND {_partition_filter('job_id', partition, 3)} RETURNING job_id::text AS job_id",
            ttl_s,
            reason,
            *_partition_args(partition),
        )
    expired: dict[str, int] = {}
    for r in rows:
        expired[r["job_id"]] = expired.get(r["job_id"], 0) + 1
    for job_id, count in expired.items():
        log.info(
            "catch-up decision expired; the missed occurrences are skipped",
            extra={"action": "decision.expired", "job_id": job_id, "count": count},
        )
    return expired


async def pending_left(store: Store, partition: Partition | None) -> bool:
    """Whether the partition has ``pending`` rows older than :data:`PENDING_LOOK_S` (a backfill
    or decision whose wake-up notice the holder never got)."""
    return bool(
        await store.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM scheduler.occurrences WHERE state = 'pending' "
            "AND created_at < now() - make_interval(secs => $1) "
            f"AND {_partition_filter('job_id', partition, 2)})",
            PENDING_LOOK_S,
            *_partition_args(partition),
        )
    )

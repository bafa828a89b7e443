"""Helpers for the scheduler's tests: jobs in the table, a settable clock, the due messages
JetStream holds, run-finished events, leases and dispatchers set up as the tests need them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
from nats.js import JetStreamContext

from belltower.api import RunPolicy
from belltower.events import DueOccurrence, RunFinishedData, occurrence_id, run_id_for
from belltower.schedule import Every, OnDemand, Schedule
from belltower.subjects import DUE_STREAM
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.lease import Lease, LeaseKeeper
from belltower_scheduler.partitions import Partitions
from belltower_scheduler.settings import SchedulerSettings
from belltower_scheduler.store import JobRow, Store
from tests.support import stream_messages

T0 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class Clock:
    """A clock the test sets: ``clock.now = ...``; the dispatcher reads it by calling it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def add_job(
    store: Store, policy: RunPolicy = RunPolicy(), *, schedule: Schedule | None = None,
    every_s: int = 60, end: datetime | None = None, next_due: datetime | None = T0,
    paused: bool = False, title: str = "job", priority: int = 500, job_id: str | None = None,
) -> JobRow:  # fmt: skip
    """Insert a job (every ``every_s`` seconds, unless ``schedule`` is given) due at ``next_due``."""
    row = JobRow(
        id=job_id or str(uuid.uuid4()), title=title, type="system.canary", pool="notifier",
        params={}, schedule=schedule or Schedule(rule=Every(seconds=every_s), end=end),
        priority=priority, paused=paused, keep_history_days=30, timeout_s=None,
        next_run_at=next_due, created_at=T0, updated_at=T0, policy=policy,
    )  # fmt: skip
    await store.insert_job(row)
    return row


async def add_on_demand_job(
    store: Store, policy: RunPolicy = RunPolicy(), *, title: str = "job"
) -> JobRow:
    """Insert a job with no schedule of its own (run now, or after its upstream job)."""
    return await add_job(
        store, policy, schedule=Schedule(rule=OnDemand()), next_due=None, title=title
    )


def finished(
    row: JobRow, at: datetime, status: str = "succeeded", done: datetime | None = None
) -> RunFinishedData:
    """The finished event of the run of ``row``'s scheduled occurrence ``at`` (5 s long unless
    ``done`` says when it ended)."""
    occ_id = occurrence_id(row.id, at)
    return run_finished(
        row, occ_id, at, status, done or at + timedelta(seconds=5), duration_ms=5000
    )


def run_finished(
    row: JobRow, occ_id: str, at: datetime, status: str = "succeeded",
    done: datetime | None = None, *, duration_ms: int = 0,
) -> RunFinishedData:  # fmt: skip
    """The finished event of the run of occurrence ``occ_id`` of ``row``, scheduled for ``at``
    and ending at ``done`` (else at ``at``)."""
    return RunFinishedData(
        run_id=run_id_for(occ_id), occurrence_id=occ_id, job_id=row.id, job_type=row.type,
        job_title=row.title, pool=row.pool, status=status, priority=500, trigger="schedule",
        scheduled_for=at, dispatched_at=at, started_at=at, finished_at=done or at,
        duration_ms=duration_ms,
        error=None if status == "succeeded" else "boom",
    )  # fmt: skip


async def due_messages(js: JetStreamContext) -> list[tuple[DueOccurrence, str]]:
    """Every due message the stream holds, decoded, with its ``Nats-Msg-Id``."""
    return [
        (msgspec.json.decode(m.data, type=DueOccurrence), m.headers["Nats-Msg-Id"])
        for m in await stream_messages(js, DUE_STREAM)
    ]


async def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


def held_lease(token: int, replica: str, partition: int = 0, count: int = 1) -> Lease:
    """A lease valid on the local clock for ever: only PostgreSQL's token can refuse the writes,
    as for a replica resumed after a stall that has not yet noticed its lease ran out."""
    return Lease(
        partition=partition, count=count, token=token, revision=token,
        valid_until=float("inf"), replica=replica,
    )  # fmt: skip


async def tracking_dispatcher(
    store: Store, js: JetStreamContext, clock: Clock, **options: object
) -> Dispatcher:
    """A dispatcher with the jobs loaded, following run events (overlap and chaining apply)."""
    d = Dispatcher(store, js, clock=clock, **options)  # type: ignore[arg-type]
    await d.load()
    await d.track_runs()
    return d


_LEASE_LOOPS: set[asyncio.Task[None]] = set()


async def stop_lease_loops() -> None:
    """Stop the lease loops :func:`replica` started (a test module's autouse fixture calls it)."""
    for task in _LEASE_LOOPS:
        task.cancel()
    await asyncio.gather(*_LEASE_LOOPS, return_exceptions=True)
    _LEASE_LOOPS.clear()


async def replica(nc, store: Store, settings, name: str) -> tuple[Partitions, LeaseKeeper]:
    """A scheduler replica as the app wires it, renewing its leases (a holder must stay one
    for as long as a test hands it run-now requests)."""
    own = SchedulerSettings(
        nats_url=settings.nats_url,
        database_url=settings.database_url,
        scheduler_replica_id=name,
        scheduler_lease_s=3,
    )
    partitions = Partitions(store, nc.jetstream(), nc, own)
    await partitions.subscribe()
    keeper = LeaseKeeper(
        nc.jetstream(),
        store,
        own,
        replica_id=name,
        partitions=1,
        lease_s=own.scheduler_lease_s,
        renew_s=own.renew_s,
        on_acquired=partitions.acquired,
        on_lost=partitions.lost,
    )
    await keeper.start()
    await keeper.step()
    await partitions.loaded()
    _LEASE_LOOPS.add(asyncio.create_task(keeper.run_forever()))
    return partitions, keeper

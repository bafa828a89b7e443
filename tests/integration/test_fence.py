"""Every ledger write a scheduler replica makes is fenced by its lease's token, on real NATS and
PostgreSQL: a deposed replica's write raises ``Deposed`` and changes nothing, the current
holder's is made; and run events a deposed leader could not record reach the new leader."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import msgspec
import pytest

from belltower.api import After, RunPolicy
from belltower.events import RunFinished, occurrence_id, run_id_for, utcnow
from belltower.subjects import DUE_STREAM, run_finished_subject
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.entry import Entry
from belltower_scheduler.fencing import Deposed, lease_key
from belltower_scheduler.lease import Lease, LeaseKeeper
from belltower_scheduler.partitions import Partitions
from belltower_scheduler.settings import SchedulerSettings
from belltower_scheduler.store import LedgerRow, Store
from tests.helpers.scheduler import (
    MINUTE,
    T0,
    Clock,
    add_job,
    due_messages,
    eventually,
    finished,
    held_lease,
)
from tests.support import stream_messages

OLD, NEW = 5, 7
"""Fencing tokens: replica "a" held the partition under OLD, then "b" took it under NEW."""


@pytest.fixture
async def store(pool) -> Store:
    store = Store(pool)
    key = lease_key(0, 1)
    assert await store.fence(key, OLD, "a")
    assert await store.fence(key, NEW, "b")  # "b" took over: "a" is deposed
    return store


def deposed(store: Store, nc, clock: Clock) -> Dispatcher:
    return Dispatcher(store, nc.jetstream(), clock=clock, lease=held_lease(OLD, "a"))


def leader(store: Store, nc, clock: Clock) -> Dispatcher:
    return Dispatcher(store, nc.jetstream(), clock=clock, lease=held_lease(NEW, "b"))


async def snapshot(pool) -> list[dict]:
    """The whole ledger, to show a refused write changed nothing in it."""
    return [dict(r) for r in await pool.fetch("SELECT * FROM scheduler.occurrences ORDER BY id")]


async def run_status(pool, occ_id: str) -> str | None:
    return await pool.fetchval(
        "SELECT run_status FROM scheduler.occurrences WHERE id = $1::uuid", occ_id
    )


async def state_of(pool, occ_id: str) -> str | None:
    return await pool.fetchval(
        "SELECT state FROM scheduler.occurrences WHERE id = $1::uuid", occ_id
    )


async def dispatched_by_leader(store: Store, nc, clock: Clock, policy: RunPolicy = RunPolicy()):
    """A job whose T0 occurrence the current leader dispatched, and that leader (tracking runs)."""
    row = await add_job(store, policy)
    b = leader(store, nc, clock)
    await b.load()
    await b.track_runs()
    assert await b.tick() == 1
    return row, b


# -- each fenced write: refused under the old token, made under the current one ---------------


async def test_a_finished_run_is_recorded_only_by_the_current_holder(nc, store, pool) -> None:
    clock = Clock(T0)
    row, b = await dispatched_by_leader(store, nc, clock)
    a = deposed(store, nc, clock)
    before = await snapshot(pool)

    with pytest.raises(Deposed):
        await a.runs_finished([finished(row, T0)])
    assert await snapshot(pool) == before

    await b.runs_finished([finished(row, T0)])
    assert await run_status(pool, occurrence_id(row.id, T0)) == "succeeded"


async def test_a_started_run_is_recorded_only_by_the_current_holder(nc, store, pool) -> None:
    clock = Clock(T0)
    row, b = await dispatched_by_leader(store, nc, clock)
    occ = occurrence_id(row.id, T0)
    a = deposed(store, nc, clock)
    before = await snapshot(pool)

    with pytest.raises(Deposed):
        await a.runs_started([occ])
    assert await snapshot(pool) == before

    await b.runs_started([occ])
    assert await run_status(pool, occ) == "running"


async def test_a_buffered_occurrence_is_released_only_by_the_current_holder(
    nc, store, pool
) -> None:
    clock = Clock(T0)
    row, b = await dispatched_by_leader(store, nc, clock, RunPolicy(overlap="buffer"))
    clock.now = T0 + MINUTE
    assert await b.tick() == 0
    buffered = occurrence_id(row.id, T0 + MINUTE)
    assert await state_of(pool, buffered) == "waiting"
    a = deposed(store, nc, clock)  # it follows the same ledger: the run in flight, the one waiting
    await a.load()
    await a.track_runs()
    assert a.waiting == {row.id: buffered}
    before = await snapshot(pool)

    with pytest.raises(Deposed):
        await a.runs_finished([finished(row, T0)])
    assert await snapshot(pool) == before

    await b.runs_finished([finished(row, T0)])
    assert await state_of(pool, buffered) == "pending"
    assert await b.tick() == 1
    assert await state_of(pool, buffered) == "dispatched"


async def test_a_chained_occurrence_is_planned_only_by_the_current_holder(nc, store, pool) -> None:
    upstream = await add_job(store, title="download")
    follower = await add_job(
        store,
        RunPolicy(after=After(job=upstream.id, on="succeeded", delay_s=600)),
        next_due=None,
        every_s=86_400 * 365,
        title="import",
    )
    clock = Clock(T0 + timedelta(seconds=10))
    a, b = deposed(store, nc, clock), leader(store, nc, clock)
    for d in (a, b):
        await d.load()
        await d.track_runs()
    before = await snapshot(pool)

    with pytest.raises(Deposed):
        await a.runs_finished([finished(upstream, T0)])
    assert await snapshot(pool) == before
    assert a.delayed == []

    await b.runs_finished([finished(upstream, T0)])
    rows = await pool.fetch(
        "SELECT state, trigger FROM scheduler.occurrences WHERE job_id = $1::uuid", follower.id
    )
    assert [(r["state"], r["trigger"]) for r in rows] == [("delayed", "chained")]
    assert len(b.delayed) == 1


async def test_a_delayed_occurrence_is_released_only_by_the_current_holder(nc, store, pool) -> None:
    upstream = await add_job(store, title="download", next_due=None)
    follower = await add_job(
        store,
        RunPolicy(after=After(job=upstream.id, on="succeeded", delay_s=60)),
        next_due=None,
        every_s=86_400 * 365,
        title="import",
    )
    clock = Clock(T0 + timedelta(seconds=10))
    b = leader(store, nc, clock)
    await b.load()
    await b.track_runs()
    await b.runs_finished([finished(upstream, T0)])  # chained, delayed until T0 + 65 s
    clock.now = T0 + 2 * MINUTE
    a = deposed(store, nc, clock)
    await a.load()
    await a.track_runs()
    assert len(a.delayed) == 1
    before = await snapshot(pool)

    with pytest.raises(Deposed):
        await a.tick()
    assert await snapshot(pool) == before
    assert len(a.delayed) == 1  # kept, to be released if it ever may write again
    assert await due_messages(nc.jetstream()) == []

    await b.tick()
    chained = [
        (m.trigger, i) for m, i in await due_messages(nc.jetstream()) if m.job_id == follower.id
    ]
    [(trigger, occ_id)] = chained
    assert trigger == "chained" and await state_of(pool, occ_id) == "dispatched"


async def test_a_delayed_occurrence_held_back_by_overlap_is_recorded_only_by_the_current_holder(
    nc, store, pool
) -> None:
    upstream = await add_job(store, title="download", next_due=None)
    follower = await add_job(
        store,
        RunPolicy(after=After(job=upstream.id, delay_s=60)),
        next_due=None,
        title="import",
    )
    clock = Clock(T0 + timedelta(seconds=10))
    b = leader(store, nc, clock)
    await b.load()
    await b.track_runs()
    going = await b.run_now(b.entries[follower.id], "alice")  # the follower's run, going
    await b.runs_finished([finished(upstream, T0)])  # chained, delayed until T0 + 65 s
    clock.now = T0 + 2 * MINUTE
    a = deposed(store, nc, clock)
    await a.load()
    await a.track_runs()
    before = await snapshot(pool)

    with pytest.raises(Deposed):
        await a.tick()  # the delay has passed, a run is going: skip it, were it allowed to
    assert await snapshot(pool) == before

    await b.tick()
    rows = await pool.fetch(
        "SELECT state, cause FROM scheduler.occurrences WHERE job_id = $1::uuid AND trigger = 'chained'",
        follower.id,
    )
    assert [(r["state"], r["cause"]) for r in rows] == [("skipped", "overlap")]
    assert [i for m, i in await due_messages(nc.jetstream()) if m.job_id == follower.id] == [
        going.id
    ]


async def test_run_now_is_planned_only_by_the_current_holder(nc, store, pool) -> None:
    row = await add_job(store, next_due=None)
    clock = Clock(T0)
    a, b = deposed(store, nc, clock), leader(store, nc, clock)

    with pytest.raises(Deposed):
        await a.run_now(Entry.from_row(row), "alice")
    assert await snapshot(pool) == []
    assert await due_messages(nc.jetstream()) == []

    occ = await b.run_now(Entry.from_row(row), "alice")
    assert await state_of(pool, occ.id) == "dispatched"
    assert [i for _, i in await due_messages(nc.jetstream())] == [occ.id]


async def test_orphans_are_skipped_only_by_the_current_holder(nc, store, pool) -> None:
    gone = str(uuid.uuid4())  # a job deleted after its occurrence was planned
    occ = LedgerRow(
        id=occurrence_id(gone, T0), job_id=gone, scheduled_for=T0, priority=500,
        trigger="schedule", state="pending",
    )  # fmt: skip
    assert await store.plan([occ], [], fence=(lease_key(0, 1), NEW)) == {occ.id}
    clock = Clock(T0)
    a, b = deposed(store, nc, clock), leader(store, nc, clock)
    before = await snapshot(pool)

    with pytest.raises(Deposed):
        await a.republish_pending()
    assert await snapshot(pool) == before

    await b.republish_pending()
    assert await state_of(pool, occ.id) == "skipped"


async def test_a_publish_is_marked_dispatched_only_by_the_current_holder(nc, store, pool) -> None:
    """The deposed replica's publish itself cannot be taken back; it carries the occurrence id,
    so the current holder's republish of the row left pending is dropped as a duplicate."""
    row = await add_job(store)
    occ = LedgerRow(
        id=occurrence_id(row.id, T0), job_id=row.id, scheduled_for=T0, priority=500,
        trigger="schedule", state="pending",
    )  # fmt: skip
    assert await store.plan([occ], [], fence=(lease_key(0, 1), NEW)) == {occ.id}
    clock = Clock(T0)
    a, b = deposed(store, nc, clock), leader(store, nc, clock)
    for d in (a, b):
        await d.load()
    before = await snapshot(pool)

    with pytest.raises(Deposed):
        await a.republish_pending()
    assert await snapshot(pool) == before  # still pending
    assert a.stats.dispatched == 0

    assert await b.republish_pending() == 1
    assert await state_of(pool, occ.id) == "dispatched"
    assert [i for _, i in await due_messages(nc.jetstream())] == [occ.id]


async def test_store_writes_without_a_fence_stay_unchecked(nc, store, pool) -> None:
    """A lone scheduler has no lease: its writes do not look at scheduler.leases."""
    row, _ = await dispatched_by_leader(store, nc, Clock(T0))
    occ = occurrence_id(row.id, T0)
    await store.record_runs([(occ, "failed", "boom", T0 + MINUTE)])
    assert await run_status(pool, occ) == "failed"


# -- the scenario: a deposed leader receives a run finished event ------------------------------


async def test_a_deposed_leader_writes_nothing_for_a_run_event_and_the_new_leader_records_it(
    nc, pool, settings, caplog
) -> None:
    store = Store(pool)
    js = nc.jetstream()

    def replica_settings(name: str) -> SchedulerSettings:
        return SchedulerSettings(
            nats_url=settings.nats_url,
            database_url=settings.database_url,
            scheduler_replica_id=name,
            scheduler_lease_s=3,
        )

    def keeper(name: str, partitions: Partitions, on_acquired) -> LeaseKeeper:
        own = replica_settings(name)
        return LeaseKeeper(
            js, store, own, replica_id=name, partitions=1, lease_s=own.scheduler_lease_s,
            renew_s=own.renew_s, on_acquired=on_acquired, on_lost=partitions.lost,
        )  # fmt: skip

    due = utcnow() - timedelta(seconds=1)
    row = await add_job(store, RunPolicy(overlap="skip"), every_s=3600, next_due=due)
    occ = occurrence_id(row.id, due)

    a_partitions = Partitions(store, js, nc, replica_settings("a"))
    a_keeper = keeper("a", a_partitions, a_partitions.acquired)
    b_partitions = Partitions(store, js, nc, replica_settings("b"))
    b_leases: list[Lease] = []

    async def b_acquired(lease: Lease) -> None:
        b_leases.append(lease)  # fenced in PostgreSQL; "b" starts leading when the test says

    b_keeper = keeper("b", b_partitions, b_acquired)
    try:
        await a_keeper.start()
        await b_keeper.start()
        await a_keeper.step()
        await a_partitions.loaded()
        a_lease = a_keeper.held[0]
        for _ in range(250):  # "a" leads and dispatches the job's occurrence
            if await state_of(pool, occ) == "dispatched":
                break
            await asyncio.sleep(0.02)
        assert await state_of(pool, occ) == "dispatched"

        # "a" stalls: it renews no more, its key expires, and "b" takes the lease.
        for _ in range(100):
            await b_keeper.step()
            if b_leases:
                break
            await asyncio.sleep(0.1)
        assert b_leases and b_leases[0].token > a_lease.token
        assert 0 in a_partitions.held  # "a" has not noticed: its run tracker still listens

        # The run finishes; "a" receives the event and is refused its write.
        event = RunFinished(
            id=run_id_for(occ), source="test", subject=row.id, time=due,
            data=finished(row, due),
        )  # fmt: skip
        await js.publish(run_finished_subject("succeeded", row.type), msgspec.json.encode(event))
        await eventually(
            lambda: any(getattr(r, "action", None) == "runs.deposed" for r in caplog.records)
        )
        assert await run_status(pool, occ) is None
        assert not a_lease.valid  # it trusts its lease no more: nothing more is published
        assert len(await stream_messages(js, DUE_STREAM)) == 1

        # Its next round finds the key taken: it stops leading the partition.
        await a_keeper.step()
        assert a_keeper.held == {} and a_partitions.held == {}

        # "b" starts leading only now, and still gets the event: replayed from the stream.
        await b_keeper.step()  # renewed
        await b_partitions.acquired(b_leases[0])
        await b_partitions.loaded()
        for _ in range(250):
            if await run_status(pool, occ) == "succeeded":
                break
            await asyncio.sleep(0.02)
        assert await run_status(pool, occ) == "succeeded"
        assert row.id not in b_partitions.held[0].dispatcher.in_flight
    finally:
        for k, p in ((a_keeper, a_partitions), (b_keeper, b_partitions)):
            await p.stop()
            await k.release_all()


async def test_only_the_current_holder_reconciles_what_the_broker_lost(
    nc, store, pool, settings
) -> None:
    """The leader's dispatched occurrence vanishes from the stream; a deposed replica's
    reconciler publishes no copy and writes nothing, the holder's publishes it again."""
    from belltower_scheduler.reconcile import Reconciler

    clock = Clock(T0)
    row, b = await dispatched_by_leader(store, nc, clock)
    occ = occurrence_id(row.id, T0)
    await nc.jetstream().purge_stream(DUE_STREAM)
    clock.now = T0 + 10 * MINUTE
    own = SchedulerSettings(
        nats_url=settings.nats_url,
        database_url=settings.database_url,
        reconcile_start_deadline_s=60,
        stale_run_s=1e9,  # the test clock is years ahead of the rows' created_at
    )
    a = deposed(store, nc, clock)
    await a.load()
    before = await snapshot(pool)

    with pytest.raises(Deposed):
        await Reconciler(a, nc.jetstream(), own, clock=clock).round()
    assert await snapshot(pool) == before
    assert await due_messages(nc.jetstream()) == []

    stats = await Reconciler(b, nc.jetstream(), own, clock=clock).round()
    assert (stats.recovered, stats.lost) == (1, 0)
    [(message, msg_id)] = await due_messages(nc.jetstream())
    assert message.occurrence_id == occ and msg_id == f"{occ}.recovery.1"
    attempts = await pool.fetchval(
        "SELECT recovery_attempts FROM scheduler.occurrences WHERE id = $1::uuid", occ
    )
    assert attempts == 1

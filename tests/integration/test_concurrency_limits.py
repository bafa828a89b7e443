"""Limits per target over real JetStream and PostgreSQL: jobs sharing a concurrency key run at
most its limit at once, the others wait in the ledger (saying why) and run in priority order as
runs finish, across two dispatchers, and a run lost by the broker does not hold its slot."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec
import pytest
from prometheus_client import REGISTRY

from belltower.api import JobRef, RunPolicy
from belltower.backfill import BackfillRequest
from belltower.events import occurrence_id
from belltower_scheduler.catalog import Catalog
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.entry import Entry
from belltower_scheduler.limits import SWEEP_S
from belltower_scheduler.operations import Operations
from belltower_scheduler.store import Store
from tests.helpers.scheduler import MINUTE, T0, Clock, add_job, due_messages, finished

RELAY = RunPolicy(concurrency_key="relay:smtp.district.org", concurrency_limit=1, overlap="allow")


@pytest.fixture
async def store(pool) -> Store:
    return Store(pool)


async def ledger(pool, row) -> tuple[str, str | None, str | None]:
    r = await pool.fetchrow(
        "SELECT state, cause, reason FROM scheduler.occurrences WHERE id = $1",
        occurrence_id(row.id, T0),
    )
    return r["state"], r["cause"], r["reason"]


async def published(js) -> list[str]:
    return [m.job_id for m, _ in await due_messages(js)]


def waited_count() -> float:
    return REGISTRY.get_sample_value("belltower_concurrency_wait_seconds_count") or 0.0


async def test_over_the_limit_occurrences_wait_and_run_in_priority_order(nc, store, pool) -> None:
    js = nc.jetstream()
    high = await add_job(store, RELAY, priority=900, title="high", every_s=3600)
    low = await add_job(store, RELAY, priority=100, title="low", every_s=3600)
    mid = await add_job(store, RELAY, priority=500, title="mid", every_s=3600)
    free = await add_job(store, RunPolicy(), title="no key", every_s=3600)
    clock = Clock(T0)
    d = Dispatcher(store, js, clock=clock)
    await d.load()
    assert set(d.limited) == {high.id, low.id, mid.id}  # the job without a key is not there

    assert await d.tick() == 2
    assert sorted(await published(js)) == sorted([high.id, free.id])
    state, cause, reason = await ledger(pool, low)
    assert (state, cause) == ("waiting", "concurrency")
    assert reason is not None and "relay:smtp.district.org had 1 of 1 runs in flight" in reason
    assert (await ledger(pool, mid))[0] == "waiting"
    assert await pool.fetchval(
        "SELECT count(*) FROM scheduler.concurrency_slots WHERE job_id = $1", free.id
    ) == 0  # fmt: skip
    ops = Operations(store, d, Catalog(js))
    shown = await ops.get(JobRef(id=low.id))
    assert (shown.concurrency_running, shown.concurrency_waiting) == (1, 2)

    # The scheduler restarts: the ledger still knows who waits, and not as buffered by overlap.
    d = Dispatcher(store, js, clock=clock)
    await d.load()
    await d.track_runs()
    assert d.waiting == {} and set(d.in_flight) == {high.id, free.id, low.id, mid.id}

    # The run finishes: the waiting one of higher priority gets the slot, the other still waits.
    before = waited_count()
    clock.now = T0 + timedelta(seconds=30)
    await d.runs_finished([finished(high, T0, done=clock.now)])
    assert await d.tick() == 1
    assert (await published(js))[-1] == mid.id
    state, _, reason = await ledger(pool, mid)
    assert state == "dispatched"
    assert reason == "waited 30.0s for relay:smtp.district.org (concurrency limit 1)"
    assert (await ledger(pool, low))[0] == "waiting"
    assert waited_count() == before + 1

    # A finished event delivered again frees nothing twice.
    await d.runs_finished([finished(high, T0, done=clock.now)])
    assert await d.tick() == 0

    clock.now = T0 + timedelta(seconds=50)
    await d.runs_finished([finished(mid, T0, done=clock.now)])
    assert await d.tick() == 1
    assert (await published(js))[-1] == low.id
    assert await pool.fetchval("SELECT count(*) FROM scheduler.concurrency_slots") == 1


async def test_a_job_deleted_while_it_waits_leaves_the_queue(nc, store, pool) -> None:
    js = nc.jetstream()
    a = await add_job(store, RELAY, title="a", priority=900, every_s=3600)
    b = await add_job(store, RELAY, title="b", every_s=3600)
    d = Dispatcher(store, js, clock=Clock(T0))
    await d.load()
    assert await d.tick() == 1
    assert await store.delete_job(b.id)
    state, cause, _ = await ledger(pool, b)
    assert (state, cause) == ("skipped", "deleted")
    assert await pool.fetchval(
        "SELECT array_agg(job_id::text) FROM scheduler.concurrency_slots"
    ) == [a.id]  # fmt: skip


async def test_two_dispatchers_share_the_key_through_the_ledger(nc, store, pool) -> None:
    """Two replicas (here: two dispatchers, each with one of the jobs) plan at the same
    instant; one run goes, the other waits, and is published by its own replica once the
    first finishes."""
    js = nc.jetstream()
    a = await add_job(store, RELAY, title="a", every_s=3600)
    b = await add_job(store, RELAY, title="b", every_s=3600)
    clock = Clock(T0)
    d1 = Dispatcher(store, js, clock=clock)
    d2 = Dispatcher(store, js, clock=clock)
    d1.put(Entry.from_row(a))
    d2.put(Entry.from_row(b))
    sent = await asyncio.gather(d1.tick(), d2.tick())
    assert sorted(sent) == [0, 1]
    first, second, holder, other = (a, b, d1, d2) if sent[0] == 1 else (b, a, d2, d1)
    assert await published(js) == [first.id]
    assert (await ledger(pool, second))[0] == "waiting"

    clock.now = T0 + timedelta(seconds=5)
    await holder.runs_finished([finished(first, T0, done=clock.now)])
    assert await holder.tick() == 0  # not its job: the other replica publishes it
    clock.now += timedelta(seconds=SWEEP_S)
    assert await other.tick() == 1
    assert await published(js) == [first.id, second.id]


async def test_a_lost_run_does_not_hold_its_slot(nc, store, pool) -> None:
    js = nc.jetstream()
    a = await add_job(store, RELAY, title="a", every_s=3600)
    b = await add_job(store, RELAY, title="b", every_s=3600)
    clock = Clock(T0)
    d = Dispatcher(store, js, clock=clock)
    await d.load()
    assert await d.tick() == 1
    going = (await published(js))[0]
    waiting = b if going == a.id else a
    clock.now = T0 + timedelta(seconds=SWEEP_S)
    assert await d.tick() == 0  # the sweep finds the slot still held

    # The reconciler gives up on the run (no worker ever started it): the slot is free.
    lost = occurrence_id(going, T0)
    assert await store.mark_lost([(lost, "never started")], clock.now) == [lost]
    clock.now += timedelta(seconds=SWEEP_S)
    assert await d.tick() == 1
    assert (await published(js))[-1] == waiting.id
    assert (await ledger(pool, waiting))[2].startswith("waited 4.0s for relay:")


async def test_a_backfill_of_a_keyed_job_runs_within_the_limit(nc, store, pool) -> None:
    """Backfilled occurrences are written pending outside the planner: published, they are
    queued for the key like any other, one at a time here, the rest waiting."""
    js = nc.jetstream()
    row = await add_job(store, RELAY, title="nightly", every_s=60, next_due=T0 + 10 * MINUTE)
    clock = Clock(T0 + 5 * MINUTE)
    d = Dispatcher(store, js, clock=clock)
    await d.load()
    ops = Operations(store, d, Catalog(js))
    done = await ops.backfill(BackfillRequest(id=row.id, since=T0, until=T0 + 3 * MINUTE))
    assert done.to_run == 3
    assert await d.tick() == 1
    states = await pool.fetch(
        "SELECT state, cause, trigger FROM scheduler.occurrences WHERE job_id = $1 "
        "ORDER BY scheduled_for",
        row.id,
    )
    assert [(s["state"], s["cause"]) for s in states] == [
        ("dispatched", "backfill"),
        ("waiting", "concurrency"),
        ("waiting", "concurrency"),
    ]
    assert {s["trigger"] for s in states} == {"backfill"}
    await d.runs_finished([finished(row, T0, done=clock.now)])
    assert await d.tick() == 1


async def test_a_waiting_occurrence_holds_back_its_job_under_overlap_skip(nc, store, pool) -> None:
    """Waiting for the key counts as going for the job's own overlap policy: its next
    occurrence is skipped, not queued to run side by side with it later."""
    js = nc.jetstream()
    busy = await add_job(store, RELAY, title="busy", priority=900, every_s=3600)
    job = await add_job(
        store, msgspec.structs.replace(RELAY, overlap="skip"), title="skip", every_s=60
    )
    clock = Clock(T0)
    d = Dispatcher(store, js, clock=clock)
    await d.load()
    await d.track_runs()
    assert await d.tick() == 1
    assert (await ledger(pool, job))[0] == "waiting"
    clock.now = T0 + MINUTE
    assert await d.tick() == 0
    r = await pool.fetchrow(
        "SELECT state, cause FROM scheduler.occurrences WHERE id = $1",
        occurrence_id(job.id, T0 + MINUTE),
    )
    assert (r["state"], r["cause"]) == ("skipped", "overlap")
    await d.runs_finished([finished(busy, T0, done=clock.now)])
    assert await d.tick() == 1
    assert (await ledger(pool, job))[0] == "dispatched"

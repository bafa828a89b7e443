"""The reconciler's decisions one round at a time, on real JetStream, the claims bucket and
PostgreSQL (the fault tests over processes are in tests/e2e/test_reconciler.py)."""

from __future__ import annotations

import time

import msgspec
import pytest

from belltower.events import RunFinished, occurrence_id, run_id_for
from belltower.subjects import CLAIMS_BUCKET, DUE_STREAM, RUNS_STREAM, claim_key
from belltower.worker import Claim
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.fencing import lease_key
from belltower_scheduler.reconcile import Reconciler
from belltower_scheduler.settings import SchedulerSettings
from belltower_scheduler.store import Store
from tests.helpers.scheduler import (
    MINUTE,
    T0,
    Clock,
    add_job,
    due_messages,
    held_lease,
    run_finished,
)
from tests.support import stream_messages

TOKEN = 3


@pytest.fixture
async def store(pool) -> Store:
    store = Store(pool)
    assert await store.fence(lease_key(0, 1), TOKEN, "holder")
    return store


@pytest.fixture
def own(settings) -> SchedulerSettings:
    return SchedulerSettings(
        nats_url=settings.nats_url,
        database_url=settings.database_url,
        reconcile_start_deadline_s=60,
        reconcile_abandon_s=30,
        reconcile_interval_s=1,
        stale_run_s=1e9,  # the test clock is years ahead of the rows' created_at
    )


async def dispatched(store: Store, nc, clock: Clock):
    """A job whose T0 occurrence the holder dispatched, the holder, and a reconciler for it."""
    row = await add_job(store)
    d = Dispatcher(store, nc.jetstream(), clock=clock, lease=held_lease(TOKEN, "holder"))
    await d.load()
    assert await d.tick() == 1
    return row, d


async def run_status(pool, occ: str) -> tuple[str, str | None, int]:
    r = await pool.fetchrow(
        "SELECT state, run_status, recovery_attempts FROM scheduler.occurrences WHERE id = $1::uuid",
        occ,
    )
    return r["state"], r["run_status"], r["recovery_attempts"]


async def test_a_copy_still_queued_is_waited_for_not_published_again_nor_lost(
    nc, store, pool, own
) -> None:
    clock = Clock(T0)
    row, d = await dispatched(store, nc, clock)
    occ = occurrence_id(row.id, T0)
    await nc.jetstream().purge_stream(DUE_STREAM)
    reconciler = Reconciler(d, nc.jetstream(), own, clock=clock)
    clock.now = T0 + MINUTE / 2  # within the start deadline (60 s)
    assert (await reconciler.round()).recovered == 0
    clock.now = T0 + 2 * MINUTE
    assert (await reconciler.round()).recovered == 1
    for minutes in (3, 4, 5, 6):  # no worker takes the copy: it is queued, not lost
        clock.now = T0 + minutes * MINUTE
        stats = await reconciler.round()
        assert (stats.recovered, stats.lost) == (0, 0)
    assert await run_status(pool, occ) == ("dispatched", None, 1)
    assert [m for _, m in await due_messages(nc.jetstream())] == [f"{occ}.recovery.1"]


async def test_a_finished_claim_the_ledger_never_heard_of_is_recorded_and_replayed(
    nc, store, pool, own
) -> None:
    """The worker finished it, but the broker lost its finished event (and the delivery)."""
    clock = Clock(T0)
    row, d = await dispatched(store, nc, clock)
    occ = occurrence_id(row.id, T0)
    await nc.jetstream().purge_stream(DUE_STREAM)
    data = run_finished(row, occ, T0)
    event = RunFinished(id=run_id_for(occ), source="test", subject=row.id, time=T0, data=data)
    payload = msgspec.json.encode(event)
    claims = await nc.jetstream().key_value(CLAIMS_BUCKET)
    done = Claim(
        state="finished",
        worker="w",
        attempt=1,
        heartbeat_at=time.time(),
        event=msgspec.Raw(payload),
    )
    await claims.create(claim_key(occ), msgspec.json.encode(done))
    clock.now = T0 + 2 * MINUTE
    stats = await Reconciler(d, nc.jetstream(), own, clock=clock).round()
    assert (stats.replayed, stats.recovered, stats.lost) == (1, 0, 0)
    assert await run_status(pool, occ) == ("dispatched", "succeeded", 0)
    [replayed] = await stream_messages(nc.jetstream(), RUNS_STREAM, "belltower.run.finished.")
    assert replayed.headers["Nats-Msg-Id"] == run_id_for(occ)
    assert await due_messages(nc.jetstream()) == []  # not run again


async def test_a_run_whose_worker_still_heart_beats_is_left_alone(nc, store, pool, own) -> None:
    clock = Clock(T0)
    row, d = await dispatched(store, nc, clock)
    occ = occurrence_id(row.id, T0)
    await d.runs_started([occ])
    await nc.jetstream().purge_stream(DUE_STREAM)  # its delivery is gone, but it is running
    claims = await nc.jetstream().key_value(CLAIMS_BUCKET)
    alive = Claim(state="running", worker="w", attempt=1, heartbeat_at=time.time(), seq=1)
    await claims.create(claim_key(occ), msgspec.json.encode(alive))
    clock.now = T0 + 10 * MINUTE
    stats = await Reconciler(d, nc.jetstream(), own, clock=clock).round()
    assert (stats.abandoned, stats.recovered, stats.lost) == (0, 0, 0)
    assert await run_status(pool, occ) == ("dispatched", "running", 0)


async def test_a_stale_run_whose_delivery_is_still_queued_waits_for_its_redelivery(
    nc, store, pool, own
) -> None:
    clock = Clock(T0)
    row, d = await dispatched(store, nc, clock)
    occ = occurrence_id(row.id, T0)
    await d.runs_started([occ])
    [message] = await stream_messages(nc.jetstream(), DUE_STREAM)
    claims = await nc.jetstream().key_value(CLAIMS_BUCKET)
    stale = Claim(
        state="running", worker="w", attempt=1, heartbeat_at=time.time() - 120, seq=message.seq
    )
    await claims.create(claim_key(occ), msgspec.json.encode(stale))
    clock.now = T0 + 10 * MINUTE
    reconciler = Reconciler(d, nc.jetstream(), own, clock=clock)
    assert (await reconciler.round()).abandoned == 0  # a worker can still take it over
    await nc.jetstream().purge_stream(DUE_STREAM)
    assert (await reconciler.round()).abandoned == 1  # no longer
    assert await run_status(pool, occ) == ("dispatched", "abandoned", 0)
    held = await claims.get(claim_key(occ))
    verdict = msgspec.json.decode(held.value, type=Claim)
    assert verdict.state == "finished" and verdict.worker == "belltower/scheduler"

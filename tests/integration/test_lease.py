"""Scheduler leases against real NATS KV and PostgreSQL: one holder per partition, fenced."""

from __future__ import annotations

import asyncio

import pytest

from belltower.subjects import DUE_STREAM
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.fencing import FENCE_HEADER, Deposed, partition_of
from belltower_scheduler.lease import Lease, LeaseKeeper
from belltower_scheduler.settings import SchedulerSettings
from belltower_scheduler.store import Store
from tests.helpers.scheduler import T0, add_job
from tests.support import stream_messages


class Recorder:
    """The keeper's callbacks: what it reported, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []

    async def acquired(self, lease: Lease) -> None:
        self.events.append(("acquired", lease.partition, lease.token))

    def lost(self, lease: Lease, _why: str) -> None:
        self.events.append(("lost", lease.partition, lease.token))


def keeper(nc, store: Store, settings, name: str, recorder: Recorder, partitions: int = 1):
    return LeaseKeeper(
        nc.jetstream(),
        store,
        settings,
        replica_id=name,
        partitions=partitions,
        lease_s=2.0,
        renew_s=0.5,
        on_acquired=recorder.acquired,
        on_lost=recorder.lost,
    )


@pytest.fixture
def store(pool) -> Store:
    return Store(pool)


async def test_one_holder_and_a_fenced_takeover_when_it_stops_renewing(
    nc, store, pool, settings
) -> None:
    a_events, b_events = Recorder(), Recorder()
    a = keeper(nc, store, settings, "a", a_events)
    b = keeper(nc, store, settings, "b", b_events)
    await a.start()
    await b.start()

    await a.step()
    await b.step()
    assert a_events.events == [("acquired", 0, a.held[0].token)]
    assert b.held == {}
    old = a.held[0]
    assert await pool.fetchval("SELECT token FROM scheduler.leases") == old.token

    # "a" renews while "b" keeps trying: "b" never gets it.
    for _ in range(6):
        await a.step()
        await b.step()
        await asyncio.sleep(0.5)
    assert b.held == {} and a.held[0] is old

    # "a" stalls (no renewals): "b" takes over once the key expires, with a newer token.
    loop = asyncio.get_running_loop()
    stalled_at = loop.time()
    while not b.held:
        await b.step()
        await asyncio.sleep(0.1)
        assert loop.time() - stalled_at < 5, "the standby did not take over"
    new = b.held[0]
    assert new.token > old.token
    assert await pool.fetchval("SELECT holder FROM scheduler.leases") == "b"

    # The stalled holder's ledger writes are refused, and nothing is written.
    row = await add_job(store, every_s=1)
    dispatcher = Dispatcher(store, nc.jetstream(), clock=lambda: T0, lease=old)
    await dispatcher.load()
    old.valid_until = float("inf")  # as if its clock had not noticed yet: PostgreSQL still refuses
    with pytest.raises(Deposed):
        await dispatcher.tick()
    assert await pool.fetchval("SELECT count(*) FROM scheduler.occurrences") == 0
    assert await stream_messages(nc.jetstream(), DUE_STREAM) == []

    # When it wakes up, its renewal fails and it reports the loss.
    await a.step()
    assert a.held == {} and a_events.events[-1] == ("lost", 0, old.token)

    # The new holder dispatches under its own token.
    fresh = Dispatcher(store, nc.jetstream(), clock=lambda: T0, lease=new)
    await fresh.load()
    assert await fresh.tick() == 1
    [message] = await stream_messages(nc.jetstream(), DUE_STREAM)
    assert message.headers[FENCE_HEADER] == str(new.token)
    assert await pool.fetchval("SELECT job_id::text FROM scheduler.occurrences") == row.id


async def test_an_expired_lease_stops_dispatch_before_anything_is_planned(nc, store, pool) -> None:
    await add_job(store, every_s=1)
    lease = Lease(partition=0, count=1, token=1, revision=1, valid_until=0.0, replica="x")
    dispatcher = Dispatcher(store, nc.jetstream(), clock=lambda: T0, lease=lease)
    await dispatcher.load()
    with pytest.raises(Deposed):
        await dispatcher.tick()
    assert await pool.fetchval("SELECT count(*) FROM scheduler.occurrences") == 0


async def test_replicas_share_the_partitions_and_take_back_released_ones(
    nc, store, settings
) -> None:
    a_events, b_events = Recorder(), Recorder()
    a = keeper(nc, store, settings, "a", a_events, partitions=3)
    b = keeper(nc, store, settings, "b", b_events, partitions=3)
    await a.start()
    await b.start()
    await a.step()
    assert sorted(a.held) == [0, 1, 2]  # alone: every partition

    await b.step()  # b is counted now, but every partition is taken
    assert b.held == {} and b.share == 2
    await a.step()  # a's share is 2 of 3: it gives one back...
    [token_2] = [t for kind, p, t in a_events.events if kind == "acquired" and p == 2]
    assert sorted(a.held) == [0, 1] and a_events.events[-1] == ("lost", 2, token_2)
    await b.step()  # ...which b takes at once, without waiting for the lease to expire
    assert sorted(b.held) == [2]
    await a.step()
    await b.step()
    assert sorted(a.held) == [0, 1] and sorted(b.held) == [2]

    await a.release_all()
    await asyncio.sleep(1.5)  # a's presence key lapses
    await b.step()
    assert sorted(b.held) == [0, 1, 2]


async def test_partition_filter_in_sql_matches_partition_of(store) -> None:
    jobs = [await add_job(store, every_s=1) for _ in range(40)]
    for count in (1, 3, 4):
        seen: list[str] = []
        for index in range(count):
            ids = [
                r["id"] async for page in store.job_pages(partition=(index, count)) for r in page
            ]
            assert all(partition_of(i, count) == index for i in ids)
            seen += ids
        assert sorted(seen) == sorted(j.id for j in jobs)


def test_renewal_must_fit_twice_in_the_lease() -> None:
    with pytest.raises(ValueError, match="BELLTOWER_SCHEDULER_RENEW_S"):
        SchedulerSettings(scheduler_lease_s=6, scheduler_renew_s=3)
    assert SchedulerSettings(scheduler_lease_s=6).renew_s == 2

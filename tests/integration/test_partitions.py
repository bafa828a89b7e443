"""Every scheduler replica serves the management API; the partition's holder learns of changes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from belltower.events import run_id_for
from belltower.schedule import Every, Schedule
from belltower.subjects import DUE_STREAM
from belltower_scheduler.entry import Entry
from belltower_scheduler.partitions import HANDOVER_TRIES, Partitions
from belltower_scheduler.settings import SchedulerSettings
from belltower_scheduler.store import JobRow, Store
from tests.helpers.scheduler import eventually, replica, stop_lease_loops
from tests.support import stream_messages


@pytest.fixture(autouse=True)
async def _stop_lease_loops() -> AsyncIterator[None]:
    yield
    await stop_lease_loops()


def job(paused: bool = False) -> JobRow:
    now = datetime.now(UTC)
    return JobRow(
        id=str(uuid.uuid4()), title="job", type="system.canary", pool="notifier", params={},
        schedule=Schedule(rule=Every(seconds=3600)), priority=500, paused=paused,
        keep_history_days=None, timeout_s=None, next_run_at=None if paused else now + timedelta(hours=1),
        created_at=now, updated_at=now,
    )  # fmt: skip


async def test_a_change_made_on_a_standby_reaches_the_holder(nc, pool, settings) -> None:
    store = Store(pool)
    leader, leader_keeper = await replica(nc, store, settings, "leader")
    standby, standby_keeper = await replica(nc, store, settings, "standby")
    try:
        assert sorted(leader_keeper.held) == [0] and standby_keeper.held == {}
        holder = leader.held[0].dispatcher

        row = job()
        await store.insert_job(row)
        standby.put(Entry.from_row(row))  # what Operations.create does after its write
        await eventually(lambda: row.id in holder.entries)
        assert standby.entries.get(row.id) is None and leader.entries.get(row.id) is not None

        await store.set_paused(row.id, True, None, row.updated_at)
        standby.put(Entry.from_row(row))
        await eventually(lambda: holder.entries[row.id].paused)

        # Run now, answered by the standby: dispatched at once, under no lease.
        occurrence = await standby.run_now(Entry.from_row(row), "tester")
        [message] = await stream_messages(nc.jetstream(), DUE_STREAM)
        assert message.headers["Nats-Msg-Id"] == occurrence.id

        assert await store.delete_job(row.id)
        standby.remove(row.id)
        await eventually(lambda: row.id not in holder.entries)
    finally:
        for keeper, partitions in ((standby_keeper, standby), (leader_keeper, leader)):
            await partitions.stop()
            await keeper.release_all()


async def test_run_now_on_a_standby_follows_the_overlap_policy_and_the_holder_adopts_it(
    nc, pool, settings
) -> None:
    """The standby has no run events: it reads the run going from the ledger; the holder, told
    by the change notice, holds the job back behind the manual run and releases the queued one."""
    import msgspec

    from belltower.api import RunPolicy
    from belltower.events import RunFinished, RunFinishedData, run_id_for
    from belltower.subjects import run_finished_subject

    store = Store(pool)
    leader, leader_keeper = await replica(nc, store, settings, "leader")
    standby, standby_keeper = await replica(nc, store, settings, "standby")
    try:
        holder = leader.held[0].dispatcher
        row = job()
        row.policy = RunPolicy(overlap="buffer")
        await store.insert_job(row)
        standby.put(Entry.from_row(row))
        await eventually(lambda: row.id in holder.entries)

        first = await standby.run_now(Entry.from_row(row), "tester")
        await eventually(lambda: first.id in holder.in_flight.get(row.id, {}))
        queued = await standby.run_now(Entry.from_row(row), "tester")
        assert queued.state == "waiting"
        await eventually(lambda: holder.waiting.get(row.id) == queued.id)

        now = datetime.now(UTC)
        data = RunFinishedData(
            run_id=run_id_for(first.id), occurrence_id=first.id, job_id=row.id, job_type=row.type,
            job_title=row.title, pool=row.pool, status="succeeded", priority=500, trigger="manual",
            scheduled_for=first.scheduled_for, dispatched_at=now, started_at=now, finished_at=now,
            duration_ms=1,
        )  # fmt: skip
        event = RunFinished(id=data.run_id, source="test", subject=row.id, time=now, data=data)
        await nc.jetstream().publish(
            run_finished_subject("succeeded", row.type), msgspec.json.encode(event)
        )
        sent: list[str] = []

        async def published() -> None:
            sent[:] = [
                m.headers["Nats-Msg-Id"] for m in await stream_messages(nc.jetstream(), DUE_STREAM)
            ]

        for _ in range(250):
            await published()
            if queued.id in sent:
                break
            await asyncio.sleep(0.02)
        assert sent == [first.id, queued.id]
    finally:
        for keeper, partitions in ((standby_keeper, standby), (leader_keeper, leader)):
            await partitions.stop()
            await keeper.release_all()


@pytest.mark.parametrize("count", [1, 5])
def test_job_ids_spread_over_every_partition(count: int) -> None:
    from belltower_scheduler.fencing import partition_of

    ids = [str(uuid.uuid4()) for _ in range(200)]
    seen = {partition_of(i, count) for i in ids}
    assert seen == set(range(count))


# -- run-now handed to the partition's holder ----------------------------------------------------


async def _ledger_ids(store: Store, job_id: str) -> list[str]:
    rows = await store.pool.fetch(
        "SELECT id::text AS id FROM scheduler.occurrences WHERE job_id = $1::uuid", job_id
    )
    return [r["id"] for r in rows]


async def test_run_now_on_a_standby_is_decided_by_the_holder_with_the_runs_it_follows(
    nc, pool, settings, caplog
) -> None:
    from belltower.errors import Conflict

    store = Store(pool)
    leader, leader_keeper = await replica(nc, store, settings, "leader")
    standby, standby_keeper = await replica(nc, store, settings, "standby")
    try:
        holder = leader.held[0].dispatcher
        row = job()  # overlap: skip
        await store.insert_job(row)
        first = await standby.run_now(Entry.from_row(row), "tester")
        # Answered by the holder, so it is in flight there when the answer arrives, not later.
        assert first.id in holder.in_flight[row.id]
        with pytest.raises(Conflict, match=f"run {run_id_for(first.id)} of this job"):
            await standby.run_now(Entry.from_row(row), "tester")
        [message] = await stream_messages(nc.jetstream(), DUE_STREAM)
        assert message.headers["Nats-Msg-Id"] == first.id
        assert message.headers["Belltower-Lease-Token"] == str(leader_keeper.held[0].token)
        # Each answered at the first try: no hand-over was asked again.
        retried = [
            r for r in caplog.records if getattr(r, "action", "") == "partition.handover_retry"
        ]
        assert retried == []
    finally:
        for keeper, partitions in ((standby_keeper, standby), (leader_keeper, leader)):
            await partitions.stop()
            await keeper.release_all()


async def test_a_lost_run_now_hand_over_is_asked_again_and_runs_once(
    nc, pool, settings, caplog
) -> None:
    """The holder's subscription is taken away and a stand-in swallows the first request, as a
    lost message would be; the second, with the same occurrence id, reaches the holder."""
    store = Store(pool)
    leader, leader_keeper = await replica(nc, store, settings, "leader")
    standby, standby_keeper = await replica(nc, store, settings, "standby")
    try:
        held = leader.held[0]
        assert held.run_now_sub is not None
        await held.run_now_sub.unsubscribe()
        swallowed: list[bytes] = []

        async def lose_the_first(msg) -> None:
            swallowed.append(msg.data)
            await hole.unsubscribe()
            held.run_now_sub = await nc.subscribe(msg.subject, cb=leader._on_run_now)

        hole = await nc.subscribe("belltower.scheduler.run-now.0", cb=lose_the_first)
        row = job()
        await store.insert_job(row)
        occurrence = await standby.run_now(Entry.from_row(row), "tester")
        assert len(swallowed) == 1
        assert msgspec.json.decode(swallowed[0])["occurrence_id"] == occurrence.id
        # ...and the second try was answered by the holder itself.
        retried = [
            r for r in caplog.records if getattr(r, "action", "") == "partition.handover_retry"
        ]
        assert len(retried) == 1
        assert occurrence.id in held.dispatcher.in_flight[row.id]
        assert await _ledger_ids(store, row.id) == [occurrence.id]
        messages = await stream_messages(nc.jetstream(), DUE_STREAM)
        assert [m.headers["Nats-Msg-Id"] for m in messages] == [occurrence.id]
    finally:
        for keeper, partitions in ((standby_keeper, standby), (leader_keeper, leader)):
            await partitions.stop()
            await keeper.release_all()


async def test_a_holder_too_busy_to_answer_in_time_still_runs_it_once(nc, pool, settings) -> None:
    """The holder's dispatcher is busy (its lock held) past the first try: that request is
    carried out late, its answer lost; the repeat is answered from the ledger."""
    store = Store(pool)
    leader, leader_keeper = await replica(nc, store, settings, "leader")
    standby, standby_keeper = await replica(nc, store, settings, "standby")
    try:
        holder = leader.held[0].dispatcher
        row = job()
        await store.insert_job(row)

        async def busy() -> None:
            async with holder._lock:
                await asyncio.sleep(3.0)  # past the first try's wait (2 s)

        hold = asyncio.create_task(busy())
        await asyncio.sleep(0)
        occurrence = await standby.run_now(Entry.from_row(row), "tester")
        await hold
        assert await _ledger_ids(store, row.id) == [occurrence.id]
        messages = await stream_messages(nc.jetstream(), DUE_STREAM)
        assert [m.headers["Nats-Msg-Id"] for m in messages] == [occurrence.id]
    finally:
        for keeper, partitions in ((standby_keeper, standby), (leader_keeper, leader)):
            await partitions.stop()
            await keeper.release_all()


async def test_a_holder_that_never_answers_gets_the_person_an_error_and_nothing_runs(
    nc, pool, settings
) -> None:
    from belltower.errors import Unavailable

    store = Store(pool)
    leader, leader_keeper = await replica(nc, store, settings, "leader")
    standby, standby_keeper = await replica(nc, store, settings, "standby")
    try:
        held = leader.held[0]
        assert held.run_now_sub is not None
        await held.run_now_sub.unsubscribe()
        asked: list[bytes] = []

        async def deaf(msg) -> None:  # a holder stalled (SIGSTOP) still holds its subscription
            asked.append(msg.data)

        await nc.subscribe("belltower.scheduler.run-now.0", cb=deaf)
        row = job()
        await store.insert_job(row)
        with pytest.raises(Unavailable, match="nothing was recorded"):
            await standby.run_now(Entry.from_row(row), "tester")
        assert len(asked) == HANDOVER_TRIES
        assert len({msgspec.json.decode(a)["occurrence_id"] for a in asked}) == 1
        assert await _ledger_ids(store, row.id) == []
        assert await stream_messages(nc.jetstream(), DUE_STREAM) == []
    finally:
        for keeper, partitions in ((standby_keeper, standby), (leader_keeper, leader)):
            await partitions.stop()
            await keeper.release_all()


async def test_run_now_with_no_holder_runs_on_the_replica_that_accepted_it(
    nc, pool, settings
) -> None:
    store = Store(pool)
    own = SchedulerSettings(nats_url=settings.nats_url, database_url=settings.database_url)
    alone = Partitions(store, nc.jetstream(), nc, own)  # holds no lease
    await alone.subscribe()
    row = job()
    await store.insert_job(row)
    occurrence = await alone.run_now(Entry.from_row(row), "tester")
    assert await _ledger_ids(store, row.id) == [occurrence.id]
    [message] = await stream_messages(nc.jetstream(), DUE_STREAM)
    assert message.headers["Nats-Msg-Id"] == occurrence.id
    await alone.stop()

"""The dispatcher against real JetStream and PostgreSQL: each occurrence published once, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from belltower.events import DueOccurrence, occurrence_id
from belltower.schedule import Every, Once, Schedule
from belltower.subjects import DUE_STREAM
from belltower_scheduler.dispatcher import Dispatcher, Entry, compiled_for
from belltower_scheduler.store import JobRow, Store
from tests.support import stream_messages

T0 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def add_job(
    store: Store, schedule: Schedule, *, priority: int = 500, next_due: datetime, title: str = "job"
) -> JobRow:
    import uuid

    row = JobRow(
        id=str(uuid.uuid4()), title=title, type="system.canary", pool="notifier", params={}, schedule=schedule,
        priority=priority, paused=False, keep_history_days=30, timeout_s=None, next_run_at=next_due,
        created_at=T0, updated_at=T0,
    )  # fmt: skip
    await store.insert_job(row)
    return row


async def due_messages(js) -> list[tuple[DueOccurrence, str]]:
    return [
        (msgspec.json.decode(m.data, type=DueOccurrence), m.headers["Nats-Msg-Id"])
        for m in await stream_messages(js, DUE_STREAM)
    ]


async def ledger(pool) -> list[dict]:
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT id::text, job_id::text, scheduled_for, state, reason FROM scheduler.occurrences ORDER BY scheduled_for"
        )
    ]


@pytest.fixture
async def store(pool) -> Store:
    return Store(pool)


async def test_due_occurrences_are_published_once_with_their_id(nc, store, pool) -> None:
    clock = Clock(T0 + timedelta(seconds=2.5))
    row = await add_job(store, Schedule(rule=Every(seconds=1)), next_due=T0)
    dispatcher = Dispatcher(store, nc.jetstream(), clock=clock)
    await dispatcher.load()

    assert await dispatcher.tick() == 3
    assert await dispatcher.tick() == 0

    sent = await due_messages(nc.jetstream())
    assert [m.scheduled_for for m, _ in sent] == [
        T0,
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2),
    ]
    assert all(
        m.occurrence_id == msg_id == occurrence_id(row.id, m.scheduled_for) for m, msg_id in sent
    )
    assert {r["state"] for r in await ledger(pool)} == {"dispatched"}
    assert await pool.fetchval("SELECT next_run_at FROM scheduler.jobs") == T0 + timedelta(
        seconds=3
    )


async def test_higher_priority_is_published_first_when_due_together(nc, store) -> None:
    for priority in (1, 900, 500, 10_000, 499):
        await add_job(
            store, Schedule(rule=Once(at=T0)), priority=priority, next_due=T0, title=f"p{priority}"
        )
    dispatcher = Dispatcher(store, nc.jetstream(), clock=Clock(T0 + timedelta(milliseconds=5)))
    await dispatcher.load()
    await dispatcher.tick()
    assert [m.priority for m, _ in await due_messages(nc.jetstream())] == [10_000, 900, 500, 499, 1]


async def test_a_restart_or_second_replica_does_not_dispatch_again(nc, store, pool) -> None:
    await add_job(store, Schedule(rule=Every(seconds=1)), next_due=T0)
    first = Dispatcher(store, nc.jetstream(), clock=Clock(T0 + timedelta(seconds=1.5)))
    await first.load()
    assert await first.tick() == 2
    await pool.execute(
        "UPDATE scheduler.jobs SET next_run_at = $1", T0
    )  # as if the advance was lost

    again = Dispatcher(store, nc.jetstream(), clock=Clock(T0 + timedelta(seconds=1.5)))
    await again.load()
    assert await again.tick() == 0
    assert len(await due_messages(nc.jetstream())) == 2
    assert len(await ledger(pool)) == 2


async def test_pending_occurrences_left_by_a_crash_are_published_on_start(nc, store, pool) -> None:
    row = await add_job(store, Schedule(rule=Every(seconds=60)), next_due=T0 + timedelta(minutes=1))
    crashed = Dispatcher(store, nc.jetstream(), clock=Clock(T0))
    await crashed.load()
    occ = crashed._occurrence(crashed.entries[row.id], T0, "pending", None)
    await store.plan([occ], [(row.id, T0 + timedelta(minutes=1))])  # planned, then the process died

    restarted = Dispatcher(store, nc.jetstream(), clock=Clock(T0 + timedelta(seconds=5)))
    await restarted.load()
    assert await restarted.tick() == 1
    assert await restarted.republish_pending() == 0
    sent = await due_messages(nc.jetstream())
    assert [msg_id for _, msg_id in sent] == [occ.id]
    assert [r["state"] for r in await ledger(pool)] == ["dispatched"]


async def test_jetstream_drops_a_republished_occurrence(nc, store, pool) -> None:
    row = await add_job(store, Schedule(rule=Every(seconds=60)), next_due=T0)
    dispatcher = Dispatcher(store, nc.jetstream(), clock=Clock(T0))
    await dispatcher.load()
    await dispatcher.tick()
    await pool.execute(
        "UPDATE scheduler.occurrences SET state = 'pending'"
    )  # published, but not marked
    assert await dispatcher.republish_pending() == 1
    assert len(await due_messages(nc.jetstream())) == 1
    assert (await ledger(pool))[0]["job_id"] == row.id


async def test_missed_occurrences_are_coalesced_and_recorded(nc, store, pool) -> None:
    await add_job(store, Schedule(rule=Every(seconds=60)), next_due=T0)
    dispatcher = Dispatcher(
        store,
        nc.jetstream(),
        clock=Clock(T0 + timedelta(minutes=10, seconds=30)),
        misfire_grace_s=60,
    )
    await dispatcher.load()
    assert await dispatcher.tick() == 1
    rows = await ledger(pool)
    assert len(rows) == 11
    assert [r["state"] for r in rows] == ["coalesced"] * 10 + ["dispatched"]
    assert all("scheduler was not running" in r["reason"] for r in rows[:10])
    sent = await due_messages(nc.jetstream())
    assert [m.scheduled_for for m, _ in sent] == [T0 + timedelta(minutes=10)]


async def test_paused_and_removed_jobs_are_not_dispatched(nc, store) -> None:
    paused = await add_job(store, Schedule(rule=Every(seconds=1)), next_due=T0, title="paused")
    removed = await add_job(store, Schedule(rule=Every(seconds=1)), next_due=T0, title="removed")
    dispatcher = Dispatcher(store, nc.jetstream(), clock=Clock(T0 + timedelta(seconds=0.5)))
    await dispatcher.load()
    entry = dispatcher.entries[paused.id]
    dispatcher.put(Entry(**{**{f: getattr(entry, f) for f in Entry.__slots__}, "paused": True}))
    dispatcher.remove(removed.id)
    assert await dispatcher.tick() == 0
    assert compiled_for(paused.schedule) is dispatcher.entries[paused.id].schedule


async def test_a_database_failure_mid_tick_loses_no_occurrence(nc, store, pool) -> None:
    """The ledger write fails for real; the next tick plans the same occurrences."""
    row = await add_job(store, Schedule(rule=Every(seconds=1)), next_due=T0)
    clock = Clock(T0 + timedelta(seconds=1.5))
    dispatcher = Dispatcher(store, nc.jetstream(), clock=clock)
    await dispatcher.load()
    await pool.execute("ALTER TABLE scheduler.occurrences RENAME TO occurrences_away")
    with pytest.raises(asyncpg.UndefinedTableError):
        await dispatcher.tick()
    await pool.execute("ALTER TABLE scheduler.occurrences_away RENAME TO occurrences")
    clock.now = T0 + timedelta(seconds=2.5)
    assert await dispatcher.tick() == 3
    sent = await due_messages(nc.jetstream())
    assert [m.scheduled_for for m, _ in sent] == [T0 + timedelta(seconds=i) for i in range(3)]
    assert {m.job_id for m, _ in sent} == {row.id}

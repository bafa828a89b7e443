"""The dispatcher against real JetStream and PostgreSQL: each occurrence published once, in order."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import asyncpg
import msgspec
import nats.errors
import pytest

from belltower.events import DueOccurrence, occurrence_id
from belltower.schedule import Every, Once, Schedule
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.entry import Entry, compiled_for
from belltower_scheduler.publisher import BatchPublisher
from belltower_scheduler.store import JobRow, Store
from tests.helpers.scheduler import T0, Clock, add_job, due_messages


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
    row = await add_job(store, schedule=Schedule(rule=Every(seconds=1)), next_due=T0)
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
            store,
            schedule=Schedule(rule=Once(at=T0)),
            priority=priority,
            next_due=T0,
            title=f"p{priority}",
        )
    dispatcher = Dispatcher(store, nc.jetstream(), clock=Clock(T0 + timedelta(milliseconds=5)))
    await dispatcher.load()
    await dispatcher.tick()
    assert [m.priority for m, _ in await due_messages(nc.jetstream())] == [10_000, 900, 500, 499, 1]


async def test_a_restart_or_second_replica_does_not_dispatch_again(nc, store, pool) -> None:
    await add_job(store, schedule=Schedule(rule=Every(seconds=1)), next_due=T0)
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


async def test_planning_returns_only_the_occurrences_it_wrote(nc, store, pool) -> None:
    """Some of a chunk already in the ledger (another replica, a retry): only the others are new."""
    row = await add_job(store, schedule=Schedule(rule=Every(seconds=60)), next_due=T0)
    dispatcher = Dispatcher(store, nc.jetstream(), clock=Clock(T0))
    await dispatcher.load()
    entry = dispatcher.entries[row.id]
    a, b, c = (
        dispatcher._occurrence(entry, T0 + timedelta(minutes=i), "pending", None) for i in range(3)
    )
    assert await store.plan([a, b], []) == {a.id, b.id}
    assert await store.plan([a, b, c], []) == {c.id}
    assert await store.plan([a, b, c], []) == set()
    assert len(await ledger(pool)) == 3


async def test_pending_occurrences_left_by_a_crash_are_published_on_start(nc, store, pool) -> None:
    row = await add_job(
        store, schedule=Schedule(rule=Every(seconds=60)), next_due=T0 + timedelta(minutes=1)
    )
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
    row = await add_job(store, schedule=Schedule(rule=Every(seconds=60)), next_due=T0)
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
    await add_job(store, schedule=Schedule(rule=Every(seconds=60)), next_due=T0)
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
    paused = await add_job(
        store, schedule=Schedule(rule=Every(seconds=1)), next_due=T0, title="paused"
    )
    removed = await add_job(
        store, schedule=Schedule(rule=Every(seconds=1)), next_due=T0, title="removed"
    )
    dispatcher = Dispatcher(store, nc.jetstream(), clock=Clock(T0 + timedelta(seconds=0.5)))
    await dispatcher.load()
    entry = dispatcher.entries[paused.id]
    dispatcher.put(replace(entry, spec=replace(entry.spec, paused=True)))
    dispatcher.remove(removed.id)
    assert await dispatcher.tick() == 0
    assert compiled_for(paused.schedule) is dispatcher.entries[paused.id].schedule


async def test_a_database_failure_mid_tick_loses_no_occurrence(nc, store, pool) -> None:
    """The ledger write fails for real; the next tick plans the same occurrences."""
    row = await add_job(store, schedule=Schedule(rule=Every(seconds=1)), next_due=T0)
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


# -- pipelined ticks: chunks written while earlier ones are published ------------------------


class CheckingNats:
    """A real NATS connection, but each publish first checks that the occurrence's ledger row is
    committed (visible from another connection) as ``pending``; can fail after ``fail_after``."""

    def __init__(self, nc, pool, fail_after: int | None = None) -> None:
        self.nc = nc
        self.pool = pool
        self.fail_after = fail_after
        self.published: list[bytes] = []
        self.violations: list[str] = []

    def __getattr__(self, name):
        return getattr(self.nc, name)

    async def publish(self, subject, payload=b"", reply="", headers=None):
        if self.fail_after is not None and len(self.published) >= self.fail_after:
            raise nats.errors.ConnectionClosedError
        occ_id = headers["Nats-Msg-Id"]
        state = await self.pool.fetchval(
            "SELECT state FROM scheduler.occurrences WHERE id = $1::uuid", occ_id
        )
        if state != "pending":
            self.violations.append(f"{occ_id} published while its ledger row is {state}")
        self.published.append(payload)
        await self.nc.publish(subject, payload, reply=reply, headers=headers)


def checked_dispatcher(store, nc, checking: CheckingNats, **options) -> Dispatcher:
    return Dispatcher(store, nc.jetstream(), publisher=BatchPublisher(checking), **options)


class FailingStore(Store):
    """The real Store whose ``plan`` fails on its ``fail_on``-th call (a chunk's transaction)."""

    def __init__(self, pool, fail_on: int) -> None:
        super().__init__(pool)
        self.fail_on = fail_on
        self.calls = 0

    async def plan(self, occurrences, next_runs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
        return await super().plan(occurrences, next_runs)


PRIORITIES = (7, 900, 500, 10_000, 499, 1, 650)


async def add_same_instant_jobs(store: Store) -> None:
    for priority in PRIORITIES:
        await add_job(
            store,
            schedule=Schedule(rule=Once(at=T0)),
            priority=priority,
            next_due=T0,
            title=f"p{priority}",
        )


async def test_priority_order_holds_across_chunks(nc, store, pool) -> None:
    await add_same_instant_jobs(store)
    checking = CheckingNats(nc, pool)
    dispatcher = checked_dispatcher(
        store, nc, checking, plan_chunk=2, clock=Clock(T0 + timedelta(milliseconds=5))
    )
    await dispatcher.load()
    assert await dispatcher.tick() == len(PRIORITIES)
    assert checking.violations == []
    assert [m.priority for m, _ in await due_messages(nc.jetstream())] == sorted(
        PRIORITIES, reverse=True
    )
    assert {r["state"] for r in await ledger(pool)} == {"dispatched"}


async def test_a_chunk_failing_to_commit_loses_nothing_and_repeats_nothing(nc, pool) -> None:
    """Chunk 2 of 4 fails to commit while chunk 1 is being published; the next tick sends the rest."""
    store = FailingStore(pool, fail_on=2)
    await add_same_instant_jobs(store)
    checking = CheckingNats(nc, pool)
    clock = Clock(T0 + timedelta(milliseconds=5))
    dispatcher = checked_dispatcher(store, nc, checking, plan_chunk=2, clock=clock)
    await dispatcher.load()
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await dispatcher.tick()
    first = await due_messages(nc.jetstream())
    assert [m.priority for m, _ in first] == [10_000, 900]  # chunk 1 only, confirmed
    assert {r["state"] for r in await ledger(pool)} == {"dispatched"}

    clock.now = T0 + timedelta(seconds=1)
    assert await dispatcher.tick() == len(PRIORITIES) - 2
    assert checking.violations == []
    sent = await due_messages(nc.jetstream())
    assert [m.priority for m, _ in sent] == sorted(PRIORITIES, reverse=True)
    assert len({msg_id for _, msg_id in sent}) == len(PRIORITIES)
    assert [r["state"] for r in await ledger(pool)] == ["dispatched"] * len(PRIORITIES)
    assert (
        await pool.fetchval("SELECT count(*) FROM scheduler.jobs WHERE next_run_at IS NOT NULL")
        == 0
    )


async def test_a_broker_failure_mid_chunk_leaves_the_rest_pending_and_republished(
    nc, store, pool
) -> None:
    """Publishing fails inside chunk 2 while chunk 3 is being written: nothing is lost."""
    await add_same_instant_jobs(store)
    broken = CheckingNats(nc, pool, fail_after=3)
    clock = Clock(T0 + timedelta(milliseconds=5))
    dispatcher = checked_dispatcher(store, nc, broken, plan_chunk=2, clock=clock)
    await dispatcher.load()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await dispatcher.tick()
    states = [r["state"] for r in await ledger(pool)]
    assert (
        states.count("dispatched") == 3
    )  # what was confirmed is marked even though the tick failed
    assert states.count("pending") == 3  # the rest of chunk 2 and all of chunk 3, committed

    mended = CheckingNats(nc, pool)
    dispatcher.publisher = BatchPublisher(mended)
    clock.now = T0 + timedelta(seconds=1)
    assert await dispatcher.tick() == len(PRIORITIES) - 3
    assert broken.violations == mended.violations == []
    sent = await due_messages(nc.jetstream())
    assert [m.priority for m, _ in sent] == sorted(PRIORITIES, reverse=True)
    assert [r["state"] for r in await ledger(pool)] == ["dispatched"] * len(PRIORITIES)


async def test_due_message_bytes_are_what_encoding_the_params_dict_gives(nc, store, pool) -> None:
    """Params are kept as encoded JSON; the message must be byte for byte the dict's encoding."""
    import uuid

    params = {"zeta": 1.0, "a": [1, "é", None], "long_key_name": {"x": -3, "y": 2.5e-7}, "b": True}
    row = JobRow(
        id=str(uuid.uuid4()), title="Ünïcode title", type="system.canary", pool="notifier",
        params=params, schedule=Schedule(rule=Every(seconds=60)), priority=500, paused=False,
        keep_history_days=None, timeout_s=1.0, next_run_at=T0, created_at=T0, updated_at=T0,
    )  # fmt: skip
    await store.insert_job(row)
    checking = CheckingNats(nc, pool)
    dispatcher = checked_dispatcher(store, nc, checking, clock=Clock(T0))
    await dispatcher.load()
    assert await dispatcher.tick() == 1
    [payload] = checking.published
    message = msgspec.json.decode(payload, type=DueOccurrence)
    stored = msgspec.json.decode(
        await pool.fetchval("SELECT params::text FROM scheduler.jobs WHERE id = $1::uuid", row.id)
    )
    assert message.params == stored == params
    assert message.timeout_s == 1.0 and isinstance(message.timeout_s, float)
    assert payload == msgspec.json.encode(msgspec.structs.replace(message, params=stored))
    # A job just created through the API (Entry.from_row) keeps the request's key order, as
    # the dict did before; once loaded from the database it has PostgreSQL's jsonb order.
    assert Entry.from_row(row).params_json == msgspec.json.encode(params)


class SilentNats:
    """A connection whose publishes are taken and never reach the broker, so never acknowledged."""

    def __init__(self, nc) -> None:
        self.nc = nc
        self.published = 0

    def __getattr__(self, name):
        return getattr(self.nc, name)

    async def publish(self, subject, payload=b"", reply="", headers=None):
        self.published += 1


async def test_unconfirmed_publishes_stay_pending_and_are_sent_again(nc, store, pool) -> None:
    await add_same_instant_jobs(store)
    silent = SilentNats(nc)
    clock = Clock(T0 + timedelta(milliseconds=5))
    dispatcher = Dispatcher(
        store,
        nc.jetstream(),
        publisher=BatchPublisher(silent),
        plan_chunk=3,
        publish_timeout_s=0.2,
        clock=clock,
    )
    await dispatcher.load()
    assert await dispatcher.tick() == 0
    assert silent.published == len(PRIORITIES)
    assert dispatcher.publisher.in_flight == 0  # given up on: their places in the window are free
    assert dispatcher.stats.publish_failures == len(PRIORITIES)
    assert {r["state"] for r in await ledger(pool)} == {"pending"}

    dispatcher.publisher = BatchPublisher(nc)
    clock.now = T0 + timedelta(seconds=1)
    assert await dispatcher.tick() == len(PRIORITIES)
    sent = await due_messages(nc.jetstream())
    assert [m.priority for m, _ in sent] == sorted(PRIORITIES, reverse=True)
    assert {r["state"] for r in await ledger(pool)} == {"dispatched"}


async def test_occurrences_the_schedule_skips_are_in_the_ledger_with_their_reason(
    nc, store, pool
) -> None:
    from belltower.schedule import Window

    # Every hour, but only 08:00-10:00 UTC and not at weekends; T0 is Monday 2030-01-07 08:00.
    schedule = Schedule(
        rule=Every(seconds=3600), window=Window(start="08:00", end="10:00"), weekdays=["mon"]
    )
    row = await add_job(store, schedule=schedule, next_due=T0)
    clock = Clock(T0)
    dispatcher = Dispatcher(store, nc.jetstream(), clock=clock)
    await dispatcher.load()
    for hour in (0, 1, 2):
        clock.now = T0 + timedelta(hours=hour, seconds=1)
        assert await dispatcher.tick() == 1
    clock.now = T0 + timedelta(days=7, hours=0, seconds=1)  # next Monday 08:00
    again = Dispatcher(store, nc.jetstream(), clock=clock)  # a restart records nothing twice
    await again.load()
    assert await again.tick() == 1
    rows = [r for r in await ledger(pool) if r["job_id"] == row.id]
    skipped = [r for r in rows if r["state"] == "skipped"]
    ran = [r["scheduled_for"] for r in rows if r["state"] != "skipped"]
    assert ran == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2), T0 + timedelta(days=7)]
    assert skipped, "the skipped hours are not in the ledger"
    assert skipped[0]["scheduled_for"] == T0 + timedelta(hours=3)
    assert skipped[0]["reason"].startswith("skipped: outside window")
    assert len({r["scheduled_for"] for r in skipped}) == len(skipped)
    tuesday = [r for r in skipped if r["scheduled_for"].date() == (T0 + timedelta(days=1)).date()]
    assert tuesday and all(
        "weekday filtered" in r["reason"] for r in tuesday if r["scheduled_for"].hour in (8, 9, 10)
    )
    causes = {
        r["cause"]
        for r in await pool.fetch(
            "SELECT cause FROM scheduler.occurrences WHERE job_id = $1::uuid AND state = 'skipped'",
            row.id,
        )
    }
    assert causes <= {"outside_window", "weekday"} and "outside_window" in causes
    # Nothing skipped was published.
    assert [m.scheduled_for for m, _ in await due_messages(nc.jetstream())] == ran

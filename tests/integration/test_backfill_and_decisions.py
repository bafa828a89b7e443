"""Backfill and catch-up decisions on real JetStream and PostgreSQL: what the ledger does not
have as run is dispatched once with trigger backfill, a second identical backfill runs nothing,
and missed runs of a job with catch-up ``ask`` wait until a person decides (or the decision
expires), each run at most once whatever is asked twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from belltower.api import RunPolicy
from belltower.backfill import BackfillRequest
from belltower.decisions import DecisionRequest, DecisionsRequest
from belltower.errors import Conflict, InvalidInput
from belltower.events import occurrence_id
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.entry import Entry
from belltower_scheduler.operations import Operations
from belltower_scheduler.reconcile import Reconciler
from belltower_scheduler.requested import expire_decisions
from belltower_scheduler.settings import SchedulerSettings
from belltower_scheduler.store import Store
from tests.helpers.scheduler import (
    MINUTE,
    T0,
    Clock,
    add_job,
    due_messages,
    eventually,
    replica,
    stop_lease_loops,
)


@pytest.fixture
async def store(pool) -> Store:
    return Store(pool)


@pytest.fixture(autouse=True)
async def _stop_lease_loops() -> AsyncIterator[None]:
    yield
    await stop_lease_loops()


async def ledger(pool, job_id: str) -> dict:
    rows = await pool.fetch(
        "SELECT scheduled_for, state, trigger, cause, requested_by FROM scheduler.occurrences "
        "WHERE job_id = $1::uuid ORDER BY scheduled_for",
        job_id,
    )
    return {
        r["scheduled_for"]: (r["state"], r["trigger"], r["cause"], r["requested_by"]) for r in rows
    }


async def test_a_backfill_dispatches_exactly_the_missing_occurrences_once(nc, store, pool) -> None:
    row = await add_job(store)  # every minute from T0, catch-up latest
    js = nc.jetstream()
    clock = Clock(T0 + 5 * MINUTE + timedelta(seconds=30))
    d = Dispatcher(store, js, clock=clock, misfire_grace_s=10)
    await d.load()
    assert await d.tick() == 1  # the scheduler was down: T0+5 runs, T0..T0+4 coalesced
    ops = Operations(store, d, catalog=None)  # type: ignore[arg-type]
    since = T0 - 2 * MINUTE  # two occurrences the ledger never had
    ask = BackfillRequest(
        id=row.id, since=since, until=clock(), dry_run=True, priority=900,
        requested_by="alice (cli)", requested_from="10.0.0.7",
    )  # fmt: skip

    shown = await ops.backfill(ask)
    assert [(o.scheduled_for, o.action, o.was) for o in shown.occurrences] == [
        (since, "run", None), (since + MINUTE, "run", None),
        *[(T0 + i * MINUTE, "run", "coalesced") for i in range(5)],
        (T0 + 5 * MINUTE, "already", "dispatched"),
    ]  # fmt: skip
    assert (shown.to_run, shown.already, shown.priority) == (7, 1, 900)
    assert await d.tick() == 0 and len(await due_messages(js)) == 1  # a dry run writes nothing

    ask.dry_run = False
    done = await ops.backfill(ask)
    assert done.to_run == 7
    await d.tick()
    sent = [m for m, _ in await due_messages(js)]
    backfilled = [m for m in sent if m.trigger == "backfill"]
    assert sorted(m.scheduled_for for m in backfilled) == [since + i * MINUTE for i in range(7)]
    assert {(m.requested_by, m.requested_from, m.priority) for m in backfilled} == {
        ("alice (cli)", "10.0.0.7", 900)
    }
    assert all(m.occurrence_id == occurrence_id(row.id, m.scheduled_for) for m in sent)
    states = await ledger(pool, row.id)
    assert [s[0] for s in states.values()] == ["dispatched"] * 8
    assert states[T0][1:] == ("backfill", "backfill", "alice (cli)")

    again = await ops.backfill(ask)  # the same backfill again: nothing new runs
    assert (again.to_run, again.already) == (0, 8)
    await d.tick()
    assert len(await due_messages(js)) == 8

    ask.until, ask.max = T0 + 5 * MINUTE, 3
    with pytest.raises(InvalidInput) as refused:
        await ops.backfill(ask)
    assert refused.value.field == "max" and "more than 3" in refused.value.reason


async def test_ask_holds_missed_runs_until_a_person_decides_and_latest_runs_one(
    nc, store, pool
) -> None:
    row = await add_job(store, RunPolicy(catch_up="ask"), title="Balance Due")
    other = await add_job(store, RunPolicy(catch_up="ask"), title="Reminders")
    js = nc.jetstream()
    clock = Clock(T0 + 6 * MINUTE + timedelta(seconds=30))
    d = Dispatcher(store, js, clock=clock, misfire_grace_s=10)
    await d.load()
    assert await d.tick() == 0  # nothing runs, nothing is skipped: 7 runs each await a decision
    ops = Operations(store, d, catalog=None)  # type: ignore[arg-type]
    waiting = await ops.decisions(DecisionsRequest())
    assert sorted((w.title, w.count, w.first, w.last) for w in waiting) == [
        ("Balance Due", 7, T0, T0 + 6 * MINUTE),
        ("Reminders", 7, T0, T0 + 6 * MINUTE),
    ]

    decide = DecisionRequest(id=row.id, choice="latest", requested_by="bob (console)")
    result = await ops.decide(decide)
    assert (result.run_for, result.skipped) == ([T0 + 6 * MINUTE], 6)
    with pytest.raises(Conflict):  # answered twice: the second finds nothing awaiting
        await ops.decide(DecisionRequest(id=row.id, choice="all", requested_by="carol"))
    await d.tick()
    await d.tick()
    sent = [m for m, _ in await due_messages(js)]
    assert [(m.job_id, m.scheduled_for, m.requested_by) for m in sent] == [
        (row.id, T0 + 6 * MINUTE, "bob (console)")
    ]
    states = await ledger(pool, row.id)
    assert [s[0] for s in states.values()] == ["skipped"] * 6 + ["dispatched"]
    assert {s[2] for s in states.values()} == {"decision"}

    # A restarted scheduler does not run a decided occurrence again, nor a skipped one.
    d2 = Dispatcher(store, js, clock=clock, misfire_grace_s=10)
    await d2.load()
    await d2.tick()
    assert len(await due_messages(js)) == 1

    # Unanswered, the other job's decision expires: skipped, and the ledger says why.
    assert await expire_decisions(store, None, None, 86_400) == {}
    reconciler = Reconciler(d, js, SchedulerSettings(scheduler_decision_ttl_s=0.001), clock=clock)
    await reconciler.requested()  # what the partition's holder does every round
    assert {s[2] for s in (await ledger(pool, other.id)).values()} == {"decision_expired"}
    assert {s[:3:2] for s in (await ledger(pool, other.id)).values()} == {
        ("skipped", "decision_expired")
    }
    assert await ops.decisions(DecisionsRequest()) == []


async def test_answers_given_at_once_on_two_replicas_run_each_occurrence_once(
    nc, store, pool, settings
) -> None:
    """A standby answers (any replica takes the API); the holder publishes. Two decisions and
    two identical backfills at the same moment: one of each does the work."""
    leader, leader_keeper = await replica(nc, store, settings, "leader")
    standby, standby_keeper = await replica(nc, store, settings, "standby")
    try:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        row = await add_job(store, RunPolicy(catch_up="ask"), next_due=now + timedelta(hours=1))
        standby.put(Entry.from_row(row))  # what Operations.create does after its write
        await eventually(lambda: leader.entries.get(row.id) is not None)
        # What the holder's planner wrote after downtime: three missed runs awaiting a decision.
        missed = [now - timedelta(minutes=m) for m in (3, 2, 1)]
        await pool.executemany(
            "INSERT INTO scheduler.occurrences (id, job_id, scheduled_for, priority, trigger, state, "
            "cause) VALUES ($1::uuid, $2::uuid, $3, 500, 'schedule', 'awaiting', 'catch_up')",
            [(occurrence_id(row.id, t), row.id, t) for t in missed],
        )
        one, two = Operations(store, standby, None), Operations(store, standby, None)  # type: ignore[arg-type]
        answers = await asyncio.gather(
            one.decide(DecisionRequest(id=row.id, choice="all", requested_by="ann")),
            two.decide(DecisionRequest(id=row.id, choice="latest", requested_by="ben")),
            return_exceptions=True,
        )
        assert sorted(type(a).__name__ for a in answers) == ["Conflict", "DecisionResult"]
        [won] = [a for a in answers if not isinstance(a, Conflict)]
        ask = BackfillRequest(id=row.id, since=missed[0], until=now, requested_by="cy")
        backfills = await asyncio.gather(one.backfill(ask), two.backfill(ask))
        assert sum(b.to_run for b in backfills) == 3 - len(won.run)  # what the decision skipped

        async def published() -> list[str]:
            return [i for _, i in await due_messages(nc.jetstream())]

        sent: list[str] = []
        for _ in range(250):
            sent = await published()
            if len(sent) >= 3:
                break
            await asyncio.sleep(0.02)
        assert sorted(sent) == sorted(occurrence_id(row.id, t) for t in missed)
        # The holder marks them dispatched once the stream has confirmed them, just after.
        for _ in range(250):
            states = await ledger(pool, row.id)
            if all(s[0] == "dispatched" for s in states.values()):
                break
            await asyncio.sleep(0.02)
        assert [s[0] for s in states.values()] == ["dispatched"] * 3
    finally:
        for keeper, partitions in ((standby_keeper, standby), (leader_keeper, leader)):
            await partitions.stop()
            await keeper.release_all()

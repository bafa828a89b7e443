"""The overlap policy applied to chained and run-now occurrences, on real JetStream and
PostgreSQL: skipped (with the run still going named in the ledger), buffered and released once,
refused to a person who asked, and overridden on purpose."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from belltower.api import After, RunNowRequest, RunNowResult, RunPolicy, WhyRequest
from belltower.errors import Conflict
from belltower.events import RunFinishedData, chained_occurrence_id, occurrence_id, run_id_for
from belltower.schedule import Every, Schedule
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.entry import Entry
from belltower_scheduler.operations import Operations
from belltower_scheduler.store import JobRow, Store
from tests.helpers.scheduler import (
    MINUTE,
    T0,
    Clock,
    add_job,
    add_on_demand_job,
    due_messages,
    run_finished,
    tracking_dispatcher,
)


@pytest.fixture
async def store(pool) -> Store:
    return Store(pool)


def upstream_done(upstream: JobRow, at: datetime) -> RunFinishedData:
    """The upstream's scheduled occurrence of ``at`` finished at ``at`` + 5 s."""
    return run_finished(upstream, occurrence_id(upstream.id, at), at + timedelta(seconds=5))


async def rows_of(pool, job_id: str) -> list[dict]:
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT id::text, trigger, state, cause, reason, requested_by, requested_from, "
            "chained_from::text "
            "FROM scheduler.occurrences WHERE job_id = $1::uuid ORDER BY created_at, scheduled_for",
            job_id,
        )
    ]


async def sent_for(js, job_id: str) -> list[tuple[str, str]]:
    return [(m.trigger, i) for m, i in await due_messages(js) if m.job_id == job_id]


# -- chained occurrences --------------------------------------------------------------------------


async def test_a_chained_occurrence_is_skipped_while_the_jobs_run_is_going(nc, store, pool) -> None:
    js = nc.jetstream()
    upstream = await add_on_demand_job(store, title="download")
    follower = await add_on_demand_job(
        store, RunPolicy(after=After(job=upstream.id)), title="import"
    )
    clock = Clock(T0)
    d = await tracking_dispatcher(store, js, clock)
    manual = await d.run_now(d.entries[follower.id], "alice (cli)")  # the follower's run, going

    clock.now = T0 + MINUTE
    await d.runs_finished([upstream_done(upstream, T0)])
    await d.tick()
    first = chained_occurrence_id(follower.id, occurrence_id(upstream.id, T0))
    [_, chained] = await rows_of(pool, follower.id)
    assert (chained["id"], chained["trigger"], chained["state"], chained["cause"]) == (
        first, "chained", "skipped", "overlap",
    )  # fmt: skip
    assert chained["reason"] == (
        "skipped: the run of 2030-01-07T08:00:00+00:00 was still going (overlap: skip)"
    )
    assert await sent_for(js, follower.id) == [("manual", manual.id)]
    assert d.stats.skipped == {"overlap": 1}

    # Once the follower's run has finished, the next upstream run chains it as usual.
    await d.runs_finished([run_finished(follower, manual.id, T0 + MINUTE)])
    clock.now = T0 + 2 * MINUTE
    await d.runs_finished([upstream_done(upstream, T0 + MINUTE)])
    await d.tick()
    second = chained_occurrence_id(follower.id, occurrence_id(upstream.id, T0 + MINUTE))
    assert await sent_for(js, follower.id) == [("manual", manual.id), ("chained", second)]


async def test_a_chained_occurrence_is_buffered_and_released_once(nc, store, pool) -> None:
    js = nc.jetstream()
    upstream = await add_on_demand_job(store, title="download")
    follower = await add_on_demand_job(
        store, RunPolicy(after=After(job=upstream.id, on="finished"), overlap="buffer")
    )
    clock = Clock(T0)
    d = await tracking_dispatcher(store, js, clock)
    manual = await d.run_now(d.entries[follower.id], "alice (cli)")

    clock.now = T0 + 2 * MINUTE
    # Two upstream runs end while the follower's run is going: one waits, the other is skipped.
    await d.runs_finished([upstream_done(upstream, T0), upstream_done(upstream, T0 + MINUTE)])
    first = chained_occurrence_id(follower.id, occurrence_id(upstream.id, T0))
    second = chained_occurrence_id(follower.id, occurrence_id(upstream.id, T0 + MINUTE))
    states = {
        r["id"]: (r["state"], r["cause"], r["reason"]) for r in await rows_of(pool, follower.id)
    }
    assert states[first] == (
        "waiting", "overlap",
        "buffered: the run of 2030-01-07T08:00:00+00:00 was still going; "
        "it runs when that run finishes (overlap: buffer)",
    )  # fmt: skip
    assert states[second][:2] == ("skipped", "overlap")
    assert "buffer holds one, and one was waiting already" in states[second][2]
    await d.tick()
    assert await sent_for(js, follower.id) == [("manual", manual.id)]

    # The follower's run ends: the waiting occurrence is released, published once. The same
    # events coming again (redelivery, replay after a restart) release and chain nothing more.
    finish = run_finished(follower, manual.id, T0 + 2 * MINUTE)
    await d.runs_finished([finish])
    await d.tick()
    await d.runs_finished(
        [finish, upstream_done(upstream, T0), upstream_done(upstream, T0 + MINUTE)]
    )
    await d.tick()
    assert await sent_for(js, follower.id) == [("manual", manual.id), ("chained", first)]
    states = {r["id"]: r["state"] for r in await rows_of(pool, follower.id)}
    assert states == {manual.id: "dispatched", first: "dispatched", second: "skipped"}


async def test_a_delayed_chained_occurrence_meets_the_overlap_policy_when_its_delay_ends(
    nc, store, pool
) -> None:
    js = nc.jetstream()
    upstream = await add_on_demand_job(store, title="download")
    follower = await add_on_demand_job(store, RunPolicy(after=After(job=upstream.id, delay_s=600)))
    clock = Clock(T0 + MINUTE)
    d = await tracking_dispatcher(store, js, clock)
    await d.runs_finished([upstream_done(upstream, T0)])  # due at 08:10:05
    chained = chained_occurrence_id(follower.id, occurrence_id(upstream.id, T0))
    assert [r["state"] for r in await rows_of(pool, follower.id)] == ["delayed"]

    clock.now = T0 + 5 * MINUTE  # nothing going when it was planned; at 08:05 a run starts
    manual = await d.run_now(d.entries[follower.id], "bob (console)")
    clock.now = T0 + 11 * MINUTE
    await d.tick()
    row = {r["id"]: r for r in await rows_of(pool, follower.id)}[chained]
    assert (row["state"], row["cause"]) == ("skipped", "overlap")
    assert "the run of 2030-01-07T08:05:00+00:00 was still going" in row["reason"]
    assert await sent_for(js, follower.id) == [("manual", manual.id)]
    assert not d.delayed


# -- run now ------------------------------------------------------------------------------------


async def scheduled_run_going(
    store: Store, js, policy: RunPolicy
) -> tuple[JobRow, Dispatcher, Clock]:
    """A job every hour whose 08:00 run was dispatched and has not finished."""
    row = await add_job(store, policy, schedule=Schedule(rule=Every(seconds=3600)), next_due=T0)
    clock = Clock(T0)
    d = await tracking_dispatcher(store, js, clock)
    assert await d.tick() == 1
    clock.now = T0 + 10 * MINUTE
    return row, d, clock


async def test_run_now_under_skip_is_refused_naming_the_run_going(nc, store, pool) -> None:
    js = nc.jetstream()
    row, d, clock = await scheduled_run_going(store, js, RunPolicy(overlap="skip"))
    going = occurrence_id(row.id, T0)
    with pytest.raises(Conflict) as refused:
        await d.run_now(d.entries[row.id], "alice (cli)", "office-pc (10.0.0.7)")
    message = refused.value.message
    assert (
        f"run {run_id_for(going)} of this job (schedule, dispatched 2030-01-07T08:00:00" in message
    )
    assert "its overlap policy is skip" in message
    assert f"belltower jobs run-now --force {row.id}" in message
    assert await sent_for(js, row.id) == [("schedule", going)]
    [_, refusal] = await rows_of(pool, row.id)
    assert (refusal["trigger"], refusal["state"], refusal["cause"], refusal["requested_by"]) == (
        "manual", "skipped", "overlap", "alice (cli)",
    )  # fmt: skip
    assert refusal["reason"] == (
        f"refused: run {run_id_for(going)} of this job (schedule, dispatched "
        "2030-01-07T08:00:00+00:00, not started by a worker yet) was still going (overlap: skip)"
    )
    assert refusal["requested_from"] == "office-pc (10.0.0.7)"

    # --force runs it alongside, and the ledger says the policy was overridden.
    forced = await d.run_now(d.entries[row.id], "alice (cli)", force=True)
    assert await sent_for(js, row.id) == [("schedule", going), ("manual", forced.id)]
    [*_, kept] = await rows_of(pool, row.id)
    assert (kept["state"], kept["cause"]) == ("dispatched", "overlap_overridden")
    assert kept["reason"].startswith(f"forced: run {run_id_for(going)} of this job")
    assert kept["reason"].endswith("was still going (overlap: skip, overridden)")

    # After the run finishes, run now needs no force.
    await d.runs_finished(
        [run_finished(row, going, clock.now), run_finished(row, forced.id, clock.now)]
    )
    again = await d.run_now(d.entries[row.id], "alice (cli)")
    assert (await sent_for(js, row.id))[-1] == ("manual", again.id)


async def test_run_now_under_buffer_queues_behind_the_run_going(nc, store, pool) -> None:
    js = nc.jetstream()
    row, d, clock = await scheduled_run_going(store, js, RunPolicy(overlap="buffer"))
    going = occurrence_id(row.id, T0)
    ops = Operations(store, d, catalog=None)  # type: ignore[arg-type]
    result = await ops.run_now(RunNowRequest(id=row.id, requested_by="carol (console)"))
    assert isinstance(result, RunNowResult) and result.state == "waiting"
    assert result.note is not None
    assert result.note.startswith(f"buffered: run {run_id_for(going)} of this job (schedule, ")
    assert result.note.endswith("it runs when that run finishes (overlap: buffer)")
    assert await sent_for(js, row.id) == [("schedule", going)]

    # A second one while one waits: buffer holds one, so it is refused, naming the waiting one.
    with pytest.raises(Conflict) as refused:
        await ops.run_now(RunNowRequest(id=row.id, requested_by="carol (console)"))
    assert f"occurrence {result.occurrence_id} already waits for it" in refused.value.message

    # The run going finishes: the queued run is published, once, as the manual run it is.
    finish = run_finished(row, going, clock.now)
    await d.runs_finished([finish])
    await d.tick()
    await d.runs_finished([finish])
    await d.tick()
    sent = [(m.trigger, m.requested_by, i) for m, i in await due_messages(js)]
    assert sent == [
        ("schedule", None, going),
        ("manual", "carol (console)", result.occurrence_id),
    ]
    why = await ops.why(WhyRequest(id=row.id))
    states = {e.occurrence_id: (e.state, e.cause) for e in why.occurrences}
    assert states[result.occurrence_id] == ("dispatched", "overlap")
    assert sorted(states.values(), key=str) == sorted(
        [("dispatched", None), ("dispatched", "overlap"), ("skipped", "overlap")], key=str
    )


async def test_run_now_under_allow_runs_at_once(nc, store, pool) -> None:
    js = nc.jetstream()
    row, d, _ = await scheduled_run_going(store, js, RunPolicy(overlap="allow"))
    manual = await d.run_now(d.entries[row.id], "dave (cli)")
    assert await sent_for(js, row.id) == [
        ("schedule", occurrence_id(row.id, T0)),
        ("manual", manual.id),
    ]
    assert [(r["state"], r["cause"]) for r in await rows_of(pool, row.id)] == [
        ("dispatched", None),
        ("dispatched", None),
    ]
    assert set(d.in_flight[row.id]) == {occurrence_id(row.id, T0), manual.id}


async def test_a_replica_not_holding_the_job_sees_the_run_going_and_the_holder_adopts_its_run(
    nc, store, pool
) -> None:
    """Run now answered by a replica that does not dispatch the job's partition (it has no run
    events): the ledger tells it about the run going, and the holder adopts what it queued."""
    js = nc.jetstream()
    row, holder, clock = await scheduled_run_going(store, js, RunPolicy(overlap="buffer"))
    other = Dispatcher(store, js, clock=clock)  # as Partitions' run-now dispatcher
    queued = await other.run_now(Entry.from_row(row), "erin (cli)")
    assert queued.state == "waiting"
    await holder.adopt(row.id)
    assert holder.waiting[row.id] == queued.id

    await holder.runs_finished([run_finished(row, occurrence_id(row.id, T0), clock.now)])
    await holder.tick()
    assert await sent_for(js, row.id) == [
        ("schedule", occurrence_id(row.id, T0)),
        ("manual", queued.id),
    ]
    # The queued run is now in flight at the holder: its next scheduled occurrence is skipped.
    clock.now = T0 + MINUTE * 60
    assert await holder.tick() == 0
    assert (await rows_of(pool, row.id))[-1]["cause"] == "overlap"


async def test_the_holder_adopts_a_run_now_dispatched_elsewhere_but_not_one_already_finished(
    nc, store, pool
) -> None:
    js = nc.jetstream()
    row = await add_job(store, schedule=Schedule(rule=Every(seconds=3600)), next_due=T0 + MINUTE)
    clock = Clock(T0)
    holder = await tracking_dispatcher(store, js, clock)
    other = Dispatcher(store, js, clock=clock)
    finished_first = await other.run_now(Entry.from_row(row), "erin (cli)")
    # Its finished event reaches the holder before the change notice does.
    await holder.runs_finished([run_finished(row, finished_first.id, T0)])
    still_going = await other.run_now(Entry.from_row(row), "erin (cli)")
    await holder.adopt(row.id)
    assert set(holder.in_flight[row.id]) == {still_going.id}

    clock.now = T0 + MINUTE  # the scheduled occurrence meets the run now still going
    assert await holder.tick() == 0
    assert (await rows_of(pool, row.id))[-1]["reason"] == (
        "skipped: the run of 2030-01-07T08:00:00+00:00 was still going (overlap: skip)"
    )

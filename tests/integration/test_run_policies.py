"""Run policies in the dispatcher on real JetStream and PostgreSQL: catch-up, overlap, chaining,
pauses, and the ledger that explains each occurrence."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import msgspec
import pytest

from belltower.api import After, PauseRequest, RunPolicy, WhyRequest, WhyResult
from belltower.events import (
    RunFinished,
    chained_occurrence_id,
    occurrence_id,
    run_id_for,
)
from belltower.subjects import run_finished_subject
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.operations import Operations
from belltower_scheduler.runs import RunTracker
from belltower_scheduler.store import Store
from tests.helpers.scheduler import MINUTE, T0, Clock, add_job, due_messages, finished


@pytest.fixture
async def store(pool) -> Store:
    return Store(pool)


async def states(pool, job_id: str) -> list[tuple[datetime, str, str | None]]:
    rows = await pool.fetch(
        "SELECT scheduled_for, state, cause FROM scheduler.occurrences WHERE job_id = $1::uuid ORDER BY scheduled_for",
        job_id,
    )
    return [(r["scheduled_for"], r["state"], r["cause"]) for r in rows]


# -- catch-up -----------------------------------------------------------------------------------


async def test_catch_up_latest_runs_the_latest_once_and_coalesces_the_rest(nc, store, pool) -> None:
    row = await add_job(store)
    d = Dispatcher(
        store,
        nc.jetstream(),
        clock=Clock(T0 + 10 * MINUTE + timedelta(seconds=30)),
        misfire_grace_s=10,
    )
    await d.load()
    assert await d.tick() == 1
    ledger = await states(pool, row.id)
    assert [s for _, s, _ in ledger] == ["coalesced"] * 10 + ["dispatched"]
    assert {c for _, s, c in ledger if s == "coalesced"} == {"catch_up"}
    assert [m.scheduled_for for m, _ in await due_messages(nc.jetstream())] == [T0 + 10 * MINUTE]


async def test_catch_up_all_runs_those_within_window_up_to_the_maximum(nc, store, pool) -> None:
    policy = RunPolicy(catch_up="all", catch_up_window_s=300, catch_up_max=3)
    row = await add_job(store, policy)
    d = Dispatcher(
        store,
        nc.jetstream(),
        clock=Clock(T0 + 10 * MINUTE + timedelta(seconds=30)),
        misfire_grace_s=10,
    )
    await d.load()
    assert await d.tick() == 3
    sent = [m.scheduled_for for m, _ in await due_messages(nc.jetstream())]
    assert sent == [T0 + 8 * MINUTE, T0 + 9 * MINUTE, T0 + 10 * MINUTE]
    ledger = await states(pool, row.id)
    assert len(ledger) == 11  # every occurrence recorded: none lost silently
    assert [s for _, s, _ in ledger] == ["missed"] * 8 + ["dispatched"] * 3
    reasons = await pool.fetch(
        "SELECT reason FROM scheduler.occurrences WHERE state = 'missed' ORDER BY scheduled_for"
    )
    assert "catch-up window (300s)" in reasons[0]["reason"]  # 10 minutes late
    assert "at most 3" in reasons[-1]["reason"]  # in the window, but beyond the maximum


async def test_catch_up_skip_records_every_missed_occurrence(nc, store, pool) -> None:
    row = await add_job(store, RunPolicy(catch_up="skip"))
    d = Dispatcher(
        store,
        nc.jetstream(),
        clock=Clock(T0 + 5 * MINUTE + timedelta(seconds=30)),
        misfire_grace_s=10,
    )
    await d.load()
    assert await d.tick() == 0
    assert [s for _, s, _ in await states(pool, row.id)] == ["missed"] * 6
    assert d.stats.missed == {"skip": 6}
    assert await due_messages(nc.jetstream()) == []


async def test_occurrences_found_after_the_schedule_ended_are_skipped(nc, store, pool) -> None:
    row = await add_job(store, end=T0 + 3 * MINUTE)
    d = Dispatcher(store, nc.jetstream(), clock=Clock(T0 + 10 * MINUTE))
    await d.load()
    assert await d.tick() == 0
    assert [(s, c) for _, s, c in await states(pool, row.id)] == [("skipped", "end_passed")] * 4
    assert d.stats.skipped == {"end_passed": 4}


# -- overlap ----------------------------------------------------------------------------------


async def test_overlap_skip_records_the_occurrence_while_a_run_is_going(nc, store, pool) -> None:
    row = await add_job(store)
    clock = Clock(T0)
    d = Dispatcher(store, nc.jetstream(), clock=clock)
    await d.load()
    await d.track_runs()
    assert await d.tick() == 1
    clock.now = T0 + MINUTE
    assert await d.tick() == 0
    reason = await pool.fetchval(
        "SELECT reason FROM scheduler.occurrences WHERE scheduled_for = $1", T0 + MINUTE
    )
    assert "run of 2030-01-07T08:00:00+00:00 was still going" in reason
    await d.runs_finished([finished(row, T0)])
    clock.now = T0 + 2 * MINUTE
    assert await d.tick() == 1
    assert [(s, c) for _, s, c in await states(pool, row.id)] == [
        ("dispatched", None),
        ("skipped", "overlap"),
        ("dispatched", None),
    ]
    assert (
        await pool.fetchval(
            "SELECT run_status FROM scheduler.occurrences WHERE scheduled_for = $1", T0
        )
        == "succeeded"
    )


async def test_overlap_allow_dispatches_regardless(nc, store, pool) -> None:
    row = await add_job(store, RunPolicy(overlap="allow"))
    clock = Clock(T0)
    d = Dispatcher(store, nc.jetstream(), clock=clock)
    await d.load()
    await d.track_runs()
    await d.tick()
    clock.now = T0 + MINUTE
    assert await d.tick() == 1
    assert {s for _, s, _ in await states(pool, row.id)} == {"dispatched"}


async def test_overlap_buffer_holds_one_released_by_the_run_finished_event(nc, store, pool) -> None:
    """The finished event travels through JetStream to the scheduler's run tracker."""
    row = await add_job(store, RunPolicy(overlap="buffer"))
    clock = Clock(T0)
    js = nc.jetstream()
    d = Dispatcher(store, js, clock=clock)
    await d.load()
    tracker = RunTracker(js, d, linger_s=0.01)
    await tracker.start()
    try:
        assert await d.tick() == 1
        clock.now = T0 + 2 * MINUTE
        assert await d.tick() == 0  # 08:01 skipped (one waits already), 08:02 waits
        assert [s for _, s, _ in await states(pool, row.id)] == ["dispatched", "skipped", "waiting"]

        event = RunFinished(
            id=run_id_for(occurrence_id(row.id, T0)), source="test", subject=row.id,
            time=T0, data=finished(row, T0),
        )  # fmt: skip
        await js.publish(run_finished_subject("succeeded", row.type), msgspec.json.encode(event))
        for _ in range(200):
            await tracker.settle()
            if d._retry_pending:
                break
            await asyncio.sleep(0.02)
        assert await d.tick() == 1
        sent = [m.scheduled_for for m, _ in await due_messages(js)]
        assert sent == [T0, T0 + 2 * MINUTE]
        assert [s for _, s, _ in await states(pool, row.id)] == [
            "dispatched",
            "skipped",
            "dispatched",
        ]
    finally:
        await tracker.stop()


class RecordFailsOnce(Store):
    """The real Store whose first ``record_runs`` fails (the database went away)."""

    failed = False

    async def record_runs(self, updates, fence=None, after=None):
        if not self.failed:
            self.failed = True
            raise ConnectionError("the database went away")
        await super().record_runs(updates, fence=fence, after=after)


async def test_a_buffered_run_is_released_when_the_event_is_applied_again_after_a_failure(
    nc, pool
) -> None:
    store = RecordFailsOnce(pool)
    row = await add_job(store, RunPolicy(overlap="buffer"))
    clock = Clock(T0)
    d = Dispatcher(store, nc.jetstream(), clock=clock)
    await d.load()
    await d.track_runs()
    assert await d.tick() == 1
    clock.now = T0 + MINUTE
    assert await d.tick() == 0  # 08:01 waits behind 08:00
    with pytest.raises(ConnectionError):
        await d.runs_finished([finished(row, T0)])
    assert row.id in d.in_flight and row.id in d.waiting  # as before the failed attempt
    await d.runs_finished([finished(row, T0)])  # the run tracker hands the events over again
    assert await d.tick() == 1
    assert [s for _, s, _ in await states(pool, row.id)] == ["dispatched", "dispatched"]


async def test_a_buffered_or_delayed_occurrence_of_a_job_paused_meanwhile_does_not_run(
    nc, store, pool
) -> None:
    buffered = await add_job(store, RunPolicy(overlap="buffer"), title="buffered")
    upstream = await add_job(store, every_s=3600, title="download")
    chained = await add_job(
        store,
        RunPolicy(after=After(job=upstream.id, on="succeeded", delay_s=600)),
        next_due=None,
        every_s=86_400 * 365,
        title="import",
    )
    clock = Clock(T0)
    d = Dispatcher(store, nc.jetstream(), clock=clock)
    await d.load()
    await d.track_runs()
    ops = Operations(store, d, catalog=None)  # type: ignore[arg-type]
    ops._view = _plain_view(ops)  # type: ignore[method-assign]
    assert await d.tick() == 2  # buffered's 08:00 and download's 08:00
    clock.now = T0 + MINUTE
    assert await d.tick() == 0  # buffered's 08:01 waits behind its 08:00
    await d.runs_finished([finished(upstream, T0)])  # import is due at 08:10
    for row in (buffered, chained):
        await ops.pause(PauseRequest(id=row.id, requested_by="alice (cli)"))

    await d.runs_finished([finished(buffered, T0)])
    clock.now = T0 + 11 * MINUTE
    assert await d.tick() == 0
    assert (await states(pool, buffered.id))[1:] == [(T0 + MINUTE, "skipped", "paused")]
    assert [(s, c) for _, s, c in await states(pool, chained.id)] == [("skipped", "paused")]
    assert {m.job_id for m, _ in await due_messages(nc.jetstream())} == {buffered.id, upstream.id}


async def test_a_restarted_scheduler_still_knows_the_run_in_flight(nc, store, pool) -> None:
    row = await add_job(store)
    d = Dispatcher(store, nc.jetstream(), clock=Clock(T0))
    await d.load()
    await d.track_runs()
    await d.tick()

    again = Dispatcher(store, nc.jetstream(), clock=Clock(T0 + MINUTE))
    await again.load()
    oldest = await again.track_runs()
    assert oldest is not None and oldest <= T0 + MINUTE
    assert await again.tick() == 0
    assert [c for _, _, c in await states(pool, row.id)] == [None, "overlap"]


# -- chaining ---------------------------------------------------------------------------------


async def test_a_chained_job_runs_once_after_its_delay_even_if_the_event_comes_twice(
    nc, store, pool
) -> None:
    upstream = await add_job(store, title="download")
    follower = await add_job(
        store,
        RunPolicy(after=After(job=upstream.id, on="succeeded", delay_s=600)),
        next_due=None,
        every_s=86_400 * 365,
        title="import",
    )
    clock = Clock(T0 + timedelta(seconds=10))
    d = Dispatcher(store, nc.jetstream(), clock=clock)
    await d.load()
    await d.track_runs()
    done = T0 + timedelta(seconds=5)
    await d.runs_finished([finished(upstream, T0, done=done)])
    await d.runs_finished([finished(upstream, T0, done=done)])  # redelivered
    await d.runs_finished([finished(upstream, T0 + MINUTE, status="failed")])  # not on failure
    expected = chained_occurrence_id(follower.id, occurrence_id(upstream.id, T0))
    rows = await pool.fetch(
        "SELECT id::text, state, scheduled_for, trigger FROM scheduler.occurrences WHERE job_id = $1::uuid",
        follower.id,
    )
    assert [(r["id"], r["state"], r["scheduled_for"], r["trigger"]) for r in rows] == [
        (expected, "delayed", done + timedelta(minutes=10), "chained")
    ]
    clock.now = done + timedelta(minutes=9)
    await d.tick()
    assert [m for m, _ in await due_messages(nc.jetstream()) if m.job_id == follower.id] == []
    clock.now = done + timedelta(minutes=10)
    await d.tick()
    [(message, msg_id)] = [
        (m, i) for m, i in await due_messages(nc.jetstream()) if m.job_id == follower.id
    ]
    assert (message.job_id, msg_id, message.trigger) == (follower.id, expected, "chained")


# -- pauses and the why ------------------------------------------------------------------------


async def test_why_says_who_paused_and_what_the_pause_skipped(nc, store, pool) -> None:
    row = await add_job(store)
    clock = Clock(T0 - timedelta(seconds=30))
    d = Dispatcher(store, nc.jetstream(), clock=clock)
    await d.load()
    ops = Operations(store, d, catalog=None)  # type: ignore[arg-type]
    ops._view = _plain_view(ops)  # type: ignore[method-assign]

    await ops.pause(
        PauseRequest(id=row.id, requested_by="alice (cli)", requested_from="office-pc (10.0.0.7)")
    )
    clock.now = T0 + 2 * MINUTE + timedelta(seconds=30)
    why = await ops.why(WhyRequest(id=row.id))
    assert why.paused and [e.cause for e in why.occurrences] == ["paused"] * 3
    assert "paused by alice (cli) from office-pc (10.0.0.7)" in why.occurrences[0].reason

    await ops.resume(PauseRequest(id=row.id, requested_by="bob (cli)"))
    clock.now = T0 + 3 * MINUTE
    assert await d.tick() == 1
    why = await ops.why(WhyRequest(id=row.id))
    assert [(e.scheduled_for, e.state) for e in why.occurrences] == [
        (T0 + 3 * MINUTE, "dispatched"),
        (T0 + 2 * MINUTE, "skipped"),
        (T0 + MINUTE, "skipped"),
        (T0, "skipped"),
    ]
    assert why.occurrences[0].run_id == run_id_for(why.occurrences[0].occurrence_id)
    [span] = why.pauses
    assert (span.paused_by, span.resumed_by) == ("alice (cli)", "bob (cli)")
    windowed = await ops.why(WhyRequest(id=row.id, since=T0 + MINUTE, until=T0 + 3 * MINUTE))
    assert [e.scheduled_for for e in windowed.occurrences] == [T0 + 2 * MINUTE, T0 + MINUTE]
    assert isinstance(windowed, WhyResult)


def _plain_view(ops: Operations):
    async def view(row):
        return ops._to_api(row, True)

    return view


async def test_a_pause_holds_back_and_records_what_was_due_but_not_yet_dispatched(
    nc, store, pool
) -> None:
    """Found by the stateful test: due, not yet ticked, then paused; nothing may be lost."""
    row = await add_job(store, next_due=T0 + MINUTE)
    clock = Clock(T0 + MINUTE)
    d = Dispatcher(store, nc.jetstream(), clock=clock)
    await d.load()
    ops = Operations(store, d, catalog=None)  # type: ignore[arg-type]
    ops._view = _plain_view(ops)  # type: ignore[method-assign]
    await ops.pause(PauseRequest(id=row.id, requested_by="carol"))
    clock.now = T0 + MINUTE + timedelta(seconds=1)
    assert await d.tick() == 0
    assert [(t, s, c) for t, s, c in await states(pool, row.id)] == [
        (T0 + MINUTE, "skipped", "paused")
    ]


async def test_runs_that_finished_while_the_scheduler_was_down_are_caught_up(
    nc, store, pool
) -> None:
    row = await add_job(store, RunPolicy(overlap="skip"))
    js = nc.jetstream()
    d = Dispatcher(store, js, clock=Clock(T0))
    await d.load()
    await d.track_runs()
    await d.tick()
    # The scheduler stops; meanwhile the run finishes and its event is stored in the stream.
    event = RunFinished(
        id=run_id_for(occurrence_id(row.id, T0)), source="test", subject=row.id, time=T0,
        data=finished(row, T0),
    )  # fmt: skip
    await js.publish(run_finished_subject("succeeded", row.type), msgspec.json.encode(event))

    clock = Clock(T0 + MINUTE)
    again = Dispatcher(store, js, clock=clock)
    await again.load()
    tracker = RunTracker(js, again, linger_s=0.01)
    await tracker.start()
    try:
        for _ in range(100):
            await tracker.settle()
            if row.id not in again.in_flight:
                break
            await asyncio.sleep(0.02)
        assert await again.tick() == 1  # not held back by the run that finished meanwhile
    finally:
        await tracker.stop()
    assert [(s, c) for _, s, c in await states(pool, row.id)] == [("dispatched", None)] * 2
    assert (
        await pool.fetchval(
            "SELECT run_status FROM scheduler.occurrences WHERE scheduled_for = $1", T0
        )
        == "succeeded"
    )


async def test_a_run_published_but_left_pending_by_a_crash_is_caught_up_too(
    nc, store, pool
) -> None:
    """Published, then the scheduler died before marking it; the run finished meanwhile. The
    restarted scheduler replays from the pending row, so the run does not hold the job back."""
    row = await add_job(store, RunPolicy(overlap="skip"))
    js = nc.jetstream()
    d = Dispatcher(store, js, clock=Clock(T0))
    await d.load()
    await d.track_runs()
    await d.tick()
    await pool.execute("UPDATE scheduler.occurrences SET state = 'pending', dispatched_at = NULL")
    event = RunFinished(
        id=run_id_for(occurrence_id(row.id, T0)), source="test", subject=row.id, time=T0,
        data=finished(row, T0),
    )  # fmt: skip
    await js.publish(run_finished_subject("succeeded", row.type), msgspec.json.encode(event))

    again = Dispatcher(store, js, clock=Clock(T0 + MINUTE))
    await again.load()
    tracker = RunTracker(js, again, linger_s=0.01)
    await tracker.start()
    try:
        for _ in range(200):
            await tracker.settle()
            if await pool.fetchval("SELECT run_status FROM scheduler.occurrences") == "succeeded":
                break
            await asyncio.sleep(0.02)
        assert await again.tick() == 2  # the pending one again (JetStream drops it), and the next
    finally:
        await tracker.stop()
    assert [(s, c) for _, s, c in await states(pool, row.id)] == [("dispatched", None)] * 2
    assert len(await due_messages(js)) == 2


async def test_a_run_in_flight_for_too_long_stops_holding_its_job_back(nc, store, pool) -> None:
    row = await add_job(store, every_s=3600)
    clock = Clock(T0)
    d = Dispatcher(store, nc.jetstream(), clock=clock, stale_run_s=5400)
    await d.load()
    await d.track_runs()
    await d.tick()
    clock.now = T0 + timedelta(hours=1)
    assert await d.tick() == 0  # overlap: the first run is still going
    clock.now = T0 + timedelta(hours=2)
    assert await d.tick() == 1  # 2 h without a finished event: no longer held back
    assert [c for _, _, c in await states(pool, row.id)] == [None, "overlap", None]


async def test_bad_policies_are_refused_naming_the_field(nc, store) -> None:
    from belltower.api import RetryBackoff
    from belltower.errors import InvalidInput, NotFound

    ops = Operations(store, Dispatcher(store, nc.jetstream()), catalog=None)  # type: ignore[arg-type]
    for policy, field in (
        (RunPolicy(catch_up_window_s=0), "catch_up_window_s"),
        (RunPolicy(retries=-1), "retries"),
        (RunPolicy(retries=3, max_deliveries=3), "max_deliveries"),
        (RunPolicy(retry_backoff=RetryBackoff(initial_s=60, max_s=10)), "retry_backoff"),
        (RunPolicy(after=After(job="not-a-uuid")), "after.job"),
        (RunPolicy(after=After(job=str(uuid.uuid4()), delay_s=-1)), None),
    ):
        with pytest.raises((InvalidInput, NotFound)) as info:
            await ops._check_policy(policy)
        if field is not None:
            assert info.value.field == field  # type: ignore[union-attr]
        else:
            assert "after.job: no job with id" in info.value.message


async def test_beyond_the_catch_up_limit_one_row_stands_for_the_rest(
    nc, store, pool, monkeypatch
) -> None:
    import belltower_scheduler.planner as planner_module

    monkeypatch.setattr(planner_module, "MAX_CATCH_UP", 5)
    row = await add_job(store, RunPolicy(catch_up="skip"))
    d = Dispatcher(
        store,
        nc.jetstream(),
        clock=Clock(T0 + 10 * MINUTE + timedelta(seconds=30)),
        misfire_grace_s=10,
    )
    await d.load()
    await d.tick()
    rows = await pool.fetch(
        "SELECT scheduled_for, state, reason FROM scheduler.occurrences WHERE job_id = $1::uuid ORDER BY scheduled_for",
        row.id,
    )
    assert [r["scheduled_for"] for r in rows] == [T0 + i * MINUTE for i in range(6)]
    assert {r["state"] for r in rows} == {"missed"}
    assert "every later occurrence up to 2030-01-07T08:10:30" in rows[-1]["reason"]
    assert d.entries[row.id].next_due == T0 + 11 * MINUTE

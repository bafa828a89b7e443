"""Job state over real JetStream, PostgreSQL and SMTP: max runs end a job after exactly N
dispatched runs, a failure streak raises one failing alert (mailed) however often its events are
delivered and a recovery on the next success, and a run far past its expected duration is said
overdue once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import msgspec
import pytest
from prometheus_client import REGISTRY

from belltower.api import JobRef, PauseRequest, RunPolicy
from belltower.errors import Conflict
from belltower.events import (
    JobFailing,
    JobRecovered,
    ResultMail,
    RunFinished,
    RunOverdue,
    occurrence_id,
    run_event_decoder,
    run_id_for,
)
from belltower.subjects import RUNS_STREAM, run_finished_subject
from belltower_history.app import HistoryService
from belltower_scheduler.catalog import Catalog
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.operations import Operations
from belltower_scheduler.overdue import raise_overdue
from belltower_scheduler.runs import RunTracker
from belltower_scheduler.settings import SchedulerSettings
from belltower_scheduler.store import RunLimits, Store
from belltower_scheduler.streaks import pause_note
from tests.helpers.result_mail import history_with, wait_for
from tests.helpers.scheduler import MINUTE, T0, Clock, add_job, due_messages, finished
from tests.support import stream_messages


@pytest.fixture
async def store(pool) -> Store:
    return Store(pool)


async def alerts(js) -> list[object]:
    return [
        run_event_decoder.decode(m.data)
        for m in await stream_messages(js, RUNS_STREAM, "belltower.run.alert.")
    ]


async def test_max_runs_ends_the_job_after_exactly_that_many_dispatches(nc, store, pool) -> None:
    js = nc.jetstream()
    row = await add_job(store, RunPolicy(max_runs=3, overlap="allow"))
    clock = Clock(T0)
    d = Dispatcher(store, js, clock=clock)
    await d.load()
    sent = 0
    for minute in range(5):
        clock.now = T0 + minute * MINUTE
        sent += await d.tick()
    assert sent == 3
    assert [m.scheduled_for for m, _ in await due_messages(js)] == [
        T0,
        T0 + MINUTE,
        T0 + 2 * MINUTE,
    ]
    job = await pool.fetchrow(
        "SELECT paused, next_run_at FROM scheduler.jobs WHERE id = $1", row.id
    )
    assert job["paused"] and job["next_run_at"] is None

    # A restart plans from the ledger: nothing more runs, and the API says why and how many.
    again = Dispatcher(store, js, clock=clock)
    await again.load()
    clock.now = T0 + 10 * MINUTE
    assert await again.tick() == 0
    ops = Operations(store, again, Catalog(js))
    shown = await ops.get(JobRef(id=row.id))
    assert (shown.max_runs, shown.runs_counted, shown.runs_left) == (3, 3, 0)
    assert shown.paused_by == "belltower" and "max runs reached" in (shown.pause_note or "")
    with pytest.raises(Conflict, match="max_runs"):
        await ops.resume(PauseRequest(id=row.id, requested_by="alice (cli)"))


async def test_a_chunk_is_cut_at_max_runs_when_copied_and_when_retried(nc, store, pool) -> None:
    """The count knows which rows its own transaction wrote: those of a chunk copied in whole,
    and of a retried chunk written again skipping what the ledger has."""
    row = await add_job(store, RunPolicy(max_runs=2, overlap="allow"))
    d = Dispatcher(store, nc.jetstream(), clock=Clock(T0))
    await d.load()
    entry = d.entries[row.id]
    a, b, c, later = (d._occurrence(entry, T0 + i * MINUTE, "pending", None) for i in range(4))
    first = RunLimits({row.id: 2}, T0)
    assert await store.plan([a, b, c], [], limits=first) == {a.id, b.id}
    assert first.cut == {c.id} and first.paused == [row.id]
    retry = RunLimits({row.id: 2}, T0)
    assert await store.plan([a, b, c, later], [], limits=retry) == set()
    assert retry.cut == {later.id}
    states = await pool.fetch(
        "SELECT id::text, state, cause FROM scheduler.occurrences WHERE job_id = $1", row.id
    )
    assert {r["id"]: (r["state"], r["cause"]) for r in states} == {
        a.id: ("pending", None),
        b.id: ("pending", None),
        c.id: ("skipped", "max_runs"),
        later.id: ("skipped", "max_runs"),
    }


async def test_a_catch_up_burst_is_cut_at_max_runs_in_the_ledger(nc, store, pool) -> None:
    js = nc.jetstream()
    policy = RunPolicy(max_runs=2, catch_up="all", catch_up_window_s=3600, catch_up_max=10)
    row = await add_job(store, policy)
    d = Dispatcher(store, js, clock=Clock(T0 + 5 * MINUTE + timedelta(seconds=30)))
    await d.load()
    assert await d.tick() == 2
    rows = await pool.fetch(
        "SELECT state, cause FROM scheduler.occurrences WHERE job_id = $1 AND state <> 'missed' "
        "ORDER BY scheduled_for",
        row.id,
    )
    assert [(r["state"], r["cause"]) for r in rows] == [
        ("dispatched", None),
        ("dispatched", None),
        *[("skipped", "max_runs")] * (len(rows) - 2),
    ]
    assert len(rows) > 2 and len(await due_messages(js)) == 2
    assert d.entries[row.id].paused


@pytest.fixture
async def history(settings, mail_sink) -> AsyncIterator[HistoryService]:
    service = await history_with(
        settings,
        {"smtp_host": mail_sink.host, "smtp_port": mail_sink.port, "console_url": "https://sis/"},
    )
    yield service
    await service.on_shutdown()
    await service.broker.stop()


async def test_a_failure_streak_alerts_once_pauses_and_recovers(
    nc, store, pool, history, mail_sink
) -> None:
    js = nc.jetstream()
    policy = RunPolicy(overlap="allow", alert_after_failures=2, pause_after_failures=3)
    row = await add_job(store, policy)
    row.result_mail = ResultMail(to=("ops@school.edu",), on="always")
    await pool.execute(
        "UPDATE scheduler.jobs SET result_mail = $2::jsonb WHERE id = $1",
        row.id,
        msgspec.json.encode(row.result_mail).decode(),
    )
    clock = Clock(T0)
    d = Dispatcher(store, js, clock=clock)
    await d.load()
    for minute in range(4):  # four runs in flight at once (overlap allow)
        clock.now = T0 + minute * MINUTE
        assert await d.tick() == 1
    tracker = RunTracker(js, d, linger_s=0.01)
    await tracker.start()

    async def finish(minute: int, status: str, msg_id: str | None = None) -> None:
        data = finished(row, T0 + minute * MINUTE, status)
        data.result_mail = row.result_mail
        event = RunFinished(
            id=run_id_for(data.occurrence_id), source="test", subject=row.id, time=T0, data=data
        )
        await js.publish(
            run_finished_subject(status, row.type),
            msgspec.json.encode(event),
            headers={"Nats-Msg-Id": msg_id or event.id},
        )

    try:
        await finish(0, "failed")
        await finish(1, "timed_out")
        await finish(1, "timed_out", msg_id="redelivered")  # the same run's event, twice
        await finish(2, "failed")
        await asyncio.sleep(0.2)
        await tracker.settle()
        streak = REGISTRY.get_sample_value(
            "belltower_job_failure_streak", {"job_id": row.id, "job_type": row.type}
        )
        assert streak == 3.0
        assert d.entries[row.id].paused  # pause_after_failures=3
        note = await pool.fetchval(
            "SELECT note FROM scheduler.pauses WHERE job_id = $1 AND resumed_at IS NULL", row.id
        )
        assert note == pause_note(3)

        await finish(3, "succeeded")
        await asyncio.sleep(0.2)
        await tracker.settle()
    finally:
        await tracker.stop()

    raised = await alerts(js)
    assert [type(e).__name__ for e in raised] == ["JobFailing", "JobRecovered"]
    failing, recovered = raised
    assert isinstance(failing, JobFailing) and isinstance(recovered, JobRecovered)
    assert failing.id == f"{occurrence_id(row.id, T0 + MINUTE)}.failing"
    assert (failing.data.streak, failing.data.paused) == (2, False)
    assert (recovered.data.streak, recovered.data.status) == (3, "succeeded")
    assert await pool.fetchval("SELECT count(*) FROM scheduler.failure_streaks") == 0
    assert (
        REGISTRY.get_sample_value(
            "belltower_job_failure_streak", {"job_id": row.id, "job_type": row.type}
        )
        is None
    )

    # History mails the alert and the recovery once each, beside the four result mails.
    await wait_for(pool, "SELECT count(*) FROM history.mail_outbox WHERE state = 'sent'", 6)
    subjects = sorted(m["Subject"] for m in mail_sink.messages)
    assert [s for s in subjects if "in a row" in s] == [
        "[Belltower] Failing: job failed 2 times in a row"
    ]
    assert [s for s in subjects if "Recovered" in s] == [
        "[Belltower] Recovered: job succeeded again"
    ]
    assert all(m.envelope_to == ["ops@school.edu"] for m in mail_sink.messages)


async def test_a_run_far_past_its_expected_duration_is_overdue_once(
    nc, store, pool, settings
) -> None:
    js = nc.jetstream()
    row = await add_job(store, next_due=None)
    for minute in range(5):  # five succeeded runs of 2 s to 10 s: p95 9.6 s (interpolated)
        at = T0 + minute * MINUTE
        await pool.execute(
            "INSERT INTO scheduler.occurrences (id, job_id, scheduled_for, priority, trigger, "
            "state, dispatched_at, run_status, run_started_at, run_finished_at) VALUES "
            "($1, $2, $3, 500, 'schedule', 'dispatched', $3, 'succeeded', $3, $4)",
            occurrence_id(row.id, at),
            row.id,
            at,
            at + timedelta(seconds=2 * (minute + 1)),
        )
    late = T0 + 10 * MINUTE
    await pool.execute(
        "INSERT INTO scheduler.occurrences (id, job_id, scheduled_for, priority, trigger, state, "
        "dispatched_at, run_status, run_started_at) VALUES "
        "($1, $2, $3, 500, 'schedule', 'dispatched', $3, 'running', $3)",
        occurrence_id(row.id, late),
        row.id,
        late,
    )
    own = SchedulerSettings(
        nats_url=settings.nats_url, database_url=settings.database_url, stale_run_s=1e9
    )
    d = Dispatcher(store, js, clock=Clock(late + timedelta(seconds=20)))
    await d.load()
    assert await raise_overdue(d, own, late + timedelta(seconds=20)) == []  # 20 s < 3 x 9.6 s
    now = late + timedelta(seconds=40)
    assert await raise_overdue(d, own, now) == [occurrence_id(row.id, late)]
    assert await raise_overdue(d, own, now + MINUTE) == []  # once per run
    [event] = await alerts(js)
    assert isinstance(event, RunOverdue)
    assert (event.data.running_s, event.data.expected_s, event.data.sample) == (40.0, 9.6, 5)

    shown = await Operations(store, d, Catalog(js)).get(JobRef(id=row.id))
    assert (shown.expected_duration_s, shown.expected_duration_runs) == (9.6, 5)
    assert shown.overdue_after_s == pytest.approx(28.8)

"""History against real JetStream and PostgreSQL: one row per occurrence, whatever arrives twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from belltower import operations as ops
from belltower.api import PurgeRequest, Reply, RunQuery, RunRef
from belltower.events import (
    RunFinished,
    RunFinishedData,
    RunProgress,
    RunProgressData,
    RunStarted,
    RunStartedData,
    run_id_for,
)
from belltower.rpc import ApiClient
from belltower.subjects import (
    HISTORY_CONSUMER,
    RUNS_STREAM,
    RUNS_SUBJECTS,
    run_finished_subject,
    run_progress_subject,
    run_started_subject,
)
from belltower_history.app import HistoryService

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
async def history(settings, nc) -> AsyncIterator[HistoryService]:
    service = HistoryService(settings, batch_size=50)
    await service.on_startup()
    await service.broker.start()
    await service.start_consuming()
    yield service
    await service.on_shutdown()
    await service.broker.stop()


@pytest.fixture
def api(nc) -> ApiClient:
    return ApiClient(nc, timeout=5)


def started(occ: str, job: str, at: datetime, attempt: int = 1) -> RunStarted:
    return RunStarted(
        id=f"{run_id_for(occ)}.started.{attempt}", source="test", subject=job, time=at,
        data=RunStartedData(
            run_id=run_id_for(occ), occurrence_id=occ, job_id=job, job_type="system.canary", job_title="Canary",
            pool="notifier", priority=500, trigger="schedule", scheduled_for=at, dispatched_at=at, started_at=at,
            attempt=attempt, worker="w1",
        ),
    )  # fmt: skip


def finished(
    occ: str, job: str, at: datetime, status: str = "succeeded", text: str = "ok"
) -> RunFinished:
    return RunFinished(
        id=run_id_for(occ), source="test", subject=job, time=at,
        data=RunFinishedData(
            run_id=run_id_for(occ), occurrence_id=occ, job_id=job, job_type="system.canary", job_title="Canary",
            pool="notifier", status=status, priority=500, trigger="schedule", scheduled_for=at, dispatched_at=at,
            started_at=at, finished_at=at + timedelta(seconds=2), duration_ms=2000, summary=text, output_text=text + "\n",
        ),
    )  # fmt: skip


async def send(nc, subject: str, event, msg_id: str | None = None) -> None:
    import msgspec

    await nc.jetstream().publish(
        subject, msgspec.json.encode(event), headers={"Nats-Msg-Id": msg_id or event.id}
    )


async def wait_rows(pool, count: int, where: str = "TRUE", timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while await pool.fetchval(f"SELECT count(*) FROM history.runs WHERE {where}") < count:
        assert time.monotonic() < deadline, f"history did not reach {count} rows where {where}"
        await asyncio.sleep(0.05)


async def test_started_then_finished_makes_one_row(history, nc, pool, api) -> None:
    occ, job = str(uuid.uuid4()), str(uuid.uuid4())
    await send(nc, run_started_subject("system.canary"), started(occ, job, T0))
    await wait_rows(pool, 1, "status = 'running'")
    await send(nc, run_progress_subject("system.canary"), RunProgress(
        id="p1", source="t", subject=job, time=T0,
        data=RunProgressData(run_id=run_id_for(occ), occurrence_id=occ, job_id=job, at=T0, done=3, total=10, message="3 of 10"),
    ))  # fmt: skip
    await wait_rows(pool, 1, "progress_done = 3")
    await send(nc, run_finished_subject("succeeded", "system.canary"), finished(occ, job, T0))
    await wait_rows(pool, 1, "status = 'succeeded'")
    run = await api.call(ops.RUNS_GET, RunRef(run_id=run_id_for(occ)))
    assert (run.status, run.duration_ms, run.output_text, run.occurrence_id) == (
        "succeeded",
        2000,
        "ok\n",
        occ,
    )


async def test_redelivered_and_late_events_change_nothing(history, nc, pool) -> None:
    occ, job = str(uuid.uuid4()), str(uuid.uuid4())
    await send(
        nc, run_finished_subject("succeeded", "system.canary"), finished(occ, job, T0, text="first")
    )
    await wait_rows(pool, 1, "finished_at IS NOT NULL")
    # The same run finishing again (a second attempt after a crash) and a late 'started'.
    await send(
        nc,
        run_finished_subject("failed", "system.canary"),
        finished(occ, job, T0, "failed", "second"),
        "other-id",
    )
    await send(nc, run_started_subject("system.canary"), started(occ, job, T0, attempt=2))
    marker_occ = str(uuid.uuid4())
    await send(nc, run_started_subject("system.canary"), started(marker_occ, job, T0))
    await wait_rows(
        pool, 1, f"occurrence_id = '{marker_occ}'"
    )  # everything before it was processed
    rows = await pool.fetch(
        "SELECT status, summary, attempt FROM history.runs WHERE occurrence_id = $1", uuid.UUID(occ)
    )
    assert [tuple(r) for r in rows] == [("succeeded", "first", 1)]


async def test_a_batch_with_both_events_of_many_runs(history, nc, pool) -> None:
    job = str(uuid.uuid4())
    occs = [str(uuid.uuid4()) for _ in range(120)]
    for i, occ in enumerate(occs):
        at = T0 + timedelta(minutes=i)
        await send(nc, run_started_subject("system.canary"), started(occ, job, at))
        await send(nc, run_finished_subject("succeeded", "system.canary"), finished(occ, job, at))
    await wait_rows(pool, 120, "status = 'succeeded'")
    assert await pool.fetchval("SELECT count(*) FROM history.runs") == 120


async def test_queries_by_job_status_and_dates(history, nc, pool, api) -> None:
    job_a, job_b = str(uuid.uuid4()), str(uuid.uuid4())
    for i in range(6):
        occ = str(uuid.uuid4())
        status = "failed" if i % 3 == 0 else "succeeded"
        await send(
            nc,
            run_finished_subject(status, "system.canary"),
            finished(occ, job_a if i < 4 else job_b, T0 + timedelta(days=i), status),
        )
    await wait_rows(pool, 6)
    by_job = await api.call(ops.RUNS_LIST, RunQuery(job_id=job_a))
    assert len(by_job) == 4 and by_job[0].scheduled_for > by_job[-1].scheduled_for
    failed = await api.call(ops.RUNS_LIST, RunQuery(status="failed"))
    assert {r.scheduled_for for r in failed} == {T0, T0 + timedelta(days=3)}
    window = await api.call(
        ops.RUNS_LIST, RunQuery(since=T0 + timedelta(days=1), until=T0 + timedelta(days=3))
    )
    assert [r.scheduled_for for r in window] == [T0 + timedelta(days=2), T0 + timedelta(days=1)]
    assert all(r.output_text == "" for r in window)  # lists leave the output out; runs.get has it


async def test_bad_queries_name_the_field(history, api, nc) -> None:
    from belltower.errors import InvalidInput, NotFound

    with pytest.raises(InvalidInput) as err:
        await api.call(ops.RUNS_LIST, RunQuery(status="exploded"))
    assert err.value.field == "status"
    # A body a typed client cannot send is refused on the wire, naming the field.
    msg = await nc.request(ops.RUNS_LIST.subject, b'{"limit": "many"}', timeout=5)
    refused = msgspec.json.decode(msg.data, type=Reply).error
    assert refused is not None and (refused.code, refused.field) == ("invalid", "limit")
    with pytest.raises(InvalidInput) as err:
        await api.call(ops.RUNS_GET, RunRef(run_id="nope"))
    assert err.value.field == "run_id"
    with pytest.raises(NotFound):
        await api.call(ops.RUNS_GET, RunRef(run_id=str(uuid.uuid4())))


async def test_purge_follows_each_jobs_retention(history, nc, pool, api) -> None:
    now = datetime.now(UTC)
    week, forever, deleted_job = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    for job in (week, forever, deleted_job):
        for age in (1, 10, 100):
            occ = str(uuid.uuid4())
            await send(
                nc,
                run_finished_subject("succeeded", "system.canary"),
                finished(occ, job, now - timedelta(days=age, seconds=5)),
            )
    await wait_rows(pool, 9)
    dry = await api.call(
        ops.RUNS_PURGE,
        PurgeRequest(keep_days={week: 7, forever: None}, default_days=30, dry_run=True),
    )
    assert dry.deleted == 3 and await pool.fetchval("SELECT count(*) FROM history.runs") == 9
    result = await api.call(
        ops.RUNS_PURGE, PurgeRequest(keep_days={week: 7, forever: None}, default_days=30)
    )
    assert result.by_job == {week: 2, deleted_job: 1}
    left = await pool.fetch(
        "SELECT job_id::text AS job, count(*) AS n FROM history.runs GROUP BY job_id"
    )
    assert {r["job"]: r["n"] for r in left} == {week: 1, forever: 3, deleted_job: 2}


async def test_a_lone_event_is_stored_without_waiting_for_a_full_batch(history, nc, pool) -> None:
    occ, job = str(uuid.uuid4()), str(uuid.uuid4())
    began = time.monotonic()
    await send(nc, run_started_subject("system.canary"), started(occ, job, T0))
    await wait_rows(pool, 1, timeout=5)
    assert time.monotonic() - began < 1.0  # linger is 25 ms; a full batch would be 50 events


async def test_timestamps_keep_their_instant_and_optional_fields_their_nulls(
    history, nc, pool, api
) -> None:
    occ, job = str(uuid.uuid4()), str(uuid.uuid4())
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    event = finished(occ, job, plus_two)
    event.data.error, event.data.requested_by = "boom", None
    await send(nc, run_finished_subject("succeeded", "system.canary"), event)
    await wait_rows(pool, 1)
    run = await api.call(ops.RUNS_GET, RunRef(run_id=run_id_for(occ)))
    assert (run.scheduled_for, run.finished_at) == (T0, T0 + timedelta(seconds=2))
    assert (run.error, run.requested_by, run.output_html, run.attempt) == ("boom", None, None, 1)
    row = await pool.fetchrow(
        "SELECT status, summary, output_text FROM history.runs WHERE occurrence_id = $1",
        uuid.UUID(occ),
    )
    assert tuple(row) == ("succeeded", "ok", "ok\n")


async def test_a_database_error_naks_the_batch_and_it_comes_again(history, nc, pool) -> None:
    assert history.store is not None
    write, failures = history.store.write, []

    async def failing_once(prepared):
        if not failures:
            failures.append(prepared)
            raise ConnectionError("database went away")
        return await write(prepared)

    history.store.write = failing_once  # type: ignore[method-assign]
    job = str(uuid.uuid4())
    occs = [str(uuid.uuid4()) for _ in range(5)]
    for occ in occs:
        await send(nc, run_finished_subject("succeeded", "system.canary"), finished(occ, job, T0))
    await wait_rows(pool, 5, timeout=15)
    assert failures, "the first write should have failed"
    info = await nc.jetstream().consumer_info(RUNS_STREAM, HISTORY_CONSUMER)
    assert info.num_redelivered >= 1 or info.delivered.consumer_seq > 5


async def test_replicas_share_the_durable_consumer(history, settings, nc, pool) -> None:
    other = HistoryService(settings, batch_size=5)
    await other.on_startup()
    await other.broker.start()
    await other.start_consuming()
    try:
        info = await nc.jetstream().consumer_info(RUNS_STREAM, HISTORY_CONSUMER)
        assert info.config.deliver_group == HISTORY_CONSUMER
        assert info.config.ack_policy == AckPolicy.EXPLICIT and info.config.max_ack_pending
        job = str(uuid.uuid4())
        for i in range(200):
            at = T0 + timedelta(minutes=i)
            await send(
                nc,
                run_finished_subject("succeeded", "system.canary"),
                finished(str(uuid.uuid4()), job, at),
            )
        await wait_rows(pool, 200)
        assert history.recorded > 0 and other.recorded > 0
        assert history.recorded + other.recorded == 200
    finally:
        await other.on_shutdown()
        await other.broker.stop()


async def test_shutdown_is_quick_and_leaves_nothing_unacked(settings, nc, pool) -> None:
    service = HistoryService(settings, batch_size=50)
    await service.on_startup()
    await service.broker.start()
    await service.start_consuming()
    job = str(uuid.uuid4())
    for i in range(100):
        await send(
            nc,
            run_finished_subject("succeeded", "system.canary"),
            finished(str(uuid.uuid4()), job, T0 + timedelta(minutes=i)),
        )
    began = time.monotonic()
    await service.on_shutdown()
    await service.broker.stop()
    assert time.monotonic() - began < 3.0
    # Whatever it had not stored was nak'ed, not left for ack_wait: a new instance stores it all.
    again = HistoryService(settings, batch_size=50)
    await again.on_startup()
    await again.broker.start()
    await again.start_consuming()
    try:
        await wait_rows(pool, 100)
        info = await nc.jetstream().consumer_info(RUNS_STREAM, HISTORY_CONSUMER)
        deadline = time.monotonic() + 5
        while info.num_ack_pending or info.num_pending:
            assert time.monotonic() < deadline, info
            await asyncio.sleep(0.05)
            info = await nc.jetstream().consumer_info(RUNS_STREAM, HISTORY_CONSUMER)
    finally:
        await again.on_shutdown()
        await again.broker.stop()


async def test_a_pull_consumer_of_an_earlier_version_is_replaced_where_it_stood(
    settings, nc, pool
) -> None:
    js = nc.jetstream()
    job = str(uuid.uuid4())
    occs = [str(uuid.uuid4()) for _ in range(10)]
    for i, occ in enumerate(occs):
        await send(
            nc,
            run_finished_subject("succeeded", "system.canary"),
            finished(occ, job, T0 + timedelta(minutes=i)),
        )
    old = await js.pull_subscribe(
        RUNS_SUBJECTS, durable=HISTORY_CONSUMER, stream=RUNS_STREAM,
        config=ConsumerConfig(durable_name=HISTORY_CONSUMER, ack_policy=AckPolicy.EXPLICIT, filter_subject=RUNS_SUBJECTS),
    )  # fmt: skip
    for msg in await old.fetch(4, timeout=5):
        await msg.ack()
    await old.unsubscribe()
    service = HistoryService(settings, batch_size=50)
    await service.on_startup()
    await service.broker.start()
    await service.start_consuming()
    try:
        await wait_rows(pool, 6)
        await asyncio.sleep(0.3)
        stored = {
            r["occ"]
            for r in await pool.fetch("SELECT occurrence_id::text AS occ FROM history.runs")
        }
        assert stored == set(occs[4:])  # the 4 acked by the old consumer are not delivered again
        info = await js.consumer_info(RUNS_STREAM, HISTORY_CONSUMER)
        assert info.config.deliver_group == HISTORY_CONSUMER
    finally:
        await service.on_shutdown()
        await service.broker.stop()


async def test_an_event_the_database_refuses_does_not_hold_back_the_others(
    history, nc, pool
) -> None:
    """A malformed event is dropped with an error; the events around it are stored, once."""
    from belltower.subjects import HISTORY_CONSUMER, RUNS_STREAM

    good = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(3)]
    await send(nc, run_finished_subject("succeeded", "system.canary"), finished(*good[0], T0))
    await send(
        nc,
        run_finished_subject("succeeded", "system.canary"),
        finished(str(uuid.uuid4()), "not-a-uuid", T0),
    )
    for occ, job in good[1:]:
        await send(nc, run_finished_subject("succeeded", "system.canary"), finished(occ, job, T0))
    await wait_rows(pool, 3)
    js = nc.jetstream()
    deadline = time.monotonic() + 10
    while (info := await js.consumer_info(RUNS_STREAM, HISTORY_CONSUMER)).num_ack_pending:
        assert time.monotonic() < deadline, "the refused event is still being redelivered"
        await asyncio.sleep(0.1)
    assert info.num_pending == 0
    assert sorted(
        r["occurrence_id"] for r in await pool.fetch("SELECT occurrence_id::text FROM history.runs")
    ) == sorted(occ for occ, _ in good)

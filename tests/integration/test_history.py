"""History against real JetStream and PostgreSQL: one row per occurrence, whatever arrives twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from belltower.api import RunRecord
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
from belltower.subjects import run_finished_subject, run_progress_subject, run_started_subject
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
    run = await api.call("history", "runs.get", {"run_id": run_id_for(occ)}, result_type=RunRecord)
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
    by_job = await api.call("history", "runs.list", {"job_id": job_a}, result_type=list[RunRecord])
    assert len(by_job) == 4 and by_job[0].scheduled_for > by_job[-1].scheduled_for
    failed = await api.call(
        "history", "runs.list", {"status": "failed"}, result_type=list[RunRecord]
    )
    assert {r.scheduled_for for r in failed} == {T0, T0 + timedelta(days=3)}
    window = await api.call(
        "history",
        "runs.list",
        {"since": T0 + timedelta(days=1), "until": T0 + timedelta(days=3)},
        result_type=list[RunRecord],
    )
    assert [r.scheduled_for for r in window] == [T0 + timedelta(days=2), T0 + timedelta(days=1)]
    assert all(r.output_text == "" for r in window)  # lists leave the output out; runs.get has it


async def test_bad_queries_name_the_field(history, api) -> None:
    from belltower.errors import InvalidInput, NotFound

    with pytest.raises(InvalidInput) as err:
        await api.call("history", "runs.list", {"status": "exploded"})
    assert err.value.field == "status"
    with pytest.raises(InvalidInput) as err:
        await api.call("history", "runs.list", {"limit": "many"})
    assert err.value.field == "limit"
    with pytest.raises(InvalidInput) as err:
        await api.call("history", "runs.get", {"run_id": "nope"})
    assert err.value.field == "run_id"
    with pytest.raises(NotFound):
        await api.call("history", "runs.get", {"run_id": str(uuid.uuid4())})


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
        "history",
        "runs.purge",
        {"keep_days": {week: 7, forever: None}, "default_days": 30, "dry_run": True},
    )
    assert dry["deleted"] == 3 and await pool.fetchval("SELECT count(*) FROM history.runs") == 9
    result = await api.call(
        "history", "runs.purge", {"keep_days": {week: 7, forever: None}, "default_days": 30}
    )
    assert result["by_job"] == {week: 2, deleted_job: 1}
    left = await pool.fetch(
        "SELECT job_id::text AS job, count(*) AS n FROM history.runs GROUP BY job_id"
    )
    assert {r["job"]: r["n"] for r in left} == {week: 1, forever: 3, deleted_job: 2}

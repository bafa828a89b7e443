"""``H`` schedules through the real scheduler: each job's next run is the one its id picks, a
restarted scheduler (loading from PostgreSQL) plans the same instants, and the job keeps its
``H`` in what the API and export return."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from belltower import operations as ops
from belltower.api import JobRef, JobSpec
from belltower.jobtypes import JobContext, Registry
from belltower.rpc import ApiClient
from belltower.schedule import Cron, Daily, Schedule, compile_schedule
from belltower.settings import Settings
from belltower.worker import Worker
from belltower_scheduler.app import SchedulerService
from belltower_scheduler.settings import SchedulerSettings

pytestmark = pytest.mark.slow


def registry() -> Registry:
    types = Registry()

    @types.job_type("test.spread", pool="notifier", title="Spread")
    async def spread(ctx: JobContext, params: object) -> None:
        return None

    return types


async def started_scheduler(settings: Settings) -> SchedulerService:
    scheduler = SchedulerService(SchedulerSettings(**settings.model_dump()))
    await scheduler.on_startup()
    await scheduler.broker.start()
    await scheduler.after_startup()
    await scheduler.broker.connection.flush()
    return scheduler


async def stopped(scheduler: SchedulerService) -> None:
    await scheduler.on_shutdown()
    await scheduler.broker.stop()


@pytest.fixture
async def worker(settings: Settings, nc) -> AsyncIterator[Worker]:  # type: ignore[no-untyped-def]
    w = Worker("notifier", registry(), settings)
    await w.on_startup()
    await w.broker.start()
    yield w
    await w.broker.stop()
    await w.on_shutdown()


async def wait_holding(scheduler: SchedulerService, job_id: str) -> None:
    import asyncio

    for _ in range(200):
        if scheduler.partitions.entries.get(job_id) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the scheduler did not load the job")


async def test_h_jobs_run_at_their_own_instants_across_a_restart(settings, nc, worker) -> None:  # type: ignore[no-untyped-def]
    api = ApiClient(nc, timeout=10)
    scheduler = await started_scheduler(settings)
    schedules = {
        "Nightly H": Schedule(rule=Cron(expr="H H(1-4) * * *"), tz="America/Chicago"),
        "Daily 02:H": Schedule(rule=Daily(times=["02:H"]), tz="UTC"),
    }
    try:
        jobs = [
            await api.call(
                ops.JOBS_CREATE, JobSpec(type="test.spread", title=title, schedule=schedule)
            )
            for title, schedule in schedules.items()
            for _ in range(3)
        ]
        now = datetime.now(UTC)
        expected = {}
        for job in jobs:
            own = compile_schedule(schedules[job.title], spread_key=job.id).next_after(now)
            assert job.next_run_at == own, (job.title, job.next_run_at, own)
            expected[job.id] = own
            await wait_holding(scheduler, job.id)
            entry = scheduler.partitions.entries.get(job.id)
            assert entry is not None and entry.next_due == own
        nightly = {expected[j.id] for j in jobs if j.title == "Nightly H"}
        assert len(nightly) > 1, "three H jobs did not all get the same instant"
    finally:
        await stopped(scheduler)

    again = await started_scheduler(settings)
    try:
        for job in jobs:
            await wait_holding(again, job.id)
            entry = again.partitions.entries.get(job.id)
            assert entry is not None and entry.next_due == expected[job.id], job.title
            stored = await api.call(ops.JOBS_GET, JobRef(id=job.id))
            assert stored.schedule == schedules[job.title], "the job keeps its H"
            local = expected[job.id].astimezone(ZoneInfo(stored.schedule.tz))
            assert "[H picked: " in stored.schedule_text, stored.schedule_text
            assert f"{local.minute} {local.hour} * * *" in stored.schedule_text or (
                f"daily {local:%H:%M}" in stored.schedule_text
            ), stored.schedule_text
    finally:
        await stopped(again)

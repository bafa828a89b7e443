"""``jobs.list`` in pages: a district's thousands of jobs (some with large parameters) come back
whole, each page one NATS message well under the broker's limit (a single reply of every job
outgrew 1 MB near 1,500 jobs: MaxPayloadError, and the console and CLI timed out)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest

from belltower import operations as ops
from belltower.api import JobsPageRequest, RunPolicy
from belltower.errors import InvalidInput
from belltower.rpc import ApiClient, all_jobs
from belltower.schedule import Every, Schedule
from belltower.settings import Settings
from belltower_scheduler.app import SchedulerService
from belltower_scheduler.settings import SchedulerSettings
from belltower_scheduler.store import JobRow, Store

pytestmark = pytest.mark.slow

JOBS = 3_000
BIG = 200
"""Jobs with about 2 KB of parameters each (a notifier's message template, say)."""


@pytest.fixture
async def scheduler(settings: Settings, nc) -> AsyncIterator[SchedulerService]:  # type: ignore[no-untyped-def]
    service = SchedulerService(SchedulerSettings(**settings.model_dump()))
    await service.on_startup()
    await service.broker.start()
    await service.after_startup()
    await service.broker.connection.flush()
    yield service
    await service.on_shutdown()
    await service.broker.stop()


async def insert_jobs(pool, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    store = Store(pool)
    now = datetime.now(UTC)
    ids = []
    for i in range(count):
        params = {"message": "x" * 2000} if i < BIG else {}
        row = JobRow(
            id=str(uuid.uuid4()), title=f"Job {i:05d}", type="system.canary", pool="notifier",
            params=params, schedule=Schedule(rule=Every(seconds=3600)), priority=500,
            paused=True, keep_history_days=30, timeout_s=None, next_run_at=None,
            created_at=now, updated_at=now, policy=RunPolicy(),
        )  # fmt: skip
        await store.insert_job(row)
        ids.append(row.id)
    return ids


async def test_every_job_comes_back_in_pages_that_fit_one_message(scheduler, nc, pool) -> None:  # type: ignore[no-untyped-def]
    ids = await insert_jobs(pool, JOBS)
    api = ApiClient(nc, timeout=20)
    listed = await all_jobs(api)
    assert sorted(j.id for j in listed) == sorted(ids), "each job once, none missing"

    pages, after, largest = 0, None, 0
    while True:
        raw = await nc.request(
            ops.JOBS_LIST.subject, msgspec.json.encode(JobsPageRequest(after=after)), timeout=20
        )
        largest = max(largest, len(raw.data))
        page = msgspec.json.decode(raw.data)["result"]
        pages += 1
        if page["next"] is None:
            break
        assert page["next"] == page["jobs"][-1]["id"]
        after = page["next"]
    assert pages >= JOBS // 1000, pages
    assert largest < nc.max_payload // 2 + 64 * 1024, (largest, nc.max_payload)


async def test_a_page_after_a_job_that_is_not_an_id_is_refused(scheduler, nc) -> None:  # type: ignore[no-untyped-def]
    api = ApiClient(nc, timeout=10)
    with pytest.raises(InvalidInput) as refused:
        await api.call(ops.JOBS_LIST, JobsPageRequest(after="not-a-uuid"))
    assert refused.value.field == "id"
    empty = await api.call(ops.JOBS_LIST, JobsPageRequest(limit=1))
    assert empty.jobs == [] and empty.next is None
    await asyncio.sleep(0)

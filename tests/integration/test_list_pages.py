"""Keyset pages of jobs and runs over real PostgreSQL: a stable order when sort keys tie, and
no job or run listed twice or left out while rows are added between pages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from belltower.api import JobsPageRequest, RunPolicy, RunsPageRequest
from belltower.errors import InvalidInput
from belltower.schedule import Every, Schedule
from belltower_history import listing as run_listing
from belltower_scheduler import listing as job_listing
from belltower_scheduler.store import JobRow, Store

pytestmark = pytest.mark.slow
NOW = datetime(2026, 9, 1, tzinfo=UTC)


async def add_jobs(pool, titles_priorities) -> list[str]:  # type: ignore[no-untyped-def]
    store, ids = Store(pool), []
    for title, priority in titles_priorities:
        row = JobRow(
            id=str(uuid.uuid4()), title=title, type="system.canary", pool="notifier", params={},
            schedule=Schedule(rule=Every(seconds=3600)), priority=priority, paused=priority % 2 == 1,
            keep_history_days=30, timeout_s=None, next_run_at=None, created_at=NOW,
            updated_at=NOW, policy=RunPolicy(),
        )  # fmt: skip
        await store.insert_job(row)
        ids.append(row.id)
    return ids


async def walk(pool, request: JobsPageRequest, during=None) -> list[JobRow]:  # type: ignore[no-untyped-def]
    seen: list[JobRow] = []
    pages = 0
    while True:
        window = await job_listing.jobs_page(pool, request, ["system.canary"])
        seen += window.rows
        pages += 1
        if during is not None:
            await during(pages)
        if window.next is None:
            return seen
        request = JobsPageRequest(**{**_fields(request), "cursor": window.next})


def _fields(request: JobsPageRequest) -> dict:
    return {f: getattr(request, f) for f in request.__struct_fields__}


async def test_job_pages_keep_ties_in_order_and_lose_nothing_while_jobs_are_added(pool) -> None:  # type: ignore[no-untyped-def]
    # 30 jobs tie on priority and title: the id breaks the tie, the same way on every page.
    ids = await add_jobs(
        pool, [("Same title", 500)] * 30 + [(f"Job {i:02d}", i * 10) for i in range(25)]
    )

    async def insert_between(page: int) -> None:
        await add_jobs(pool, [(f"Added {page}", 5), (f"Zz added {page}", 995)])

    for sort in ("-priority", "title", "state", "next_run_at"):
        listed = await walk(pool, JobsPageRequest(sort=sort, limit=7), insert_between)
        got = [r.id for r in listed]
        assert len(got) == len(set(got)), f"{sort}: a job listed twice"
        assert set(ids) <= set(got), f"{sort}: a job that was there all along was skipped"
    by_priority = [
        (r.priority, r.title.lower(), r.id)
        for r in await walk(pool, JobsPageRequest(sort="-priority", limit=9))
    ]
    assert by_priority == sorted(by_priority, reverse=True)

    # Going back from the third page gives the second page again.
    first = await job_listing.jobs_page(pool, JobsPageRequest(sort="title", limit=5), [])
    second = await job_listing.jobs_page(
        pool, JobsPageRequest(sort="title", limit=5, cursor=first.next), []
    )
    third = await job_listing.jobs_page(
        pool, JobsPageRequest(sort="title", limit=5, cursor=second.next), []
    )
    back = await job_listing.jobs_page(
        pool, JobsPageRequest(sort="title", limit=5, cursor=third.prev), []
    )
    assert [r.id for r in back.rows] == [r.id for r in second.rows]
    assert first.prev is None and back.prev is not None


async def test_job_search_filters_and_refusals(pool) -> None:  # type: ignore[no-untyped-def]
    await add_jobs(pool, [("Late bus 50% off", 500), ("Late_bus", 501), ("Attendance", 502)])
    found = await job_listing.jobs_page(
        pool, JobsPageRequest(sort="title", q="50%", total=True), []
    )
    assert [r.title for r in found.rows] == ["Late bus 50% off"] and found.total == 1
    paused = await job_listing.jobs_page(
        pool, JobsPageRequest(q="late", state="paused", total=True), []
    )
    assert [r.title for r in paused.rows] == ["Late_bus"]
    missing = await job_listing.jobs_page(
        pool, JobsPageRequest(state="not_installed", total=True), ["other"]
    )
    assert missing.total == 3
    other_sort = (
        await job_listing.jobs_page(pool, JobsPageRequest(sort="title", limit=1), [])
    ).next
    for bad, field in (
        (JobsPageRequest(sort="owner"), "sort"),
        (JobsPageRequest(state="sleeping"), "state"),
        (JobsPageRequest(sort="-title", cursor=other_sort), "cursor"),
        (JobsPageRequest(sort="title", q="bus", cursor=other_sort), "cursor"),
        (JobsPageRequest(cursor="AAAA"), "cursor"),
    ):
        with pytest.raises(InvalidInput) as refused:
            await job_listing.jobs_page(pool, bad, [])
        assert refused.value.field == field


async def add_runs(pool, job_id: str, start: datetime, count: int, tie: bool = False) -> None:  # type: ignore[no-untyped-def]
    await pool.executemany(
        "INSERT INTO history.runs (occurrence_id, run_id, job_id, job_type, job_title, pool, status,"
        " trigger, priority, scheduled_for, dispatched_at, finished_at, duration_ms, summary)"
        " VALUES ($1, $2, $3, 'system.canary', 'Canary', 'notifier', $4, 'schedule', 500, $5, $5, $5, $6, $7)",
        [
            (uuid.uuid4(), uuid.uuid4(), uuid.UUID(job_id), "failed" if i % 3 == 0 else "succeeded",
             start if tie else start + timedelta(minutes=i), i % 7, f"run {i}")
            for i in range(count)
        ],
    )  # fmt: skip


async def test_run_pages_are_stable_while_runs_arrive(pool) -> None:  # type: ignore[no-untyped-def]
    job = str(uuid.uuid4())
    await add_runs(pool, job, NOW, 40)
    await add_runs(pool, job, NOW + timedelta(minutes=10), 15, tie=True)  # 15 runs at one instant
    seen: list[str] = []
    request = RunsPageRequest(job_id=job, limit=6)
    while True:
        window = await run_listing.runs_page(pool, request)
        seen += [r.occurrence_id for r in window.runs]
        # New runs arrive (newer than any listed) while the pages are read.
        await add_runs(pool, job, NOW + timedelta(days=1, minutes=len(seen)), 1)
        if window.next is None:
            break
        request = RunsPageRequest(job_id=job, limit=6, cursor=window.next)
    assert len(seen) == len(set(seen)) == 55, "every run that was there once, the new ones not"
    failed = await run_listing.runs_page(
        pool, RunsPageRequest(job_id=job, status="failed", sort="duration_ms", limit=100)
    )
    durations = [r.duration_ms for r in failed.runs]
    assert durations == sorted(durations) and all(r.status == "failed" for r in failed.runs)
    searched = await run_listing.runs_page(pool, RunsPageRequest(job_id=job, q="run 39"))
    assert [r.summary for r in searched.runs] == ["run 39"]
    with pytest.raises(InvalidInput) as refused:
        await run_listing.runs_page(pool, RunsPageRequest(sort="job"))
    assert refused.value.field == "sort" and "scheduled_for" in (refused.value.accepted or "")

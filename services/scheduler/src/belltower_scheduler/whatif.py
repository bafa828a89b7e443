"""``calendars.diff``: the runs a calendar change would move, skip or add, before it is saved.

Every job that uses the calendar has its schedule run by the engine with the calendar's days as
they are and as they would be (:mod:`belltower.calendar_diff`). Jobs with the same schedule
(and no ``H`` fields) share one computation, and the engine runs in a worker thread so the
dispatcher's loop keeps its beat while a district's thousands of jobs are compared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg

from belltower import paging
from belltower.api import CalendarDiff, CalendarDiffRequest, CalendarRunChange
from belltower.calendar_diff import Outcome, changed_days, diff_runs, never_runs
from belltower.errors import InvalidInput
from belltower.schedule import Schedule, is_spread, schedule_decoder, schedule_encoder

from .entry import compiled_for

MAX_SCHEDULES = 2_000
"""Distinct schedules compared at most; the jobs beyond are left out and ``truncated`` said."""


@dataclass(frozen=True)
class _Job:
    id: str
    title: str
    schedule_json: str


async def users(pool: asyncpg.Pool, name: str) -> tuple[list[_Job], int]:
    """The active jobs that use the calendar, in id order, and how many paused ones do."""
    rows = await pool.fetch(
        "SELECT id::text AS id, title, schedule::text AS schedule, paused FROM scheduler.jobs "
        "WHERE schedule ->> 'calendar' = $1 ORDER BY id",
        name,
    )
    active = [_Job(r["id"], r["title"], r["schedule"]) for r in rows if not r["paused"]]
    return active, len(rows) - len(active)


def compare(
    jobs: Sequence[_Job],
    old: frozenset[date],
    new: frozenset[date],
    since: datetime,
    until: datetime,
) -> tuple[list[CalendarRunChange], bool]:
    """Every job's changed runs, in order of time then job; the CPU half, for a thread."""
    outcomes: dict[tuple[str, str], Outcome] = {}
    changes: list[CalendarRunChange] = []
    truncated = False
    for job in jobs:
        schedule = schedule_decoder.decode(job.schedule_json)
        key = (schedule_encoder.encode(schedule).decode(), job.id if is_spread(schedule) else "")
        outcome = outcomes.get(key)
        if outcome is None:
            if len(outcomes) >= MAX_SCHEDULES:
                truncated = True
                continue
            outcome = outcomes[key] = _outcome(schedule, job.id, old, new, since, until)
        truncated = truncated or outcome.truncated
        changes += [
            CalendarRunChange(
                job_id=job.id, job_title=job.title, change=c.change, scheduled_for=c.nominal,
                before=c.before, after=c.after, reason=c.reason,
            )
            for c in outcome.changes
        ]  # fmt: skip
    changes.sort(key=lambda c: (c.scheduled_for, c.job_title.lower(), c.job_id))
    return changes, truncated


def _outcome(
    schedule: Schedule,
    job_id: str,
    old: frozenset[date],
    new: frozenset[date],
    since: datetime,
    until: datetime,
) -> Outcome:
    before = compiled_for(schedule, old, spread_key=job_id)
    try:
        after = compiled_for(schedule, new, spread_key=job_id)
    except InvalidInput as exc:
        return never_runs(before, since, until, f"the job could never run: {exc.reason}")
    return diff_runs(before, after, since, until)


async def calendar_diff(
    pool: asyncpg.Pool,
    request: CalendarDiffRequest,
    current: Sequence[date],
    added: Sequence[date],
    now: datetime,
) -> CalendarDiff:
    since = request.since or now
    until = since + timedelta(days=request.days)
    old = frozenset(current)
    new = changed_days(old, added, request.remove_days, request.replace)
    jobs, paused = await users(pool, request.name)
    changes, truncated = await asyncio.to_thread(compare, jobs, old, new, since, until)
    counts = {
        kind: sum(c.change == kind for c in changes) for kind in ("moved", "skipped", "added")
    }
    shown, cut = paging.fit(changes)
    return CalendarDiff(
        calendar=request.name,
        since=since,
        until=until,
        days_added=sorted(new - old),
        days_removed=sorted(old - new),
        jobs=len(jobs) + paused,
        paused_jobs=paused,
        jobs_affected=len({c.job_id for c in changes}),
        moved=counts["moved"],
        skipped=counts["skipped"],
        added=counts["added"],
        changes=shown,
        truncated=truncated or cut,
    )

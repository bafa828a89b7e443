"""Synthetic but faithful inputs: job rows as the scheduler stores them, run events as workers send them.

Rows are written with ``COPY`` straight into ``scheduler.jobs`` in the same shape
``Operations.create`` gives them (encoded ``Schedule``, validated params, ``next_run_at`` set),
because creating 100k jobs through the API would benchmark the API instead. Events are built
from the real msgspec Structs, so sizes and encodings match what the services exchange.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from belltower.events import (
    DueOccurrence,
    RunFinished,
    RunFinishedData,
    RunStarted,
    RunStartedData,
    run_id_for,
)
from belltower.schedule import Cron, Daily, Every, Schedule, compile_schedule, schedule_encoder
from belltower.subjects import due_subject, run_finished_subject, run_started_subject

CANARY = "system.canary"
CANARY_POOL = "notifier"

JOB_COLUMNS = (
    "id", "title", "type", "pool", "params", "schedule", "priority", "paused",
    "keep_history_days", "timeout_s", "next_run_at", "created_at", "updated_at",
)  # fmt: skip

_encoder = msgspec.json.Encoder()
_ZONES = ("UTC", "America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London")
_WEEKDAY_SETS = (None, ["mon", "tue", "wed", "thu", "fri"], ["mon", "wed", "fri"], ["sat"])


def job_row(
    i: int, schedule: Schedule, next_run_at: datetime | None, now: datetime, params: dict[str, Any]
) -> tuple[Any, ...]:
    """One ``scheduler.jobs`` row in ``JOB_COLUMNS`` order."""
    return (
        uuid.uuid4(),
        f"Bench job {i:06d}",
        CANARY,
        CANARY_POOL,
        _encoder.encode(params).decode(),
        schedule_encoder.encode(schedule).decode(),
        500,
        False,
        None,
        None,
        next_run_at,
        now,
        now,
    )


def due_at_once_rows(n: int, due: datetime) -> list[tuple[Any, ...]]:
    """``n`` daily canary jobs whose next occurrence is ``due``: a "everything at 07:00" morning.

    ``Every(1 day)`` anchored at ``due`` keeps the next occurrence a day away once dispatched,
    so a tick plans exactly one occurrence per job.
    """
    schedule = Schedule(rule=Every(seconds=86400), start=due)
    now = datetime.now(UTC)
    return [job_row(i, schedule, due, now, {"message": f"bench {i}"}) for i in range(n)]


def varied_rows(n: int, seed: int = 7) -> list[tuple[Any, ...]]:
    """``n`` jobs with the spread of schedules a district has: intervals, daily times, cron, zones.

    Schedules repeat the way real ones do (many jobs at 07:30 on weekdays), giving tens of
    thousands of distinct schedules per 100k jobs; ``next_run_at`` is at least an hour away so
    the loaded scheduler sits idle while its memory is measured.
    """
    rng = random.Random(seed)
    now = datetime.now(UTC)
    after = now + timedelta(hours=1)
    next_cache: dict[bytes, datetime | None] = {}
    rows = []
    for i in range(n):
        tz = rng.choice(_ZONES)
        kind = i % 3
        if kind == 0:
            schedule = Schedule(rule=Every(seconds=60 * rng.randint(1, 1440)))
        elif kind == 1:
            schedule = Schedule(
                rule=Daily(
                    times=[f"{rng.randint(0, 23):02d}:{rng.choice((0, 15, 30, 45)):02d}"],
                    weekdays=rng.choice(_WEEKDAY_SETS),
                ),
                tz=tz,
            )
        else:
            schedule = Schedule(
                rule=Cron(
                    expr=f"{rng.randint(0, 59)} {rng.randint(0, 23)} * * {rng.choice(('*', '1-5', '0,6'))}"
                ),
                tz=tz,
            )
        key = schedule_encoder.encode(schedule)
        if key not in next_cache:
            next_cache[key] = compile_schedule(schedule).next_after(after)
        rows.append(
            job_row(i, schedule, next_cache[key], now, {"message": f"bench {i}", "steps": 0})
        )
    return rows


async def insert_jobs(
    conn: asyncpg.Connection | asyncpg.Pool, rows: Sequence[tuple[Any, ...]]
) -> None:
    await conn.copy_records_to_table(
        "jobs", schema_name="scheduler", columns=list(JOB_COLUMNS), records=rows
    )


def raw_due_messages(
    rows: Sequence[tuple[Any, ...]], due: datetime
) -> list[tuple[str, bytes, str]]:
    """(subject, payload, msg id) for the raw-publish baseline: the dispatcher's messages, other ids.

    Same Struct, same field values and lengths as the dispatcher would send for these jobs, but
    fresh ids (uuid4, same length as occurrence ids), so the later dispatch is not de-duplicated.
    """
    now = datetime.now(UTC)
    out = []
    for row in rows:
        occ = str(uuid.uuid4())
        message = DueOccurrence(
            occurrence_id=occ,
            run_id=run_id_for(occ),
            job_id=str(row[0]),
            job_type=row[2],
            job_title=row[1],
            pool=row[3],
            params=msgspec.json.decode(row[4]),
            priority=row[6],
            trigger="schedule",
            scheduled_for=due,
            dispatched_at=now,
            timeout_s=row[9],
        )
        out.append((due_subject(row[3], row[2]), _encoder.encode(message), occ))
    return out


def run_events(runs: int, chunk: int = 1000) -> Iterator[tuple[str, bytes, str]]:
    """(subject, payload, msg id) of ``runs`` canary runs: ``chunk`` started events, then their finished ones.

    A run's started and finished events are ``chunk`` events apart, as when jobs take longer
    than a moment: a consumer batch of at most ``chunk`` events never holds both; a larger one
    holds both for some of its runs, and history writes those as one row (see ``ingest``).
    """
    base = datetime.now(UTC) - timedelta(minutes=5)
    worker = "bench-host:4242"
    for start in range(0, runs, chunk):
        batch = []
        for i in range(start, min(start + chunk, runs)):
            occ = str(uuid.uuid4())
            run = run_id_for(occ)
            job = str(uuid.uuid4())
            scheduled = base + timedelta(milliseconds=i)
            dispatched = scheduled + timedelta(milliseconds=3)
            started_at = dispatched + timedelta(milliseconds=4)
            finished_at = started_at + timedelta(milliseconds=2)
            common: dict[str, Any] = {
                "run_id": run,
                "occurrence_id": occ,
                "job_id": job,
                "job_type": CANARY,
                "job_title": f"Bench job {i:06d}",
                "pool": CANARY_POOL,
                "priority": 500,
                "trigger": "schedule",
                "scheduled_for": scheduled,
                "dispatched_at": dispatched,
                "started_at": started_at,
                "worker": worker,
            }
            started = RunStarted(
                id=f"{run}.started.1",
                source="belltower/notifier-worker",
                subject=job,
                time=started_at,
                data=RunStartedData(**common),
            )
            line = f"canary ok: scheduled for {scheduled.isoformat()}, started 7 ms later"
            finished = RunFinished(
                id=run,
                source="belltower/notifier-worker",
                subject=job,
                time=finished_at,
                data=RunFinishedData(
                    **common,
                    status="succeeded",
                    finished_at=finished_at,
                    duration_ms=2,
                    summary="canary ok",
                    output_text=line + "\n",
                ),
            )
            batch.append((started, finished))
        for started, _ in batch:
            yield run_started_subject(CANARY), _encoder.encode(started), started.id
        for _, finished in batch:
            yield run_finished_subject("succeeded", CANARY), _encoder.encode(finished), finished.id

"""``calc_daily_attendance_rate``: what the nightly daily-attendance recalculation costs per mark.

The demo school (its current term's class marks) is loaded into a fresh database, without
statistics, as a school's first nightly copy would be, and Recalculate Daily Attendance runs over
every day of the term, in-process with the worker's job context. The figure is class marks read
and turned into daily attendance per second, the first run (every day written).
"""

from __future__ import annotations

import asyncio

import asyncpg

from belltower import sis
from belltower.settings import Settings
from belltower_dev import demo
from belltower_integration.calculations import attendance

from .figures import Figure
from .integrations import run_in_process
from .stack import Servers, log

TARGET_RATE = 20_000.0
"""A district's marks for a term (hundreds of thousands) recalculated within a minute."""


async def run(servers: Servers, students: int) -> list[Figure]:
    url = servers.database("bench_calculations")
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        await sis.migrate(pool)
        data = await asyncio.to_thread(demo.generate, size=demo.DemoSize(students=students))
        async with pool.acquire() as conn:
            await demo.load(conn, data)
        marks = await pool.fetchval("SELECT count(*) FROM sis.attendance")
    finally:
        await pool.close()
    elapsed, summary = await run_in_process(
        attendance.daily_attendance_type, Settings(database_url=url), {"days_back": 400},
        job_id="bench-daily-attendance",
    )  # fmt: skip
    log(f"daily attendance: {summary} in {elapsed:.2f}s")
    return [
        Figure("calc_daily_attendance_rate", marks / elapsed, "marks/s", TARGET_RATE, "higher",
               extra={"marks": marks, "students": students}),
    ]  # fmt: skip

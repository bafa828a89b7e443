"""``frontline_import_rate``: what a file-drop import costs per record.

A Frontline leave file of N rows (absences of the demo school's employees) is dropped in a batch
folder and imported by the real job type, run in-process with the worker's job context: match
employees, upsert each leave, archive the file. The figure is records imported per second; its
baseline is the bare database work, the same upsert through one ``executemany``, so the ratio
shows what matching, validation and reporting add.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from belltower import sis
from belltower.jobtypes import Database, JobContext, JobType, Output
from belltower.mail import Mailer
from belltower.settings import Settings
from belltower_dev import demo
from belltower_integration.jobs import frontline_leave

from .figures import Figure
from .stack import Servers, log

TARGET_RATE = 1_000.0
"""A district's nightly leave file (thousands of rows) imported within seconds."""


async def run(servers: Servers, rows: int) -> list[Figure]:
    url = servers.database("bench_integrations")
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        await sis.migrate(pool)
        data = await asyncio.to_thread(demo.generate, size=demo.DemoSize(students=200))
        async with pool.acquire() as conn:
            await demo.load(conn, data)
        eins = [
            r["value"]
            for r in await pool.fetch(
                "SELECT value FROM sis.person_external_ids WHERE system = 'hr'"
            )
        ]
        people = dict(
            await pool.fetch(
                "SELECT value, person_id FROM sis.person_external_ids WHERE system = 'hr'"
            )
        )
    finally:
        await pool.close()
    start = date(2026, 1, 5)
    records = [
        (f"A{i}", eins[i % len(eins)], start + timedelta(days=i // len(eins)), "Sick", "8")
        for i in range(rows)
    ]
    with tempfile.TemporaryDirectory(prefix="belltower-bench-batch-") as batch:
        folder = Path(batch) / "FromAesop"
        folder.mkdir()
        body = "absence_id,employee_id,date,leave_type,hours\n" + "".join(
            f"{a},{e},{d},{t},{h}\n" for a, e, d, t, h in records
        )
        (folder / "Frontline_Leave.csv").write_text(body)
        settings = Settings(database_url=url, batch_folder=Path(batch))
        rate, summary = await _job(settings, rows)
    log(f"frontline import: {summary}")
    baseline = await _bare_upserts(url, people, records)
    return [
        Figure("frontline_import_rate", rate, "records/s", TARGET_RATE, "higher", baseline=baseline,
               extra={"records": rows}),
    ]  # fmt: skip


async def _job(settings: Settings, rows: int) -> tuple[float, str]:
    elapsed, summary = await run_in_process(
        frontline_leave.job_type, settings, {"settle_s": 0}, job_id="bench-frontline"
    )
    return rows / elapsed, summary


async def run_in_process(
    job_type: JobType[Any], settings: Settings, raw: dict[str, Any], *, job_id: str
) -> tuple[float, str]:
    """Run a job type with the worker's job context, no NATS; returns seconds taken and summary."""
    db = Database(settings.database_url)
    output = Output()

    async def progress(done: int | None, total: int | None, message: str) -> None:
        return None

    ctx = JobContext(
        run_id="bench", occurrence_id="bench", job_id=job_id, job_title="bench",
        job_type=job_type.name, trigger="manual", requested_by=None,
        scheduled_for=datetime.now(UTC), attempt=1, deadline=time.monotonic() + 3600,
        log=logging.LoggerAdapter(logging.getLogger("bench"), {}), output=output,
        settings=settings, db=db, mailer=Mailer(settings), api=None,  # type: ignore[arg-type]
        _progress=progress,
    )  # fmt: skip
    params = job_type.decode_params(raw)
    try:
        started = time.perf_counter()
        await job_type.run(ctx, params)
        elapsed = time.perf_counter() - started
    finally:
        await db.close()
    return elapsed, output.summary


async def _bare_upserts(
    url: str, people: dict[str, int], records: list[tuple[str, str, date, str, str]]
) -> float:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE sis.leave_requests")
        args = [
            (f"{a}:{d}", people[e], d, t, Decimal(h), "", None, None, False)
            for a, e, d, t, h in records
        ]
        started = time.perf_counter()
        async with conn.transaction():
            await conn.executemany(frontline_leave.UPSERT, args)
        return len(records) / (time.perf_counter() - started)
    finally:
        await conn.close()

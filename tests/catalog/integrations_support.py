"""Running integration job types in-process, with a context like the worker's, for catalog tests.

The worker's own machinery (claims, events, redelivery) is tested elsewhere; these tests are
about what each job type does to the SIS and the batch folder, so they call the handler directly
with the same JobContext the worker builds. One end-to-end test runs through the real worker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from belltower.jobtypes import Database, JobContext, JobType, Output
from belltower.mail import Mailer
from belltower.settings import Settings


@dataclass
class Run:
    """One finished in-process run: its output and the progress it reported."""

    output: Output
    progress: list[tuple[int | None, int | None, str]] = field(default_factory=list)
    error: Exception | None = None

    @property
    def text(self) -> str:
        return self.output.text

    @property
    def html(self) -> str:
        return self.output.html_text or ""


async def run_job(
    job_type: JobType[Any],
    settings: Settings,
    db: Database,
    params: dict[str, Any] | None = None,
    *,
    job_id: str = "job-catalog-test",
    scheduled_for: datetime | None = None,
    raises: type[Exception] | None = None,
) -> Run:
    """Decode ``params`` as the worker does and run the handler; ``raises`` expects a failure."""
    decoded = job_type.decode_params(params or {})
    run = Run(Output())

    async def progress(done: int | None, total: int | None, message: str) -> None:
        run.progress.append((done, total, message))

    ctx = JobContext(
        run_id=f"run-{time.monotonic_ns()}",
        occurrence_id=f"occ-{time.monotonic_ns()}",
        job_id=job_id,
        job_title=job_type.title,
        job_type=job_type.name,
        trigger="schedule",
        requested_by=None,
        scheduled_for=scheduled_for or datetime.now(UTC),
        attempt=1,
        deadline=time.monotonic() + 120,
        log=logging.LoggerAdapter(logging.getLogger(f"belltower.job.{job_type.name}"), {}),
        output=run.output,
        settings=settings,
        db=db,
        mailer=Mailer(settings),
        api=None,  # type: ignore[arg-type]  # integration jobs here do not call other services
        _progress=progress,
    )
    if raises is None:
        await job_type.run(ctx, decoded)
    else:
        try:
            await job_type.run(ctx, decoded)
        except raises as exc:
            run.error = exc
        else:
            raise AssertionError(f"{job_type.name} did not raise {raises.__name__}:\n{run.text}")
    return run


@dataclass
class Env:
    """A demo-school database, a batch folder and a mail sink, as a worker would see them."""

    settings: Settings
    db: Database

    async def run(
        self, job_type: JobType[Any], params: dict[str, Any] | None = None, **kw: Any
    ) -> Run:
        return await run_job(job_type, self.settings, self.db, params, **kw)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return await (await self.db.pool()).fetch(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await (await self.db.pool()).fetchval(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await (await self.db.pool()).fetchrow(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        return await (await self.db.pool()).execute(query, *args)


async def open_env(database_url: str, batch_folder: Any, smtp_port: int) -> Env:
    settings = Settings(
        database_url=database_url,
        batch_folder=batch_folder,
        smtp_port=smtp_port,
        outbound_allow_http=True,  # the stand-ins listen on this machine, over plain http
        outbound_allow_hosts=["127.0.0.1"],
    )
    return Env(settings, Database(database_url))


async def keep_current_sections(pool: Any, count: int) -> None:
    """Cut the demo school to ``count`` sections of the current term (enrolments go with the
    rest), for LMS sync tests about what follows a first sync."""
    await pool.execute(
        "DELETE FROM sis.sections WHERE id NOT IN (SELECT s.id FROM sis.sections s JOIN sis.terms t"
        " ON t.id = s.term_id WHERE t.code = 'CURR' ORDER BY s.id LIMIT $1)",
        count,
    )


async def drop_one_enrolment(pool: Any) -> int:
    """Drop one enrolment of a student enrolled in more than one section (so the student stays
    in the roster and only the enrolment goes); returns its id."""
    dropped: int = await pool.fetchval(
        "SELECT min(id) FROM sis.enrollments WHERE status = 'enrolled' AND person_id IN "
        "(SELECT person_id FROM sis.enrollments WHERE status = 'enrolled' GROUP BY 1 HAVING count(*) > 1)"
    )
    await pool.execute("UPDATE sis.enrollments SET status = 'dropped' WHERE id = $1", dropped)
    return dropped

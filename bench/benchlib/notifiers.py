"""``notifier_mail_rate`` and ``sis_demo_load_s``: what a notifier costs at a school's size.

The demo school (2,500 students) is generated and loaded into a fresh database (``sis_demo_load_s``,
generation plus COPY). Then the Timed Email notifier mails its activity due today to every
student, through the real mechanism (selection, ledgers, one message per recipient) and a real
SMTP server, run in-process with the worker's job context; the figure is messages delivered per
second. Its baseline is the same number of bare messages sent with one SMTP connection each
(``aiosmtplib.send``), the way a naive notifier would send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import aiosmtplib
import asyncpg

from belltower import sis
from belltower.db import migrate
from belltower.jobtypes import Database, JobContext, Output
from belltower.mail import Mailer
from belltower.settings import Settings
from belltower_dev import demo
from belltower_dev.localservers import MailSink
from belltower_notifier.jobs import registry

from .figures import Figure
from .stack import Servers, log

TARGET_RATE = 100.0
"""A student body of a few thousand mailed within half a minute; set before measuring, and kept."""
TARGET_LOAD_S = 15.0
"""``make dev`` and the test template build the demo school this fast."""


async def run(servers: Servers, students: int) -> list[Figure]:
    url = servers.database("bench_notifiers")
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        await sis.migrate(pool)
        await migrate(pool, "notifier", "belltower_notifier")
        started = time.perf_counter()
        data = await asyncio.to_thread(demo.generate, size=demo.DemoSize(students=students))
        async with pool.acquire() as conn:
            counts = await demo.load(conn, data)
        load_s = time.perf_counter() - started
        log(f"demo school of {students} students loaded in {load_s:.1f} s")
        await pool.execute("UPDATE sis.email_activities SET send_on = $1", datetime.now(UTC).date())
    finally:
        await pool.close()

    with MailSink() as sink:
        settings = Settings(database_url=url, smtp_host=sink.host, smtp_port=sink.port)
        rate, sent = await _timed_email(settings, sink)
        baseline = await _one_connection_each(settings, sent)
    load = Figure(
        "sis_demo_load_s", load_s, "s", TARGET_LOAD_S, "lower",
        extra={"students": students, "rows": sum(counts.values())},
    )  # fmt: skip
    mail = Figure(
        "notifier_mail_rate", rate, "messages/s", TARGET_RATE, "higher", baseline=baseline,
        extra={"messages": sent},
    )  # fmt: skip
    return [load, mail]


async def _timed_email(settings: Settings, sink: MailSink) -> tuple[float, int]:
    kind = registry.get("notifier.timed_email")
    assert kind is not None
    db = Database(settings.database_url)
    output = Output()

    async def progress(done: int | None, total: int | None, message: str) -> None:
        return None

    ctx = JobContext(
        run_id="bench", occurrence_id="bench", job_id="bench-timed-email", job_title="bench",
        job_type=kind.name, trigger="manual", requested_by=None, scheduled_for=datetime.now(UTC),
        attempt=1, deadline=time.monotonic() + 3600,
        log=logging.LoggerAdapter(logging.getLogger("bench"), {}), output=output,
        settings=settings, db=db, mailer=Mailer(settings), api=None,  # type: ignore[arg-type]
        _progress=progress,
    )  # fmt: skip
    try:
        started = time.perf_counter()
        await kind.run(ctx, kind.decode_params({"activities": ["ADVISING_WEEK"]}))
        elapsed = time.perf_counter() - started
    finally:
        await db.close()
    sent = len(sink.messages)
    log(f"timed e-mail: {output.summary} in {elapsed:.1f} s")
    return sent / elapsed, sent


async def _one_connection_each(settings: Settings, n: int) -> float:
    mailer = Mailer(settings)
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with gate:
            await aiosmtplib.send(
                mailer.message([f"s{i}@bench.example"], "bench", "body"),
                hostname=settings.smtp_host,
                port=settings.smtp_port,
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started)

"""Running catalog job types in-process against the demo SIS, a real PostgreSQL and a real SMTP sink.

``run_job`` builds the same JobContext the worker builds (real database, real mailer) without
NATS, so each notifier test costs milliseconds; one e2e test goes through the real worker.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from belltower.errors import BelltowerError, RunHeld
from belltower.jobtypes import Database, JobContext, Output
from belltower.mail import Mailer
from belltower.settings import Settings
from belltower_dev.localservers import MailSink
from belltower_dev.standins.twilio import TwilioStandIn
from belltower_integration.jobs import registry as integration_registry
from belltower_notifier.jobs import registry as notifier_registry


@dataclass
class Ran:
    status: str
    summary: str
    text: str
    html: str | None
    error: str | None


class JobRunner:
    """Runs a job type of either worker the way the worker does, and returns what history would record."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.mailer = Mailer(settings)

    async def __call__(
        self,
        job_type: str,
        params: dict[str, Any] | None = None,
        *,
        job_id: str | None = None,
        occurrence_id: str | None = None,
        scheduled_for: datetime | None = None,
    ) -> Ran:
        kind = notifier_registry.get(job_type) or integration_registry.get(job_type)
        assert kind is not None, f"{job_type} is registered in neither worker"
        occurrence_id = occurrence_id or uuid.uuid4().hex
        job_id = job_id or f"job-{job_type}"
        output = Output()

        async def progress(done: int | None, total: int | None, message: str) -> None:
            return None

        ctx = JobContext(
            run_id=occurrence_id, occurrence_id=occurrence_id, job_id=job_id, job_title=f"test {job_type}",
            job_type=job_type, trigger="manual", requested_by=None,
            scheduled_for=scheduled_for or datetime.now(UTC), attempt=1,
            deadline=time.monotonic() + 60, log=logging.LoggerAdapter(logging.getLogger("test"), {}),
            output=output, settings=self.settings, db=self.db, mailer=self.mailer, api=None,  # type: ignore[arg-type]
            _progress=progress,
        )  # fmt: skip
        status, error = "succeeded", None
        try:
            await kind.run(ctx, kind.decode_params(params or {}))
        except RunHeld as exc:
            status, error = "held", exc.message
        except BelltowerError as exc:
            status, error = "failed", exc.message
        return Ran(status, output.summary, output.text, output.html_text, error)


@pytest.fixture
def sis_settings(sis_database: str, mail_sink: MailSink, tmp_batch_folder) -> Settings:
    return Settings(
        database_url=sis_database,
        smtp_host=mail_sink.host,
        smtp_port=mail_sink.port,
        batch_folder=tmp_batch_folder,
        # The stand-ins for outside services listen on this machine, over plain http.
        outbound_allow_http=True,
        outbound_allow_hosts=["127.0.0.1"],
    )


@pytest.fixture
async def run_job(sis_settings: Settings) -> AsyncIterator[JobRunner]:
    runner = JobRunner(sis_settings)
    yield runner
    await runner.db.close()


@pytest.fixture
async def sis_conn(sis_database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(sis_database)
    yield conn
    await conn.close()


@pytest.fixture
async def school(sis_conn: asyncpg.Connection, sis_today) -> Any:
    """Targeted rows next to the demo school, with group ``TESTG`` of one staff member, ``school.staff``."""
    from .school import School

    s = School(sis_conn, sis_today)
    s.staff = await s.person("Grace", status="staff")  # type: ignore[attr-defined]
    await s.group("TESTG", s.staff)  # type: ignore[attr-defined]
    return s


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Twilio stand-in, its account SID and auth token in the secrets the jobs name by default."""
    with TwilioStandIn() as standin:
        monkeypatch.setenv("BELLTOWER_SECRET_TWILIO_ACCOUNT_SID", standin.account_sid)
        monkeypatch.setenv("BELLTOWER_SECRET_TWILIO_AUTH_TOKEN", standin.auth_token)
        yield standin


def closed_hours() -> dict[str, str]:
    """Quiet hours (the Communication Queue's parameters) that hold calls and texts now."""
    now = datetime.now(UTC)
    return {"do_not_send_before": f"{now + timedelta(hours=1):%H:%M}",
            "do_not_send_after": f"{now + timedelta(hours=2):%H:%M}"}  # fmt: skip


def mails_to(sink: MailSink, address: str | None) -> list[Any]:
    """Messages the sink received for ``address``."""
    return [m for m in sink.messages if address in m.envelope_to]


def text_of(message: Any) -> str:
    return message.get_body(("plain",)).get_content()

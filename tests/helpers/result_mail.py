"""Result-mail test helpers: a finished run event, a history service with mail settings, waits."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from belltower.events import ResultMail, RunFinished, RunFinishedData, run_id_for
from belltower.subjects import run_finished_subject
from belltower_history.app import HistoryService

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)


def finished(
    mail: ResultMail | None,
    status: str = "succeeded",
    trigger: str = "schedule",
    requested_by: str | None = None,
    summary: str = "3 files exported",
) -> RunFinished:
    occ, job = str(uuid.uuid4()), str(uuid.uuid4())
    return RunFinished(
        id=run_id_for(occ), source="test", subject=job, time=T0,
        data=RunFinishedData(
            run_id=run_id_for(occ), occurrence_id=occ, job_id=job, job_type="files.name_csv_export",
            job_title="Name CSV Export", pool="integration", status=status, priority=500, trigger=trigger,
            requested_by=requested_by, scheduled_for=T0, dispatched_at=T0, started_at=T0,
            finished_at=T0 + timedelta(seconds=83), duration_ms=83_400, summary=summary,
            output_text="line 1\nline 2\n" + summary + "\n", error=None if status == "succeeded" else "SFTP refused",
            result_mail=mail,
        ),
    )  # fmt: skip


async def publish(nc, event: RunFinished) -> None:
    await nc.jetstream().publish(
        run_finished_subject(event.data.status, event.data.job_type),
        msgspec.json.encode(event),
        headers={"Nats-Msg-Id": event.id},
    )


async def history_with(settings, mail_settings: dict) -> HistoryService:
    service = HistoryService(settings.model_copy(update=mail_settings), batch_size=50)
    await service.on_startup()
    assert service.outbox is not None
    service.outbox.backoff_s = 0.2  # retry within the test's patience, not the production 5 s
    service.outbox.poll_s = 0.2
    await service.broker.start()
    await service.start_consuming()
    return service


async def wait_for(pool, sql: str, expected, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (value := await pool.fetchval(sql)) != expected:
        assert time.monotonic() < deadline, f"{sql} stayed {value!r}, expected {expected!r}"
        await asyncio.sleep(0.05)

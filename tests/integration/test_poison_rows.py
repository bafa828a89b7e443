"""A bad row never stops a background loop: it is marked failed with its reason and the loop goes
on, over real JetStream, PostgreSQL and SMTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from belltower.events import ResultMail, run_id_for
from belltower_integration.jobs import communication_queue
from tests.catalog.integrations_support import Env, open_env
from tests.helpers.result_mail import finished, history_with, publish, wait_for


@pytest.fixture
async def history(settings, mail_sink) -> AsyncIterator:
    service = await history_with(
        settings, {"smtp_host": mail_sink.host, "smtp_port": mail_sink.port}
    )
    yield service
    await service.on_shutdown()
    await service.broker.stop()


async def test_a_job_title_with_a_line_break_neither_injects_a_header_nor_kills_the_outbox(
    history, nc, pool, mail_sink
) -> None:
    poisoned = finished(ResultMail(to=("registrar@school.edu",), on="always"))
    poisoned.data.job_title = "Nightly\r\nBcc: everyone@example.org"
    await publish(nc, poisoned)
    received = await mail_sink.wait_for(timeout=10)
    assert received["Subject"] == "[Belltower] Succeeded: Nightly  Bcc: everyone@example.org"
    assert received["Bcc"] is None
    assert received.envelope_to == ["registrar@school.edu"]


async def test_an_outbox_row_that_cannot_be_sent_is_failed_and_the_next_still_goes(
    history, nc, pool, mail_sink
) -> None:
    # A row written before subjects were made one line: it sorts first, and used to raise out
    # of the loop on every start.
    occ = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO history.runs (occurrence_id, run_id, job_id, job_type, job_title, pool, "
        "status, trigger, scheduled_for, dispatched_at, priority) VALUES ($1::uuid, $2::uuid, "
        "$3::uuid, "
        "'files.name_csv_export', 'x', 'integration', 'succeeded', 'schedule', now(), now(), 500)",
        occ,
        run_id_for(occ),
        str(uuid.uuid4()),
    )
    await pool.execute(
        "INSERT INTO history.mail_outbox (occurrence_id, run_id, recipients, subject, body_text, "
        "body_html, next_attempt_at) VALUES ($1::uuid, $2::uuid, $3, $4, 'text', '<p>html</p>', $5)",
        occ,
        run_id_for(occ),
        ["registrar@school.edu"],
        "[Belltower] Succeeded: Nightly\r\nBcc: everyone@example.org",
        datetime.now(UTC) - timedelta(days=1),
    )
    history.outbox.wake.set()
    await wait_for(
        pool, f"SELECT state FROM history.mail_outbox WHERE occurrence_id = '{occ}'", "failed"
    )
    reason = await pool.fetchval(
        "SELECT last_error FROM history.mail_outbox WHERE occurrence_id = $1::uuid", occ
    )
    assert reason.startswith("cannot be sent:") and "linefeed" in reason

    good = finished(ResultMail(to=("it@school.edu",), on="always"))
    await publish(nc, good)
    received = await mail_sink.wait_for(timeout=10)
    assert received.envelope_to == ["it@school.edu"]
    await wait_for(pool, "SELECT count(*) FROM history.mail_outbox WHERE state = 'sent'", 1)
    assert len(mail_sink.messages) == 1


@pytest.fixture
async def env(sis_database: str, tmp_batch_folder: Path, mail_sink) -> AsyncIterator[Env]:
    e = await open_env(sis_database, tmp_batch_folder, mail_sink.port)
    yield e
    await e.db.close()


async def test_a_queued_message_that_cannot_be_sent_fails_alone(env: Env, mail_sink) -> None:
    earlier = datetime.now(UTC) - timedelta(minutes=10)
    for to, subject, when in (
        ("ada@example.net", "Report cards\r\nBcc: everyone@example.org", earlier),
        ("alan@example.net", "Bus change", earlier + timedelta(minutes=1)),
    ):
        await env.execute(
            "INSERT INTO sis.communication_queue (channel, to_address, subject, body_text, send_after) "
            "VALUES ('email', $1, $2, 'Hello from school', $3)",
            to, subject, when,
        )  # fmt: skip
    ran = await env.run(communication_queue.job_type, {"time_zone": "UTC"})
    assert ran.output.summary.startswith("1 e-mails sent") and "1 failed" in ran.output.summary
    received = await mail_sink.wait_for(lambda m: m["Subject"] == "Bus change", timeout=10)
    assert received.envelope_to == ["alan@example.net"]
    rows = await env.fetch(
        "SELECT to_address, state, last_error FROM sis.communication_queue ORDER BY to_address"
    )
    poison, sent = rows
    assert poison["state"] == "failed" and "cannot be sent" in poison["last_error"]
    assert sent["state"] == "sent"
    again = await env.run(communication_queue.job_type, {"time_zone": "UTC"})
    assert again.output.summary.startswith("0 e-mails sent")
    assert len(mail_sink.messages) == 1

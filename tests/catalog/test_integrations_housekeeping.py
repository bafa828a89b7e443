"""Housekeeping against the demo school: temp table log, seat counts, old files, the message queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from belltower_integration.jobs import communication_queue, housekeeping
from tests.catalog.integrations_support import Env, open_env


@pytest.fixture
async def env(sis_database: str, tmp_batch_folder: Path, mail_sink) -> AsyncIterator[Env]:
    e = await open_env(sis_database, tmp_batch_folder, mail_sink.port)
    yield e
    await e.db.close()


async def test_temp_table_cleanup_empties_the_log_in_batches(env: Env) -> None:
    await env.execute(
        "INSERT INTO sis.temp_table_log (process, table_name, action, logged_at) "
        "SELECT 'grades', 'tmp_' || i, 'created', now() - (i || ' hours')::interval FROM generate_series(1, 450) i"
    )
    kept = await env.run(
        housekeeping.temp_table_cleanup_type, {"keep_hours": 48, "batch_size": 100}
    )
    assert kept.output.summary == "deleted 403 temp table log entries, 47 kept"
    assert [p[:2] for p in kept.progress] == [(100, 403), (200, 403), (300, 403), (400, 403)]
    emptied = await env.run(housekeeping.temp_table_cleanup_type)
    assert emptied.output.summary == "deleted 47 temp table log entries, 0 kept"
    assert await env.fetchval("SELECT count(*) FROM sis.temp_table_log") == 0


async def test_reconcile_seats_reports_and_fixes_drift(env: Env) -> None:
    drifted = await env.fetch(
        """UPDATE sis.sections SET enrolled = enrolled + 3 WHERE id IN (
               SELECT s.id FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id
                WHERE t.ends_on >= current_date ORDER BY s.id LIMIT 3)
           RETURNING id, enrolled - 3 AS actual"""
    )
    checked = await env.fetchval(
        "SELECT count(*) FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id WHERE t.ends_on >= current_date"
    )
    dry = await env.run(housekeeping.reconcile_seats_type, {"dry_run": True})
    assert dry.output.summary == f"{checked} sections checked, 3 drifted (dry run: not fixed)"
    assert "enrollments say" in dry.text
    fixed = await env.run(housekeeping.reconcile_seats_type)
    assert fixed.output.summary == f"{checked} sections checked, 3 seat counts fixed"
    for row in drifted:
        assert (
            await env.fetchval("SELECT enrolled FROM sis.sections WHERE id = $1", row["id"])
            == row["actual"]
        )
    again = await env.run(housekeeping.reconcile_seats_type)
    assert again.output.summary == f"{checked} sections checked, 0 seat counts fixed"


async def test_purge_old_files_respects_category_age_and_document_hold(
    env: Env, tmp_batch_folder: Path
) -> None:
    students = [
        r["id"]
        for r in await env.fetch(
            "SELECT id FROM sis.people WHERE status = 'student' ORDER BY id LIMIT 3"
        )
    ]
    docs = tmp_batch_folder / "documents"
    docs.mkdir()
    old = datetime.now(UTC) - timedelta(days=800)
    layout = [  # (file, person, category, uploaded)
        ("old-b.pdf", students[0], "B", old),
        ("held-b.pdf", students[1], "B", old),
        ("new-b.pdf", students[2], "B", datetime.now(UTC)),
        ("old-a.pdf", students[2], "A", old),
    ]
    for name, person, category, uploaded in layout:
        (docs / name).write_bytes(b"%PDF")
        await env.execute(
            "INSERT INTO sis.documents (person_id, category, file_path, uploaded_at) VALUES ($1, $2, $3, $4)",
            person, category, f"documents/{name}", uploaded,
        )  # fmt: skip
    await env.execute("INSERT INTO sis.document_holds (person_id) VALUES ($1)", students[1])
    run = await env.run(housekeeping.purge_old_files_type, {"retention_days": 730})
    assert run.output.summary == "purged 1 files, 1 kept on document hold, 0 failed"
    assert sorted(p.name for p in docs.iterdir()) == ["held-b.pdf", "new-b.pdf", "old-a.pdf"]
    assert await env.fetchval("SELECT count(*) FROM sis.documents") == 3
    again = await env.run(housekeeping.purge_old_files_type, {"retention_days": 730})
    assert again.output.summary == "purged 0 files, 1 kept on document hold, 0 failed"


async def test_communication_queue_sends_due_mail_and_holds_sms_in_quiet_hours(
    env: Env, mail_sink
) -> None:
    now = datetime.now(UTC)
    queue = [
        ("email", "ada@example.net", "Report cards", now - timedelta(minutes=5)),
        ("email", "alan@example.net", "Bus change", now),
        ("email", "later@example.net", "Tomorrow", now + timedelta(days=1)),
        ("sms", "555-201-0001", "", now - timedelta(minutes=1)),
        ("voice", "555-201-0002", "", now - timedelta(minutes=1)),
    ]
    for channel, to, subject, when in queue:
        await env.execute(
            "INSERT INTO sis.communication_queue (channel, to_address, subject, body_text, send_after) "
            "VALUES ($1, $2, $3, 'Hello from school', $4)",
            channel, to, subject, when,
        )  # fmt: skip
    quiet = {"time_zone": "UTC", "do_not_send_before": f"{(now + timedelta(hours=1)):%H:%M}",
             "do_not_send_after": f"{(now + timedelta(hours=2)):%H:%M}"}  # fmt: skip
    first = await env.run(communication_queue.job_type, quiet)
    assert first.output.summary == (
        "2 e-mails sent, 0 texts sent, 0 calls placed, 0 calls/SMS recorded to the outbox (no provider), 2 held for quiet hours, 0 failed"
    )
    await mail_sink.wait_for(lambda m: m["Subject"] == "Bus change", timeout=10)
    assert sorted(m["Subject"] for m in mail_sink.messages) == ["Bus change", "Report cards"]
    assert await env.fetchval("SELECT count(*) FROM sis.outbox") == 0

    open_hours = {"time_zone": "UTC", "do_not_send_before": "00:00", "do_not_send_after": "23:59"}
    second = await env.run(communication_queue.job_type, open_hours)
    assert second.output.summary.startswith(
        "0 e-mails sent, 0 texts sent, 0 calls placed, 2 calls/SMS recorded to the outbox (no provider)"
    )
    assert "have not reached any phone" in second.text
    outbox = await env.fetch(
        "SELECT channel, to_address, provider FROM sis.outbox ORDER BY channel"
    )
    assert [tuple(r.values()) for r in outbox] == [
        ("sms", "555-201-0001", "outbox"),
        ("voice", "555-201-0002", "outbox"),
    ]
    third = await env.run(communication_queue.job_type, open_hours)
    assert third.output.summary.startswith(
        "0 e-mails sent, 0 texts sent, 0 calls placed, 0 calls/SMS"
    )
    assert len(mail_sink.messages) == 2
    assert (
        await env.fetchval("SELECT count(*) FROM sis.communication_queue WHERE state = 'queued'")
        == 1
    )


def test_quiet_hours_window_may_cross_midnight() -> None:
    from datetime import time

    assert communication_queue.allowed(time(9), time(8), time(20))
    assert not communication_queue.allowed(time(21), time(8), time(20))
    assert communication_queue.allowed(time(23), time(22), time(6))
    assert not communication_queue.allowed(time(12), time(22), time(6))


async def test_communication_queue_keeps_mail_queued_while_smtp_is_down(
    sis_database: str, tmp_batch_folder: Path
) -> None:
    from belltower_dev.localservers import free_port

    env = await open_env(sis_database, tmp_batch_folder, free_port("127.0.0.1"))
    try:
        await env.execute(
            "INSERT INTO sis.communication_queue (channel, to_address, subject, body_text) "
            "VALUES ('email', 'ada@example.net', 'Report cards', 'Hello')"
        )
        first = await env.run(communication_queue.job_type, {"max_attempts": 2})
        assert first.output.summary.endswith("0 held for quiet hours, 1 failed")
        assert "cannot send mail through" in first.text and "retried next run" in first.text
        row = await env.fetchrow("SELECT state, attempts, last_error FROM sis.communication_queue")
        assert (row["state"], row["attempts"]) == ("queued", 1) and "BELLTOWER_SMTP_PORT" in row[
            "last_error"
        ]
        second = await env.run(communication_queue.job_type, {"max_attempts": 2})
        assert "giving up" in second.text
        assert await env.fetchval("SELECT state FROM sis.communication_queue") == "failed"
    finally:
        await env.db.close()


async def test_purge_old_files_by_withdrawal_date(env: Env, tmp_batch_folder: Path) -> None:
    gone, staying = [r["id"] for r in await env.fetch(
        "SELECT p.id FROM sis.people p WHERE p.status = 'student' AND EXISTS "
        "(SELECT 1 FROM sis.enrollments e WHERE e.person_id = p.id AND e.status = 'enrolled') ORDER BY p.id LIMIT 2"
    )]  # fmt: skip
    await env.execute(
        "UPDATE sis.enrollments SET status = 'withdrawn', withdrawn_on = current_date - 1000 WHERE person_id = $1",
        gone,
    )
    await env.execute(  # withdrew long ago from one course but still enrolled in others: kept
        "UPDATE sis.enrollments SET status = 'withdrawn', withdrawn_on = current_date - 1000 WHERE id = "
        "(SELECT min(id) FROM sis.enrollments WHERE person_id = $1)", staying,
    )  # fmt: skip
    (tmp_batch_folder / "documents").mkdir()
    for person, name in ((gone, "gone.pdf"), (staying, "staying.pdf")):
        (tmp_batch_folder / "documents" / name).write_bytes(b"%PDF")
        await env.execute(
            "INSERT INTO sis.documents (person_id, category, file_path) VALUES ($1, 'B', $2)",
            person, f"documents/{name}",
        )  # fmt: skip
    run = await env.run(
        housekeeping.purge_old_files_type, {"retention_days": 730, "retain_by": "withdraw_date"}
    )
    assert run.output.summary == "purged 1 files, 0 kept on document hold, 0 failed"
    assert [p.name for p in (tmp_batch_folder / "documents").iterdir()] == ["staying.pdf"]

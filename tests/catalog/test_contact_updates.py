"""Communication Status Update(s) against the demo SIS and the SMTP sink: unreachable numbers
publish the re-enrollment form once, completed forms are e-mailed to the group once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.catalog.conftest import mails_to, text_of

pytestmark = pytest.mark.slow


async def _sent(conn: Any, person: int, guardian: int | None, number: str, status: str | None,
                *, state: str = "sent", error: int | None = None) -> None:  # fmt: skip
    queue = await conn.fetchval(
        """INSERT INTO sis.communication_queue (channel, person_id, guardian_id, to_address, body_text, state)
           VALUES ('voice', $1, $2, $3, 'School closed tomorrow', $4) RETURNING id""",
        person, guardian, number, state,
    )  # fmt: skip
    if status is not None:
        await conn.execute(
            """INSERT INTO sis.outbox (queue_id, channel, to_address, body_text, provider, provider_sid,
                                       status, error_code, status_at)
               VALUES ($1, 'voice', $2, 'x', 'twilio', $3, $4, $5, now())""",
            queue, number, f"CA{queue:032d}", status, error,
        )  # fmt: skip


async def test_unreachable_recipients_get_the_form_and_completed_forms_are_mailed_once(
    run_job, school, sis_conn, mail_sink
) -> None:
    conn = sis_conn
    forms = {}
    for code, title in (
        ("CO_STU", "Call Out Student Re-enrollment"),
        ("CO_PAR", "Call Out Parent Re-enrollment"),
    ):
        forms[code] = await conn.fetchval(
            "INSERT INTO sis.forms (code, title) VALUES ($1, $2) RETURNING id", code, title
        )
    await conn.execute(
        """INSERT INTO sis.school_preferences (key, value) VALUES
           ('callout_student_reenrollment_form', 'CO_STU'), ('callout_parent_reenrollment_form', 'CO_PAR')"""
    )
    ann, bob = await school.person("Ann"), await school.person("Bob")
    guardian = await conn.fetchval(
        "INSERT INTO sis.guardians (sis_id, first_name, last_name, phone) VALUES ('GT1', 'Gia', 'Parent', '+13125550102') RETURNING id"
    )
    await _sent(conn, ann["id"], None, "+13125550101", "undelivered", error=30003)
    await _sent(conn, ann["id"], None, "+13125550101", "no-answer")
    await _sent(conn, ann["id"], guardian, "+13125550102", "failed")
    await _sent(conn, bob["id"], None, "+13125550103", "delivered")  # reached: nothing
    await _sent(
        conn, bob["id"], None, "+13125550104", "undelivered", error=21610
    )  # STOP: reachable
    await _sent(conn, bob["id"], None, "+13125550105", None, state="failed")  # refused for good
    params = {"group": "TESTG"}

    dry = await run_job("messaging.communication_status_update", {**params, "dry_run": True})
    assert dry.status == "succeeded", dry.error
    assert dry.summary.startswith("3 forms would be published"), dry.summary
    assert await conn.fetchval("SELECT count(*) FROM sis.contact_update_requests") == 0

    ran = await run_job("messaging.communication_status_update", params)
    assert ran.summary.startswith("3 forms published, 0 completed, 0 e-mailed"), ran.summary
    rows = await conn.fetch(
        "SELECT person_id, guardian_id, form_id, unreachable, failures FROM sis.contact_update_requests ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        (ann["id"], None, forms["CO_STU"], "+13125550101", 2),
        (ann["id"], guardian, forms["CO_PAR"], "+13125550102", 1),
        (bob["id"], None, forms["CO_STU"], "+13125550105", 1),
    ]
    again = await run_job("messaging.communication_status_update", params)
    assert again.summary.startswith("0 forms published, 0 completed, 0 e-mailed"), again.summary

    # The guardian completes the parent form; a submission from before publishing does not count.
    long_ago = datetime.now(UTC) - timedelta(days=90)
    await conn.execute(
        "INSERT INTO sis.form_submissions (form_id, person_id, submitted_at) VALUES ($1, $2, $3)",
        forms["CO_STU"], ann["id"], long_ago,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO sis.form_submissions (form_id, person_id, guardian_id, answers) VALUES ($1, $2, $3, $4)",
        forms["CO_PAR"], ann["id"], guardian, json.dumps({"cell phone": "+13125550199"}),
    )  # fmt: skip
    done = await run_job("messaging.communication_status_update", params)
    assert done.summary.startswith("0 forms published, 1 completed, 1 e-mailed"), done.summary
    (mail,) = mails_to(mail_sink, school.staff["email"])
    body = text_of(mail)
    assert "Gia Parent (GT1), parent of Ann Tester" in body and "cell phone: +13125550199" in body
    assert "unreachable at +13125550102: 1 unsuccessful message(s)" in body and "(failed)" in body
    redelivered = await run_job("messaging.communication_status_update", params)
    assert redelivered.summary.startswith("0 forms published, 0 completed, 0 e-mailed")
    assert len(mails_to(mail_sink, school.staff["email"])) == 1


async def test_a_form_must_be_chosen(run_job, school) -> None:
    ran = await run_job("messaging.communication_status_update", {"group": "TESTG"})
    assert ran.status == "failed" and "no re-enrollment form chosen" in (ran.error or "")

"""Guardians told by e-mail and text: the notifiers' guardian recipients, the jobs that queue
messages for families, and the Communication Queue sending texts through Twilio (a stand-in
built to its contract) with opt-outs, rate limits, quiet hours and no text sent twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from belltower_dev.standins.twilio import TwilioStandIn
from tests.catalog.conftest import closed_hours, mails_to, text_of

OPEN = {"time_zone": "UTC", "do_not_send_before": "00:00", "do_not_send_after": "23:59"}


async def guardian(
    school: Any, student: dict[str, Any], name: str, *, phone: str = "", relationship: str = "parent",
    primary: bool = False, sms_ok: bool = True, allowed: bool = True,
) -> dict[str, Any]:  # fmt: skip
    email = f"{name.lower()}@family.example"
    gid = await school.conn.fetchval(
        """INSERT INTO sis.guardians (sis_id, first_name, last_name, email, phone, sms_ok)
           VALUES ($1, $2, 'Family', $3, $4, $5) RETURNING id""",
        f"GT-{name}", name, email, phone or None, sms_ok,
    )  # fmt: skip
    await school.conn.execute(
        """INSERT INTO sis.student_guardians (student_id, guardian_id, relationship, is_primary, contact_allowed)
           VALUES ($1, $2, $3, $4, $5)""",
        student["id"], gid, relationship, primary, allowed,
    )  # fmt: skip
    return {"id": gid, "email": email, "phone": phone}


async def family(school: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A student with five guardians: two parents who may be texted (Dad's number stored without
    '+'), a relative, a parent the school may not contact, and a legal guardian who gave no SMS
    consent."""
    kid = await school.person("Kid")
    g = {
        "mum": await guardian(school, kid, "Mum", phone="+15550100001", primary=True),
        "dad": await guardian(school, kid, "Dad", phone="(555) 010-0002"),
        "aunt": await guardian(school, kid, "Aunt", phone="+15550100003", relationship="relative"),
        "barred": await guardian(school, kid, "Barred", phone="+15550100004", allowed=False),
        "legal": await guardian(school, kid, "Legal", phone="+15550100005", relationship="guardian", sms_ok=False),
    }  # fmt: skip
    return kid, g


def via(twilio: TwilioStandIn, **hours: str) -> dict[str, Any]:
    return {**OPEN, **hours, "sms_provider": "twilio", "twilio_base_url": twilio.url,
            "sms_from": "+15005550006", "default_country_code": "1"}  # fmt: skip


async def test_notifier_emails_the_guardians_it_may_contact(run_job, school, mail_sink) -> None:
    kid, g = await family(school)
    section = await school.section()
    await school.enroll(kid, section)
    for day in (-4, -3, -2):
        await school.mark(section, kid, day, "absent")
    params = {"group": "TESTG", "divisions": ["TST"], "threshold": 3, "notify_guardians": True}
    ran = await run_job("notifier.attendance", params)
    assert ran.status == "succeeded", ran.text
    assert ran.summary.startswith(
        "1 row processed, 4 recipients notified (4 e-mails"
    )  # + the group
    for who in ("mum", "dad", "legal"):  # parents and legal guardians, by default
        (mail,) = mails_to(mail_sink, g[who]["email"])
        assert kid["sis_id"] in text_of(mail) and "Dear" in text_of(mail)
    for who in ("aunt", "barred"):  # a relative; a parent the school may not contact
        assert mails_to(mail_sink, g[who]["email"]) == []
    again = await run_job("notifier.attendance", {**params, "guardian_relationships": ["relative"]})
    assert again.summary.startswith("1 row processed, 2 recipients notified")
    assert len(mails_to(mail_sink, g["aunt"]["email"])) == 1
    assert mails_to(mail_sink, g["barred"]["email"]) == []


async def test_attendance_sms_goes_out_through_twilio_once_honouring_stop_429_and_quiet_hours(
    run_job, school, twilio: TwilioStandIn
) -> None:
    kid, _ = await family(school)
    twilio.stopped.add("+15550100002")  # Dad replied STOP at Twilio
    section = await school.section()
    await school.mark(section, kid, 900, "absent")  # a day the demo school has no attendance on
    day = school.days(900).isoformat()
    queued = await run_job("messaging.attendance_sms", {"day": day})
    assert queued.status == "succeeded", queued.text
    assert (
        queued.summary
        == f"1 students marked absent on {day}: 2 texts queued for guardians, 0 guardians or students skipped"
    )
    assert (await run_job("messaging.attendance_sms", {"day": day})).summary.startswith(
        f"1 students marked absent on {day}: 0 texts queued"
    )

    held = await run_job("messaging.communication_queue", via(twilio, **closed_hours()))
    assert "0 texts sent" in held.summary and "2 held for quiet hours" in held.summary
    assert twilio.requests == []

    twilio.throttle_first = 1  # Twilio's rate limit, with Retry-After: 1
    sent = await run_job("messaging.communication_queue", via(twilio))
    assert sent.status == "succeeded", sent.text
    assert "1 texts sent" in sent.summary and "1 failed" in sent.summary
    assert [s for _, _, s in twilio.requests][:2] == [429, 201]
    (text,) = twilio.sent_to("+15550100001")
    assert "Kid Tester was marked absent" in text.body and text.sender == "+15005550006"
    assert twilio.sent_to("+15550100002") == []
    assert "opted out of texts (Twilio 21610)" in sent.text
    outbox = await school.conn.fetchrow(
        "SELECT provider, provider_sid, status, to_address FROM sis.outbox"
    )
    assert dict(outbox) == {
        "provider": "twilio",
        "provider_sid": text.sid,
        "status": "queued",
        "to_address": "+15550100001",
    }
    assert await school.conn.fetchval("SELECT phone FROM sis.sms_opt_outs") == "+15550100002"

    posts = sum(1 for m, _, _ in twilio.requests if m == "POST")
    rerun = await run_job("messaging.communication_queue", via(twilio))
    assert (
        "0 texts sent" in rerun.summary and "delivery status of earlier texts: 1 sent" in rerun.text
    )
    assert sum(1 for m, _, _ in twilio.requests if m == "POST") == posts
    assert await school.conn.fetchval("SELECT status FROM sis.outbox") == "sent"

    await school.conn.execute(
        "INSERT INTO sis.communication_queue (channel, to_address, body_text) VALUES ('sms', '+1 555 010 0002', 'Again')"
    )
    later = await run_job("messaging.communication_queue", via(twilio))
    assert "opted out of texts (replied STOP): not sent" in later.text
    assert sum(1 for m, _, _ in twilio.requests if m == "POST") == posts
    assert await school.conn.fetchval("SELECT status FROM sis.outbox") == "delivered"


async def test_families_are_emailed_notifications_and_unread_sss_alerts(
    run_job, school, mail_sink
) -> None:
    kid, g = await family(school)
    await school.conn.execute(
        """INSERT INTO sis.student_notifications (student_id, category, subject, body_text)
           VALUES ($1, 'grades', 'Grade posted', 'A new grade was posted.'),
                  ($1, 'events', 'Field day', 'Field day is on Friday.')""",
        kid["id"],
    )
    await school.conn.execute(
        """INSERT INTO sis.sss_alerts (student_id, title, body_text, created_at)
           VALUES ($1, 'Support plan', 'Please review the plan.', now() - interval '25 hours'),
                  ($1, 'Fresh', 'Not a day old.', now() - interval '2 hours')""",
        kid["id"],
    )
    grades = {"categories": ["grades"]}
    notes = await run_job("messaging.email_notifications", grades)
    assert (
        notes.summary == "1 notifications: 4 e-mails queued, 0 with nobody to e-mail"
    )  # kid, mum, dad, legal
    alerts = await run_job("messaging.sss_parent_notifications")
    assert alerts.summary.startswith(
        "1 alerts unread for 24 h: 1 e-mails queued to parents"
    )  # mum, primary
    assert (await run_job("messaging.email_notifications", grades)).summary.startswith(
        "0 notifications: 0"
    )
    assert (await run_job("messaging.sss_parent_notifications")).summary.startswith("0 alerts")
    sent = await run_job("messaging.communication_queue", OPEN)
    assert sent.summary.startswith("5 e-mails sent"), sent.text
    await mail_sink.wait_for(lambda m: m["Subject"].startswith("Unread alert"), timeout=10)
    assert sorted(m["Subject"] for m in mails_to(mail_sink, g["mum"]["email"])) == [
        "Grade posted", "Unread alert in the parent portal: Support plan",
    ]  # fmt: skip
    assert [m["Subject"] for m in mails_to(mail_sink, g["dad"]["email"])] == ["Grade posted"]
    assert [m["Subject"] for m in mails_to(mail_sink, kid["email"])] == ["Grade posted"]
    assert (
        mails_to(mail_sink, g["barred"]["email"]) == mails_to(mail_sink, g["aunt"]["email"]) == []
    )


async def test_automated_emails_come_due_by_cron_once(run_job, school) -> None:
    _, g = await family(school)
    await school.conn.execute(
        """INSERT INTO sis.automated_messages (code, subject, body_text, cron, statuses, to_guardians, next_send_at)
           VALUES ('WEEKLY', 'Weekly news', 'Hello {{ first_name }}', '0 7 * * 1', '{student}', true, now() - interval '1 minute'),
                  ('BROKEN', 'Oops', '{{ first_name', '0 7 * * 1', '{student}', false, now() - interval '1 minute')"""
    )
    ran = await run_job("messaging.automated_emails", {"mark_failed_when_errors": True})
    assert ran.status == "failed" and "1 automated messages had errors" in (ran.error or "")
    queued = await school.conn.fetchval(
        "SELECT count(*) FROM sis.communication_queue WHERE source_key LIKE 'automated:%' AND guardian_id IS NOT NULL"
    )
    assert queued >= 2  # mum and dad, besides the demo school's families
    assert (
        await school.conn.fetchval(
            "SELECT body_text FROM sis.communication_queue WHERE to_address = $1", g["mum"]["email"]
        )
        == "Hello Kid\n"
    )
    nxt = await school.conn.fetchval(
        "SELECT next_send_at FROM sis.automated_messages WHERE code = 'WEEKLY'"
    )
    assert nxt > datetime.now(UTC)
    total = await school.conn.fetchval("SELECT count(*) FROM sis.communication_queue")
    again = await run_job("messaging.automated_emails", {"messages": ["weekly"]})
    assert (
        again.status == "succeeded"
        and await school.conn.fetchval("SELECT count(*) FROM sis.communication_queue") == total
    )


async def test_twilio_outage_is_retried_and_bad_credentials_fail_the_run_with_nothing_marked(
    run_job, school, twilio: TwilioStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    await school.conn.execute(
        "INSERT INTO sis.communication_queue (channel, to_address, body_text) VALUES ('sms', '+15550100009', 'Bus late')"
    )
    monkeypatch.setenv("BELLTOWER_SECRET_TWILIO_AUTH_TOKEN", "wrong")
    refused = await run_job("messaging.communication_queue", via(twilio))
    assert refused.status == "failed" and "twilio_auth_token_secret" in (refused.error or "")
    row = await school.conn.fetchrow("SELECT state, attempts FROM sis.communication_queue")
    assert dict(row) == {"state": "queued", "attempts": 0} and twilio.messages == {}

    monkeypatch.setenv("BELLTOWER_SECRET_TWILIO_AUTH_TOKEN", twilio.auth_token)
    twilio.fail_first = 1  # a 500 from Twilio, then it answers
    sent = await run_job("messaging.communication_queue", via(twilio))
    assert "1 texts sent" in sent.summary, sent.text
    assert [s for m, _, s in twilio.requests if m == "POST"] == [401, 500, 201]
    assert len(twilio.sent_to("+15550100009")) == 1

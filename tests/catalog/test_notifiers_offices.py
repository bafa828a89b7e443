"""The offices' notifiers (migration 0056) against the demo SIS plus targeted rows: who is
selected, one message to the group at a real SMTP server, since-last-run windows, and the
acting notifiers' redelivery (the change made once, the report made again)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from belltower.errors import InvalidInput
from belltower_notifier.jobs import registry

from .conftest import mails_to, text_of

pytestmark = pytest.mark.slow

ONLY_TST = {"group": "TESTG", "divisions": ["TST"]}
NOW = datetime.now(UTC)
HOUR_AGO = NOW - timedelta(hours=1)
LONG_AGO = NOW - timedelta(days=5)  # before the first run's one-day look-back

NEW_TYPES = {
    "notifier.immunization_expiration_by_status": "Notifier: Immunization Expiration by Status",
    "notifier.course_audit": "Notifier: Course Audit Notification",
    "notifier.address_check": "Notifier: Address Check",
    "notifier.application_checklist": "Notifier: Application Checklist",
    "notifier.activities": "Notifier: Activities",
    "notifier.dms_notifications": "Notifier: DMS Notifications",
    "notifier.forms_submitted": "Notifier: Form Builder Forms Submitted",
    "notifier.pin_password_expiration": "PIN/Password Expiration",
    "notifier.loan_disbursement": "Notifier: Loan Disbursement",
    "notifier.alumni_employment": "Notifier: Alumni Employment",
    "notifier.timed_email_prospects": "Notifier: Timed Email Prospects",
    "notifier.financial_aid_verification": "Notifier: Financial Aid Verification",
    "notifier.purge_saved_isirs": "Purge Saved ISIRs",
    "notifier.nmtrack_delete": "Notifier: NMTRACK Delete Task",
    "notifier.prospect_import": "Notifier: Prospect Import Notifier",
}


def test_registered_with_the_seed_titles_and_bounded_parameters() -> None:
    for name, title in NEW_TYPES.items():
        kind = registry.get(name)
        assert kind is not None and kind.info().title == title, name
    activities = registry.get("notifier.activities")
    assert activities is not None
    for bad in (
        {},
        {"activity_types": []},
        {"activity_types": ["CALL"], "first_run_look_back_days": 0},
    ):
        with pytest.raises(InvalidInput):
            activities.decode_params(bad)
    pins = registry.get("notifier.pin_password_expiration")
    assert pins is not None
    with pytest.raises(InvalidInput, match="password_days"):
        pins.decode_params({"password_days": 99999})


def told(sink: Any, school: Any) -> str:
    mails = mails_to(sink, school.staff["email"])
    assert len(mails) == 1, [m["Subject"] for m in mails]
    return text_of(mails[0])


Setup = Callable[[Any, Any, dict[str, Any]], Awaitable[None]]


async def _audit(conn: Any, school: Any, p: dict[str, Any]) -> None:
    section = await school.section()
    for hit in (p["hit"], p["elsewhere"]):
        await school.enroll(hit, section, "audit", registered_at=HOUR_AGO)
    await school.enroll(p["old"], section, "audit", registered_at=LONG_AGO)
    await school.enroll(p["other"], section, "enrolled", registered_at=HOUR_AGO)


async def _checklist(conn: Any, school: Any, p: dict[str, Any]) -> None:
    await conn.executemany(
        "INSERT INTO sis.application_checklist_items (person_id, item, received_at) VALUES ($1, $2, $3)",
        [(p["hit"]["id"], "Transcript", HOUR_AGO), (p["hit"]["id"], "Essay", None),
         (p["elsewhere"]["id"], "Transcript", HOUR_AGO),
         (p["old"]["id"], "Transcript", LONG_AGO), (p["other"]["id"], "Transcript", None)],
    )  # fmt: skip


async def _activities(conn: Any, school: Any, p: dict[str, Any]) -> None:
    await conn.executemany(
        "INSERT INTO sis.activities (person_id, activity_type, occurred_on, added_at) VALUES ($1, $2, $3, $4)",
        [(p["hit"]["id"], "TOUR", school.today, HOUR_AGO), (p["old"]["id"], "TOUR", school.today, LONG_AGO),
         (p["elsewhere"]["id"], "TOUR", school.today, HOUR_AGO),
         (p["other"]["id"], "CALL", school.today, HOUR_AGO)],
    )  # fmt: skip


async def _documents(conn: Any, school: Any, p: dict[str, Any]) -> None:
    await conn.executemany(
        """INSERT INTO sis.documents (person_id, category, file_path, dms_category, uploaded_at)
           VALUES ($1, 'A', $2, $3, $4)""",
        [(p["hit"]["id"], "dms/hit-transcript.pdf", "Transcripts", HOUR_AGO),
         (p["elsewhere"]["id"], "dms/elsewhere-transcript.pdf", "Transcripts", HOUR_AGO),
         (p["old"]["id"], "dms/old-transcript.pdf", "Transcripts", LONG_AGO),
         (p["other"]["id"], "dms/other-photo.jpg", "Photos", HOUR_AGO)],
    )  # fmt: skip


async def _forms(conn: Any, school: Any, p: dict[str, Any]) -> None:
    await conn.executemany(
        """INSERT INTO sis.form_submissions (form_id, person_id, submitted_at)
           SELECT id, $2, $3 FROM sis.forms WHERE code = $1""",
        [("HOUSING", p["hit"]["id"], HOUR_AGO), ("HOUSING", p["old"]["id"], LONG_AGO),
         ("HOUSING", p["elsewhere"]["id"], HOUR_AGO),
         ("PARKING", p["other"]["id"], HOUR_AGO)],
    )  # fmt: skip


async def _loans(conn: Any, school: Any, p: dict[str, Any]) -> None:
    await conn.executemany(
        "INSERT INTO sis.transactions (person_id, code, amount, posted_on, created_at) VALUES ($1, $2, $3, $4, $5)",
        [(p["hit"]["id"], "LOAN", -2750, school.today, HOUR_AGO),
         (p["elsewhere"]["id"], "LOAN", -2750, school.today, HOUR_AGO),
         (p["old"]["id"], "LOAN", -1000, school.today, LONG_AGO),
         (p["other"]["id"], "PELL", -3000, school.today, HOUR_AGO)],
    )  # fmt: skip


async def _isirs(conn: Any, school: Any, p: dict[str, Any]) -> None:
    await conn.executemany(
        """INSERT INTO sis.isirs (person_id, award_year, transaction_number, name_id, student_last_name,
                                  student_first_name, selected_for_verification, verification_tracking_flag,
                                  transaction_process_date, imported_at)
           VALUES ($1, '2026-27', 2, 'TE', 'Tester', 'X', $2, $3, $4, $5)""",
        [(p["hit"]["id"], "Y", "V4", school.today, HOUR_AGO), (p["old"]["id"], "Y", "V1", school.today, LONG_AGO),
         (p["elsewhere"]["id"], "Y", "V4", school.today, HOUR_AGO),
         (p["other"]["id"], "N", None, school.today, HOUR_AGO)],
    )  # fmt: skip


# notifier, its own parameters, rows to make, what the hit row shows in the group's message
SINCE_LAST_RUN: list[tuple[str, dict[str, Any], Setup, str]] = [
    ("notifier.course_audit", {}, _audit, "TST"),
    ("notifier.application_checklist", {"statuses": ["student"]}, _checklist, "Transcript"),
    ("notifier.activities", {"activity_types": ["tour"]}, _activities, "Campus tour"),
    (
        "notifier.dms_notifications",
        {"categories": ["transcripts"]},
        _documents,
        "hit-transcript.pdf",
    ),
    ("notifier.forms_submitted", {"forms": ["HOUSING"]}, _forms, "Housing application"),
    ("notifier.loan_disbursement", {"notify_students": True}, _loans, "2,750.00"),
    ("notifier.financial_aid_verification", {}, _isirs, "V4"),
]


async def test_since_last_run_notifiers_tell_what_is_new_once(
    run_job, school, mail_sink, sis_conn
) -> None:
    """Per notifier: the row added an hour ago is told; the one from five days ago (before the
    first run's look-back), the one that does not match and the one outside the division are
    not; a second run (a new occurrence) tells nothing."""
    for job_type, own, setup, shows in SINCE_LAST_RUN:
        people = {k: await school.person(k.title()) for k in ("hit", "old", "other")}
        elsewhere = await school.person("Elsewhere", division="UG")
        await setup(sis_conn, school, {**people, "elsewhere": elsewhere})
        mail_sink.clear()
        ran = await run_job(job_type, {**ONLY_TST, **own})
        assert ran.status == "succeeded", (job_type, ran.error)
        assert ran.summary.startswith("1 row processed"), (job_type, ran.summary)
        body = told(mail_sink, school)
        assert people["hit"]["sis_id"] in body and shows in body, (job_type, body)
        assert people["old"]["sis_id"] not in body and people["other"]["sis_id"] not in body, (
            job_type
        )
        assert elsewhere["sis_id"] not in body, job_type
        if own.get("notify_students"):
            [personal] = mails_to(mail_sink, people["hit"]["email"])
            assert shows in text_of(personal), job_type
        mail_sink.clear()
        again = await run_job(job_type, {**ONLY_TST, **own})
        assert again.summary.startswith("0 rows processed"), (job_type, again.summary)
        assert mail_sink.messages == [], job_type
    # Codes the SIS does not have fail the run, naming the ones it has.
    ran = await run_job("notifier.activities", {**ONLY_TST, "activity_types": ["TOUR", "NOPE"]})
    assert ran.status == "failed" and "NOPE" in (ran.error or "") and "CALL" in (ran.error or "")
    ran = await run_job("notifier.forms_submitted", {**ONLY_TST, "forms": ["NOPE"]})
    assert ran.status == "failed" and "HOUSING" in (ran.error or "")


async def test_once_per_item_notifiers_and_timed_email_prospects(
    run_job, school, mail_sink, sis_conn
) -> None:
    staff = await school.person("Nurse", status="staff")
    student = await school.person("Pupil")
    for person, days in ((staff, 10), (student, 20)):
        await sis_conn.execute(
            "INSERT INTO sis.immunizations (person_id, kind, expires_on) VALUES ($1, 'TDAP', $2)",
            person["id"], school.days(days),
        )  # fmt: skip
    ran = await run_job(
        "notifier.immunization_expiration_by_status", {**ONLY_TST, "statuses": ["staff"]}
    )
    body = told(mail_sink, school)
    assert ran.status == "succeeded" and staff["sis_id"] in body and student["sis_id"] not in body
    assert len(mails_to(mail_sink, staff["email"])) == 1  # the person told about their own
    ran = await run_job("notifier.immunization_expiration_by_status", ONLY_TST)
    assert ran.summary.startswith("2 rows processed")  # every status; the staff row told before
    assert "1 row already notified before" in ran.text

    mail_sink.clear()
    alum = await school.person("Alum", status="alumni")
    confirmed = await school.person("Confirmed", status="alumni")
    await sis_conn.executemany(
        "INSERT INTO sis.employment_records (person_id, employer, entered_by_self, confirmed_at) VALUES ($1, $2, true, $3)",
        [(alum["id"], "Acme Health", None), (confirmed["id"], "Contoso", NOW)],
    )  # fmt: skip
    ran = await run_job("notifier.alumni_employment", ONLY_TST)
    body = told(mail_sink, school)
    assert "Acme Health" in body and confirmed["sis_id"] not in body
    mail_sink.clear()
    again = await run_job("notifier.alumni_employment", ONLY_TST)
    assert again.summary.startswith("1 row processed, 0 recipients") and mail_sink.messages == []

    # Timed Email Prospects: an activity for students and prospects reaches only the prospects.
    prospect = await school.person("Hopeful", status="prospect")
    student = await school.person("Enrolled")
    await sis_conn.execute(
        """INSERT INTO sis.email_activities (code, subject, body_text, send_on, statuses)
           VALUES ('OPENDAY', 'Open day, {{ first_name }}', 'Come and see us.', $1, ARRAY['student', 'prospect'])""",
        school.today,
    )
    ran = await run_job(
        "notifier.timed_email_prospects", {"divisions": ["TST"], "activities": ["OPENDAY"]}
    )
    assert ran.status == "succeeded", ran.error
    [mail] = mails_to(mail_sink, prospect["email"])
    assert mail["Subject"] == "Open day, Hopeful" and "Come and see us." in text_of(mail)
    assert mails_to(mail_sink, student["email"]) == []


async def test_acting_notifiers_change_once_and_report_again_on_redelivery(
    run_job, school, mail_sink, sis_conn
) -> None:
    """Each acting notifier runs twice under one occurrence: the second delivery changes
    nothing (counts in the SIS), reports the same rows and mails nobody again."""
    # Only the test's own saved ISIRs, breadcrumbs and inquiry cards, so every count is known.
    await sis_conn.execute(
        "DELETE FROM sis.isirs WHERE person_id IS NULL; DELETE FROM sis.page_visits; DELETE FROM sis.prospect_requests"
    )
    movers = await school.person("Mover")
    settled = await school.person("Settled")
    for person in (movers, settled):
        await sis_conn.execute(
            "INSERT INTO sis.addresses (person_id, kind, preferred, line1, city) VALUES ($1, 'home', true, '1 Elm St', 'Lakeside')",
            person["id"],
        )
    await sis_conn.execute(
        "INSERT INTO sis.addresses (person_id, kind, line1, city) VALUES ($1, 'mailing', 'PO Box 9', 'Lakeside')",
        settled["id"],
    )
    old, fresh = school.today - timedelta(days=400), NOW - timedelta(days=3)
    await sis_conn.executemany(
        "INSERT INTO sis.login_credentials (person_id, kind, set_at) VALUES ($1, $2, $3)",
        [(movers["id"], "password", old), (movers["id"], "pin", old), (settled["id"], "password", fresh)],
    )  # fmt: skip
    await sis_conn.executemany(
        """INSERT INTO sis.isirs (person_id, award_year, transaction_number, name_id, student_last_name,
                                  student_first_name, transaction_process_date, saved_at)
           VALUES (NULL, '2026-27', 1, 'ZZ', $1, 'Saved', $2, $3)""",
        [("Oldsaved", school.today, NOW - timedelta(days=45)), ("Newsaved", school.today, NOW)],
    )  # fmt: skip
    await sis_conn.executemany(
        "INSERT INTO sis.page_visits (person_id, page, visited_at) VALUES ($1, '/admin/x', $2)",
        [(school.staff["id"], NOW - timedelta(days=d)) for d in (40, 41, 42, 1)],
    )
    await sis_conn.executemany(
        "INSERT INTO sis.prospect_requests (first_name, last_name, email, interest) VALUES ($1, $2, $3, 'Nursing')",
        [("Nia", "Newcomer", "nia.newcomer@inquiry.example"), ("No", "Mail", ""),
         ("Known", "Already", movers["email"])],
    )  # fmt: skip

    counts = """SELECT (SELECT count(*) FROM sis.addresses WHERE kind = 'mailing' AND person_id = ANY($1::bigint[])),
                       (SELECT count(*) FROM sis.login_credentials WHERE expired_at IS NOT NULL AND person_id = ANY($1::bigint[])),
                       (SELECT count(*) FROM sis.isirs WHERE person_id IS NULL AND student_last_name LIKE '%saved'),
                       (SELECT count(*) FROM sis.page_visits WHERE person_id = $2),
                       (SELECT count(*) FROM sis.people WHERE status = 'prospect' AND sis_id LIKE 'R%')"""
    ids = [movers["id"], settled["id"]]
    before = tuple(await sis_conn.fetchrow(counts, ids, school.staff["id"]))
    acting: list[tuple[str, dict[str, Any], str]] = [
        ("notifier.address_check", {**ONLY_TST, "address_kind": "mailing"}, "1 row processed"),
        ("notifier.pin_password_expiration", {**ONLY_TST, "pin_days": 365, "password_days": 180}, "2 rows processed"),
        ("notifier.purge_saved_isirs", {"group": "TESTG"}, "1 row processed"),
        ("notifier.nmtrack_delete", {"group": "TESTG"}, "1 row processed"),
        ("notifier.prospect_import", {"group": "TESTG"}, "3 rows processed"),
    ]  # fmt: skip
    for job_type, params, summary in acting:
        mail_sink.clear()
        first = await run_job(job_type, params, occurrence_id=f"occ-{job_type}")
        assert first.status == "succeeded" and first.summary.startswith(summary), (
            job_type,
            first.summary,
        )
        assert len(mails_to(mail_sink, school.staff["email"])) == 1, job_type
        again = await run_job(job_type, params, occurrence_id=f"occ-{job_type}")
        assert again.summary.startswith(summary), (job_type, again.summary)
        assert "1 delivery already made by this occurrence" in again.text, job_type
        assert len(mail_sink.messages) == 1, job_type
    after = tuple(await sis_conn.fetchrow(counts, ids, school.staff["id"]))
    # one mailing address copied (Settled has one), Mover's PIN and password expired (Settled's
    # is new), the 45-day-old saved ISIR purged, three 40+ day old visits deleted, and of the
    # three cards only Nia's imported
    assert after[0] - before[0] == 1 and after[1] - before[1] == 2
    assert (before[2] - after[2], before[3] - after[3]) == (1, 3)
    requests = {
        r["last_name"]: r for r in await sis_conn.fetch("SELECT * FROM sis.prospect_requests")
    }
    assert requests["Newcomer"]["person_id"] is not None and requests["Newcomer"]["problem"] is None
    assert (
        "not an e-mail address" in requests["Mail"]["problem"]
        and requests["Mail"]["imported_at"] is None
    )
    assert requests["Already"]["problem"] == f"already in the SIS as {movers['sis_id']}"
    copied = await sis_conn.fetchrow(
        "SELECT line1, preferred FROM sis.addresses WHERE person_id = $1 AND kind = 'mailing'",
        movers["id"],
    )
    assert tuple(copied) == ("1 Elm St", False)
    ran = await run_job("notifier.address_check", {**ONLY_TST, "address_kind": "mailing"})
    assert ran.summary.startswith("0 rows processed"), "a new occurrence finds nothing left to copy"

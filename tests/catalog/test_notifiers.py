"""Each notifier against the demo SIS plus targeted rows: who is selected, filters, repeat
policies across runs, one mail per recipient at a real SMTP server, idempotent redelivery."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from belltower import sis
from belltower.errors import InvalidInput
from belltower_notifier.jobs import registry
from belltower_notifier.notifiers import NOTIFIERS
from belltower_scheduler.catalog import validate_params

from .conftest import mails_to, text_of

pytestmark = pytest.mark.slow

ONLY_TST = {"group": "TESTG", "divisions": ["TST"]}


def told(sink: Any, school: Any) -> str:
    """The one message the test group's member received, as text."""
    mails = mails_to(sink, school.staff["email"])
    assert len(mails) == 1, [m["Subject"] for m in mails]
    return text_of(mails[0])


def test_every_seed_notifier_is_registered_with_its_seed_title() -> None:
    wanted = {
        "Attendance", "Attendance with Tardies", "Balance Due", "Below Full-Time Status", "Birthday",
        "Blank Grades", "Credit Balance", "Enrollment Confirmation", "Final Grades Not Posted",
        "Grades Not Official", "Immunization Expiration", "Incomplete Grades", "Minor Status Indicator",
        "No Attendance Record", "Registration Email Reminder", "Status Addition",
        "Student Schedule Changes", "Transfer Credit Notifier", "User Defined Hold", "Withdrawn Notifier",
        "Timed Email", "Auto Waitlist Enroll", "Immunization Expiration by Status",
        "Course Audit Notification", "Address Check", "Application Checklist", "Activities",
        "DMS Notifications", "Form Builder Forms Submitted", "PIN/Password Expiration",
        "Loan Disbursement", "Alumni Employment", "Timed Email Prospects",
        "Financial Aid Verification", "Purge Saved ISIRs", "NMTRACK Delete Task",
        "Prospect Import Notifier", "At-Risk Alert", "Nelnet Payment Plans Enrollment Import", "JFA Awards",
    }  # fmt: skip
    titles = {n.title.removeprefix("Notifier: ") for n in NOTIFIERS}
    assert titles == wanted
    for n in NOTIFIERS:
        info = registry.get(n.name).info()  # type: ignore[union-attr]
        assert info.pool == "notifier" and len(info.description) > 80
        assert "group" in info.params_schema["$defs"][n.params.__name__]["properties"]


async def test_attendance_threshold_start_date_and_division(run_job, school, mail_sink) -> None:
    section = await school.section()
    over = await school.person("Over")
    under = await school.person("Under")
    elsewhere = await school.person("Elsewhere", division="UG")
    for person, absences in ((over, 4), (under, 2), (elsewhere, 5)):
        await school.enroll(person, section)
        for day in range(absences):
            await school.mark(section, person, -10 + day, "absent")
        await school.mark(section, person, -2, "present")

    ran = await run_job("notifier.attendance", {**ONLY_TST, "threshold": 3})
    assert ran.status == "succeeded" and ran.summary.startswith(
        "1 row processed, 1 recipient notified"
    )
    body = told(mail_sink, school)
    assert (
        over["sis_id"] in body and under["sis_id"] not in body and elsewhere["sis_id"] not in body
    )
    assert "4" in body.split(over["sis_id"])[1].splitlines()[0]

    mail_sink.clear()
    ran = await run_job(
        "notifier.attendance",
        {**ONLY_TST, "threshold": 3, "start_date": school.days(-8).isoformat()},
    )
    assert ran.summary.startswith("0 rows processed, 0 recipients")
    assert mail_sink.messages == []


async def test_attendance_with_tardies(run_job, school, mail_sink) -> None:
    section = await school.section()
    late = await school.person("Late")
    mixed = await school.person("Mixed")
    for i, mark in enumerate(["absent", "tardy", "tardy", "tardy"]):
        await school.mark(section, late, -10 + i, mark)
    for i, mark in enumerate(["absent", "absent", "tardy", "tardy"]):
        await school.mark(section, mixed, -10 + i, mark)
    await school.enroll(late, section)
    await school.enroll(mixed, section)
    ran = await run_job(
        "notifier.attendance_tardies", {**ONLY_TST, "threshold": 3, "tardy_threshold": 3}
    )
    body = told(mail_sink, school)
    assert ran.status == "succeeded"
    assert late["sis_id"] in body and mixed["sis_id"] not in body


async def test_balance_due_tells_the_group_and_optionally_the_student(
    run_job, school, mail_sink
) -> None:
    owes = await school.person("Owes")
    square = await school.person("Square")
    small = await school.person("Small")
    for person, paid in ((owes, "-100"), (square, "-500"), (small, "-450")):
        await school.post(person, "TUIT", "500")
        await school.post(person, "PAY", paid)
    ran = await run_job(
        "notifier.balance_due", {**ONLY_TST, "minimum_balance": 100, "notify_students": True}
    )
    assert ran.status == "succeeded"
    body = told(mail_sink, school)
    assert owes["sis_id"] in body and "400.00" in body
    assert square["sis_id"] not in body and small["sis_id"] not in body
    [personal] = mails_to(mail_sink, owes["email"])
    assert personal["Subject"] == "You have a balance due" and "400.00" in text_of(personal)
    assert mails_to(mail_sink, small["email"]) == []
    html = personal.get_body(("html",)).get_content()
    assert "<table" in html and "400.00" in html
    assert ran.html and "<table" in ran.html and owes["sis_id"] in ran.html


async def test_redelivered_occurrence_tells_nobody_twice(run_job, school, mail_sink) -> None:
    owes = await school.person("Owes")
    await school.post(owes, "TUIT", "900")
    params = {**ONLY_TST, "notify_students": True}
    first = await run_job("notifier.balance_due", params, occurrence_id="occ-same")
    again = await run_job("notifier.balance_due", params, occurrence_id="occ-same")
    assert first.status == again.status == "succeeded"
    assert len(mail_sink.messages) == 2  # the group member and the student, once each
    assert "2 deliveries already made by this occurrence" in again.text
    later = await run_job("notifier.balance_due", params, occurrence_id="occ-next")
    assert later.status == "succeeded" and len(mail_sink.messages) == 4  # every run tells again


async def test_below_full_time_since_last_run(run_job, school, mail_sink, sis_conn) -> None:
    section = await school.section()
    dropped = await school.person("Dropped")
    stays = await school.person("Stays")
    now = datetime.now(UTC)
    for _ in range(3):
        await school.enroll(dropped, await school.section())
    await school.enroll(dropped, section, "dropped")
    await school.change(dropped, section, "drop", 12, 9, now - timedelta(hours=1))
    for _ in range(4):
        await school.enroll(stays, await school.section())
    await school.change(stays, section, "drop", 15, 12, now - timedelta(hours=1))

    first = await run_job("notifier.below_full_time", ONLY_TST)
    body = told(mail_sink, school)
    assert first.status == "succeeded"
    assert dropped["sis_id"] in body and stays["sis_id"] not in body

    mail_sink.clear()
    second = await run_job("notifier.below_full_time", ONLY_TST)
    assert ", 0 recipients notified" in second.summary and mail_sink.messages == []

    later = await school.person("Later")
    for _ in range(3):
        await school.enroll(later, await school.section())
    await school.change(later, section, "withdraw", 12, 9, datetime.now(UTC))
    third = await run_job("notifier.below_full_time", ONLY_TST)
    body = told(mail_sink, school)
    assert third.summary.startswith("1 row processed")
    assert later["sis_id"] in body and dropped["sis_id"] not in body


async def test_status_addition_watermark_moves_only_when_the_run_succeeds(
    run_job, school, mail_sink
) -> None:
    now = datetime.now(UTC)
    new = await school.person("Newcomer", status="prospect", added_at=now - timedelta(minutes=5))
    old = await school.person("Oldtimer", status="prospect", added_at=now - timedelta(days=3))
    student = await school.person("Student", added_at=now - timedelta(minutes=5))
    params = {**ONLY_TST, "statuses": ["prospect"]}
    first = await run_job("notifier.status_addition", params)
    body = told(mail_sink, school)
    assert first.status == "succeeded"
    assert new["sis_id"] in body and old["sis_id"] not in body and student["sis_id"] not in body

    mail_sink.clear()
    again = await run_job("notifier.status_addition", params)
    assert ", 0 recipients notified" in again.summary and mail_sink.messages == []

    missed = await school.person("Missed", status="prospect", added_at=datetime.now(UTC))
    mail_sink.stop()
    try:
        failed = await run_job("notifier.status_addition", params)
    finally:
        mail_sink.start()
    assert failed.status == "failed" and "could not be delivered" in (failed.error or "")
    retried = await run_job("notifier.status_addition", params)
    assert retried.status == "succeeded"
    body = told(mail_sink, school)
    assert missed["sis_id"] in body and new["sis_id"] not in body


async def test_birthday_specific_age_and_greeting(run_job, school, mail_sink) -> None:
    today = school.today

    def born(years: int) -> date:
        try:
            return today.replace(year=today.year - years)
        except ValueError:
            return today.replace(year=today.year - years, day=28)

    twenty = await school.person("Twenty", born=born(20))
    thirty = await school.person("Thirty", born=born(30))
    other_day = await school.person("Otherday", born=born(20) - timedelta(days=1))
    params = {
        **ONLY_TST,
        "age": 20,
        "notify_students": True,
        "greeting": "Happy 20th, {{ first_name }}!",
    }
    ran = await run_job("notifier.birthday", params)
    assert ran.status == "succeeded"
    body = told(mail_sink, school)
    assert (
        twenty["sis_id"] in body
        and thirty["sis_id"] not in body
        and other_day["sis_id"] not in body
    )
    [greeting] = mails_to(mail_sink, twenty["email"])
    assert greeting["Subject"] == "Happy birthday!" and "Happy 20th, Twenty!" in text_of(greeting)
    assert mails_to(mail_sink, thirty["email"]) == []

    # Any age now; a birthday is told once per year, so only the thirty-year-old is new.
    mail_sink.clear()
    again = await run_job("notifier.birthday", {**ONLY_TST, "age": 0})
    assert again.summary.startswith("2 rows processed, 1 recipient")
    body = told(mail_sink, school)
    assert thirty["sis_id"] in body and twenty["sis_id"] not in body


async def test_grade_notifiers_and_lead_faculty(run_job, school, mail_sink) -> None:
    prof = await school.person("Prof", status="faculty")
    ended = await school.section(lead=prof, starts=-60, ends=-10)
    clean = await school.section(lead=prof, starts=-60, ends=-10)
    recent = await school.section(lead=prof, starts=-60, ends=-2)
    blank = await school.person("Blank")
    graded = await school.person("Graded")
    unofficial = await school.person("Unofficial")
    await school.enroll(blank, ended, "completed")
    await school.grade(
        await school.enroll(graded, ended, "completed"), "A", is_official=True, final_posted=True
    )
    await school.grade(await school.enroll(unofficial, ended, "completed"), "B")
    await school.grade(
        await school.enroll(graded, clean, "completed"), "A", is_official=True, final_posted=True
    )
    await school.enroll(blank, recent, "completed")

    ran = await run_job(
        "notifier.blank_grades", {**ONLY_TST, "days_after_end": 7, "notify_faculty": True}
    )
    assert ran.summary.startswith("1 row processed, 2 recipients")
    body = told(mail_sink, school)
    assert (
        blank["sis_id"] in body
        and graded["sis_id"] not in body
        and unofficial["sis_id"] not in body
    )
    [to_prof] = mails_to(mail_sink, prof["email"])
    assert to_prof["Subject"] == "Blank grades in your sections" and blank["sis_id"] in text_of(
        to_prof
    )

    # Final grades not posted: the section with a blank and an unofficial grade, not the clean one.
    mail_sink.clear()
    ran = await run_job("notifier.final_grades_not_posted", {**ONLY_TST, "days_after_end": 7})
    assert ran.summary.startswith("1 row processed")
    assert "Not final" in told(mail_sink, school)

    mail_sink.clear()
    ran = await run_job(
        "notifier.grades_not_official", {**ONLY_TST, "days_after_end": 7, "notify_faculty": True}
    )
    assert ran.summary.startswith("1 row processed, 2 recipients")
    assert "Unofficial grades" in told(mail_sink, school)
    assert len(mails_to(mail_sink, prof["email"])) == 1

    mail_sink.clear()
    ran = await run_job("notifier.blank_grades", {**ONLY_TST, "days_after_end": 14})
    assert ran.summary.startswith("0 rows") and mail_sink.messages == []


async def test_incomplete_grades_official_only(run_job, school, mail_sink) -> None:
    prof = await school.person("Prof", status="faculty")
    section = await school.section(lead=prof, starts=-60, ends=-10)
    official = await school.person("Official")
    unofficial = await school.person("Pending")
    await school.grade(
        await school.enroll(official, section, "completed"), "I", is_official=True, is_incomplete=True,
        incomplete_due=school.days(30),
    )  # fmt: skip
    await school.grade(
        await school.enroll(unofficial, section, "completed"), "I", is_incomplete=True
    )
    params = {**ONLY_TST, "notify_students": True, "notify_faculty": True}
    ran = await run_job("notifier.incomplete_grades", params)
    assert ran.summary.startswith("2 rows processed, 4 recipients")
    assert len(mails_to(mail_sink, prof["email"])) == 1
    mail_sink.clear()
    ran = await run_job("notifier.incomplete_grades", {**params, "official_only": True})
    assert ran.summary.startswith("1 row processed, 3 recipients")
    body = told(mail_sink, school)
    assert official["sis_id"] in body and unofficial["sis_id"] not in body
    assert mails_to(mail_sink, unofficial["email"]) == []


async def test_credit_balance_shows_last_post_award_aid(run_job, school, mail_sink) -> None:
    credit = await school.person("Credit")
    even = await school.person("Even")
    await school.post(credit, "TUIT", "100")
    await school.post(credit, "PELL", "-600", day=-3)
    await school.post(even, "TUIT", "100")
    await school.post(even, "PAY", "-100")
    ran = await run_job("notifier.credit_balance", ONLY_TST)
    assert ran.status == "succeeded"
    body = told(mail_sink, school)
    line = next(x for x in body.splitlines() if credit["sis_id"] in x)
    assert "500.00" in line and school.days(-3).isoformat() in line
    assert even["sis_id"] not in body


async def test_enrollment_confirmation_and_registration_reminder(
    run_job, school, mail_sink, sis_conn
) -> None:
    section = await school.section(starts=3, ends=60)
    enrolled = await school.person("Enrolled")
    dropped = await school.person("Dropped")
    await school.enroll(enrolled, section)
    await school.enroll(dropped, section, "dropped")
    ran = await run_job(
        "notifier.enrollment_confirmation",
        {**ONLY_TST, "days_threshold": 3, "notify_students": True},
    )
    assert ran.summary.startswith("1 row processed, 2 recipients")
    body = told(mail_sink, school)
    assert enrolled["sis_id"] in body and dropped["sis_id"] not in body
    assert len(mails_to(mail_sink, enrolled["email"])) == 1

    mail_sink.clear()
    ran = await run_job("notifier.registration_reminder", {"divisions": ["TST"], "days_before": 3})
    [reminder] = mail_sink.messages
    assert reminder.envelope_to == [enrolled["email"]]
    assert reminder["Subject"] == f"Your classes start on {school.days(3).isoformat()}"

    mail_sink.clear()
    await sis_conn.execute(
        """INSERT INTO sis.registration_appointments (person_id, term_id, starts_at)
           VALUES ($1, (SELECT id FROM sis.terms WHERE code = 'NEXT'), $2)""",
        dropped["id"],
        datetime.combine(school.days(5), datetime.min.time(), UTC) + timedelta(hours=9),
    )
    ran = await run_job(
        "notifier.registration_reminder",
        {"divisions": ["TST"], "days_before": 5, "remind_about": "registration_opens"},
    )
    [reminder] = mail_sink.messages
    assert (
        reminder.envelope_to == [dropped["email"]] and "Registration opens" in reminder["Subject"]
    )


async def test_immunization_expiration_once_per_item(run_job, school, mail_sink, sis_conn) -> None:
    soon = await school.person("Soon")
    later = await school.person("Later")

    async def shot(person: dict[str, Any], kind: str, days: int) -> None:
        await sis_conn.execute(
            "INSERT INTO sis.immunizations (person_id, kind, expires_on) VALUES ($1, $2, $3)",
            person["id"], kind, school.days(days),
        )  # fmt: skip

    await shot(soon, "MMR", 10)
    await shot(later, "MMR", 60)
    params = {**ONLY_TST, "threshold_days": 30}
    first = await run_job("notifier.immunization_expiration", params)
    assert first.summary.startswith("1 row processed, 2 recipients")
    [to_soon] = mails_to(mail_sink, soon["email"])
    assert "MMR" in text_of(to_soon) and mails_to(mail_sink, later["email"]) == []

    mail_sink.clear()
    second = await run_job("notifier.immunization_expiration", params)
    assert second.status == "succeeded" and mail_sink.messages == []
    assert "1 row already notified before" in second.text

    await shot(soon, "FLU", 5)
    third = await run_job("notifier.immunization_expiration", params)
    assert third.summary.startswith("2 rows processed, 2 recipients")
    body = text_of(mails_to(mail_sink, soon["email"])[0])
    assert "FLU" in body and "MMR" not in body

    # The MMR record is renewed, and its new expiry comes near: told once more, about the new date.
    await sis_conn.execute(
        "UPDATE sis.immunizations SET expires_on = $2 WHERE person_id = $1 AND kind = 'MMR'",
        soon["id"], school.days(20),
    )  # fmt: skip
    mail_sink.clear()
    fourth = await run_job("notifier.immunization_expiration", params)
    assert fourth.status == "succeeded"
    body = text_of(mails_to(mail_sink, soon["email"])[0])
    assert "MMR" in body and school.days(20).isoformat() in body and "FLU" not in body
    mail_sink.clear()
    fifth = await run_job("notifier.immunization_expiration", params)
    assert fifth.status == "succeeded" and mails_to(mail_sink, soon["email"]) == []


async def test_minor_status_indicator_assigned_and_told_once(
    run_job, school, mail_sink, sis_conn
) -> None:
    minor = await school.person("Minor", born=school.days(-17 * 365))
    adult = await school.person("Adult", born=school.days(-19 * 365))
    first = await run_job("notifier.minor_status", ONLY_TST)
    body = told(mail_sink, school)
    assert first.status == "succeeded" and minor["sis_id"] in body and adult["sis_id"] not in body
    ends = await sis_conn.fetchval(
        "SELECT ends_on FROM sis.person_indicators WHERE person_id = $1 AND indicator = 'minor'",
        minor["id"],
    )
    assert ends.month == school.days(-17 * 365).month and ends > school.today
    mail_sink.clear()
    again = await run_job("notifier.minor_status", ONLY_TST)
    assert ", 0 recipients notified" in again.summary and mail_sink.messages == []


async def test_no_attendance_record(run_job, school, mail_sink) -> None:
    prof = await school.person("Prof", status="faculty")
    taken = await school.section(lead=prof)
    untaken = await school.section(lead=prof, attendance_required=False)
    student = await school.person("Present")
    for section in (taken, untaken):
        await school.enroll(student, section)
        await school.meeting(section, -5)
        await school.meeting(section, -4)
    await school.mark(taken, student, -5, "present")
    ran = await run_job("notifier.no_attendance_record", {**ONLY_TST, "notify_faculty": True})
    assert ran.summary.startswith("1 row processed, 2 recipients")
    body = told(mail_sink, school)
    assert school.days(-4).isoformat() in body and school.days(-5).isoformat() not in body
    assert len(mails_to(mail_sink, prof["email"])) == 1


async def test_schedule_changes_one_line_per_student(run_job, school, mail_sink) -> None:
    section = await school.section()
    busy = await school.person("Busy")
    old = await school.person("Old")
    now = datetime.now(UTC)
    await school.enroll(busy, section)
    await school.change(busy, section, "add", 0, 3, now - timedelta(days=3))
    await school.change(busy, section, "drop", 3, 0, now - timedelta(days=2))
    await school.change(busy, section, "add", 0, 3, now - timedelta(hours=2))
    await school.change(old, section, "add", 0, 3, now - timedelta(days=30))
    ran = await run_job("notifier.schedule_changes", {**ONLY_TST, "look_back_days": 7})
    body = told(mail_sink, school)
    lines = [x for x in body.splitlines() if busy["sis_id"] in x]
    assert ran.summary.startswith("1 row processed") and len(lines) == 1
    assert " add " in lines[0] and " 3 " in lines[0] and old["sis_id"] not in body


async def test_transfer_credit_since_last_run(run_job, school, mail_sink, sis_conn) -> None:
    student = await school.person("Transfer")

    async def credit(code: str) -> None:
        await sis_conn.execute(
            """INSERT INTO sis.transfer_credits (person_id, institution, course_code, course_title,
                                                 credits, accepted_on)
               VALUES ($1, 'Other College', $2, 'Some course', 3, $3)""",
            student["id"], code, school.today,
        )  # fmt: skip

    await credit("ENG101")
    await credit("MAT101")
    ran = await run_job("notifier.transfer_credit", ONLY_TST)
    [mail] = mails_to(mail_sink, school.staff["email"])
    assert (
        ran.summary.startswith("2 rows processed")
        and mail["Subject"] == "1 student received transfer credit"
    )
    assert "ENG101" in text_of(mail) and "MAT101" in text_of(mail)
    mail_sink.clear()
    again = await run_job("notifier.transfer_credit", ONLY_TST)
    assert ", 0 recipients notified" in again.summary and mail_sink.messages == []
    await credit("HIS101")
    await run_job("notifier.transfer_credit", ONLY_TST)
    body = told(mail_sink, school)
    assert "HIS101" in body and "ENG101" not in body


async def test_user_defined_hold_once(run_job, school, mail_sink, sis_conn) -> None:
    held = await school.person("Held")
    blocked = await school.person("Blocked")
    for person, code in ((held, "ADV"), (blocked, "REG")):
        await sis_conn.execute(
            "INSERT INTO sis.holds (person_id, hold_type, reason, starts_on) VALUES ($1, $2, 'test', $3)",
            person["id"], code, school.today,
        )  # fmt: skip
    first = await run_job("notifier.user_defined_hold", ONLY_TST)
    assert first.summary.startswith("1 row processed, 2 recipients")
    assert held["sis_id"] in told(mail_sink, school)
    assert (
        len(mails_to(mail_sink, held["email"])) == 1 and mails_to(mail_sink, blocked["email"]) == []
    )
    mail_sink.clear()
    second = await run_job("notifier.user_defined_hold", ONLY_TST)
    assert second.status == "succeeded" and mail_sink.messages == []


async def test_withdrawn_day_to_look_at(run_job, school, mail_sink) -> None:
    prof = await school.person("Prof", status="faculty")
    section = await school.section(lead=prof)
    gone = await school.person("Gone")
    await school.enroll(gone, section, "withdrawn", withdrawn_on=school.days(-1))
    today = await run_job("notifier.withdrawn", {**ONLY_TST, "day_to_look_at": 0})
    assert today.summary.startswith("0 rows") and mail_sink.messages == []
    params = {**ONLY_TST, "day_to_look_at": 1, "notify_students": True, "notify_faculty": True}
    ran = await run_job("notifier.withdrawn", params)
    assert ran.summary.startswith("1 row processed, 3 recipients")
    assert gone["sis_id"] in told(mail_sink, school)
    assert mails_to(mail_sink, prof["email"])[0]["Subject"] == "Withdrawals from your sections"


async def test_timed_email_sends_each_activity_once(run_job, school, mail_sink, sis_conn) -> None:
    alumna = await school.person("Alumna", status="alumni")
    student = await school.person("Student")
    await sis_conn.execute(
        """INSERT INTO sis.email_activities (code, subject, body_text, send_on, statuses)
           VALUES ('REUNION', 'Reunion weekend', 'Dear {{ first_name }}, come to the reunion.', $1, '{alumni}')""",
        school.today,
    )
    params = {"divisions": ["TST"], "activities": ["reunion"]}
    ran = await run_job("notifier.timed_email", params)
    assert ran.summary.startswith("1 row processed, 1 recipient")
    [mail] = mail_sink.messages
    assert mail.envelope_to == [alumna["email"]] and mail["Subject"] == "Reunion weekend"
    assert "Dear Alumna, come to the reunion." in text_of(mail)
    assert mails_to(mail_sink, student["email"]) == []
    mail_sink.clear()
    assert (await run_job("notifier.timed_email", params)).status == "succeeded"
    assert mail_sink.messages == []


async def test_auto_waitlist_enroll_in_order_skipping_registration_holds(
    run_job, school, mail_sink, sis_conn
) -> None:
    section = await school.section(capacity=3)
    await school.enroll(await school.person("Seated"), section)
    waiting = [await school.person(name) for name in ("Held", "Second", "Third", "Fourth")]
    for position, person in enumerate(waiting, 1):
        await sis_conn.execute(
            "INSERT INTO sis.waitlist (section_id, person_id, position) VALUES ($1, $2, $3)",
            section, person["id"], position,
        )  # fmt: skip
    held, second, third, fourth = waiting
    await sis_conn.execute(
        "INSERT INTO sis.holds (person_id, hold_type, starts_on) VALUES ($1, 'REG', $2)",
        held["id"], school.days(-1),
    )  # fmt: skip
    params = {**ONLY_TST, "notify_students": True}
    ran = await run_job("notifier.auto_waitlist_enroll", params, occurrence_id="occ-w1")
    assert ran.status == "succeeded"
    states = dict(
        await sis_conn.fetch(
            "SELECT person_id, state FROM sis.waitlist WHERE section_id = $1", section
        )
    )
    assert states == {
        held["id"]: "waiting",
        second["id"]: "enrolled",
        third["id"]: "enrolled",
        fourth["id"]: "waiting",
    }
    assert await sis_conn.fetchval("SELECT enrolled FROM sis.sections WHERE id = $1", section) == 3
    body = told(mail_sink, school)
    assert (
        "skipped: registration hold" in body
        and second["sis_id"] in body
        and third["sis_id"] in body
    )
    assert [len(mails_to(mail_sink, p["email"])) for p in waiting] == [0, 1, 1, 0]

    # The same occurrence again reports what it did, enrolls and mails nobody twice.
    again = await run_job("notifier.auto_waitlist_enroll", params, occurrence_id="occ-w1")
    assert again.status == "succeeded" and len(mail_sink.messages) == 3
    assert await sis_conn.fetchval("SELECT enrolled FROM sis.sections WHERE id = $1", section) == 3
    assert (
        await sis_conn.fetchval(
            "SELECT count(*) FROM sis.enrollments WHERE section_id = $1 AND status = 'enrolled'",
            section,
        )
        == 3
    )

    # A seat opens: the next run skips the held student again and seats the fourth.
    await sis_conn.execute("UPDATE sis.sections SET capacity = 4 WHERE id = $1", section)
    await run_job("notifier.auto_waitlist_enroll", params, occurrence_id="occ-w2")
    assert (
        len(mails_to(mail_sink, fourth["email"])) == 1 and mails_to(mail_sink, held["email"]) == []
    )


async def test_demo_waitlists_fill_open_seats(run_job, sis_conn) -> None:
    before = await sis_conn.fetchval("SELECT count(*) FROM sis.waitlist WHERE state = 'enrolled'")
    ran = await run_job("notifier.auto_waitlist_enroll", {"notify_students": False, "group": ""})
    after = await sis_conn.fetchval("SELECT count(*) FROM sis.waitlist WHERE state = 'enrolled'")
    assert ran.status == "succeeded" and after > before
    assert not await sis_conn.fetchval(
        "SELECT count(*) FROM sis.sections WHERE enrolled > capacity"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"group": "NOPE"}, "param.group: no notification group 'NOPE'"),
        (
            {"group": "TESTG", "divisions": ["XX"]},
            "param.divisions: unknown code(s) XX (accepted: one of",
        ),
        ({"group": "TESTG", "time_zone": "Mars/Base"}, "param.time_zone: unknown time zone"),
        ({"group": "TESTG", "subject": "{{ oops"}, "param.subject: template"),
    ],
)
async def test_bad_parameters_fail_the_run_clearly(
    run_job, school, mail_sink, sis_conn, params, message
) -> None:
    owes = await school.person("Owes")
    await school.post(owes, "TUIT", "100")
    ran = await run_job("notifier.balance_due", params)
    assert ran.status == "failed" and message in (ran.error or "")
    assert mail_sink.messages == []
    # A notifier that acts changes nothing when its parameters are bad.
    before = await sis_conn.fetchval("SELECT count(*) FROM sis.schedule_changes")
    acted = await run_job("notifier.auto_waitlist_enroll", params)
    assert acted.status == "failed" and message in (acted.error or "")
    assert await sis_conn.fetchval("SELECT count(*) FROM sis.schedule_changes") == before


async def test_reminders_are_stored_for_the_console(run_job, school, mail_sink, sis_conn) -> None:
    reader = await school.person("Reader", status="staff")
    await school.group("REMIND", reader, reminder=True)
    owes = await school.person("Owes")
    await school.post(owes, "TUIT", "100")
    await run_job(
        "notifier.balance_due", {"group": "REMIND", "divisions": ["TST"]}, occurrence_id="o1"
    )
    await run_job(
        "notifier.balance_due", {"group": "REMIND", "divisions": ["TST"]}, occurrence_id="o1"
    )
    rows = await sis_conn.fetch(
        "SELECT title, body_text FROM sis.reminders WHERE person_id = $1", reader["id"]
    )
    assert len(rows) == 1 and owes["sis_id"] in rows[0]["body_text"]
    [unread] = await sis.reminders_for(sis_conn, reader["id"])
    assert unread["source"] == "notifier.balance_due" and unread["title"].endswith("balance due")
    assert len(mails_to(mail_sink, reader["email"])) == 1


async def test_missing_sis_schema_fails_clearly_until_it_is_created(
    database_url: str, mail_sink, tmp_batch_folder
) -> None:
    import asyncio
    import os
    import sys

    from belltower.settings import Settings

    from .conftest import JobRunner

    runner = JobRunner(
        Settings(database_url=database_url, smtp_host=mail_sink.host, smtp_port=mail_sink.port)
    )
    try:
        ran = await runner("notifier.balance_due", {"group": ""})
        assert ran.status == "failed"
        assert "the SIS schema is missing" in (ran.error or "") and "python -m belltower.sis`" in (
            ran.error or ""
        )
        env = {**os.environ, "BELLTOWER_DATABASE_URL": database_url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "belltower.sis",
            env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        assert out.decode().strip().startswith("sis migrations applied: [1")
        ran = await runner("notifier.balance_due", {"group": ""})
        assert ran.status == "succeeded" and ran.summary.startswith("0 rows processed")
    finally:
        await runner.db.close()


async def test_a_group_member_who_leads_the_section_gets_one_message(
    run_job, school, mail_sink, sis_conn
) -> None:
    chair = await school.person("Chair", status="faculty")
    await school.group("CHAIRS", chair, reminder=True)
    section = await school.section(lead=chair, starts=-60, ends=-10)
    blank = await school.person("Blank")
    await school.enroll(blank, section, "completed")
    params = {"group": "CHAIRS", "divisions": ["TST"], "notify_faculty": True}
    ran = await run_job("notifier.blank_grades", params)
    assert ran.summary.startswith("1 row processed, 1 recipient notified (1 e-mail, 1 reminder)")
    [mail] = mails_to(mail_sink, chair["email"])
    body = text_of(mail)
    assert "These students have no grade" in body and "Please enter grades" in body
    assert body.count(blank["sis_id"]) == 2  # in the group's table and in the faculty table
    assert (
        await sis_conn.fetchval(
            "SELECT count(*) FROM sis.reminders WHERE person_id = $1", chair["id"]
        )
        == 1
    )


async def test_send_rate_spaces_the_mails_of_runs_sharing_the_relay(
    run_job, school, mail_sink
) -> None:
    """``send_rate`` 40/s: the 12 mails of two runs at once (a group member and five students
    each) share one bucket of the relay, so they take at least 11/40 s; the output says so."""
    for n in range(5):
        owes = await school.person(f"Owes{n}")
        await school.post(owes, "TUIT", "900")
    params = {**ONLY_TST, "notify_students": True, "send_rate": 40}
    started = time.monotonic()
    runs = await asyncio.gather(
        run_job("notifier.balance_due", params, occurrence_id="occ-rate-1"),
        run_job("notifier.balance_due", params, occurrence_id="occ-rate-2"),
    )
    elapsed = time.monotonic() - started
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert len(mail_sink.messages) == 12
    assert elapsed >= 11 / 40
    assert "send rate: at most 40 e-mails per second through" in runs[0].text


def test_a_send_rate_out_of_range_is_refused_when_saved() -> None:
    info = registry.get("notifier.balance_due").info()  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match=r"param\.send_rate"):
        validate_params(info, {"send_rate": "0"})
    assert validate_params(info, {"send_rate": "12.5"})["send_rate"] == 12.5

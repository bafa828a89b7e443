"""The seeds' notifiers, each declared on the one mechanism in ``notify``.

Titles and descriptions come from the Timed Task Scheduler seed; every selection is SQL over the
reference SIS schema (docs/sis-schema.md). Rows about a student are limited by the student's
division, campus, department and level; rows about a section by the section's division and
campus and its course's department and level.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Annotated, Any, Literal

import msgspec

from belltower import sis
from belltower.errors import InvalidInput

from .notify import Notifier, NotifierParams, Query, Row, render

Meta = msgspec.Meta
Statuses = Annotated[
    list[sis.PersonStatus],
    Meta(description="module statuses (student, faculty, staff, prospect, alumni) to include"),
]
Threshold = Annotated[int, Meta(ge=0, description="a row is reported at or above this number")]
DaysAfterEnd = Annotated[
    int, Meta(ge=0, description="days that must have passed since the section ended")
]
StartDate = Annotated[
    date | None, Meta(description="only sections starting on or after this day; empty: any")
]
Channel = Annotated[Literal["email", "reminder", "both"], Meta(description="how they are told")]
NotifyStudents = Annotated[bool, Meta(description="also tell each student about their own rows")]
NotifyFaculty = Annotated[
    bool, Meta(description="also tell each section's lead faculty member about their sections")
]
LookBack = Annotated[
    int,
    Meta(
        ge=1,
        le=3650,
        description="on the first run, how many days back 'since the last run' starts",
    ),
]

NAME = "p.last_name || ', ' || p.first_name AS name, p.sis_id"
SECTION = "c.code || '-' || s.section_code AS section, c.title AS course"
FACULTY = "(SELECT f.last_name || ', ' || f.first_name FROM sis.people f WHERE f.id = s.lead_faculty_id) AS faculty"

STUDENT_COLUMNS = (("name", "Name"), ("sis_id", "ID"))
SECTION_COLUMNS = (("section", "Section"), ("course", "Course"))


async def _rows(
    q: Query[Any],
    sql: str,
    args: list[Any],
    item: Callable[[dict[str, Any]], str],
    *,
    faculty: str | None = None,
    person: str = "person_id",
) -> list[Row]:
    records = await q.conn.fetch(sql, *args)
    out = []
    for record in records:
        values = dict(record)
        out.append(
            Row(
                person_id=values[person],
                item=item(values),
                values=values,
                faculty_id=values.get(faculty) if faculty else None,
            )
        )
    return out


def _section_item(v: dict[str, Any]) -> str:
    return f"section:{v['section_id']}"


# Attendance -----------------------------------------------------------------------------------


class AttendanceParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "ADVISING"
    threshold: Threshold = 3
    start_date: Annotated[
        date | None, Meta(description="count absences on or after this day; empty: the whole term")
    ] = None


class AttendanceTardiesParams(AttendanceParams, kw_only=True, forbid_unknown_fields=True):
    tardy_threshold: Annotated[
        int, Meta(ge=0, description="a student is reported at or above this many tardies, too")
    ] = 3


def _attendance(with_tardies: bool) -> Callable[[Query[Any]], Any]:
    async def select(q: Query[AttendanceParams]) -> list[Row]:
        args: list[Any] = [q.params.start_date or date.min, q.today, q.params.threshold]
        having = "count(*) FILTER (WHERE a.mark = 'absent') >= $3"
        if with_tardies:
            args.append(q.params.tardy_threshold)  # type: ignore[attr-defined]
            having += f" OR count(*) FILTER (WHERE a.mark = 'tardy') >= ${len(args)}"
        where = q.where(args)
        sql = f"""
            SELECT p.id AS person_id, {NAME}, s.id AS section_id, {SECTION},
                   count(*) FILTER (WHERE a.mark = 'absent') AS absences,
                   count(*) FILTER (WHERE a.mark = 'tardy') AS tardies,
                   max(a.meets_on) FILTER (WHERE a.mark IN ('absent', 'tardy')) AS last_missed
              FROM sis.attendance a
              JOIN sis.people p ON p.id = a.person_id
              JOIN sis.sections s ON s.id = a.section_id
              JOIN sis.courses c ON c.id = s.course_id
             WHERE a.meets_on >= $1 AND a.meets_on <= $2 AND {where}
             GROUP BY p.id, s.id, c.id
            HAVING {having}
             ORDER BY name, section"""
        return await _rows(q, sql, args, _section_item)

    return select


attendance = Notifier(
    name="notifier.attendance",
    title="Notifier: Attendance",
    description=(
        "The Attendance notifier alerts a group of administrators when any students have class "
        "absences greater than or equal to a selected threshold. The notification can be limited "
        "to a chosen start date as well as by Division, Campus, Department, and/or Level."
    ),
    params=AttendanceParams,
    select=_attendance(with_tardies=False),
    columns=(
        *STUDENT_COLUMNS,
        *SECTION_COLUMNS,
        ("absences", "Absences"),
        ("last_missed", "Last missed"),
    ),
    subject="{{ count }} students with {{ params.threshold }} or more absences in a class",
    intro="These students have {{ params.threshold }} or more absences in a class"
    "{% if params.start_date %} since {{ params.start_date }}{% endif %}:",
)

attendance_tardies = Notifier(
    name="notifier.attendance_tardies",
    title="Notifier: Attendance with Tardies",
    description=(
        "The Attendance with Tardies notifier alerts a group of administrators when any students "
        "have class absences or tardies greater than or equal to a selected threshold. The "
        "notification can be limited to a chosen start date as well as by Division, Campus, "
        "Department, and/or Level."
    ),
    params=AttendanceTardiesParams,
    select=_attendance(with_tardies=True),
    columns=(
        *STUDENT_COLUMNS,
        *SECTION_COLUMNS,
        ("absences", "Absences"),
        ("tardies", "Tardies"),
        ("last_missed", "Last absent or tardy"),
    ),
    subject="{{ count }} students over the absence or tardy threshold",
    intro="These students have {{ params.threshold }} or more absences or "
    "{{ params.tardy_threshold }} or more tardies in a class"
    "{% if params.start_date %} since {{ params.start_date }}{% endif %}:",
)


# Money ----------------------------------------------------------------------------------------


class BalanceDueParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "BURSAR"
    minimum_balance: Annotated[
        float, Meta(gt=0, description="report balances due of at least this amount")
    ] = 0.01
    notify_students: NotifyStudents = False
    student_channel: Channel = "email"


async def _balance_due(q: Query[BalanceDueParams]) -> list[Row]:
    args: list[Any] = [q.params.minimum_balance]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, b.balance, b.last_posted_on
          FROM sis.balances b JOIN sis.people p ON p.id = b.person_id
         WHERE b.balance >= $1 AND {q.where(args)}
         ORDER BY b.balance DESC, name"""
    return await _rows(q, sql, args, lambda v: "balance")


balance_due = Notifier(
    name="notifier.balance_due",
    title="Notifier: Balance Due",
    description=(
        "The Balance Due notifier is designed to inform staff members that a student has an "
        "outstanding balance that needs to be paid."
    ),
    params=BalanceDueParams,
    select=_balance_due,
    columns=(*STUDENT_COLUMNS, ("balance", "Balance due"), ("last_posted_on", "Last posting")),
    subject="{{ count }} students with a balance due",
    intro="These students have an outstanding balance of at least {{ params.minimum_balance }}:",
    student_subject="You have a balance due",
    student_intro="Your student account has an outstanding balance. Please pay it or contact the bursar's office.",
)


class CreditBalanceParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "BURSAR"
    minimum_credit: Annotated[
        float, Meta(gt=0, description="report credit balances of at least this amount")
    ] = 0.01


async def _credit_balance(q: Query[CreditBalanceParams]) -> list[Row]:
    args: list[Any] = [q.today, q.params.minimum_credit]
    sql = f"""
        WITH ledger AS (
            SELECT t.person_id, sum(t.amount) AS balance,
                   max(t.posted_on) FILTER (WHERE tc.kind = 'financial_aid' AND tc.post_award) AS last_aid_on
              FROM sis.transactions t
              JOIN sis.transaction_codes tc ON tc.code = t.code
              LEFT JOIN sis.terms term ON term.id = t.term_id
             WHERE t.term_id IS NULL OR term.starts_on <= $1
             GROUP BY t.person_id)
        SELECT p.id AS person_id, {NAME}, (-l.balance)::numeric(12, 2) AS credit, l.last_aid_on
          FROM ledger l JOIN sis.people p ON p.id = l.person_id
         WHERE -l.balance >= $2 AND {q.where(args)}
         ORDER BY credit DESC, name"""
    return await _rows(q, sql, args, lambda v: "credit")


credit_balance = Notifier(
    name="notifier.credit_balance",
    title="Notifier: Credit Balance",
    description=(
        "The Credit Balance notifier sends an alert to the members of the notification group "
        "showing the students that have credit balances and the date the last financial aid "
        "payment was applied to their accounts. The notifier only includes T-codes that have the "
        "Post Award box checked. It calculates balances and shows dates based on the current "
        "system variables in the current school year/semester and before."
    ),
    params=CreditBalanceParams,
    select=_credit_balance,
    columns=(
        *STUDENT_COLUMNS,
        ("credit", "Credit balance"),
        ("last_aid_on", "Last post-award aid"),
    ),
    subject="{{ count }} students with a credit balance",
    intro="These students have a credit balance in the current term and before "
    "(last financial aid payment from post-award T-codes shown):",
)


# Enrollment -----------------------------------------------------------------------------------


class BelowFullTimeParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "REGISTRAR"
    full_time_credits: Annotated[
        float, Meta(ge=0, description="full-time threshold in credits; 0: each term's own")
    ] = 0
    notify_students: NotifyStudents = False
    student_channel: Channel = "email"
    first_run_look_back_days: LookBack = 1


async def _below_full_time(q: Query[BelowFullTimeParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until, q.params.full_time_credits or None]
    sql = f"""
        WITH dropped AS (
            SELECT DISTINCT ON (x.person_id, x.term_id) x.person_id, x.term_id, x.term_credits_before,
                   x.changed_at, coalesce($3::numeric, t.full_time_credits) AS threshold
              FROM sis.schedule_changes x JOIN sis.terms t ON t.id = x.term_id
             WHERE x.changed_at > $1 AND x.changed_at <= $2
               AND x.term_credits_before >= coalesce($3::numeric, t.full_time_credits)
               AND x.term_credits_after < coalesce($3::numeric, t.full_time_credits)
             ORDER BY x.person_id, x.term_id, x.changed_at DESC)
        SELECT p.id AS person_id, {NAME}, t.code AS term, d.term_id, d.term_credits_before AS credits_before,
               now_credits.credits AS credits_now, d.threshold, d.changed_at
          FROM dropped d
          JOIN sis.people p ON p.id = d.person_id
          JOIN sis.terms t ON t.id = d.term_id
          CROSS JOIN LATERAL (
              SELECT coalesce(sum(e.credits), 0) AS credits FROM sis.enrollments e
                JOIN sis.sections s ON s.id = e.section_id
               WHERE e.person_id = d.person_id AND s.term_id = d.term_id
                 AND e.status IN ('enrolled', 'completed')) now_credits
         WHERE now_credits.credits < d.threshold AND {q.where(args)}
         ORDER BY name"""
    return await _rows(q, sql, args, lambda v: f"term:{v['term_id']}")


below_full_time = Notifier(
    name="notifier.below_full_time",
    title="Notifier: Below Full-Time Status",
    description=(
        "The Below Full-Time Status notifier alerts staff members when a students who was "
        "previously above the full-time threshold drops below it."
    ),
    params=BelowFullTimeParams,
    select=_below_full_time,
    columns=(
        *STUDENT_COLUMNS,
        ("term", "Term"),
        ("credits_before", "Credits before"),
        ("credits_now", "Credits now"),
        ("threshold", "Full time"),
        ("changed_at", "Changed"),
    ),
    subject="{{ count }} students dropped below full-time status",
    intro="These students were full time and dropped below the threshold since the last run:",
    student_subject="You are no longer enrolled full time",
    student_intro="After your latest schedule change you are below full-time status. "
    "This can affect financial aid; talk to the registrar if that was not intended.",
    repeat="since_last_run",
)


class EnrollmentConfirmationParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "REGISTRAR"
    statuses: Statuses = msgspec.field(default_factory=lambda: ["student"])
    days_threshold: Annotated[
        int, Meta(ge=0, le=365, description="report courses starting this many days after today")
    ] = 0
    notify_students: NotifyStudents = False
    student_channel: Channel = "email"


async def _enrollment_confirmation(q: Query[EnrollmentConfirmationParams]) -> list[Row]:
    args: list[Any] = [q.today + timedelta(days=q.params.days_threshold)]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, s.id AS section_id, {SECTION}, s.starts_on, s.meeting_days
          FROM sis.enrollments e
          JOIN sis.people p ON p.id = e.person_id
          JOIN sis.sections s ON s.id = e.section_id
          JOIN sis.courses c ON c.id = s.course_id
         WHERE e.status IN ('enrolled', 'audit') AND s.starts_on = $1 AND {q.where(args)}
         ORDER BY name, section"""
    return await _rows(q, sql, args, _section_item)


enrollment_confirmation = Notifier(
    name="notifier.enrollment_confirmation",
    title="Notifier: Enrollment Confirmation",
    description=(
        "The Enrollment Confirmation notifier sends an alert to the members of the notification "
        "group showing the students that have courses starting on the date specified. Optionally, "
        "it can send out a notification to the students themselves, letting them know the courses "
        "they are registered for that are starting on that day. The notifier can be limited by "
        "Module Status, Division, Campus, Department, and/or Level. The administrator can also set "
        "a Number of Days Threshold to determine when the notifier is sent out."
    ),
    params=EnrollmentConfirmationParams,
    select=_enrollment_confirmation,
    columns=(*STUDENT_COLUMNS, *SECTION_COLUMNS, ("starts_on", "Starts"), ("meeting_days", "Days")),
    subject="{{ count }} enrollments in courses starting {{ rows[0].starts_on if rows else today }}",
    intro="These students are enrolled in courses starting on the day shown:",
    student_subject="Your courses starting {{ rows[0].starts_on }}",
    student_intro="This confirms your enrollment in these courses:",
)


class RegistrationReminderParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    statuses: Statuses = msgspec.field(default_factory=lambda: ["student"])
    days_before: Annotated[
        int,
        Meta(ge=0, le=365, description="Days Before Classes Begin: remind this many days ahead"),
    ] = 7
    remind_about: Annotated[
        Literal["classes_start", "registration_opens"],
        Meta(description="classes starting, or the student's registration appointment opening"),
    ] = "classes_start"
    notify_students: Annotated[bool, Meta(description="remind the students (the point of it)")] = (
        True
    )
    student_channel: Channel = "email"


async def _registration_reminder(q: Query[RegistrationReminderParams]) -> list[Row]:
    args: list[Any] = [q.today + timedelta(days=q.params.days_before)]
    if q.params.remind_about == "classes_start":
        sql = f"""
            SELECT p.id AS person_id, {NAME}, s.id AS section_id, {SECTION}, s.starts_on, s.meeting_days
              FROM sis.enrollments e
              JOIN sis.people p ON p.id = e.person_id
              JOIN sis.sections s ON s.id = e.section_id
              JOIN sis.courses c ON c.id = s.course_id
             WHERE e.status IN ('enrolled', 'audit') AND s.starts_on = $1 AND {q.where(args)}
             ORDER BY name, section"""
        return await _rows(q, sql, args, _section_item)
    sql = f"""
        SELECT p.id AS person_id, {NAME}, t.code AS term, t.name AS term_name, r.starts_at, r.ends_at,
               r.starts_at::date AS starts_on, NULL AS section, NULL AS course
          FROM sis.registration_appointments r
          JOIN sis.people p ON p.id = r.person_id
          JOIN sis.terms t ON t.id = r.term_id
         WHERE (r.starts_at AT TIME ZONE 'UTC')::date = $1 AND {q.where(args)}
         ORDER BY name"""
    return await _rows(q, sql, args, lambda v: f"appointment:{v['term']}")


registration_reminder = Notifier(
    name="notifier.registration_reminder",
    title="Notifier: Registration Email Reminder",
    description=(
        "The Registration Email Reminder notification triggers a reminder to enrolled students "
        "that classes are starting. The date that the notifier is sent is determined by the Days "
        "Before Classes Begin field. The notifier can be limited by Module Status, Division, "
        "Campus, Department, and/or Level."
    ),
    params=RegistrationReminderParams,
    select=_registration_reminder,
    columns=(*STUDENT_COLUMNS, *SECTION_COLUMNS, ("starts_on", "Starts")),
    subject="{{ count }} registration reminders for {{ rows[0].starts_on if rows else today }}",
    intro="These students were reminded:",
    student_subject="{% if params.remind_about == 'classes_start' %}Your classes start on "
    "{{ rows[0].starts_on }}{% else %}Registration opens for you on {{ rows[0].starts_on }}{% endif %}",
    student_intro="{% if params.remind_about == 'classes_start' %}A reminder: these classes you are "
    "registered for start in {{ params.days_before }} days.{% else %}A reminder: your registration "
    "appointment for {{ rows[0].term_name }} opens on {{ rows[0].starts_on }}.{% endif %}",
)


class ScheduleChangesParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "REGISTRAR"
    look_back_days: Annotated[
        int,
        Meta(
            ge=0, le=365, description="include changes made this many days before today, and today"
        ),
    ] = 7


async def _schedule_changes(q: Query[ScheduleChangesParams]) -> list[Row]:
    args: list[Any] = [
        q.today - timedelta(days=q.params.look_back_days),
        q.today + timedelta(days=1),
    ]
    sql = f"""
        WITH latest AS (
            SELECT DISTINCT ON (x.person_id) x.person_id, x.term_id, x.changed_at, x.action,
                   count(*) OVER (PARTITION BY x.person_id) AS changes
              FROM sis.schedule_changes x
             WHERE x.changed_at >= $1 AND x.changed_at < $2
             ORDER BY x.person_id, x.changed_at DESC, x.id DESC)
        SELECT p.id AS person_id, {NAME}, l.changed_at AS last_change, l.action AS last_action,
               l.changes, t.code AS term,
               (SELECT coalesce(sum(e.credits), 0) FROM sis.enrollments e
                  JOIN sis.sections s ON s.id = e.section_id
                 WHERE e.person_id = l.person_id AND s.term_id = l.term_id
                   AND e.status IN ('enrolled', 'completed')) AS credits
          FROM latest l
          JOIN sis.people p ON p.id = l.person_id
          JOIN sis.terms t ON t.id = l.term_id
         WHERE {q.where(args)}
         ORDER BY name"""
    return await _rows(q, sql, args, lambda v: "schedule")


schedule_changes = Notifier(
    name="notifier.schedule_changes",
    title="Notifier: Student Schedule Changes",
    description=(
        "The Student Schedule Changes notifier sends an alert to the members of the notification "
        "group showing the students that have made changes to their course schedule either by "
        "dropping, adding, or withdrawing from a course. The notifier displays the date of the "
        "most recent schedule change along with the current number of enrolled credits. Students "
        "who have made more than one change will only appear once. The report can be limited "
        "based on the Look Back Days field, which controls how many days prior to the day the "
        "notifier is run are included. The notifier can be limited by Division, Campus, "
        "Department, and/or Level. It is recommended that this notifier only be activated after "
        "the scheduling period has ended, such as during the drop/add and withdrawal periods."
    ),
    params=ScheduleChangesParams,
    select=_schedule_changes,
    columns=(
        *STUDENT_COLUMNS,
        ("last_change", "Most recent change"),
        ("last_action", "Change"),
        ("changes", "Changes"),
        ("term", "Term"),
        ("credits", "Enrolled credits"),
    ),
    subject="{{ count }} students changed their schedule in the last {{ params.look_back_days }} days",
    intro="These students added, dropped or withdrew from a course since {{ days_before(params.look_back_days) }}:",
)


class WithdrawnParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "REGISTRAR"
    day_to_look_at: Annotated[
        int, Meta(ge=0, le=3650, description="0: today, 1: yesterday, n: n days ago")
    ] = 0
    notify_students: NotifyStudents = False
    student_channel: Channel = "email"
    notify_faculty: NotifyFaculty = False
    faculty_channel: Channel = "email"


async def _withdrawn(q: Query[WithdrawnParams]) -> list[Row]:
    args: list[Any] = [q.today - timedelta(days=q.params.day_to_look_at)]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, s.id AS section_id, {SECTION}, {FACULTY},
               s.lead_faculty_id, e.withdrawn_on
          FROM sis.enrollments e
          JOIN sis.people p ON p.id = e.person_id
          JOIN sis.sections s ON s.id = e.section_id
          JOIN sis.courses c ON c.id = s.course_id
         WHERE e.status = 'withdrawn' AND e.withdrawn_on = $1 AND {q.where(args)}
         ORDER BY name, section"""
    return await _rows(q, sql, args, _section_item, faculty="lead_faculty_id")


withdrawn = Notifier(
    name="notifier.withdrawn",
    title="Notifier: Withdrawn Notifier",
    description=(
        "The Withdrawn Notifier sends an alert to the members of the notification group showing "
        "the individuals that have a withdrawn process date for a course with the date specified "
        "by the notifier. Optionally, it can be set to send a notification to the students and lead "
        "faculty members letting them know the courses that have a withdrawal in which they are "
        "associated. The notifier is processed based on a Day to Look At value, which controls "
        "whether the notifier looks at the current day, a previous day, or a day further in the "
        "past. The notifier can be limited by the student's Division, Campus, Department, and/or Level."
    ),
    params=WithdrawnParams,
    select=_withdrawn,
    columns=(
        *STUDENT_COLUMNS,
        *SECTION_COLUMNS,
        ("faculty", "Lead faculty"),
        ("withdrawn_on", "Withdrawn"),
    ),
    subject="{{ count }} course withdrawals processed on {{ days_before(params.day_to_look_at) }}",
    intro="These withdrawals have a withdrawn process date of {{ days_before(params.day_to_look_at) }}:",
    student_subject="Your course withdrawal",
    student_intro="You have been withdrawn from these courses:",
    faculty_subject="Withdrawals from your sections",
    faculty_intro="These students withdrew from sections you lead:",
)


# Grades ---------------------------------------------------------------------------------------


class BlankGradesParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "REGISTRAR"
    days_after_end: DaysAfterEnd = 7
    start_date: StartDate = None
    notify_faculty: NotifyFaculty = False
    faculty_channel: Channel = "email"


async def _blank_grades(q: Query[BlankGradesParams]) -> list[Row]:
    args: list[Any] = [
        q.today - timedelta(days=q.params.days_after_end),
        q.params.start_date or date.min,
    ]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, s.id AS section_id, {SECTION}, {FACULTY},
               s.lead_faculty_id, s.ends_on
          FROM sis.enrollments e
          JOIN sis.people p ON p.id = e.person_id
          JOIN sis.sections s ON s.id = e.section_id
          JOIN sis.courses c ON c.id = s.course_id
          LEFT JOIN sis.grades g ON g.enrollment_id = e.id
         WHERE e.status IN ('enrolled', 'completed') AND s.ends_on <= $1 AND s.starts_on >= $2
           AND (g.enrollment_id IS NULL OR g.grade IS NULL OR btrim(g.grade) = '')
           AND {q.demographics().where_section("s", "c", args)}
         ORDER BY section, name"""
    return await _rows(q, sql, args, _section_item, faculty="lead_faculty_id")


blank_grades = Notifier(
    name="notifier.blank_grades",
    title="Notifier: Blank Grades",
    description=(
        "The Blank Grades notifier alerts the notification group that there are blank grades when "
        "a user-defined number of days after the end of a course have passed. It also, optionally, "
        "notifies the faculty member who was listed as the lead instructor on the course via email "
        "or a reminder. The notifier can be limited by Division, Campus, Department, and/or Level "
        "as well as by the start date of the course section."
    ),
    params=BlankGradesParams,
    select=_blank_grades,
    columns=(*SECTION_COLUMNS, ("faculty", "Lead faculty"), ("ends_on", "Ended"), *STUDENT_COLUMNS),
    subject="{{ count }} blank grades in courses ended {{ params.days_after_end }}+ days ago",
    intro="These students have no grade in sections that ended at least "
    "{{ params.days_after_end }} days ago:",
    faculty_subject="Blank grades in your sections",
    faculty_intro="Please enter grades for these students in sections you lead:",
)


class SectionGradesParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "ACADEMIC_AFFAIRS"
    days_after_end: DaysAfterEnd = 7
    notify_faculty: NotifyFaculty = False
    faculty_channel: Channel = "email"


async def _final_not_posted(q: Query[SectionGradesParams]) -> list[Row]:
    args: list[Any] = [q.today - timedelta(days=q.params.days_after_end)]
    sql = f"""
        SELECT s.lead_faculty_id AS person_id, s.lead_faculty_id, s.id AS section_id, {SECTION},
               {FACULTY}, s.ends_on,
               count(*) FILTER (WHERE g.enrollment_id IS NULL OR NOT g.final_posted) AS not_posted,
               count(*) AS students
          FROM sis.sections s
          JOIN sis.courses c ON c.id = s.course_id
          JOIN sis.enrollments e ON e.section_id = s.id AND e.status IN ('enrolled', 'completed')
          LEFT JOIN sis.grades g ON g.enrollment_id = e.id
         WHERE s.ends_on <= $1 AND s.lead_faculty_id IS NOT NULL
           AND {q.demographics().where_section("s", "c", args)}
         GROUP BY s.id, c.id
        HAVING count(*) FILTER (WHERE g.enrollment_id IS NULL OR NOT g.final_posted) > 0
           AND NOT bool_and(coalesce(g.is_official, false))
         ORDER BY section"""
    return await _rows(q, sql, args, _section_item, faculty="lead_faculty_id")


final_grades_not_posted = Notifier(
    name="notifier.final_grades_not_posted",
    title="Notifier: Final Grades Not Posted",
    description=(
        "The Final Grades Not Posted notifier alerts the notification group that there are grades "
        "that have not been finalized by a faculty member after a specified number of days have "
        "passed since the end of the course. Courses that have all official grades are ignored. "
        "Optionally, it can notify the faculty member via email or a reminder. The notifier can be "
        "limited by Division, Campus, Department, and/or Level."
    ),
    params=SectionGradesParams,
    select=_final_not_posted,
    columns=(
        *SECTION_COLUMNS,
        ("faculty", "Lead faculty"),
        ("ends_on", "Ended"),
        ("not_posted", "Not final"),
        ("students", "Students"),
    ),
    subject="{{ count }} sections without final grades {{ params.days_after_end }}+ days after the end",
    intro="These sections ended at least {{ params.days_after_end }} days ago and still have "
    "grades that are not final:",
    faculty_subject="Final grades to post for your sections",
    faculty_intro="Please post final grades for these sections you lead:",
)


async def _not_official(q: Query[SectionGradesParams]) -> list[Row]:
    args: list[Any] = [q.today - timedelta(days=q.params.days_after_end)]
    sql = f"""
        SELECT s.lead_faculty_id AS person_id, s.lead_faculty_id, s.id AS section_id, {SECTION},
               {FACULTY}, s.ends_on, count(*) AS unofficial
          FROM sis.sections s
          JOIN sis.courses c ON c.id = s.course_id
          JOIN sis.enrollments e ON e.section_id = s.id AND e.status IN ('enrolled', 'completed')
          JOIN sis.grades g ON g.enrollment_id = e.id
         WHERE s.ends_on <= $1 AND s.lead_faculty_id IS NOT NULL
           AND g.grade IS NOT NULL AND NOT g.is_official
           AND {q.demographics().where_section("s", "c", args)}
         GROUP BY s.id, c.id
         ORDER BY section"""
    return await _rows(q, sql, args, _section_item, faculty="lead_faculty_id")


grades_not_official = Notifier(
    name="notifier.grades_not_official",
    title="Notifier: Grades Not Official",
    description=(
        "The Grades Not Official notifier alerts the notification group that unofficial grades "
        "remain after a user-defined number of days past the end of the course. Optionally, it can "
        "notify the faculty member via email or a reminder. The notifier can be limited by "
        "Division, Campus, Department, and/or Level."
    ),
    params=SectionGradesParams,
    select=_not_official,
    columns=(
        *SECTION_COLUMNS,
        ("faculty", "Lead faculty"),
        ("ends_on", "Ended"),
        ("unofficial", "Unofficial grades"),
    ),
    subject="{{ count }} sections with unofficial grades {{ params.days_after_end }}+ days after the end",
    intro="These sections ended at least {{ params.days_after_end }} days ago and still have unofficial grades:",
    faculty_subject="Unofficial grades in your sections",
    faculty_intro="These sections you lead still have unofficial grades:",
)


class IncompleteGradesParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "REGISTRAR"
    start_date: StartDate = None
    days_since_end: Annotated[
        int, Meta(ge=0, description="only sections that ended at least this many days ago")
    ] = 0
    official_only: Annotated[bool, Meta(description="look only at official grades")] = False
    notify_students: NotifyStudents = False
    student_channel: Channel = "email"
    notify_faculty: NotifyFaculty = False
    faculty_channel: Channel = "email"


async def _incomplete(q: Query[IncompleteGradesParams]) -> list[Row]:
    args: list[Any] = [
        q.today - timedelta(days=q.params.days_since_end), q.params.start_date or date.min,
        q.params.official_only,
    ]  # fmt: skip
    sql = f"""
        SELECT p.id AS person_id, {NAME}, s.id AS section_id, {SECTION}, {FACULTY},
               s.lead_faculty_id, s.ends_on, g.incomplete_due
          FROM sis.grades g
          JOIN sis.enrollments e ON e.id = g.enrollment_id
          JOIN sis.people p ON p.id = e.person_id
          JOIN sis.sections s ON s.id = e.section_id
          JOIN sis.courses c ON c.id = s.course_id
         WHERE g.is_incomplete AND s.ends_on <= $1 AND s.starts_on >= $2
           AND (NOT $3 OR g.is_official) AND {q.where(args)}
         ORDER BY name, section"""
    return await _rows(q, sql, args, _section_item, faculty="lead_faculty_id")


incomplete_grades = Notifier(
    name="notifier.incomplete_grades",
    title="Notifier: Incomplete Grades",
    description=(
        "The Incomplete Grades notifier sends an alert to the members of the notification group "
        "showing the individuals that have outstanding incomplete grades within the date limits "
        "set by the notifier. Optionally, it can be set to send out a notification to the students "
        "and lead faculty member letting them know the courses that have an outstanding incomplete "
        "with which they are associated. The notifier can be limited by Division, Campus, "
        "Department, and/or Level as well as by the start date and the delta days since the end of "
        "the course. There is also a checkbox to determine whether only official grades should be "
        "looked at or all grades. Care should be taken in determining how often to run the notifier "
        "as the individuals will get the reminder as long as they meet the criteria."
    ),
    params=IncompleteGradesParams,
    select=_incomplete,
    columns=(
        *STUDENT_COLUMNS,
        *SECTION_COLUMNS,
        ("faculty", "Lead faculty"),
        ("ends_on", "Ended"),
        ("incomplete_due", "Incomplete due"),
    ),
    subject="{{ count }} outstanding incomplete grades",
    intro="These incomplete grades are outstanding:",
    student_subject="You have an incomplete grade outstanding",
    student_intro="You have an outstanding incomplete in these courses; please finish the work by the date shown:",
    faculty_subject="Outstanding incompletes in your sections",
    faculty_intro="These students have an outstanding incomplete in sections you lead:",
)


# People ---------------------------------------------------------------------------------------


class BirthdayParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "ADVISING"
    statuses: Statuses = msgspec.field(default_factory=lambda: ["student"])
    age: Annotated[
        int, Meta(ge=0, le=130, description="only people turning this age; 0: any age")
    ] = 0
    notify_students: Annotated[
        bool, Meta(description="send a birthday greeting to each person having the birthday")
    ] = False
    student_channel: Channel = "email"
    greeting: Annotated[
        str, Meta(description="the greeting (Jinja2: first_name, last_name, age)")
    ] = "Happy birthday, {{ first_name }}! Best wishes from all of us."


async def _birthday(q: Query[BirthdayParams]) -> list[Row]:
    today = q.today
    feb28_leapless = today.month == 2 and today.day == 28 and not _leap(today.year)
    args: list[Any] = [today, feb28_leapless, q.params.age or None]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, p.first_name, p.last_name, p.status, p.birth_date,
               extract(year FROM age($1::date, p.birth_date))::int AS age
          FROM sis.people p
         WHERE p.birth_date IS NOT NULL
           AND ((extract(month FROM p.birth_date) = extract(month FROM $1::date)
                 AND extract(day FROM p.birth_date) = extract(day FROM $1::date))
                OR ($2 AND extract(month FROM p.birth_date) = 2 AND extract(day FROM p.birth_date) = 29))
           AND ($3::int IS NULL OR extract(year FROM age($1::date, p.birth_date)) = $3)
           AND {q.where(args)}
         ORDER BY name"""
    rows = await _rows(q, sql, args, lambda v: f"birthday:{today.year}")
    for row in rows:
        row.values["greeting"] = render(q.params.greeting, "param.greeting", **row.values)
    return rows


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


birthday = Notifier(
    name="notifier.birthday",
    title="Notifier: Birthday",
    description=(
        "The Birthday notifier sends an alert to the members of the notification group showing the "
        "individuals that have birthdays for the day it is run. Optionally, it can be set to send "
        "out a birthday greeting to the individual having the birthday. The notifier can be limited "
        "by Module Status, Division, Campus, Department, and/or Level. The notifier can also be "
        "configured to only send a notification about, or a greeting to, users turning a specific age."
    ),
    params=BirthdayParams,
    select=_birthday,
    columns=(*STUDENT_COLUMNS, ("status", "Status"), ("birth_date", "Born"), ("age", "Age")),
    subject="{{ count }} birthdays today",
    intro="These people have their birthday today ({{ today }}):",
    student_subject="Happy birthday!",
    student_intro="{{ rows[0].greeting }}",
    student_table=False,
)


class MinorStatusParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "REGISTRAR"
    first_run_look_back_days: LookBack = 1


async def _assign_minors(conn: Any, params: MinorStatusParams, today: date) -> None:
    await sis.assign_minor_indicators(conn, today)


async def _minor_status(q: Query[MinorStatusParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, p.birth_date, i.id AS indicator_id, i.starts_on, i.ends_on
          FROM sis.person_indicators i JOIN sis.people p ON p.id = i.person_id
         WHERE i.indicator = 'minor' AND i.added_at > $1 AND i.added_at <= $2 AND {q.where(args)}
         ORDER BY name"""
    return await _rows(q, sql, args, lambda v: f"minor:{v['indicator_id']}")


minor_status = Notifier(
    name="notifier.minor_status",
    title="Notifier: Minor Status Indicator",
    description=(
        "The Minor Status Indicator notifier sends an alert to members of the notification group "
        "showing students that have had a new Minor status indicator added. The minor status is "
        "automatically assigned to any student who is under 18 based on their date of birth as "
        "stored on their Biographic page. Those with a minor status indicator at the time of the "
        "last notifier run will be ignored. The end date of the indicator will be the date that "
        "each user turns 18. The notifier can be limited by Division, Campus, Department, and/or Level."
    ),
    params=MinorStatusParams,
    select=_minor_status,
    prepare=_assign_minors,
    columns=(
        *STUDENT_COLUMNS,
        ("birth_date", "Born"),
        ("starts_on", "Minor from"),
        ("ends_on", "Minor until"),
    ),
    subject="{{ count }} students with a new minor status indicator",
    intro="These students were given a minor status indicator since the last run:",
    repeat="since_last_run",
)


class StatusAdditionParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "ADMISSIONS"
    statuses: Annotated[
        list[sis.PersonStatus], Meta(description="module statuses to report; empty: all")
    ] = []
    first_run_look_back_days: LookBack = 1


async def _status_addition(q: Query[StatusAdditionParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until]
    status_filter = ""
    if q.params.statuses:
        args.append(list(q.params.statuses))
        status_filter = f"AND ps.status = ANY(${len(args)}::text[])"
    p = q.params
    limits = sis.Demographics(
        divisions=p.divisions, campuses=p.campuses, departments=p.departments, levels=p.levels
    )
    where = limits.where("p", args)
    sql = f"""
        SELECT p.id AS person_id, {NAME}, ps.id AS status_id, ps.status, ps.starts_on, ps.added_at
          FROM sis.person_statuses ps JOIN sis.people p ON p.id = ps.person_id
         WHERE ps.added_at > $1 AND ps.added_at <= $2 {status_filter} AND {where}
         ORDER BY ps.added_at, name"""
    return await _rows(q, sql, args, lambda v: f"status:{v['status_id']}")


status_addition = Notifier(
    name="notifier.status_addition",
    title="Notifier: Status Addition",
    description=(
        "The Status Addition notification alerts the selected group when any users have been added "
        "to SONIS since the last run of the notifier. The notifier can be limited by Module Status, "
        "Division, Campus, Department, and/or Level. Multiple notifiers can be created, each with "
        "their own module status(es) and other demographics."
    ),
    params=StatusAdditionParams,
    select=_status_addition,
    columns=(*STUDENT_COLUMNS, ("status", "Status"), ("starts_on", "From"), ("added_at", "Added")),
    subject="{{ count }} people added since the last run",
    intro="These people were added{% if params.statuses %} with status {{ params.statuses | join(', ') }}"
    "{% endif %} since {{ since.strftime('%Y-%m-%d %H:%M') }} UTC:",
    repeat="since_last_run",
)


class TransferCreditParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "ADMISSIONS"
    first_run_look_back_days: LookBack = 1


async def _transfer_credit(q: Query[TransferCreditParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until]
    sql = f"""
        SELECT p.id AS person_id, {NAME},
               string_agg(DISTINCT tc.institution, '; ') AS institutions,
               string_agg(tc.course_code, ', ' ORDER BY tc.course_code) AS courses,
               sum(tc.credits) AS credits, max(tc.id) AS last_id
          FROM sis.transfer_credits tc JOIN sis.people p ON p.id = tc.person_id
         WHERE tc.added_at > $1 AND tc.added_at <= $2 AND {q.where(args)}
         GROUP BY p.id
         ORDER BY name"""
    return await _rows(q, sql, args, lambda v: f"transfer:{v['last_id']}")


transfer_credit = Notifier(
    name="notifier.transfer_credit",
    title="Notifier: Transfer Credit Notifier",
    description=(
        "The Transfer Credit notifier sends an alert to the members of the notification group "
        "showing students who have received transfer credits since the last time the notifier ran."
    ),
    params=TransferCreditParams,
    select=_transfer_credit,
    columns=(
        *STUDENT_COLUMNS,
        ("institutions", "From"),
        ("courses", "Courses"),
        ("credits", "Credits"),
    ),
    subject="{{ count }} students received transfer credit",
    intro="These students received transfer credit since the last run:",
    repeat="since_last_run",
)


# Holds, health, attendance records --------------------------------------------------------------


class UserDefinedHoldParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "ADVISING"
    hold_types: Annotated[
        list[str], Meta(description="user-defined hold type codes; empty: every user-defined type")
    ] = []
    look_back_days: Annotated[
        int, Meta(ge=0, le=365, description="also holds that began this many days before today")
    ] = 0
    notify_students: Annotated[bool, Meta(description="tell the students about their holds")] = True
    student_channel: Channel = "email"


async def _user_defined_hold(q: Query[UserDefinedHoldParams]) -> list[Row]:
    types = [t.upper() for t in q.params.hold_types]
    if types:
        known = {
            r["code"]
            for r in await q.conn.fetch("SELECT code FROM sis.hold_types WHERE user_defined")
        }
        if unknown := sorted(set(types) - known):
            raise InvalidInput(
                "param.hold_types", f"not user-defined hold types: {', '.join(unknown)}",
                ", ".join(sorted(known)) or "(none defined)",
            )  # fmt: skip
    args: list[Any] = [q.today - timedelta(days=q.params.look_back_days), q.today, types]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, h.id AS hold_id, ht.name AS hold, h.reason, h.starts_on, h.ends_on
          FROM sis.holds h
          JOIN sis.hold_types ht ON ht.code = h.hold_type
          JOIN sis.people p ON p.id = h.person_id
         WHERE ht.user_defined AND h.released_at IS NULL
           AND h.starts_on >= $1 AND h.starts_on <= $2 AND (h.ends_on IS NULL OR h.ends_on >= $2)
           AND (cardinality($3::text[]) = 0 OR h.hold_type = ANY($3::text[]))
           AND {q.where(args)}
         ORDER BY name"""
    return await _rows(q, sql, args, lambda v: f"hold:{v['hold_id']}")


user_defined_hold = Notifier(
    name="notifier.user_defined_hold",
    title="Notifier: User Defined Hold",
    description=(
        "The User Defined Hold notification alerts the members of the selected group when the holds "
        "begin for students who have holds on their accounts. It will also notify the students with "
        "holds on their accounts. The notifier can be limited by Division, Campus, Department, and/or Level."
    ),
    params=UserDefinedHoldParams,
    select=_user_defined_hold,
    columns=(
        *STUDENT_COLUMNS,
        ("hold", "Hold"),
        ("reason", "Reason"),
        ("starts_on", "From"),
        ("ends_on", "Until"),
    ),
    subject="{{ count }} holds began",
    intro="These user-defined holds began:",
    student_subject="A hold has been placed on your account",
    student_intro="A hold has been placed on your account; contact the office named to have it lifted:",
    repeat="once_per_item",
)


class ImmunizationParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = ""
    threshold_days: Annotated[
        int, Meta(ge=0, le=3650, description="report immunizations expiring within this many days")
    ] = 30
    notify_students: Annotated[bool, Meta(description="tell the students (the point of it)")] = True
    student_channel: Channel = "email"


async def _immunization(q: Query[ImmunizationParams]) -> list[Row]:
    args: list[Any] = [q.today, q.today + timedelta(days=q.params.threshold_days)]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, i.id AS immunization_id, i.kind AS immunization, i.expires_on
          FROM sis.immunizations i JOIN sis.people p ON p.id = i.person_id
         WHERE i.expires_on >= $1 AND i.expires_on <= $2 AND {q.where(args)}
         ORDER BY i.expires_on, name"""
    return await _rows(q, sql, args, lambda v: f"immunization:{v['immunization_id']}")


immunization_expiration = Notifier(
    name="notifier.immunization_expiration",
    title="Notifier: Immunization Expiration",
    description=(
        "The Immunization Expiration notifier will automatically notify students once when their "
        "immunizations are near expiration based on the threshold chosen. For example, if a "
        "threshold value of 30 days is entered, the notifier will alert any student with an "
        "immunization expiring within 30 days of the day that the notifier is run. Once the "
        "notification is sent to a user, they will not receive additional notifications. "
        "Expiration is based on the data stored in each user's Health record."
    ),
    params=ImmunizationParams,
    select=_immunization,
    columns=(*STUDENT_COLUMNS, ("immunization", "Immunization"), ("expires_on", "Expires")),
    subject="{{ count }} immunizations expiring within {{ params.threshold_days }} days",
    intro="These immunizations expire within {{ params.threshold_days }} days:",
    student_subject="Your immunization record is about to expire",
    student_intro="According to your health record, these immunizations expire soon. "
    "Please renew them and bring the record to health services:",
    repeat="once_per_item",
)


class NoAttendanceParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "ACADEMIC_AFFAIRS"
    days_threshold: Annotated[
        int,
        Meta(ge=0, le=365, description="a meeting is reported this many days after it was held"),
    ] = 2
    look_back_days: Annotated[
        int,
        Meta(ge=1, le=365, description="only meetings held in this many days before the threshold"),
    ] = 14
    notify_faculty: NotifyFaculty = False
    faculty_channel: Channel = "email"


async def _no_attendance(q: Query[NoAttendanceParams]) -> list[Row]:
    latest = q.today - timedelta(days=q.params.days_threshold)
    args: list[Any] = [latest - timedelta(days=q.params.look_back_days), latest]
    sql = f"""
        SELECT s.lead_faculty_id AS person_id, s.lead_faculty_id, s.id AS section_id, {SECTION},
               {FACULTY}, count(*) AS meetings, min(m.meets_on) AS first_missing,
               max(m.meets_on) AS last_missing,
               string_agg(to_char(m.meets_on, 'YYYY-MM-DD'), ', ' ORDER BY m.meets_on) AS days
          FROM sis.section_meetings m
          JOIN sis.sections s ON s.id = m.section_id
          JOIN sis.courses c ON c.id = s.course_id
         WHERE s.attendance_required AND m.meets_on > $1 AND m.meets_on <= $2
           AND s.lead_faculty_id IS NOT NULL
           AND EXISTS (SELECT 1 FROM sis.enrollments e WHERE e.section_id = s.id
                        AND e.status IN ('enrolled', 'completed'))
           AND NOT EXISTS (SELECT 1 FROM sis.attendance a
                            WHERE a.section_id = m.section_id AND a.meets_on = m.meets_on)
           AND {q.demographics().where_section("s", "c", args)}
         GROUP BY s.id, c.id
         ORDER BY section"""
    return await _rows(q, sql, args, _section_item, faculty="lead_faculty_id")


no_attendance_record = Notifier(
    name="notifier.no_attendance_record",
    title="Notifier: No Attendance Record",
    description=(
        "The No Attendance Record notifier is designed to alert group members when attendance "
        "records have not been submitted for courses that have attendance checking activated. The "
        "notifier will run once the Number of Days Threshold has passed. The notifier can be "
        "limited by Division, Campus, Department, and/or Level."
    ),
    params=NoAttendanceParams,
    select=_no_attendance,
    columns=(
        *SECTION_COLUMNS,
        ("faculty", "Lead faculty"),
        ("meetings", "Meetings"),
        ("days", "Days without attendance"),
    ),
    subject="{{ count }} sections with meetings missing attendance",
    intro="No attendance was recorded for these meetings held at least {{ params.days_threshold }} days ago:",
    faculty_subject="Attendance to record for your sections",
    faculty_intro="Please record attendance for these meetings of sections you lead:",
)


# Timed e-mail -----------------------------------------------------------------------------------


class TimedEmailParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    activities: Annotated[
        list[str],
        Meta(description="codes of the e-mail activities to send; empty: every one due today"),
    ] = []
    notify_students: Annotated[
        bool, Meta(description="send the e-mails to the people (the point of it)")
    ] = True
    student_channel: Channel = "email"


async def _timed_email(q: Query[TimedEmailParams]) -> list[Row]:
    codes = [c.upper() for c in q.params.activities]
    if codes:
        known = {r["code"] for r in await q.conn.fetch("SELECT code FROM sis.email_activities")}
        if unknown := sorted(set(codes) - known):
            raise InvalidInput(
                "param.activities", f"unknown e-mail activities: {', '.join(unknown)}",
                ", ".join(sorted(known)) or "(none defined)",
            )  # fmt: skip
    activities = await q.conn.fetch(
        """SELECT id, code, subject, body_text, statuses FROM sis.email_activities
            WHERE send_on = $1 AND (cardinality($2::text[]) = 0 OR code = ANY($2::text[]))
            ORDER BY code""",
        q.today,
        codes,
    )
    rows: list[Row] = []
    for activity in activities:
        args: list[Any] = [list(activity["statuses"])]
        where = q.demographics(statuses=()).where("p", args)
        people = await q.conn.fetch(
            f"""SELECT p.id AS person_id, {NAME}, p.first_name, p.last_name FROM sis.people p
                 WHERE p.status = ANY($1::text[]) AND {where} ORDER BY name""",
            *args,
        )
        for person in people:
            values = dict(person)
            context = {**values, "today": q.today}
            values |= {
                "activity": activity["code"],
                "activity_subject": _render_activity(
                    activity["subject"], activity["code"], context
                ),
                "body": _render_activity(activity["body_text"], activity["code"], context),
            }
            rows.append(Row(person["person_id"], f"activity:{activity['code']}", values))
    return rows


def _render_activity(source: str, code: str, context: dict[str, Any]) -> str:
    try:
        return render(source, f"email_activities[{code}]", **context)
    except InvalidInput as exc:
        raise InvalidInput(
            f"sis.email_activities[{code}]",
            exc.reason,
            "Jinja2 using first_name, last_name, name, sis_id, today",
        ) from None


timed_email = Notifier(
    name="notifier.timed_email",
    title="Notifier: Timed Email",
    description=(
        "The Timed Email notifier can be used to send out timed emails to a selected group of "
        "students. The emails are created as Activities with each email activity listed on the "
        "notifier setup page. Multiple activities can be selected. A single timed task will send "
        "out all configured emails. The notifier can be limited by Division, Campus, Department, "
        "and/or Level."
    ),
    params=TimedEmailParams,
    select=_timed_email,
    columns=(*STUDENT_COLUMNS, ("activity", "E-mail activity")),
    subject="{{ count }} timed e-mails sent",
    intro="These timed e-mails were sent today:",
    student_subject="{% if rows | length == 1 %}{{ rows[0].activity_subject }}"
    "{% else %}{{ rows | length }} messages for you{% endif %}",
    student_intro="{% for r in rows %}{{ r.body }}\n\n{% endfor %}",
    student_table=False,
    repeat="once_per_item",
)


# Auto waitlist enroll ---------------------------------------------------------------------------


class WaitlistParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: str = "REGISTRAR"
    terms: Annotated[
        list[str],
        Meta(description="term codes to fill waitlists in; empty: every term not yet ended"),
    ] = []
    notify_students: Annotated[bool, Meta(description="tell each student they were enrolled")] = (
        True
    )
    student_channel: Channel = "email"


async def _auto_waitlist(q: Query[WaitlistParams]) -> list[Row]:
    """Enroll waiting students in waitlist order where seats are open, skipping registration holds.

    Each section is filled in its own transaction with the section row locked, so two runs at
    once cannot hand out the same seat; what this occurrence enrolled is read back from the
    schedule-change log, so a redelivered run reports it again and enrolls nobody twice.
    """
    conn = q.conn
    changed_by = f"belltower:{q.occurrence_id}"
    terms = [t.upper() for t in q.params.terms]
    args: list[Any] = [q.today, terms]
    section_filter = q.demographics().where_section("s", "c", args)
    candidates = await conn.fetch(
        f"""SELECT s.id FROM sis.sections s
              JOIN sis.courses c ON c.id = s.course_id
              JOIN sis.terms t ON t.id = s.term_id
             WHERE s.enrolled < s.capacity AND s.ends_on >= $1
               AND (cardinality($2::text[]) = 0 OR t.code = ANY($2::text[]))
               AND EXISTS (SELECT 1 FROM sis.waitlist w WHERE w.section_id = s.id AND w.state = 'waiting')
               AND {section_filter}
             ORDER BY s.id""",
        *args,
    )
    skipped: dict[tuple[int, int], int] = {}
    for candidate in candidates:
        async with conn.transaction():
            seats = await conn.fetchrow(
                "SELECT capacity, enrolled FROM sis.sections WHERE id = $1 FOR UPDATE",
                candidate["id"],
            )
            open_seats = seats["capacity"] - seats["enrolled"]
            for entry in await sis.waitlist(conn, candidate["id"]):
                if open_seats <= 0:
                    break
                if await sis.has_registration_hold(conn, entry.person_id, q.today):
                    skipped[(entry.person_id, entry.section_id)] = entry.position
                    continue
                if await sis.enroll_from_waitlist(conn, entry, changed_by=changed_by) is not None:
                    open_seats -= 1
    records = await conn.fetch(
        f"""SELECT p.id AS person_id, {NAME}, s.id AS section_id, {SECTION}, t.code AS term,
                   w.position, 'enrolled' AS result
              FROM sis.schedule_changes x
              JOIN sis.people p ON p.id = x.person_id
              JOIN sis.sections s ON s.id = x.section_id
              JOIN sis.courses c ON c.id = s.course_id
              JOIN sis.terms t ON t.id = s.term_id
              LEFT JOIN LATERAL (SELECT position FROM sis.waitlist w WHERE w.section_id = x.section_id
                                   AND w.person_id = x.person_id AND w.state = 'enrolled'
                                 ORDER BY w.resolved_at DESC LIMIT 1) w ON TRUE
             WHERE x.changed_by = $1 AND x.action = 'add'
             ORDER BY section, w.position""",
        changed_by,
    )
    rows = [Row(r["person_id"], f"section:{r['section_id']}", dict(r)) for r in records]
    if skipped:
        held = await conn.fetch(
            f"""SELECT p.id AS person_id, {NAME}, s.id AS section_id, {SECTION}, t.code AS term
                  FROM unnest($1::bigint[], $2::bigint[]) AS k(person_id, section_id)
                  JOIN sis.people p ON p.id = k.person_id
                  JOIN sis.sections s ON s.id = k.section_id
                  JOIN sis.courses c ON c.id = s.course_id
                  JOIN sis.terms t ON t.id = s.term_id
                 ORDER BY section, name""",
            [k[0] for k in skipped],
            [k[1] for k in skipped],
        )
        for r in held:
            values = dict(r) | {
                "position": skipped[(r["person_id"], r["section_id"])],
                "result": "skipped: registration hold",
            }
            rows.append(
                Row(r["person_id"], f"section:{r['section_id']}", values, tell_person=False)
            )
    return rows


auto_waitlist_enroll = Notifier(
    name="notifier.auto_waitlist_enroll",
    title="Notifier: Auto Waitlist Enroll",
    description=(
        "When a course has no available seats, a student can be added to Wait List, either by an "
        "administrator or from Student or Faculty Advisor registration. The Auto Waitlist Enroll "
        "notification assignment checks the waitlist for all courses and automatically enrolls any "
        "students on those waitlists when there is space available. Students are added to courses "
        "based on the order they were added to the waitlist. The only exception is students who have "
        "registration holds. These students are skipped, with the next person on the list who does "
        "not have an active registration hold taking their spot. The Auto Waitlist Enroll notifier "
        "should be run frequently during the registration and add/drop periods and should be set to "
        "end on the last day of add/drop."
    ),
    params=WaitlistParams,
    select=_auto_waitlist,
    columns=(
        *STUDENT_COLUMNS,
        *SECTION_COLUMNS,
        ("term", "Term"),
        ("position", "Waitlist position"),
        ("result", "Result"),
    ),
    subject="Auto waitlist enroll: {{ rows | selectattr('result', 'eq', 'enrolled') | list | length }} "
    "students enrolled",
    intro="Seats opened in these sections; waiting students were enrolled in waitlist order "
    "(students with a registration hold are skipped):",
    student_subject="You are enrolled from the waitlist",
    student_intro="A seat opened and you have been enrolled in:",
)


NOTIFIERS: tuple[Notifier[Any], ...] = (
    attendance, attendance_tardies, auto_waitlist_enroll, balance_due, below_full_time, birthday,
    blank_grades, credit_balance, enrollment_confirmation, final_grades_not_posted,
    grades_not_official, immunization_expiration, incomplete_grades, minor_status,
    no_attendance_record, registration_reminder, status_addition, schedule_changes,
    transfer_credit, user_defined_hold, withdrawn, timed_email,
)  # fmt: skip

__all__ = ["NOTIFIERS"]

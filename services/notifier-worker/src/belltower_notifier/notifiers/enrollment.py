"""Enrollment notifiers: full-time status, confirmations, reminders, schedule changes, withdrawals."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

import msgspec

from ..notify import Group, Notifier, NotifierParams, Query, Row
from .common import (
    FACULTY,
    NAME,
    SECTION,
    SECTION_COLUMNS,
    STUDENT_COLUMNS,
    Channel,
    LookBack,
    Meta,
    NotifyFaculty,
    NotifyStudents,
    Statuses,
    rows_of,
    section_item,
)


class BelowFullTimeParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "REGISTRAR"
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
            SELECT DISTINCT ON (x.person_id, x.term_id) x.id AS change_id, x.person_id, x.term_id,
                   x.term_credits_before,
                   x.changed_at, coalesce($3::numeric, t.full_time_credits) AS threshold
              FROM sis.schedule_changes x JOIN sis.terms t ON t.id = x.term_id
             WHERE x.changed_at > $1 AND x.changed_at <= $2
               AND x.term_credits_before >= coalesce($3::numeric, t.full_time_credits)
               AND x.term_credits_after < coalesce($3::numeric, t.full_time_credits)
             ORDER BY x.person_id, x.term_id, x.changed_at DESC)
        SELECT p.id AS person_id, {NAME}, t.code AS term, d.term_id, d.change_id,
               d.term_credits_before AS credits_before,
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
    return await rows_of(q, sql, args, lambda v: f"change:{v['change_id']}")


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
    subject="{{ count | counted('student') }} dropped below full-time status",
    intro="These students were full time and dropped below the threshold since the last run:",
    student_subject="You are no longer enrolled full time",
    student_intro="After your latest schedule change you are below full-time status. "
    "This can affect financial aid; talk to the registrar if that was not intended.",
    repeat="since_last_run",
)


class EnrollmentConfirmationParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "REGISTRAR"
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
    return await rows_of(q, sql, args, section_item)


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
    subject="{{ count | counted('enrollment') }} in courses starting {{ rows[0].starts_on if rows else today }}",
    intro="These students are enrolled in courses starting on the day shown:",
    student_subject="Your courses starting {{ rows[0].starts_on }}",
    student_intro="This confirms your enrollment in these courses:",
    repeat="once_per_item",
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
        return await rows_of(q, sql, args, section_item)
    sql = f"""
        SELECT p.id AS person_id, {NAME}, t.code AS term, t.name AS term_name, r.starts_at, r.ends_at,
               r.starts_at::date AS starts_on, NULL AS section, NULL AS course
          FROM sis.registration_appointments r
          JOIN sis.people p ON p.id = r.person_id
          JOIN sis.terms t ON t.id = r.term_id
         WHERE (r.starts_at AT TIME ZONE 'UTC')::date = $1 AND {q.where(args)}
         ORDER BY name"""
    return await rows_of(q, sql, args, lambda v: f"appointment:{v['term']}")


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
    subject="{{ count | counted('registration reminder') }} for {{ rows[0].starts_on if rows else today }}",
    intro="These students were reminded:",
    student_subject="{% if params.remind_about == 'classes_start' %}Your classes start on "
    "{{ rows[0].starts_on }}{% else %}Registration opens for you on {{ rows[0].starts_on }}{% endif %}",
    student_intro="{% if params.remind_about == 'classes_start' %}A reminder: these classes you are "
    "registered for start in {{ params.days_before }} days.{% else %}A reminder: your registration "
    "appointment for {{ rows[0].term_name }} opens on {{ rows[0].starts_on }}.{% endif %}",
    repeat="once_per_item",
)


class ScheduleChangesParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "REGISTRAR"
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
    return await rows_of(q, sql, args, lambda v: "schedule")


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
    subject="{{ count | counted('student') }} changed their schedule in the last {{ params.look_back_days }} days",
    intro="These students added, dropped or withdrew from a course since {{ days_before(params.look_back_days) }}:",
)


class WithdrawnParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "REGISTRAR"
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
    return await rows_of(q, sql, args, section_item, faculty="lead_faculty_id")


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
    subject="{{ count | counted('course withdrawal') }} processed on {{ days_before(params.day_to_look_at) }}",
    intro="These withdrawals have a withdrawn process date of {{ days_before(params.day_to_look_at) }}:",
    student_subject="Your course withdrawal",
    student_intro="You have been withdrawn from these courses:",
    faculty_subject="Withdrawals from your sections",
    faculty_intro="These students withdrew from sections you lead:",
    repeat="once_per_item",
)

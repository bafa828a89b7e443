"""Attendance notifiers: absences, tardies, and meetings without an attendance record."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Annotated, Any

from ..notify import Group, Notifier, NotifierParams, Query, Row
from .common import (
    FACULTY,
    NAME,
    SECTION,
    SECTION_COLUMNS,
    STUDENT_COLUMNS,
    Channel,
    Meta,
    NotifyFaculty,
    Threshold,
    rows_of,
    section_item,
)


class AttendanceParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADVISING"
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
        return await rows_of(q, sql, args, section_item)

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
    subject="{{ count | counted('student') }} with {{ params.threshold }} or more absences in a class",
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
    subject="{{ count | counted('student') }} over the absence or tardy threshold",
    intro="These students have {{ params.threshold }} or more absences or "
    "{{ params.tardy_threshold }} or more tardies in a class"
    "{% if params.start_date %} since {{ params.start_date }}{% endif %}:",
)


class NoAttendanceParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ACADEMIC_AFFAIRS"
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
    return await rows_of(q, sql, args, section_item, faculty="lead_faculty_id")


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
    subject="{{ count | counted('section') }} with meetings missing attendance",
    intro="No attendance was recorded for these meetings held at least {{ params.days_threshold }} days ago:",
    faculty_subject="Attendance to record for your sections",
    faculty_intro="Please record attendance for these meetings of sections you lead:",
)

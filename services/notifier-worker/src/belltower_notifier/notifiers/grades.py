"""Grade notifiers: blank, not final, not official and incomplete grades."""

from __future__ import annotations

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
    DaysAfterEnd,
    Meta,
    NotifyFaculty,
    NotifyStudents,
    StartDate,
    rows_of,
    section_item,
)


class BlankGradesParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "REGISTRAR"
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
    return await rows_of(q, sql, args, section_item, faculty="lead_faculty_id")


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
    subject="{{ count | counted('blank grade') }} in courses ended {{ params.days_after_end }}+ days ago",
    intro="These students have no grade in sections that ended at least "
    "{{ params.days_after_end }} days ago:",
    faculty_subject="Blank grades in your sections",
    faculty_intro="Please enter grades for these students in sections you lead:",
)


class SectionGradesParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ACADEMIC_AFFAIRS"
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
    return await rows_of(q, sql, args, section_item, faculty="lead_faculty_id")


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
    subject="{{ count | counted('section') }} without final grades {{ params.days_after_end }}+ days after the end",
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
    return await rows_of(q, sql, args, section_item, faculty="lead_faculty_id")


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
    subject="{{ count | counted('section') }} with unofficial grades {{ params.days_after_end }}+ days after the end",
    intro="These sections ended at least {{ params.days_after_end }} days ago and still have unofficial grades:",
    faculty_subject="Unofficial grades in your sections",
    faculty_intro="These sections you lead still have unofficial grades:",
)


class IncompleteGradesParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "REGISTRAR"
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
    return await rows_of(q, sql, args, section_item, faculty="lead_faculty_id")


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
    subject="{{ count | counted('outstanding incomplete grade') }}",
    intro="These incomplete grades are outstanding:",
    student_subject="You have an incomplete grade outstanding",
    student_intro="You have an outstanding incomplete in these courses; please finish the work by the date shown:",
    faculty_subject="Outstanding incompletes in your sections",
    faculty_intro="These students have an outstanding incomplete in sections you lead:",
)

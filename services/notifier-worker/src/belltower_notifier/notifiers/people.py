"""People notifiers: birthdays, minor status, status additions, transfer credit."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec

from belltower import sis
from belltower.templates import TemplateText

from ..notify import Group, Notifier, NotifierParams, Query, Row, render
from .common import (
    NAME,
    STUDENT_COLUMNS,
    Channel,
    LookBack,
    Meta,
    Statuses,
    rows_of,
)


class BirthdayParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADVISING"
    statuses: Statuses = msgspec.field(default_factory=lambda: ["student"])
    age: Annotated[
        int, Meta(ge=0, le=130, description="only people turning this age; 0: any age")
    ] = 0
    notify_students: Annotated[
        bool, Meta(description="send a birthday greeting to each person having the birthday")
    ] = False
    student_channel: Channel = "email"
    greeting: Annotated[
        TemplateText, Meta(description="the greeting (Jinja2: first_name, last_name, age)")
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
    rows = await rows_of(q, sql, args, lambda v: f"birthday:{today.year}")
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
    subject="{{ count | counted('birthday') }} today",
    intro="These people have their birthday today ({{ today }}):",
    student_subject="Happy birthday!",
    student_intro="{{ rows[0].greeting }}",
    student_table=False,
    repeat="once_per_item",
)


class MinorStatusParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "REGISTRAR"
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
    return await rows_of(q, sql, args, lambda v: f"minor:{v['indicator_id']}")


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
    subject="{{ count | counted('student') }} with a new minor status indicator",
    intro="These students were given a minor status indicator since the last run:",
    repeat="since_last_run",
)


class StatusAdditionParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADMISSIONS"
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
    return await rows_of(q, sql, args, lambda v: f"status:{v['status_id']}")


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
    subject="{{ count | counted('person', 'people') }} added since the last run",
    intro="These people were added{% if params.statuses %} with status {{ params.statuses | join(', ') }}"
    "{% endif %} since {{ since.strftime('%Y-%m-%d %H:%M') }} UTC:",
    repeat="since_last_run",
)


class TransferCreditParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADMISSIONS"
    first_run_look_back_days: LookBack = 1


async def _transfer_credit(q: Query[TransferCreditParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, tc.id AS transfer_id, tc.institution, tc.course_code,
               tc.course_title, tc.credits, tc.grade, tc.accepted_on
          FROM sis.transfer_credits tc JOIN sis.people p ON p.id = tc.person_id
         WHERE tc.added_at > $1 AND tc.added_at <= $2 AND {q.where(args)}
         ORDER BY name, tc.course_code"""
    return await rows_of(q, sql, args, lambda v: f"transfer:{v['transfer_id']}")


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
        ("institution", "From"),
        ("course_code", "Course"),
        ("course_title", "Title"),
        ("credits", "Credits"),
        ("grade", "Grade"),
    ),
    subject="{{ rows | map(attribute='sis_id') | unique | list | length | counted('student') }} "
    "received transfer credit",
    intro="These students received transfer credit since the last run:",
    repeat="since_last_run",
)

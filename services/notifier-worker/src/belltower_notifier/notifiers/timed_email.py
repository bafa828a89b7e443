"""Timed Email: the e-mail activities due today, sent to the people they name."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from belltower.errors import InvalidInput

from ..notify import Notifier, NotifierParams, Query, Row, render
from .common import (
    NAME,
    STUDENT_COLUMNS,
    Channel,
    Meta,
)


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
    return await _send_activities(q, None)


async def _timed_email_prospects(q: Query[TimedEmailParams]) -> list[Row]:
    return await _send_activities(q, {"prospect"})


async def _send_activities(q: Query[TimedEmailParams], only: set[str] | None) -> list[Row]:
    """The activities due today, each to the people of its statuses (of ``only``, if given)."""
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
        statuses = [s for s in activity["statuses"] if only is None or s in only]
        if not statuses:
            continue
        args: list[Any] = [statuses]
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
    subject="{{ count | counted('timed e-mail') }} sent",
    intro="These timed e-mails were sent today:",
    student_subject="{% if rows | length == 1 %}{{ rows[0].activity_subject }}"
    "{% else %}{{ rows | length }} messages for you{% endif %}",
    student_intro="{% for r in rows %}{{ r.body }}\n\n{% endfor %}",
    student_table=False,
    repeat="once_per_item",
)


timed_email_prospects = replace(
    timed_email,
    name="notifier.timed_email_prospects",
    title="Notifier: Timed Email Prospects",
    description=(
        "The Timed Email notifier can be used to send out timed emails to a selected group of "
        "prospects. The emails are created as Activities with each email activity listed on the "
        "notifier setup page. Multiple activities can be selected. A single timed task will send "
        "out all emails configured in the notifier (to the prospects among each activity's "
        "statuses). The notifier can be limited by Division, Campus, Department, and/or Level."
    ),
    select=_timed_email_prospects,
    intro="These timed e-mails were sent to prospects today:",
)
